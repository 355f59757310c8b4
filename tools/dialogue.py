"""The part of a conversation's state that the tools read (injected by LangGraph, never written by
the model): the transcript as the CRS sees it, the accumulated needs, the behaviours, the items
already recommended or rejected.

    transcript  [{"speaker": "用户"|"客服", "text": ..., "act_tag": ..., "tags": [...], "asked": [...],
                  "items": [...]}, ...]    (plain dicts, so any checkpointer can store them)
    needs       {attribute: [values]}      negations stay inside the value ('不要烘干')
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from uneed.schema import STAFF, STAFF_ASK, USER
from uneed.tasks import Utterance



def turn_record(speaker: str, text: str, act_tag: str = "", tags: Sequence[str] = (), asked: Sequence[str] = (),
                items: Sequence[str] = ()) -> dict:
    return {"speaker": speaker, "text": text, "act_tag": act_tag, "tags": list(tags), "asked": list(asked),
            "items": list(items)}


def to_utterance(record: Mapping[str, Any]) -> Utterance:
    return Utterance(record["speaker"], record["text"], record.get("act_tag", ""), tags=list(record.get("tags", [])),
                     asked=list(record.get("asked", [])), items=list(record.get("items", [])))


def utterances(state: Mapping[str, Any]) -> list[Utterance]:
    return [to_utterance(t) for t in state.get("transcript", [])]


def need_pairs(state: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(key, value) for key, values in (state.get("needs") or {}).items() for value in values]


def need_text(state: Mapping[str, Any]) -> str:
    pairs = need_pairs(state)
    return "；".join(f"{k}：{v}" for k, v in pairs) if pairs else "（暂无）"


def questions_asked(state: Mapping[str, Any]) -> int:
    """How many staff turns of the thread were questions (系统提问)."""
    return sum(t["speaker"] == STAFF and t.get("act_tag") == STAFF_ASK for t in state.get("transcript", []))


def latest_user_text(state: Mapping[str, Any]) -> str:
    for turn in reversed(state.get("transcript", [])):
        if turn["speaker"] == USER:
            return turn["text"]
    return ""
