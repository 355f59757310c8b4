"""LLM instruction records (instruction / input / output) in the format of appendix F, tables 5-8.

Deliberate choice: the tables print the dialogue context joined with [SEP], while the authors'
released samples (../shared/uneed-samples/llm-instruction-samples) write one '[Round i]' block per
earlier turn. We follow the released samples for all four tasks; the understanding records equal
the authors' `input_llm` / `output_llm` exactly (tests/test_tasks.py).

With CRS predictions (section 3.4, CRS assisting LLM) the instruction gains a sentence saying the
CRS results must be considered, and the input gains the CRS output as text. For recommendation the
candidates are lettered in the CRS's ranking (A: the CRS's first choice) and the input says so.
Written as a list of letters after the candidates instead, the ranking was not learned: an LLM
trained so answered 'A' for 229 of 230 test samples while the CRS's first choice was right 0.31 of
the time (README, CRS assisting LLM).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from ..candidates import by_popularity
from ..corpus import Item
from .samples import TaskSample, Utterance, shown_items
from .text import format_keys, format_tags, group_pairs, letters, split_tag

MAX_CANDIDATES = 20
UNKNOWN_ITEM = "暂无商品信息"

INSTRUCTIONS = {
    "understand": "根据{domain}售前对话，识别当前用户或者客服输入中涉及的商品相关的属性值和对应的属性。\n"
                  "针对用户输入，需要识别出属性和属性值。客服输入中属性值可能为空。",
    "elicit": "依据{domain}售前对话，选择一系列的属性，来引导用户提供更多关于需求的偏好信息。"
              "结果中可以包含属性值，也可以不包含属性值。",
    "recommend": "根据{domain}售前对话中用户表达的需求和偏好信息以及候选商品信息，从候选商品A-{last}中"
                 "选择最有可能满足用户需求、偏好的商品推荐给用户。",
    "respond": "根据{domain}售前对话中已获取的信息、引导用户需求的属性、满足用户需求的商品信息，"
               "生成回应用户需求且用户容易理解的通俗回复。",
}
CRS_INSTRUCTION = "完成任务时需要考虑对话推荐系统（CRS）的预测结果。"
CRS_INPUT = {
    "understand": " 对话推荐系统识别的属性和属性值：{}",
    "elicit": " 对话推荐系统选择的属性：{}",
    "recommend": " 候选商品按对话推荐系统的排序列出，A是它的首选",
    "respond": " 对话推荐系统生成的回复：{}",
}


def render_rounds(context: Sequence[Utterance]) -> str:
    return "\n".join(f"[Round {i}]\n{u.speaker}：{u.text}" for i, u in enumerate(context))


def render_dialogue(context: Sequence[Utterance], current: Utterance | None = None) -> str:
    """'售前对话：[Round 0]\\n用户：…\\n当前输入：客服：…' (the authors' input_llm)."""
    rounds = render_rounds(context)
    if current is None:
        return f"售前对话：{rounds}"
    return f"售前对话：{rounds + chr(10) if rounds else ''}当前输入：{current.speaker}：{current.text}"


def item_text(item_id: str, items: Mapping[str, Item]) -> str:
    item = items.get(item_id)
    return item.text() if item is not None and item.text() else UNKNOWN_ITEM


def cap_candidates(candidates: Sequence[str], gold: str | None, limit: int = MAX_CANDIDATES) -> list[str]:
    """At most `limit` candidates in their given order, always keeping the gold one."""
    cands = list(dict.fromkeys(candidates))
    if len(cands) <= limit:
        return cands
    if gold is None or gold in cands[:limit]:
        return cands[:limit]
    others = [c for c in cands if c != gold][: limit - 1]
    keep = set(others) | {gold}
    return [c for c in cands if c in keep]


def lettered_candidates(sample: TaskSample, crs_prediction=None,
                        popularity: Mapping[str, float] | None = None) -> list[str]:
    """The candidates a recommendation prompt letters A, B, ... in order: at most MAX_CANDIDATES, the
    gold one kept; with a CRS ranking (CRS assisting LLM), those it ranks first in its order; else, given
    item `popularity` counts, most popular first as the popularity baseline ranks them (the items the
    dialogue recommended before last); else in the data's order."""
    candidates = cap_candidates(sample.candidates, sample.target or None)
    if crs_prediction is None:
        return by_popularity(candidates, popularity, shown_items(sample)) if popularity else candidates
    ranking = [crs_prediction] if isinstance(crs_prediction, str) else list(crs_prediction)
    rank = {item: r for r, item in enumerate(dict.fromkeys(ranking))}
    return sorted(candidates, key=lambda c: rank.get(c, len(rank)))  # stable: unranked ones keep their order


def candidate_block(candidates: Sequence[str], items: Mapping[str, Item]) -> str:
    return "[SEP]".join(f"{letter}的{item_text(c, items)}" for letter, c in zip(letters(len(candidates)), candidates))


def crs_text(task: str, prediction) -> str:
    """A CRS prediction written for the LLM input: tags, keys or a reply (a ranking is not written: it
    letters the candidates, lettered_candidates)."""
    if task == "recommend":
        return ""
    if task == "understand":
        return prediction if isinstance(prediction, str) else format_tags(prediction)
    if task == "elicit":
        return prediction if isinstance(prediction, str) else format_keys(prediction)
    return str(prediction)


def llm_record(sample: TaskSample, items: Mapping[str, Item], crs_prediction=None) -> dict:
    """The instruction record of one sample; `output` is the gold answer ('' when unknown)."""
    task = sample.task
    candidates: list[str] = []
    if task == "understand":
        text = render_dialogue(sample.context, sample.current)
        output = format_tags(sample.target)
    elif task == "elicit":
        text = render_dialogue(sample.context)
        output = format_keys(sample.target)
    elif task == "recommend":
        gold = sample.target or None
        candidates = lettered_candidates(sample, crs_prediction)
        if not candidates:
            raise ValueError(f"sample {sample.key} has no candidates")
        text = f"{render_dialogue(sample.context)} 各候选商品对应的属性和属性值：{candidate_block(candidates, items)}"
        output = letters(len(candidates))[candidates.index(gold)] if gold in candidates else ""
    elif task == "respond":
        needs = group_pairs(sample.needs)
        asked = group_pairs([split_tag(t) for t in sample.asked])
        goods = "；".join(item_text(i, items) for i in sample.items)
        text = (f"{render_dialogue(sample.context)} 已获取的用户需求偏好信息：{needs} "
                f"引导用户需求的属性：{asked} 满足用户需求的商品：{goods}")
        output = sample.target
    else:
        raise ValueError(f"unknown task {task!r}")
    instruction = INSTRUCTIONS[task].format(domain=sample.domain, last=letters(max(len(candidates), 1))[-1])
    if crs_prediction is not None:
        instruction += CRS_INSTRUCTION
        text += CRS_INPUT[task].format(crs_text(task, crs_prediction))
    return {"instruction": instruction, "input": text, "output": output, "key": sample.key, "task": task,
            "domain": sample.domain, "candidates": candidates}
