"""Controller fine-tuning: the LLM learns to drive graph 1 from tool-call traces of the corpus.

    presales train controller --data DIR --out RUN --base-model runs/default/llm

The traces (agent/traces.py) are rendered exactly as the chat model renders a live conversation
(llm.chat_model.render_messages with the CRS tools bound); each AI message is one target. LoRA
tuning (or full fine-tuning, --lora-r 0: the embedded default) uses the pieces of `presales train llm`
(answer-only loss, length batches, cosine schedule, TrainLoop), then the adapter is merged into
RUN/merged (or the whole model saved there), which `LLM.load(RUN)` and the chat model load. At the end the
controller is scored on the test split's decision points: ask versus recommend (against the act
tags 系统提问 / 系统推荐) and, when it asks, the attribute (against the annotated keys), beside a
majority-class baseline; RUN/test_metrics.json holds the figures.
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from langchain_core.utils.function_calling import convert_to_openai_tool

from agent.traces import ASK, RECOMMEND, TraceStep, corpus_traces
from tools.crs_tools import make_crs_tools
from uneed.arguments import parse_args
from uneed.baselines import MajorityElicitor
from uneed.errors import PresalesError

log = logging.getLogger("training.controller")
CALL_CHECK_STEPS = 120  # test lookup and reply steps scored (of 177 and 272 on data/small)
ANSWER_TOKENS = 128  # what the chat model leaves for its answer (PresalesChatModel.max_new_tokens)


def tool_schemas() -> list[dict]:
    """The CRS tools as the controller sees them (bound to nothing: only their schemas matter here)."""
    return [convert_to_openai_tool(t) for t in make_crs_tools(crs=None, items={})]


def target_text(step: TraceStep) -> str:
    from llm.parsing import format_tool_call

    calls = "".join(format_tool_call(c["name"], c.get("args", {})) for c in step.target.tool_calls)
    return f"{step.target.content}{calls}"


def decision_of(tool_calls: Sequence[dict]) -> tuple[str, str | None]:
    """('ask', attribute) / ('recommend', None) / ('reply', None) from a controller message's calls."""
    for call in tool_calls:
        if call["name"] == "select_attribute_to_ask":
            return ASK, (call.get("args") or {}).get("attribute")
        if call["name"] == "recommend_items":
            return RECOMMEND, None
    return "reply", None


@dataclass
class ControllerScores:
    n: int = 0
    decision_correct: int = 0
    ask_n: int = 0
    attribute_correct: int = 0  # asks that named one of the staff's attributes
    left_to_crs: int = 0  # asks (at gold asks) that named none: the CRS's elicitation chooses (the traces' way)
    confusion: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        share = (lambda k: k / self.ask_n if self.ask_n else 0.0)
        return {"n": self.n, "decision_accuracy": self.decision_correct / self.n if self.n else 0.0,
                "ask_n": self.ask_n, "attribute_accuracy": share(self.attribute_correct),
                "attribute_left_to_crs": share(self.left_to_crs),
                "confusion": {f"{g}->{p}": c for (g, p), c in sorted(self.confusion.items())}}


def score(steps: Sequence[TraceStep], predictions: Sequence[tuple[str, str | None]]) -> ControllerScores:
    out = ControllerScores()
    for step, (decision, attribute) in zip(steps, predictions):
        out.n += 1
        out.decision_correct += decision == step.decision
        out.confusion[(step.decision, decision)] += 1
        if step.decision == ASK:
            out.ask_n += 1
            out.attribute_correct += attribute in step.attributes
            out.left_to_crs += decision == ASK and attribute is None
    return out


def majority_baseline(train: Sequence[TraceStep], test: Sequence[TraceStep]) -> ControllerScores:
    """Always the most frequent train decision; when asking, the domain's most asked attribute."""
    decisions = Counter(s.decision for s in train if s.kind == "decide")
    majority = decisions.most_common(1)[0][0] if decisions else ASK
    elicitor = MajorityElicitor()
    counts = elicitor.counts
    for s in train:
        if s.kind == "decide" and s.decision == ASK:
            counts[s.domain].update(s.attributes[:1])
    preds = [(majority, (elicitor.predict(s.domain) or [None])[0]) for s in test]
    # the attribute baseline is scored on every gold 'ask' step, whatever the majority decision is
    scores = score(test, preds)
    scores.attribute_correct = sum((elicitor.predict(s.domain) or [None])[0] in s.attributes
                                   for s in test if s.decision == ASK)
    return scores


