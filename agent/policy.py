"""The CRS's dialogue policy (graph 2, and graph 1's fallback) and the small rules both graphs share.

Ask or recommend (documented rule, configurable): recommend once `min_needs` distinct attributes are
known, or `max_questions` questions have been asked, or the user just turned an item down and
said what else they want, or the CRS suggests no attribute that is not asked or known yet;
otherwise ask. A user turn that answers a recommendation with an acceptance cue (好的, 就这款, 拍了, …)
and no negative cue (有没有…, 换…) closes: the reply confirms the accepted item, nothing new is recommended. A user turn that follows a recommendation and carries a
negative cue (太贵, 不合适, 有没有…, 换…) rejects the items of that recommendation: they are never
recommended again in the thread.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from langchain_core.tools import BaseTool

from tools.dialogue import questions_asked
from uneed.schema import STAFF, USER

NEGATIVE_CUES = ("不要这", "不太", "不合适", "不喜欢", "太贵", "贵了", "太大", "太小", "没有我", "有没有", "还有别",
                 "换一", "换个", "其他", "别的", "不行", "算了")


@dataclass
class PolicyConfig:
    min_needs: int = 3  # recommend once this many distinct attributes are known
    max_questions: int = 3  # ... or once this many questions were asked (graph 1: then no tool asks again)
    recommend_k: int = 3  # items shown in one recommendation
    candidate_k: int = 20  # items the LLM chooses among (A-T)
    max_tool_steps: int = 6  # graph 1: tool calls the controller may make in one user turn


ACCEPT_CUES = ("就这款", "就这个", "就要这", "拍了", "下单", "买了", "可以的", "好的", "好滴", "行", "谢谢")


def is_acceptance(user_text: str) -> bool:
    return not is_rejection(user_text) and any(cue in user_text for cue in ACCEPT_CUES)


def is_rejection(user_text: str) -> bool:
    return any(cue in user_text for cue in NEGATIVE_CUES)


def rejected_items(state: Mapping[str, Any], user_text: str) -> list[str]:
    """Items of the latest staff recommendation that this user turn turns down."""
    for turn in reversed(state.get("transcript", [])):
        if turn["speaker"] == STAFF:
            return list(turn.get("items", [])) if turn.get("items") and is_rejection(user_text) else []
    return []


def last_recommended(state: Mapping[str, Any]) -> list[str]:
    """The items of the latest staff turn, if that turn recommended (the one the user now answers)."""
    staff = [t for t in state.get("transcript", []) if t["speaker"] == STAFF]
    return list(staff[-1].get("items", [])) if staff else []


def accepts_recommendation(state: Mapping[str, Any]) -> bool:
    """The latest user turn accepts the items of the staff turn before it (both graphs then close)."""
    turns = state.get("transcript", [])
    return bool(turns) and turns[-1]["speaker"] == USER and bool(last_recommended(state)) \
        and is_acceptance(turns[-1]["text"])


def decide(state: Mapping[str, Any], cfg: PolicyConfig, new_tags: list[str]) -> str:
    """'close', 'ask' or 'recommend' (see the module docstring)."""
    if accepts_recommendation(state):
        return "close"
    known = {k for k, values in (state.get("needs") or {}).items() if values}
    if len(known) >= cfg.min_needs or questions_asked(state) >= cfg.max_questions:
        return "recommend"
    if state.get("rejected") and new_tags and state.get("recommended"):
        return "recommend"
    return "ask"


def needs_of(tags: list[str]) -> dict[str, list[str]]:
    """Valued tags as a needs update; 'key：' (an attribute without value) is not a need."""
    out: dict[str, list[str]] = {}
    for tag in tags:
        key, _, value = tag.partition("：")
        if key and value:
            out.setdefault(key, []).append(value)
    return out


def call_tool(tool: BaseTool, state: Mapping[str, Any], **args: Any) -> tuple[str, Any]:
    """Run a tool the way ToolNode does (state injected), returning (content, artifact)."""
    message = tool.invoke({"name": tool.name, "args": {**args, "state": dict(state)},
                           "id": f"call_{uuid.uuid4().hex[:8]}", "type": "tool_call"})
    return str(message.content), message.artifact


def event(node: str, tool: str | None = None, args: Any = None, result: Any = None, **extra: Any) -> dict:
    row = {"node": node}
    if tool is not None:
        row.update(tool=tool, args=args, result=result)
    row.update(extra)
    return row
