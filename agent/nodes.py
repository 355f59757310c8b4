"""Nodes both graphs start a user turn with."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from langchain_core.messages import HumanMessage

from tools.dialogue import turn_record
from uneed.schema import USER

from .policy import event, rejected_items

log = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 2000  # longer messages keep their last part (the models read left-truncated text anyway)


def message_text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):
        content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def receive(state: Mapping[str, Any]) -> dict[str, Any]:
    """Record the user's new message in the transcript, note rejected items, reset the step count."""
    human = next((m for m in reversed(state.get("messages", [])) if isinstance(m, HumanMessage)), None)
    text = message_text(human).strip() if human is not None else ""
    notes = {}
    if len(text) > MAX_MESSAGE_CHARS:
        log.warning("a %d-character message was cut to its last %d characters", len(text), MAX_MESSAGE_CHARS)
        notes["truncated_from"] = len(text)
        text = text[-MAX_MESSAGE_CHARS:]
    rejected = rejected_items(state, text)
    return {"transcript": [turn_record(USER, text)], "rejected": rejected, "steps": 0,
            "pending": {"attributes": [], "items": []},
            "events": [event("receive", text=text[:200], rejected=rejected, **notes)]}