def predict_calls(llm, steps: Sequence[TraceStep], tools: Sequence[dict], tool_format: str = "json",
                  batch_size: int = 8, max_new_tokens: int = ANSWER_TOKENS, calls_only: bool = False
                  ) -> list[list[dict]]:
    """Generate the controller's message at each step, prompted as the chat model prompts it, and parse its
    calls; calls_only: a message stops once it can no longer open with a tool call (its text is not read)."""
    from llm.parsing import TOOL_OPEN, parse_tool_calls

    from llm.chat_model import fit_messages, render_messages

    names = [t["function"]["name"] for t in tools]
    template = getattr(llm.settings, "template", "zh")
    tokenizer = llm.tokenizer

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    prompts = [render_messages(fit_messages(s.messages, tools, count, llm.max_context - max_new_tokens, template,
                                            tool_format)[0], tools, template, tool_format=tool_format) for s in steps]
    texts = llm.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         stop_unless_opens_with=TOOL_OPEN if calls_only else None)
    return [parse_tool_calls(t, names).tool_calls for t in texts]


def predict_decisions(llm, steps: Sequence[TraceStep], tools: Sequence[dict], tool_format: str = "json",
                      batch_size: int = 8, max_new_tokens: int = ANSWER_TOKENS) -> list[tuple[str, str | None]]:
    """Generate the controller's message at each decision step and read its decision."""
    return [decision_of(calls) for calls in predict_calls(llm, steps, tools, tool_format, batch_size, max_new_tokens)]


def build_examples(steps: Sequence[TraceStep], tokenizer, settings, tools: Sequence[dict],
                   tool_format: str = "json") -> list[dict]:
    """Training examples whose prompts are fitted exactly as the chat model fits them at run time:
    the oldest messages go first, the instruction, the tools and the current turn stay."""
    from llm.chat_model import fit_messages, render_messages
    from llm.prompts import encode_example

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    out = []
    for step in steps:
        messages, _ = fit_messages(step.messages, tools, count, settings.max_length - ANSWER_TOKENS,
                                   settings.template, tool_format)
        prompt = render_messages(messages, tools, settings.template, tool_format=tool_format)
        example = encode_example(prompt, target_text(step), tokenizer, ANSWER_TOKENS)
        if len(example["input_ids"]) > settings.max_length:
            # the current turn alone is too long: cut the prompt's start, never the answer (as generate does)
            cut = len(example["input_ids"]) - settings.max_length
            example = {k: v[cut:] for k, v in example.items()}
        example["task"] = step.kind
        out.append(example)
    return out


def sample_steps(steps: list[TraceStep], n: int, seed: int, shares: Mapping[str, float] | None = None
                 ) -> list[TraceStep]:
    """A seeded sample of n steps (all when n <= 0); `shares` {kind: share}: at least that share of the
    sample (as far as there are enough) is steps of that kind ('decide': the ask/recommend choices,
    'extract': turn openings, 'lookup': reading the ranking's first item, 'reply': writing the answer);
    the rest is drawn from all the others."""
    if n <= 0 or n >= len(steps):
        return steps
    rng = random.Random(seed)
    chosen: list[TraceStep] = []
    for kind, share in (shares or {}).items():
        of_kind = [s for s in steps if s.kind == kind]
        chosen += rng.sample(of_kind, min(len(of_kind), int(n * share + 1e-9), n - len(chosen)))
    taken = {id(s) for s in chosen}
    rest = [s for s in steps if id(s) not in taken]
    chosen += rng.sample(rest, min(len(rest), n - len(chosen)))
    rng.shuffle(chosen)
    return chosen


