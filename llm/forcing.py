"""Jump-forward decoding of tool calls: the text that must follow what a model wrote so far.

A tool call is written `<tool_call>{"name": "NAME", "arguments": {"PARAM": VALUE, ...}}</tool_call>`
(llm.parsing.format_tool_call). Most of it leaves the model no choice: once a call has begun, the
opening tag; once the name's first letters fit one bound tool only, the rest of the name and the
words up to its arguments; the same for a parameter's name; once the arguments are closed, the end
of the call. The embedded model's tokenizer spells these character by character, so a call took
about 72 decoding steps; with the forced text fed in one pass it takes 8 to 10 (README, replay speed).

`ToolCallGrammar.forced(text)` says what must follow `text`, '' where the model chooses. Forcing
only appends what the format requires: where the greedy model writes the format itself, the output
is unchanged; where it would have broken the format, the call stays well formed.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .parsing import TOOL_CLOSE, TOOL_OPEN

NAME_OPEN = '{"name": "'
ARGS_OPEN = ', "arguments": {'
CALL_END = "}" + TOOL_CLOSE
MIN_OPENING = 2  # '<t': a lone '<' may still begin a reply's text


class ToolCallGrammar:
    """Forced continuations for calls to the given tools ({tool name: its parameter names})."""

    def __init__(self, params: Mapping[str, Sequence[str]]):
        self.params = {name: list(ps) for name, ps in params.items()}

    @classmethod
    def from_tools(cls, tools: Sequence[dict]) -> "ToolCallGrammar":
        """From OpenAI-format tool schemas (what PresalesChatModel is bound to)."""
        params = {}
        for tool in tools:
            fn = tool.get("function", tool)
            params[fn["name"]] = list((fn.get("parameters") or {}).get("properties", {}))
        return cls(params)

    def forced(self, text: str) -> str:
        start = text.rfind(TOOL_OPEN)
        if start == -1 or text.find(TOOL_CLOSE, start) != -1:  # outside a call
            tail = text[text.rfind(TOOL_CLOSE) + len(TOOL_CLOSE):] if TOOL_CLOSE in text else text
            for k in range(len(TOOL_OPEN) - 1, MIN_OPENING - 1, -1):
                if tail.endswith(TOOL_OPEN[:k]):
                    return TOOL_OPEN[k:] + NAME_OPEN
            return ""
        body = text[start + len(TOOL_OPEN):]
        if len(body) < len(NAME_OPEN):
            return NAME_OPEN[len(body):] if NAME_OPEN.startswith(body) else ""
        if not body.startswith(NAME_OPEN):
            return ""
        rest = body[len(NAME_OPEN):]
        end = rest.find('"')
        if end == -1:  # inside the name
            matches = [n for n in self.params if n.startswith(rest)]
            return matches[0][len(rest):] + '"' + ARGS_OPEN if len(matches) == 1 else ""
        name, after = rest[:end], rest[end + 1:]
        if len(after) < len(ARGS_OPEN):
            return ARGS_OPEN[len(after):] if ARGS_OPEN.startswith(after) else ""
        if not after.startswith(ARGS_OPEN) or name not in self.params:
            return ""
        return self._in_arguments(after[len(ARGS_OPEN):], self.params[name])

    @staticmethod
    def _in_arguments(args: str, params: Sequence[str]) -> str:
        """`args`: what follows the arguments' '{'. Tracks JSON strings and nesting; at the top level a
        string after '{' or ',' is a parameter name."""
        depth, in_string, escaped, is_key, expect_key = 1, False, False, False, True
        current, written = "", set()
        for i, ch in enumerate(args):
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
                    if is_key:
                        written.add(current)
                    continue
                current += ch
                continue
            if ch == '"':
                in_string, is_key, current = True, depth == 1 and expect_key, ""
                expect_key = False
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:  # the arguments are closed: the call ends
                    tail = args[i + 1:]
                    return CALL_END[len(tail):] if len(tail) < len(CALL_END) and CALL_END.startswith(tail) else ""
            elif ch == "," and depth == 1:
                expect_key = True
        if in_string and is_key:
            matches = [p for p in params if p.startswith(current) and p not in written]
            return matches[0][len(current):] + '": ' if len(matches) == 1 else ""
        return ""
