"""The fine-tuned LLM as a LangChain chat model with tool calling, so a LangGraph `ToolNode` can run
the calls it makes.

    from llm.chat_model import PresalesChatModel
    chat = PresalesChatModel.from_path("runs/llm").bind_tools([search_items])
    msg = chat.invoke([SystemMessage("你是客服"), HumanMessage("有保湿的面霜吗")])
    msg.tool_calls          # [{'name': 'search_items', 'args': {...}, 'id': 'call_…', 'type': 'tool_call'}]

Prompt: the messages are written into the model's own instruction template (llm/prompts.py):
instruction = the system messages + the bound tools (one JSON schema per line, from
`convert_to_openai_tool`) + the protocol sentence; input = the conversation, one line per message
('用户：…', '客服：…' with its calls as <tool_call> blocks, tool results as
'<tool_response name="…">…</tool_response>').

Text protocol (llm/parsing.py): the model answers with plain text and/or blocks
    <tool_call>{"name": "search_items", "arguments": {"query": "面霜"}}</tool_call>
Valid blocks become `AIMessage.tool_calls`. A malformed block (bad JSON, unknown tool, no name,
unclosed) never raises: the message content is the whole generated text and the block is listed
in `AIMessage.invalid_tool_calls` with its error. Without bound tools the text is returned as is.
tool_choice='any'/'required' or a tool name makes the answer start with '<tool_call>' (or with the
name filled in) - a decoding prefix, since nothing else can force a small model to call.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from .forcing import ToolCallGrammar
from .parsing import TOOL_OPEN, format_tool_call, parse_tool_calls
from .prompts import render_prompt

log = logging.getLogger(__name__)

TOOLS_HEADER = "可用工具（每行一个 JSON 模式）：\n"
COMPACT_HEADER = "可用工具：\n"
TOOL_FORMATS = ("json", "compact", "brief")
PROTOCOL = ("需要调用工具时，输出 <tool_call>{\"name\": 工具名, \"arguments\": {参数}}</tool_call>，"
            "可调用多个；不需要时直接回复用户。")
DEFAULT_SYSTEM = "你是电商售前客服，根据对话回应用户需求。"


def _text(content: Any) -> str:
    """Message content as text (a string, or a list of text blocks)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


# What only the prompt's own protocol may write: tool-call and tool-response tags, chat-template tokens,
# and lines that start a turn (用户：/客服：) or a template section (### ...).
_PROTOCOL_TAG = re.compile(r"<\s*/?\s*tool_(?:call|response)[^>]*>?|<\|[^|<>]{0,40}\|>", re.I)
_TURN_LINE = re.compile(r"^(\s*)(?=(?:用户|客服|user|assistant|system|tool)\s*[：:]|#{2,})", re.I | re.M)


def as_data(text: str, one_line: bool = False) -> str:
    """Message text as it may appear inside the prompt: the protocol's tags are defused (full-width
    brackets), and no line of it can start a turn or a section (one_line: line breaks become spaces;
    otherwise such a line is indented)."""
    text = _PROTOCOL_TAG.sub(lambda m: m.group(0).replace("<", "＜").replace(">", "＞"), text)
    if one_line:
        return " ".join(text.splitlines())
    return _TURN_LINE.sub("\\1　", text) if "\n" in text else text


def _compact_tool(fn: dict, brief: bool = False) -> str:
    """'name(arg?: type, ...)：description' - a tool in a few dozen characters; brief: 'name(arg, ...)'."""
    params = fn.get("parameters", {}) or {}
    required = set(params.get("required", []))
    args = []
    for name, spec in (params.get("properties") or {}).items():
        if brief:
            args.append(name)
            continue
        types = [spec.get("type")] if spec.get("type") else [o.get("type") for o in spec.get("anyOf", [])]
        kind = "/".join(t for t in types if t and t != "null") or "any"
        args.append(name + ("" if name in required else "?") + f": {kind}")
    signature = f"{fn.get('name')}({', '.join(args)})"
    return signature if brief else f"{signature}：{fn.get('description', '')}"


