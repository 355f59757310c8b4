"""The base causal LM: an embedded small Qwen2-architecture model with the offline char tokenizer,
or any local Hugging Face causal-LM directory (Qwen2.5, Chinese-Alpaca/LLaMA, ChatGLM with
trust_remote_code) so a user with real weights runs the same pipeline.

Nothing here downloads: `load_base` passes `local_files_only=True` and insists on a directory.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from uneed.corpus import Corpus
from uneed.errors import ModelLoadError, PresalesError

log = logging.getLogger(__name__)

# Written next to a saved model / adapter: how prompts were built, so inference matches training.
LLM_CONFIG = "presales_llm.json"
# tokenizer_config.json classes of a plain tokenizer.json (the offline char tokenizer of uneed.vocab)
GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


@dataclass
class EmbeddedSize:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int


# `default` is the model the budgets are measured with (about 4.5M parameters with a ~4.6k vocabulary);
# `tiny` is for tests; `large` (~190M) is the GPU profile's.
EMBEDDED_SIZES = {
    "tiny": EmbeddedSize(64, 128, 2, 2, 2, 1024),
    "default": EmbeddedSize(256, 688, 4, 4, 4, 2048),
    "medium": EmbeddedSize(512, 1376, 8, 8, 4, 2048),
    "large": EmbeddedSize(1024, 2816, 16, 16, 8, 2048),  # about 190M parameters with the char vocabulary: PROFILE=gpu
}


def corpus_texts(corpus: Corpus, splits: Iterable[str] = ("train",), items: bool = True) -> list[str]:
    """The corpus as plain text for pre-training: one text per dialogue ('用户：…\\n客服：…'), and one
    per item ('商品知识：价格区间是中，…')."""
    texts = []
    for split in splits:
        for d in corpus.split(split):
            texts.append("\n".join(f"{t.sender_type}：{t.send_content}" for t in d.dialogue))
    if items:
        for item in corpus.items.values():
            text = item.text()
            if text:
                texts.append(f"商品知识：{text}")
    return texts


def build_tokenizer(texts: Iterable[str], model_max_length: int = 2048, level2: bool = False):
    from uneed.vocab import build_char_tokenizer

    return build_char_tokenizer(texts, level2=level2, model_max_length=model_max_length)


def build_embedded_model(tokenizer, size: str = "default", arch: str = "qwen2", max_length: int | None = None,
                         **overrides: int | None):
    """A randomly initialised decoder-only LM sized by EMBEDDED_SIZES[size] (fields of `overrides` that are
    not None replace the preset's), vocabulary from `tokenizer`."""
    if size not in EMBEDDED_SIZES:
        raise PresalesError(f"unknown model size {size!r}; choose from {sorted(EMBEDDED_SIZES)}")
    s = asdict(EMBEDDED_SIZES[size])
    s.update({k: v for k, v in overrides.items() if v is not None})
    if s["hidden_size"] % s["num_attention_heads"] or s["num_attention_heads"] % s["num_key_value_heads"]:
        raise PresalesError(f"hidden_size {s['hidden_size']} must be divisible by num_attention_heads "
                            f"{s['num_attention_heads']}, and that by num_key_value_heads {s['num_key_value_heads']}")
    if max_length:
        s["max_position_embeddings"] = max(max_length, 64)
    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, **s)
    if arch == "qwen2":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        return Qwen2ForCausalLM(Qwen2Config(**common))
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(**common))
    raise PresalesError(f"unknown architecture {arch!r}; choose qwen2 or llama")


def _check_model_dir(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model directory")
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a directory (expected a Hugging Face model directory)")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: no config.json; not a Hugging Face model directory "
                             "(pass the directory written by save_pretrained)")


def resolve_base_dir(path: str | Path) -> Path:
    """A model directory, or a `presales train llm-base` run directory holding one in model/."""
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        return path / "model"
    return path


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cls = AutoTokenizer
    try:
        tok_cfg = json.loads((Path(path) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        tok_cfg = {}
    if tok_cfg.get("tokenizer_class") in GENERIC_TOKENIZER_CLASSES and (Path(path) / "tokenizer.json").is_file():
        # Our char tokenizer: AutoTokenizer would pick the tokenizer class of config.json's model_type
        # (Qwen2Tokenizer) and rebuild a byte-level BPE pipeline around the vocabulary.
        cls = PreTrainedTokenizerFast
    try:
        tok = cls.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable directory
        raise ModelLoadError(f"{path}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from None
    if tok.pad_token_id is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
    return tok


def load_base(path: str | Path, trust_remote_code: bool = False, dtype=None, device=None):
    """(model, tokenizer) from a local Hugging Face causal-LM directory; ModelLoadError when unusable."""
    from transformers import AutoModelForCausalLM

    path = resolve_base_dir(path)
    _check_model_dir(path)
    tokenizer = load_tokenizer(path, trust_remote_code)
    kwargs = dict(local_files_only=True, trust_remote_code=trust_remote_code)
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None
    if device is not None:
        model.to(device)
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# decoders whose logits are exactly the LM head over the body's last hidden state (no scaling or capping)
PLAIN_HEAD_MODELS = ("qwen2", "qwen3", "llama", "mistral")


def plain_lm_head(model) -> bool:
    """Whether the model's logits at chosen positions may be had by running its LM head on the body's
    hidden states there (training.llm.answer_loss, LLM.letter_scores) rather than over every position."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base.config, "model_type", None) in PLAIN_HEAD_MODELS and base.get_output_embeddings() is not None


def save_llm_config(path: str | Path, **values) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / LLM_CONFIG).write_text(json.dumps(values, ensure_ascii=False, indent=2), encoding="utf-8")


def read_llm_config(path: str | Path) -> dict:
    file = Path(path) / LLM_CONFIG
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{file}: not valid JSON ({exc.msg})") from None


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
