"""Prompts of the fine-tuned LLM (section 3.2): the template around instruction + input, fitting a
record into the context length, and the training example whose loss covers the output only.

Template ("zh", the default; "alpaca" is the Stanford/Chinese-Alpaca wording):

    ### 指令：
    {instruction}
    ### 输入：
    {input}
    ### 回答：
    {output}</s>

Long inputs (how truncation works). Every task has a token budget for its answer,
`max_new_tokens[task]`; the prompt gets `max_length - max_new_tokens[task]` tokens, the same at
training and inference time. When the prompt is longer:
  1. understand / elicit / respond: the oldest dialogue turns are dropped, whole, from the left of
     the dialogue part ('[Round i]' blocks), as few as needed (binary search) - the instruction, the
     current input, the user needs, the CRS results are untouched;
  2. recommend: first each candidate's knowledge is cut to fewer relations (8, 4, then 2), keeping
     the relations the user's needs name (品牌, 颜色, 价位 -> 价格区间, ...) first; then, at 2, 1 and
     0 relations (only the leaf category), the oldest turns are dropped as in 1 - so all lettered
     candidates A-T survive with the attributes that matter for this user;
  3. last resort: the input text is cut from its left, character-wise, keeping its end; logged.
A task's prompt can also be held to its latest N turns (`context_turns`), before any of the above.
Outputs longer than `max_new_tokens[task]` are cut on the right at training time (no EOS then).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from uneed.corpus import CATEGORY_RELATION, LEAF_RELATION, RELATION_ALIASES, Item
from uneed.tasks import TaskSample, llm_record
from uneed.tasks.llm_format import lettered_candidates

log = logging.getLogger(__name__)

IGNORE_INDEX = -100

TEMPLATES = {
    "zh": "### 指令：\n{instruction}\n### 输入：\n{input}\n### 回答：\n",
    "alpaca": ("Below is an instruction that describes a task, paired with an input that provides further "
               "context. Write a response that appropriately completes the request.\n\n"
               "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"),
}
# Lines a model may start on its own after the answer; generation text is cut there.
STOP_MARKERS = ("\n### ", "### 指令", "### Instruction")

DEFAULT_MAX_NEW_TOKENS = {"understand": 40, "elicit": 16, "recommend": 4, "respond": 64}
DEFAULT_NO_REPEAT_NGRAM = {"respond": 2}  # tag lists may repeat a key ('功能需求：省电；功能需求：静音'): replies only
RELATION_CAPS = (8, 4, 2, 1, 0)
DROP_TURNS_AT_CAP = 2  # recommendation: dialogue turns are dropped only once items are down to 2 relations


def resolve_template(template: str) -> str:
    """A preset name ('zh', 'alpaca') or a format string with {instruction} and {input}."""
    text = TEMPLATES.get(template, template)
    if "{instruction}" not in text or "{input}" not in text:
        raise ValueError(f"prompt template must be one of {sorted(TEMPLATES)} or contain {{instruction}} and "
                         f"{{input}}: {template!r}")
    return text


def render_prompt(record: Mapping, template: str = "zh") -> str:
    return resolve_template(template).replace("{instruction}", record["instruction"]).replace(
        "{input}", record["input"])


@dataclass
class PromptSettings:
    """What a saved LLM needs to build the same prompts at inference as in training."""

    template: str = "zh"
    max_length: int = 1024
    max_new_tokens: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_NEW_TOKENS))
    item_relations: int | None = None  # cap on relations per candidate item in the input (None: all)
    # at most N latest dialogue turns in a task's prompt (a task not named: all that fit). Understanding
    # reads the current utterance: a short context makes its examples cheaper and its copying easier.
    context_turns: dict[str, int] = field(default_factory=dict)
    # item -> log(1 + count) over the samples the LLM trained on and their users' behaviours: a
    # recommendation's candidates are lettered most popular first, so that the model starts from the
    # popularity baseline's choice (A) and learns when the needs point elsewhere ({}: the data's order;
    # a CRS ranking, when given, orders them instead). Measured: README, the LLM.
    candidate_popularity: dict[str, float] = field(default_factory=dict)
    # A recommendation is the candidate letter of highest score: the model's log-probability of the letter
    # plus recommend_prior_weight x the log share of train answers at that letter (recommend_prior, A first).
    # The weight is fitted on the valid split after training (llm.letters.fit_prior_weight; 0: the model
    # alone). The embedded LLM's choices off A were right 1 time in 35 on test while A was right 0.23 of the
    # time; fitted, its weight (0.5) makes it answer A, the most popular candidate not shown, every time
    # (README, the LLM).
    recommend_prior: list[float] = field(default_factory=list)
    recommend_prior_weight: float = 0.0
    # greedy decoding of a task's output never repeats an n-gram of it (0: off): the embedded LLM's replies
    # repeated themselves ('混合性，还是混合性') in 15% of the test replies without it (README, the LLM)
    no_repeat_ngram: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_NO_REPEAT_NGRAM))
    # understanding answers decoded with every value a span of the current utterance (llm.spans): on its
    # own the embedded LLM wrote a third of its values as near-copies ('短袖' for '短靴'; README, the LLM)
    span_values: bool = True

    def prompt_budget(self, task: str) -> int:
        return max(8, self.max_length - self.new_tokens(task))

    def new_tokens(self, task: str) -> int:
        return int(self.max_new_tokens.get(task, DEFAULT_MAX_NEW_TOKENS.get(task, 64)))

    def no_repeat(self, task: str) -> int:
        return int(self.no_repeat_ngram.get(task, 0))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "PromptSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        s = cls(**{k: v for k, v in data.items() if k in names})
        s.max_new_tokens = {**DEFAULT_MAX_NEW_TOKENS, **(s.max_new_tokens or {})}
        return s


UNCAPPED_RELATIONS = (CATEGORY_RELATION, LEAF_RELATION)  # a code (never written) and the leaf category (written as 类目)


def needed_relations(sample: TaskSample) -> list[str]:
    """Item relations the user's needs talk about, in the order they came up."""
    return list(dict.fromkeys(RELATION_ALIASES.get(k, k) for k, _ in sample.needs))