def render_tools(tools: Sequence[dict], tool_format: str = "json") -> str:
    """The bound tools for the instruction: 'json' (one JSON schema per line, for real LLMs),
    'compact' (one signature line per tool, for the small embedded model's context window) or 'brief'
    (the signatures without types and descriptions: a controller fine-tuned on its traces learns what
    each tool does from them; for the embedded LLM's tools, 217 tokens with the protocol line, not 359)."""
    if tool_format not in TOOL_FORMATS:
        raise ValueError(f"tool_format must be one of {TOOL_FORMATS}, got {tool_format!r}")
    lines = []
    for t in tools:
        fn = t.get("function", t)
        if tool_format in ("compact", "brief"):
            lines.append(_compact_tool(fn, brief=tool_format == "brief"))
        else:
            lines.append(json.dumps({"name": fn.get("name"), "description": fn.get("description", ""),
                                     "parameters": fn.get("parameters", {})}, ensure_ascii=False))
    header = TOOLS_HEADER if tool_format == "json" else COMPACT_HEADER
    return header + "\n".join(lines) + "\n" + PROTOCOL


def render_messages(messages: Sequence[BaseMessage], tools: Sequence[dict] = (),
                    template: str = "zh", tool_format: str = "json") -> str:
    """The prompt of a conversation (see the module docstring)."""
    system = [_text(m.content) for m in messages if isinstance(m, SystemMessage)]
    instruction = "\n".join(s for s in system if s) or DEFAULT_SYSTEM
    if tools:
        instruction += "\n" + render_tools(tools, tool_format)
    lines = []
    for m in messages:
        if isinstance(m, SystemMessage):
            continue
        if isinstance(m, HumanMessage):  # user text is data: one line, no protocol tag
            lines.append(f"用户：{as_data(_text(m.content), one_line=True)}")
        elif isinstance(m, AIMessage):
            calls = "".join(format_tool_call(c["name"], c.get("args", {})) for c in m.tool_calls)
            lines.append(f"客服：{as_data(_text(m.content))}{calls}")
        elif isinstance(m, ToolMessage):  # results may echo user text or catalog text
            name = m.name or m.tool_call_id
            lines.append(f'<tool_response name="{name}">{as_data(_text(m.content))}</tool_response>')
        else:
            lines.append(f"{m.type}：{as_data(_text(m.content))}")
    return render_prompt({"instruction": instruction, "input": "\n".join(lines)}, template)


def fit_messages(messages: Sequence[BaseMessage], tools: Sequence[dict], count_tokens: Callable[[str], int],
                 budget: int, template: str = "zh", tool_format: str = "json") -> tuple[list[BaseMessage], int]:
    """Drop the oldest messages before the current turn (the last user message and what follows it)
    until the prompt fits `budget` tokens, so the instruction, the tools and the current turn survive a
    long conversation; if the current turn alone is too long, the user's message of it is shortened (its
    last part kept). Returns the messages kept and how many were dropped; only when the instruction and
    tools alone exceed the budget does the LLM's own left truncation apply."""
    kept = list(messages)
    dropped = 0

    def too_long() -> bool:
        return count_tokens(render_messages(kept, tools, template, tool_format)) > budget

    while too_long():
        humans = [i for i, m in enumerate(kept) if isinstance(m, HumanMessage)]
        current = humans[-1] if humans else len(kept)
        oldest = next((i for i, m in enumerate(kept[:current]) if not isinstance(m, SystemMessage)), None)
        if oldest is None:
            if humans:
                _shorten_current(kept, current, too_long)
            break
        del kept[oldest]
        dropped += 1
    return kept, dropped


def _shorten_current(kept: list[BaseMessage], current: int, too_long: Callable[[], bool]) -> None:
    """Keep the longest last part of the current user message with which the prompt fits (if any does)."""
    original = kept[current]
    text = _text(original.content)

    def fits(n: int) -> bool:
        kept[current] = HumanMessage(content=text[len(text) - n:] if n else "", id=original.id)
        return not too_long()

    if not fits(0):
        kept[current] = original  # the instruction and tools alone are too long: nothing to gain
        return
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    fits(lo)
    log.info("the current message was cut to its last %d of %d characters to fit the prompt", lo, len(text))


