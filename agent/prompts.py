"""What the LLM controller of graph 1 reads: a system prompt with the thread's state, then the
dialogue so far (final replies only) and the current turn with its tool calls and results.
Controller fine-tuning (training/controller.py) renders its traces with these same functions.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from tools.dialogue import need_text

HISTORY_MESSAGES = 4  # earlier user messages and final replies the controller sees

CONTROLLER_SYSTEM = (
    "你是{category}的售前客服。先调用 extract_needs 理解用户最新的话；需求不够时调用 select_attribute_to_ask 后提问；"
    "需求足够时调用 recommend_items，再用 lookup_item 查商品知识，然后推荐并说明理由。"
    "已知需求：{needs}。已问属性：{asked}。已推荐：{recommended}。用户不要：{rejected}。"
)


def _join(values: Sequence[str]) -> str:
    return "、".join(values) if values else "无"


def system_prompt(state: Mapping[str, Any]) -> SystemMessage:
    return SystemMessage(CONTROLLER_SYSTEM.format(
        category=state.get("category") or "电商", needs=need_text(state), asked=_join(state.get("asked", [])),
        recommended=_join(state.get("recommended", [])), rejected=_join(state.get("rejected", []))))


def controller_messages(state: Mapping[str, Any]) -> list[BaseMessage]:
    """System prompt + the last HISTORY_MESSAGES user messages / final replies + the current turn."""
    messages = list(state.get("messages", []))
    start = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=len(messages))
    history = [m for m in messages[:start]
               if isinstance(m, HumanMessage) or (isinstance(m, AIMessage) and not m.tool_calls)]
    return [system_prompt(state)] + history[-HISTORY_MESSAGES:] + messages[start:]