class _CappedItems(Mapping):
    """A read-only view of the item table with at most `cap` relations per item: the relations in
    `prefer` (those the user's needs name) first, then the others in file order; the kept ones are
    written in file order."""

    def __init__(self, items: Mapping[str, Item], cap: int | None, prefer: Sequence[str] = ()):
        self.items, self.cap, self.prefer, self.cache = items, cap, list(prefer), {}

    def __getitem__(self, key):
        if self.cap is None:
            return self.items[key]
        if key not in self.cache:
            item = self.items[key]
            countable = [r for r in item.knowledge if r not in UNCAPPED_RELATIONS]
            ranked = [r for r in self.prefer if r in item.knowledge and r not in UNCAPPED_RELATIONS]
            ranked += [r for r in countable if r not in ranked]
            chosen = set(ranked[: self.cap]) | set(UNCAPPED_RELATIONS)
            keep = {r: v for r, v in item.knowledge.items() if r in chosen}
            self.cache[key] = Item(item.item_id, item.seller_id, keep)
        return self.cache[key]

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)

    def get(self, key, default=None):
        return self[key] if key in self.items else default

    def __contains__(self, key):
        return key in self.items


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])


def _fits(tokenizer, record: dict, template: str, budget: int) -> bool:
    return count_tokens(tokenizer, render_prompt(record, template)) <= budget


