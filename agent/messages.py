"""One place that turns what a user typed into the text a thread stores: every entry point (the chat,
`Assistant.send`, an HTTP server) passes user text through `normalise_message` before it enters the
state, the checkpoint or any prompt.

    text, notes = normalise_message(raw)   # notes: what was changed, for the trace (empty: nothing)

- bytes that were not UTF-8 (decoded with errors="surrogateescape") become U+FFFD and are counted;
- terminal escape sequences, other control characters and a byte-order mark are removed;
- line breaks and tabs become spaces: a message is one turn, so no line of it can pose as another
  speaker's turn or a section of a prompt;
- a message longer than MAX_MESSAGE_CHARS keeps its last MAX_MESSAGE_CHARS characters (the models read
  left-truncated text anyway).
"""
from __future__ import annotations

import re

MAX_MESSAGE_CHARS = 2000

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_BREAKS = re.compile(r"[\r\n\t\v\f\x85\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ufeff\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _replace_surrogates(text: str) -> tuple[str, int]:
    count = 0
    out = []
    for ch in text:
        if "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
            count += 1
        else:
            out.append(ch)
    return "".join(out), count


def normalise_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> tuple[str, dict]:
    """(the text to store, notes on what was changed); see the module docstring."""
    notes: dict = {}
    text, bad = _replace_surrogates(str(text))
    if bad:
        notes["replaced_bytes"] = bad
    no_escapes = _ANSI.sub("", text)
    one_line = _BREAKS.sub(" ", no_escapes)
    cleaned = _CONTROL.sub("", one_line)
    removed = len(text) - len(no_escapes) + len(one_line) - len(cleaned)
    if removed:
        notes["removed_control_chars"] = removed
    cleaned = cleaned.strip()
    if len(cleaned) > limit:
        notes["truncated_from"] = len(cleaned)
        cleaned = cleaned[-limit:]
    return cleaned, notes


def printable(text: str) -> str:
    """Text safe to echo on a terminal: no escape sequences or control characters (line breaks kept)."""
    text, _ = _replace_surrogates(str(text))
    return "\n".join(_CONTROL.sub("", _ANSI.sub("", line)) for line in text.replace("\r", "").split("\n"))
