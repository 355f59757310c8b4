"""The fine-tuned LLM of section 3.2: base model (llm.model), prompts (llm.prompts), output parsers
(llm.parsing), inference (llm.inference.LLM), metrics (llm.evaluation) and a LangChain chat model
(llm.chat_model.PresalesChatModel). Heavy imports (torch, transformers) happen in those modules."""
import warnings

# peft calls a transformers property that transformers 5 deprecates; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