def fit_record(sample: TaskSample, items: Mapping[str, Item], tokenizer, settings: PromptSettings,
               crs_prediction=None) -> tuple[dict, str | None]:
    """The instruction record of `sample` that fits the prompt budget of its task, and how it was cut
    (None, 'dropped N turns', 'capped items at K relations, dropped N turns', 'cut input by N chars')."""
    if sample.task == "recommend" and settings.candidate_popularity and crs_prediction is None:
        # lettered in the order of the whole dialogue (its earlier recommendations last), whatever is cut below
        sample = dataclasses.replace(sample, candidates=lettered_candidates(sample, None, settings.candidate_popularity))
    budget = settings.prompt_budget(sample.task)
    keep = (settings.context_turns or {}).get(sample.task)
    if keep is not None and keep >= 0 and len(sample.context) > keep:
        sample = dataclasses.replace(sample, context=sample.context[len(sample.context) - keep:])
    # item_relations caps a recommendation's candidates; a reply's items show all their knowledge, which the
    # reply reads its facts from (capped at 2, the embedded LLM stated values true of the item 0.29 of the time)
    caps: list[int | None] = [settings.item_relations if sample.task == "recommend" else None]
    if sample.task == "recommend":
        caps += [c for c in RELATION_CAPS if settings.item_relations is None or c < settings.item_relations]
    record = None
    for cap in caps:
        view = _CappedItems(items, cap, needed_relations(sample)) if cap is not None else items
        record = llm_record(sample, view, crs_prediction)
        if _fits(tokenizer, record, settings.template, budget):
            note = None if cap == caps[0] else f"capped items at {cap} relations"
            return record, note
        if sample.task == "recommend" and cap != caps[-1] and (cap is None or cap > DROP_TURNS_AT_CAP):
            continue  # the dialogue holds the needs: shrink the candidates' knowledge first
        n = len(sample.context)
        shortest = llm_record(dataclasses.replace(sample, context=[]), view, crs_prediction)
        if n and _fits(tokenizer, shortest, settings.template, budget):
            lo, hi = 1, n  # smallest number of dropped turns that fits; n is known to fit
            while lo < hi:
                mid = (lo + hi) // 2
                if _fits(tokenizer, llm_record(dataclasses.replace(sample, context=sample.context[mid:]), view,
                                               crs_prediction), settings.template, budget):
                    hi = mid
                else:
                    lo = mid + 1
            record = llm_record(dataclasses.replace(sample, context=sample.context[lo:]), view, crs_prediction)
            note = f"dropped {lo} of {n} oldest turns"
            if cap != caps[0]:
                note = f"capped items at {cap} relations, {note}"
            return record, note
        record = shortest
    # Last resort: keep the end of the input.
    text = record["input"]
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi) // 2
        if _fits(tokenizer, {**record, "input": "…" + text[mid:]}, settings.template, budget):
            hi = mid
        else:
            lo = mid + 1
    log.warning("sample %s: prompt over %d tokens even without dialogue; input cut by %d chars from the left",
                sample.key, budget, lo)
    return {**record, "input": "…" + text[lo:]}, f"cut input by {lo} chars"


def encode_example(prompt: str, output: str, tokenizer, max_output_tokens: int) -> dict[str, list[int]]:
    """input_ids = prompt + output (+ EOS); labels = -100 on the prompt, the output ids (+ EOS) after it."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    out_ids = tokenizer(output, add_special_tokens=False)["input_ids"]
    if len(out_ids) < max_output_tokens and tokenizer.eos_token_id is not None:
        out_ids = out_ids + [tokenizer.eos_token_id]
    else:
        out_ids = out_ids[:max_output_tokens]
    return {"input_ids": prompt_ids + out_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + out_ids}


def collate(examples: Sequence[Mapping[str, list[int]]], pad_id: int, multiple: int = 1):
    """Right-padded tensors (training): input_ids, attention_mask, labels (-100 on padding); the width is
    rounded up to `multiple` (uneed.device.pad_multiple: a few shapes on a GPU)."""
    import torch

    from uneed.device import round_up

    width = round_up(max(len(e["input_ids"]) for e in examples), multiple)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def cut_at_stop(text: str) -> str:
    """Generated text up to the first template marker the model may have produced on its own."""
    for marker in STOP_MARKERS:
        pos = text.find(marker)
        if pos >= 0:
            text = text[:pos]
    return text.strip()