class PresalesChatModel(BaseChatModel):
    """A BaseChatModel over `llm.inference.LLM` (greedy, KV cache) with text-protocol tool calls."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    llm: Any = Field(exclude=True)  # an llm.inference.LLM
    max_new_tokens: int = 128
    tool_format: str = "json"  # how bound tools are shown: json | compact | brief (see render_tools)
    # False: the caller reads only tool calls (graph 1 when the instruction-tuned LLM writes the replies),
    # so with tools bound a generation ends as soon as it does not open with a tool call
    reply_text: bool = True
    # with tools bound, the parts of a tool call that the format fixes are fed in, not decoded (llm.forcing)
    jump_forward: bool = True

    @classmethod
    def from_path(cls, path: str, **kwargs: Any) -> "PresalesChatModel":
        """Load a model; a controller run (presales train controller) also says how it saw its tools."""
        from .inference import LLM, resolve_model_dir
        from .model import read_llm_config

        llm = LLM.load(path)
        saved = read_llm_config(resolve_model_dir(path)[0]).get("tool_format")
        if saved and "tool_format" not in kwargs:
            kwargs["tool_format"] = saved
        return cls(llm=llm, **kwargs)

    @property
    def _llm_type(self) -> str:
        return "presales-llm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"source": getattr(self.llm, "source", ""), "max_new_tokens": self.max_new_tokens}

    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable | Any], *, tool_choice: str | None = None,
                   **kwargs: Any):
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _prefix(self, tools: Sequence[dict], tool_choice: Any) -> str:
        if not tools or tool_choice in (None, "auto", "none", False):
            return ""
        if isinstance(tool_choice, dict):
            tool_choice = tool_choice.get("function", tool_choice).get("name")
        names = [t.get("function", t).get("name") for t in tools]
        if isinstance(tool_choice, str) and tool_choice in names:
            return f'{TOOL_OPEN}{{"name": "{tool_choice}", "arguments": '
        return TOOL_OPEN  # 'any', 'required', True

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        tools = list(kwargs.get("tools") or [])
        prefix = self._prefix(tools, kwargs.get("tool_choice"))
        template = getattr(getattr(self.llm, "settings", None), "template", "zh")
        tokenizer = self.llm.tokenizer
        budget = self.llm.max_context - self.max_new_tokens - len(tokenizer(prefix, add_special_tokens=False).input_ids)
        messages, dropped = fit_messages(messages, tools, lambda t: len(tokenizer(t, add_special_tokens=False).input_ids),
                                         budget, template, self.tool_format)
        if dropped:
            log.info("dropped the %d oldest messages to fit the prompt into %d tokens", dropped, budget)
        prompt = render_messages(messages, tools, template, self.tool_format) + prefix
        opening = TOOL_OPEN if tools and not prefix and not self.reply_text else None
        forced = None
        if tools and self.jump_forward:
            grammar = ToolCallGrammar.from_tools(tools)

            def forced(text: str) -> str:
                return grammar.forced(prefix + text)

        raw = prefix + self.llm.generate([prompt], max_new_tokens=self.max_new_tokens,
                                         stop_unless_opens_with=opening, forced=forced)[0]
        for s in stop or []:
            if s and s in raw:
                raw = raw[: raw.index(s)]
        if tools:
            names = [t.get("function", t).get("name") for t in tools]
            parsed = parse_tool_calls(raw, names)
            content = parsed.content if not parsed.invalid_tool_calls else raw.strip()
            if parsed.invalid_tool_calls:
                log.info("model wrote %d malformed tool call(s); returned as invalid_tool_calls",
                         len(parsed.invalid_tool_calls))
            message = AIMessage(content=content, tool_calls=parsed.tool_calls,
                                invalid_tool_calls=parsed.invalid_tool_calls,
                                response_metadata={"raw_text": raw, "model_name": self._llm_type})
        else:
            message = AIMessage(content=raw.strip(), response_metadata={"raw_text": raw, "model_name": self._llm_type})
        return ChatResult(generations=[ChatGeneration(message=message)])
