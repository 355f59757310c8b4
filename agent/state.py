"""The typed state both graphs share, with the reducers that merge node updates into it.

A node returns only what it changes; lists of needs, asked attributes and items only grow (no
duplicates), so a node never has to copy what it does not touch. Everything is plain data, so the
SQLite checkpointer can store a thread and a restarted process resumes it.
"""
from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


def merge_needs(old: dict[str, list[str]] | None, new: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """attribute -> values; new values are appended, never duplicated; negations stay in the value."""
    out = {k: list(v) for k, v in (old or {}).items()}
    for key, values in (new or {}).items():
        bucket = out.setdefault(key, [])
        bucket.extend(v for v in values if v not in bucket)
    return out


def merge_transcript(old: list[dict] | None, new: list[dict] | None) -> list[dict]:
    """Append turns; a record {"update": i, ...fields} changes turn i instead (e.g. its tags, once understood)."""
    out = list(old or [])
    for record in new or []:
        if "update" in record:
            index = record["update"]
            out[index] = {**out[index], **{k: v for k, v in record.items() if k != "update"}}
        else:
            out.append(record)
    return out


def add_unique(old: list[str] | None, new: list[str] | None) -> list[str]:
    return list(dict.fromkeys(list(old or []) + list(new or [])))


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]  # what the LLM controller reads
    transcript: Annotated[list[dict], merge_transcript]  # the dialogue as the CRS reads it (tools.dialogue)
    category: str  # the U-NEED domain, e.g. 大家电行业: recommendations stay in it
    seller: str  # the shop, when known: its items are recommended first
    needs: Annotated[dict[str, list[str]], merge_needs]
    asked: Annotated[list[str], add_unique]  # attributes already asked
    recommended: Annotated[list[str], add_unique]
    rejected: Annotated[list[str], add_unique]
    candidates: list[str]  # the latest ranking the CRS produced (candidate buffer)
    behaviours: list[str]  # item ids the user browsed, latest last (implicit needs)
    steps: int  # tool steps taken in the current user turn
    reply: str  # the latest reply to the user
    pending: dict  # what the reply of this turn must carry: {"attributes": [...], "items": [...]}
    events: Annotated[list[dict], operator.add]  # what happened, for traces: node, tool, args, result


def new_thread_state(category: str, behaviours: list[str] | None = None, seller: str = "") -> dict[str, Any]:
    return {"category": category, "seller": seller, "behaviours": list(behaviours or []), "needs": {}, "asked": [], "recommended": [],
            "rejected": [], "candidates": [], "transcript": [], "messages": [], "steps": 0, "reply": "", "events": [],
            "pending": {"attributes": [], "items": []}}


def apply_update(state: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge a node's update into a state dict with the same reducers LangGraph uses."""
    import typing

    hints = typing.get_type_hints(AgentState, include_extras=True)
    out = dict(state)
    for key, value in update.items():
        meta = getattr(hints.get(key), "__metadata__", ())
        out[key] = meta[0](out.get(key), value) if meta else value
    return out