@dataclass
class ControllerTrainArgs:
    """Fine-tune the LLM as the controller of graph 1 on tool-call traces of the corpus (LoRA, or every weight)."""

    data: str = field(metadata={"help": "U-NEED-format corpus directory"})
    out: str = field(metadata={"help": "run directory"})
    base_model: str = field(default="runs/default/llm", metadata={"help": "the instruction-tuned LLM run (or any "
                                                                           "local HF causal-LM directory)"})
    tool_format: str = field(default="compact", metadata={"help": "how tools are shown: compact (one line each, for "
                                                                   "small context windows) | brief (names and "
                                                                   "arguments only, for a model that learns them from "
                                                                   "its traces) | json (JSON schemas)"})
    max_length: int = field(default=0, metadata={"help": "tokens of prompt + answer (0: the base LLM's setting)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank; 0: full fine-tuning (every weight trains)"})
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    epochs: int = 1
    batch_size: int = 8
    lr: float = 3e-3
    warmup_steps: int = 10
    max_train_samples: int = field(default=3000, metadata={"help": "trace steps sampled for training (0: all)"})
    decide_share: float = field(default=0.75, metadata={"help": "share of the sampled train steps that are ask/recommend "
                                                                "decisions (the rest: extract, lookup, reply)"})
    opening_share: float = field(default=0.0, metadata={"help": "share of the sampled train steps that are turn "
                                                                  "openings, where extract_needs is called first"})
    lookup_share: float = field(default=0.0, metadata={"help": "share of the sampled train steps that read the "
                                                                 "ranking's first item (lookup_item after recommend_items)"})
    reply_share: float = field(default=0.0, metadata={"help": "share of the sampled train steps where the answer is "
                                                                "the reply to the shopper, with no tool call"})
    max_valid_samples: int = field(default=200, metadata={"help": "trace steps for the validation loss (0: all)"})
    max_test_decisions: int = field(default=0, metadata={"help": "test decision points scored (0: all)"})
    max_minutes: float = field(default=14.0, metadata={"help": "stop training after this many minutes (0: none)"})
    eval_batch_size: int = 16
    seed: int = 42
    device: str = "auto"
    progress: bool = True
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run at --out (kept until the new one has finished)"})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(ControllerTrainArgs, argv, prog="presales train controller")
    from llm.chat_model import TOOL_FORMATS

    if args.tool_format not in TOOL_FORMATS:
        raise PresalesError(f"--tool-format must be one of {', '.join(TOOL_FORMATS)}, got {args.tool_format!r}")
    shares = step_shares(args)
    if not (all(0 <= v <= 1 for v in shares.values()) and sum(shares.values()) <= 1 + 1e-9):
        raise PresalesError("--decide-share, --opening-share, --lookup-share and --reply-share must be in [0, 1] and "
                            f"add up to at most 1, got {', '.join(str(v) for v in shares.values())}")
    if args.lora_r < 0:
        raise PresalesError(f"--lora-r must be 0 (full fine-tuning) or a LoRA rank, got {args.lora_r}")
    from training.distributed import launched

    if launched():
        raise PresalesError("train controller runs in one process (seconds to minutes); start it without torchrun")
    return train_controller(args)


def step_shares(args: ControllerTrainArgs) -> dict[str, float]:
    """The least share of each kind of trace step in the training sample (sample_steps)."""
    return {"decide": args.decide_share, "extract": args.opening_share, "lookup": args.lookup_share,
            "reply": args.reply_share}


