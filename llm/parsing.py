"""Reading the LLM's generated text back into task outputs and tool calls. Nothing here raises on
malformed text: each parser returns what parses and logs (DEBUG) the pieces it could not read;
`ParseStats` counts them so a caller can log one summary line per batch.

Tool-call text protocol (the chat model, llm/chat_model.py): the model writes any number of

    <tool_call>{"name": "search_items", "arguments": {"query": "保湿面霜"}}</tool_call>

blocks, optionally after some plain text. `arguments` may also be called `args`/`parameters`, and
may itself be a JSON string. The text outside the blocks is the message content.
"""
from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from uneed.tasks import parse_keys, parse_tags

from .prompts import cut_at_stop

log = logging.getLogger(__name__)


@dataclass
class ParseStats:
    total: int = 0
    malformed: int = 0  # outputs with at least one unreadable piece (or no answer at all)
    examples: list[str] = field(default_factory=list)

    def add(self, text: str, ok: bool) -> None:
        self.total += 1
        if not ok:
            self.malformed += 1
            if len(self.examples) < 3:
                self.examples.append(text[:80])

    def summary(self, what: str) -> str:
        return f"{what}: {self.malformed} of {self.total} outputs had unreadable parts, e.g. {self.examples!r}"


def _note(stats: ParseStats | None, text: str, ok: bool, what: str, rest: Any = None) -> None:
    if not ok:
        log.debug("%s: could not read %r in %r", what, rest, text)
    if stats is not None:
        stats.add(text or "", ok)


def clean_output(text: Any) -> str:
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    return cut_at_stop(text.replace("\r", ""))


def parse_understand(text: Any, stats: ParseStats | None = None) -> list[str]:
    """'品类：面霜；功效：保湿' -> ['品类：面霜', '功效：保湿']; pieces without 'key：' are dropped."""
    text = clean_output(text)
    tags, bad = parse_tags(text)
    _note(stats, text, not bad, "understand", bad)
    return tags


def parse_elicit(text: Any, stats: ParseStats | None = None) -> list[str]:
    """'价位；品牌' -> ['价位', '品牌']; 'key：value' pieces keep their key."""
    text = clean_output(text)
    keys, bad = parse_keys(text)
    _note(stats, text, not bad and bool(keys), "elicit", bad)
    return keys


def parse_respond(text: Any, stats: ParseStats | None = None) -> str:
    text = clean_output(text)
    _note(stats, text, bool(text), "respond", text)
    return text


# ------------------------------------------------------------------------------------ tool calls
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
_BLOCK_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)


@dataclass
class ParsedToolText:
    content: str
    tool_calls: list[dict] = field(default_factory=list)  # {"name", "args", "id", "type": "tool_call"}
    invalid_tool_calls: list[dict] = field(default_factory=list)  # {"name", "args", "id", "error", ...}


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:12]


def _loads_object(text: str) -> Any:
    text = text.strip()
    if text.startswith("```"):
        text = re.sub(r"^```(?:json)?|```$", "", text).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # a common slip: trailing text after the object; take the outermost {...}
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            return json.loads(text[start:end + 1])
        raise


def parse_tool_calls(text: Any, tool_names: Sequence[str] | None = None) -> ParsedToolText:
    """Split generated text into content, valid tool calls and invalid ones (bad JSON, no name,
    arguments that are not an object, an unclosed block, or a name not among `tool_names`)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = cut_at_stop(text)
    calls, invalid = [], []
    for match in _BLOCK_RE.finditer(text):
        body = match.group(1)
        closed = match.group(0).endswith(TOOL_CLOSE)
        call_id = new_call_id()
        try:
            obj = _loads_object(body)
        except (json.JSONDecodeError, ValueError) as exc:
            invalid.append({"type": "invalid_tool_call", "name": None, "args": body.strip(), "id": call_id,
                            "error": f"tool call is not JSON: {exc}"})
            continue
        if not isinstance(obj, dict):
            invalid.append({"type": "invalid_tool_call", "name": None, "args": body.strip(), "id": call_id,
                            "error": "tool call must be a JSON object"})
            continue
        name = obj.get("name")
        args = obj.get("arguments", obj.get("args", obj.get("parameters", {})))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                pass
        error = None
        if not isinstance(name, str) or not name:
            error = "tool call has no 'name'"
        elif tool_names is not None and name not in tool_names:
            error = f"unknown tool {name!r}; bound tools: {list(tool_names)}"
        elif not isinstance(args, dict):
            error = "tool call 'arguments' must be a JSON object"
        elif not closed:
            error = f"unclosed {TOOL_OPEN} block"
        if error:
            raw_args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            invalid.append({"type": "invalid_tool_call", "name": name if isinstance(name, str) else None,
                            "args": raw_args, "id": call_id, "error": error})
        else:
            calls.append({"type": "tool_call", "name": name, "args": args, "id": call_id})
    content = _BLOCK_RE.sub("", text).replace(TOOL_CLOSE, "").strip()
    if invalid:
        log.debug("tool-call text with %d invalid call(s): %r", len(invalid), text[:200])
    return ParsedToolText(content=content, tool_calls=calls, invalid_tool_calls=invalid)


def format_tool_call(name: str, args: dict) -> str:
    return f"{TOOL_OPEN}{json.dumps({'name': name, 'arguments': args}, ensure_ascii=False)}{TOOL_CLOSE}"
