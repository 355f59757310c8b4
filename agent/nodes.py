"""Nodes both graphs start a user turn with."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from langchain_core.messages import HumanMessage

from tools.dialogue import turn_record
from uneed.schema import USER

from .messages import normalise_message
from .policy import event, rejected_items

log = logging.getLogger(__name__)


def message_text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):
        content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def receive(state: Mapping[str, Any]) -> dict[str, Any]:
    """Record the user's new message in the transcript, note rejected items, reset the step count."""
    human = next((m for m in reversed(state.get("messages", [])) if isinstance(m, HumanMessage)), None)
    raw = message_text(human) if human is not None else ""
    text, notes = normalise_message(raw)  # a no-op for messages that came through Assistant.stream
    update: dict[str, Any] = {}
    if notes and human is not None:  # a graph invoked directly: the stored message is replaced by its id
        log.warning("message normalised: %s", notes)
        update["messages"] = [HumanMessage(content=text, id=human.id)]
    rejected = rejected_items(state, text)
    return {**update, "transcript": [turn_record(USER, text)], "rejected": rejected, "steps": 0,
            "pending": {"attributes": [], "items": []},
            "events": [event("receive", text=text[:200], rejected=rejected, **notes)]}