def train_controller(args: ControllerTrainArgs) -> int:
    import math

    import torch
    from peft import LoraConfig, get_peft_model

    from llm.inference import LLM
    from llm.model import plain_lm_head, save_llm_config
    from training.llm import answer_loss, collate_batch, examples_loss
    from training.loop import Epoch, TrainLoop, cosine_schedule, length_batches
    from training.runtime import RunDir, pick_device, replace_dir, set_seed, staging_dir
    from uneed.corpus import load_corpus
    from uneed.logs import setup_logging

    setup_logging()
    set_seed(args.seed)
    device = pick_device(args.device)
    run = RunDir.staged(args.out, overwrite=args.overwrite)
    corpus = load_corpus(args.data)
    base = LLM.load(args.base_model, device=str(device), merge_adapters=True)
    run.save_config(args)  # only once the inputs loaded: a bad corpus or base model leaves no run directory
    settings = base.settings
    if args.max_length:
        settings.max_length = args.max_length
    model, tokenizer = base.model, base.tokenizer
    tools = tool_schemas()

    train_steps = sample_steps(corpus_traces(corpus, "train", args.seed), args.max_train_samples, args.seed,
                               step_shares(args))
    valid_steps = sample_steps(corpus_traces(corpus, "valid", args.seed), args.max_valid_samples, args.seed)
    train_ex = build_examples(train_steps, tokenizer, settings, tools, args.tool_format)
    valid_ex = build_examples(valid_steps, tokenizer, settings, tools, args.tool_format)
    if not train_ex:
        raise PresalesError(f"{args.data}: no controller traces in the train split")
    log.info("controller traces: %d train steps %s, %d valid", len(train_ex), dict(Counter(s.kind for s in train_steps)),
             len(valid_ex))

    if args.lora_r:
        model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                                                 target_modules="all-linear", task_type="CAUSAL_LM", bias="none"))
    else:
        model.requires_grad_(True)
    model.to(device)
    model.train()
    keep_logits = plain_lm_head(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    lengths = [len(e["input_ids"]) for e in train_ex]
    total = max(1, math.ceil(len(train_ex) / args.batch_size) * args.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(args.warmup_steps, total, 0.1))
    run.log(epoch=0, valid_loss=examples_loss(model, valid_ex, args.eval_batch_size, pad_id, device, False, keep_logits))
    loop = TrainLoop(optimizer, scheduler, params, max_minutes=args.max_minutes, progress=args.progress,
                     name="controller", logger=log)

    def end_epoch(ep: Epoch) -> None:
        valid_loss = examples_loss(model, valid_ex, args.eval_batch_size, pad_id, device, False, keep_logits)
        run.log(epoch=ep.index + 1, train_loss=ep.train_loss, first_batch_loss=ep.losses[0],
                last_batch_loss=ep.losses[-1], valid_loss=valid_loss, partial=ep.stopped)
        log.info("controller epoch %d: train loss %.4f (first batch %.4f), valid loss %.4f", ep.index + 1,
                 ep.train_loss, ep.losses[0], valid_loss)

    loop.fit(args.epochs, lambda epoch: length_batches(lengths, args.batch_size, args.seed + epoch),
             lambda batch: answer_loss(model, collate_batch(train_ex, batch, pad_id, device), keep_logits), end_epoch)
    train_minutes = loop.elapsed() / 60
    run.plot_curves(["train_loss", "valid_loss"])

    merged = model.merge_and_unload() if args.lora_r else model
    merged.eval()
    tmp = staging_dir(run.path / "merged")
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    save_llm_config(tmp, kind="merged", base_model=None, prompt=settings.to_dict(), tool_format=args.tool_format,
                    controller=True)
    replace_dir(tmp, run.path / "merged")

    result = evaluate_controller(LLM(merged, tokenizer, settings, device), corpus, args.tool_format,
                                 args.max_test_decisions, args.seed, args.eval_batch_size)
    result.update(train_minutes=train_minutes, train_steps=len(train_ex))
    run.write_json("test_metrics.json", result)
    run.commit()
    return 0


def evaluate_controller(llm, corpus, tool_format: str = "json", max_decisions: int = 0, seed: int = 42,
                        batch_size: int = 16) -> dict:
    """Ask-vs-recommend accuracy on the test split's decision points, beside the majority, and at the asks
    how often the controller left the attribute to the CRS (as the traces do: the choice is then the CRS's,
    scored end to end by the replay's ask F1) or named a right one itself;
    at the opening of each user turn (the 'extract' steps), the share where the controller's first
    call reads the new message (extract_needs), as the traces do: a controller that skips it decides on
    needs it never read, which the decision points (gold extract results in the prompt) do not show;
    after recommend_items (the 'lookup' steps), the share where it reads the first item (lookup_item);
    and where the traces reply (the 'reply' steps), the share where it writes the reply and calls no tool:
    a controller that calls on instead loops until the graph's step bound hands the turn to the CRS."""
    steps = corpus_traces(corpus, "test", seed)
    by_kind = {kind: [s for s in steps if s.kind == kind] for kind in ("decide", "extract", "lookup", "reply")}
    # lookups and replies: a seeded sample (a reply step's prompt carries the whole turn: the slowest to score)
    by_kind.update({kind: sample_steps(by_kind[kind], CALL_CHECK_STEPS, seed) for kind in ("lookup", "reply")})
    if max_decisions:
        by_kind = {kind: sample_steps(of_kind, max_decisions, seed) for kind, of_kind in by_kind.items()}
    decisions = by_kind["decide"]
    tools = tool_schemas()
    predictions = predict_decisions(llm, decisions, tools, tool_format, batch_size)
    ours = score(decisions, predictions).as_dict()

    def first_call_share(kind: str, name: str | None) -> float:
        """Share of the kind's steps whose first call is `name` (None: whose message calls no tool)."""
        of_kind = by_kind[kind]
        calls = predict_calls(llm, of_kind, tools, tool_format, batch_size, calls_only=True)
        hits = sum((c[0]["name"] == name) if c else name is None for c in calls)
        return hits / len(of_kind) if of_kind else 0.0

    ours["turn_opening_n"] = len(by_kind["extract"])
    ours["turn_opening_extract"] = first_call_share("extract", "extract_needs")
    ours["lookup_n"] = len(by_kind["lookup"])
    ours["lookup_first"] = first_call_share("lookup", "lookup_item")
    ours["reply_n"] = len(by_kind["reply"])
    ours["reply_without_call"] = first_call_share("reply", None)
    majority = majority_baseline(corpus_traces(corpus, "train", seed), decisions).as_dict()
    log.info("controller on %d test decisions: ask/recommend accuracy %.3f (majority %.3f); at %d asks it left the "
             "attribute to the CRS %.3f of the time, named a right one %.3f (majority %.3f); first call extract_needs "
             "at %.3f of %d turn openings, lookup_item at %.3f of %d lookups; replied without a call at %.3f of %d "
             "replies", ours["n"], ours["decision_accuracy"], majority["decision_accuracy"],
             ours["ask_n"], ours["attribute_left_to_crs"], ours["attribute_accuracy"], majority["attribute_accuracy"],
             ours["turn_opening_extract"], ours["turn_opening_n"], ours["lookup_first"], ours["lookup_n"],
             ours["reply_without_call"], ours["reply_n"])
    return {"controller": ours, "majority_baseline": majority, "tool_format": tool_format}


if __name__ == "__main__":
    import sys

    sys.exit(main())
