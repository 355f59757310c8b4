"""CRS sequences in the UniMIND style of section 3.3 (and the [LLM] segments of section 3.5).

    X_U = [user] u1 [understand] d1 [system] s1 [understand] d2 ... [user] ui            + Z_U
    X_A = [user] u1 [understand] d1 [elicit] a1 [system] s1 [understand] d2 ... [user] ui + Z_A
    X_R = [user] u1 [understand] d1 [recommend] e1 [system] s1 ... [user] ui
    X_G = [user] u1 [understand] d1 [system] s1 ... [user] ui [elicit] a [recommend] e   + Z_G

[elicit] a_j goes just before the staff question that asks a_j, [recommend] e_j just before the
staff turn that recommends e_j. The prompt comes last, so that truncating the source from the left
(keeping the latest turns) never cuts it. A `ReplyLayout` with plan_first puts X_G's plan (what
the reply asks and presents, and the prompt) first instead, kept whole, before the latest turns. X'_* append '[LLM] <the LLM's prediction>'; for
recommendation the LLM's item enters the user representation instead (equation 4), so it travels
as `llm_item`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .. import schema
from ..corpus import Item
from .samples import TaskSample, Utterance, shown_items
from .text import format_keys, format_tags

USER, SYSTEM, UNDERSTAND, ELICIT, RECOMMEND, LLM = (
    "[user]", "[system]", "[understand]", "[elicit]", "[recommend]", "[LLM]")
SPECIAL_TOKENS = [USER, SYSTEM, UNDERSTAND, ELICIT, RECOMMEND, LLM]
PROMPTS = {
    "understand": "Identify attributes and values:",
    "elicit": "Select an attribute to ask:",
    "respond": "Generate a response:",
}


@dataclass(frozen=True)
class ReplyLayout:
    """How X_G is laid out (the CRS config's respond_* fields). The defaults are the UniMIND layout above.

    plan_first: '[elicit] tags [recommend] items ([LLM] reply) prompt' opens the source and keeps its
    place (it is cut only where it alone exceeds the budget); the history follows it. In probes that
    retrained the decoder alone, it named the asked attribute in 0.83 of the valid asks against 0.57
    with the plan last, same steps (README: trained end to end, 0.38 against 0.33).
    context_turns: the history's latest turns only (0: all of them).
    facts: a reply's items show all their knowledge (not the first two facts), for the copy head."""

    plan_first: bool = False
    context_turns: int = 0
    facts: bool = False


@dataclass
class CRSExample:
    key: str
    task: str
    domain: str
    source: str
    target: str  # generation target; '' for recommendation
    # kept whole at the start of the encoder input, before `source` (which loses its oldest tokens when long)
    prefix: str = ""
    gold_item: str | None = None
    candidates: list[str] = field(default_factory=list)
    behaviours: list[str] = field(default_factory=list)
    llm_item: str | None = None
    # What the CRS's classification heads read (crs.heads); the generative path ignores them.
    span: tuple[int, int] | None = None  # understand: characters of the current utterance in `source`
    known_keys: list[str] = field(default_factory=list)  # elicit: keys the user stated or the staff asked
    needs: list[tuple[str, str]] = field(default_factory=list)  # recommend: the user's needs so far
    shown: list[str] = field(default_factory=list)  # recommend: the items the dialogue recommended before


def item_short(item_id: str, items: Mapping[str, Item], max_relations: int | None = 2) -> str:
    """A recommended item inside a sequence: its first knowledge facts (all with max_relations=None),
    or its id when unknown."""
    item = items.get(item_id)
    text = item.text(max_relations=max_relations) if item is not None else ""
    return text or item_id


def render_history(context: Sequence[Utterance], task: str, items: Mapping[str, Item]) -> str:
    parts = []
    for u in context:
        if u.speaker == schema.USER:
            parts.append(f"{USER}{u.text}")
        else:
            if task == "elicit" and u.asked:
                parts.append(f"{ELICIT}{format_keys(u.asked)}")
            if task == "recommend" and u.items:
                parts.append(f"{RECOMMEND}{'、'.join(item_short(i, items) for i in u.items)}")
            parts.append(f"{SYSTEM}{u.text}")
        if u.tags:
            parts.append(f"{UNDERSTAND}{format_tags(u.tags)}")
    return "".join(parts)


def llm_segment(task: str, prediction) -> str:
    if prediction is None or task == "recommend":
        return ""
    if task == "understand" and not isinstance(prediction, str):
        prediction = format_tags(prediction)
    elif task == "elicit" and not isinstance(prediction, str):
        prediction = format_keys(prediction)
    return f"{LLM}{prediction}"


def crs_example(sample: TaskSample, items: Mapping[str, Item], llm_prediction=None,
                reply: ReplyLayout = ReplyLayout()) -> CRSExample:
    """The UniMIND-style sequence of one sample, optionally with the LLM's prediction for it; `reply`
    lays out a response-generation sample."""
    task = sample.task
    context = sample.context
    if task == "respond" and reply.context_turns:
        context = context[-reply.context_turns:]
    source = render_history(context, task, items)
    prefix = ""
    target = ""
    gold_item = None
    llm_item = None
    span = None
    known: list[str] = []
    if task == "understand":
        tag = USER if sample.current.speaker == schema.USER else SYSTEM
        start = len(source) + len(tag)
        span = (start, start + len(sample.current.text))
        source += f"{tag}{sample.current.text}{llm_segment(task, llm_prediction)} {PROMPTS[task]}"
        target = format_tags(sample.target)
    elif task == "elicit":
        source += f"{llm_segment(task, llm_prediction)} {PROMPTS[task]}"
        target = format_keys(sample.target)
        known = list(dict.fromkeys([k for k, _ in sample.needs] + [k for u in sample.context for k in u.asked]))
    elif task == "recommend":
        gold_item = sample.target
        if llm_prediction:
            llm_item = llm_prediction if isinstance(llm_prediction, str) else llm_prediction[0]
    elif task == "respond":
        asked = format_tags(sample.asked)
        goods = "、".join(item_short(i, items, None if reply.facts else 2) for i in sample.items)
        plan = f"{ELICIT}{asked}{RECOMMEND}{goods}{llm_segment(task, llm_prediction)} {PROMPTS[task]}"
        if reply.plan_first:
            prefix = plan
        else:
            source += plan
        target = sample.target
    else:
        raise ValueError(f"unknown task {task!r}")
    return CRSExample(key=sample.key, task=task, domain=sample.domain, source=source, target=target, prefix=prefix,
                      gold_item=gold_item, candidates=list(sample.candidates), behaviours=list(sample.behaviours),
                      llm_item=llm_item, span=span, known_keys=known,
                      needs=list(sample.needs) if task == "recommend" else [],
                      shown=shown_items(sample) if task == "recommend" else [])
