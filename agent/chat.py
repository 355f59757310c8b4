"""`presales chat`: a step-by-step REPL over either graph.

After each user message it shows every node as it finishes, the tool calls with their arguments and
results, the needs so far, and the reply: rich panels on a terminal, plain `key: value` lines when
stdin is not a terminal (so a conversation can be piped in). `--trace FILE` appends one JSON line
per step. Commands: /state (the thread's state), /history (its checkpoints), /quit; any other line,
emoticon codes such as /:^_^ included, is a message. User text is printed literally (never as rich
markup, escape sequences removed); bytes that are not UTF-8 are replaced and reported.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import IO, Any, Iterable

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from uneed.errors import PresalesError
from uneed.schema import STAFF

from .assistant import Assistant
from .messages import printable

COMMANDS = ("/state", "/history", "/quit", "/exit")
COMMAND_LIKE = re.compile(r"/[A-Za-z]+")  # /stat (a typo) is refused; /:^_^ (an emoticon) is a message


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


class ChatSession:
    def __init__(self, assistant: Assistant, thread_id: str, category: str | None, user_id: str | None = None,
                 trace: IO[str] | None = None, console: Console | None = None, plain: bool = False):
        self.assistant = assistant
        self.thread_id = thread_id
        self.category = category
        self.user_id = user_id
        self.trace = trace
        self.console = console or Console(soft_wrap=True)
        self.plain = plain

    def _out(self, label: str, text: str, style: str = "") -> None:
        text = printable(text)
        if self.plain:
            print(f"{label}: {text}", flush=True)
        else:  # literal text: a user's [/] or [bold] is not markup
            self.console.print(Text.assemble((label, style or "bold"), " ", text), highlight=False)

    def _log(self, row: dict) -> None:
        if self.trace is not None:
            self.trace.write(json.dumps({"thread_id": self.thread_id, **row}, ensure_ascii=False, default=str) + "\n")
            self.trace.flush()

    def turn(self, text: str) -> str | None:
        """Run one user message; print each step; return the reply (None when the input was refused)."""
        try:
            for node, update in self.assistant.stream(text, self.thread_id, self.category, self.user_id):
                for ev in update.get("events", []):
                    self._log({"node": node, **ev})
                    if "tool" in ev:
                        self._out(f"[{node}] {ev['tool']}", f"args={_short(ev.get('args'))} → {_short(ev.get('result'))}",
                                  "cyan")
                    else:
                        detail = {k: v for k, v in ev.items() if k != "node"}
                        self._out(f"[{node}]", _short(detail), "magenta")
                if not update.get("events"):
                    self._out(f"[{node}]", "done", "dim")
        except PresalesError as exc:
            self._out("error", str(exc), "red")
            return None
        state = self.assistant.state(self.thread_id)
        needs = "；".join(f"{k}：{'、'.join(v)}" for k, v in (state.get("needs") or {}).items()) or "（暂无）"
        self._out("needs", needs, "yellow")
        reply = state.get("reply", "")
        self._log({"node": "reply", "reply": reply, "needs": state.get("needs"), "asked": state.get("asked"),
                   "recommended": state.get("recommended"), "rejected": state.get("rejected")})
        if self.plain:
            print(f"reply: {reply}", flush=True)
        else:
            self.console.print(Panel(Text(printable(reply)), title=STAFF, border_style="green"))
        return reply

    def command(self, line: str) -> bool:
        """Handle /state, /history, /quit; False means stop."""
        if line in ("/quit", "/exit"):
            return False
        if line in ("/state", "/history") and not self.assistant.exists(self.thread_id):
            self._out("error", f"thread {self.thread_id} has no turns yet (send a message first, or pick an "
                               "existing thread with --thread)", "red")
        elif line == "/state":
            state = self.assistant.state(self.thread_id)
            state.pop("messages", None)
            self._out("state", _short(state, 4000))
        elif line == "/history":
            for row in self.assistant.history(self.thread_id):
                self._out("checkpoint", _short(row))
        else:
            self._out("error", f"unknown command {line}; use /state, /history or /quit", "red")
        return True

    def loop(self, lines: Iterable[str] | None = None) -> None:
        interactive = lines is None and sys.stdin.isatty()
        source = iter(lines if lines is not None else sys.stdin)
        if interactive:
            self.console.print(f"thread {self.thread_id} ({self.assistant.kind} in control). /state /history /quit")
        while True:
            if interactive:
                try:
                    line = self.console.input("[bold blue]用户> [/]")
                except EOFError:
                    break
            else:
                line = next(source, None)
                if line is None:
                    break
            line = line.rstrip("\r\n")
            if line.strip() in COMMANDS or COMMAND_LIKE.fullmatch(line.strip()):
                if not self.command(line.strip()):
                    break
                continue
            if not line.strip():
                self._out("error", "empty message ignored", "red")
                continue
            if not interactive:
                self._out("user", line)
            self.turn(line)


def run_chat(graph: str, run: Path, category: str | None, thread: str | None, trace: Path | None,
             user: str | None = None, db: Path | None = None) -> None:
    import uuid

    assistant = Assistant.from_run(run, graph, db_path=db)
    thread_id = thread or uuid.uuid4().hex[:12]
    plain = not sys.stdin.isatty()
    if hasattr(sys.stdin, "reconfigure"):  # bad bytes reach normalise_message, which replaces and reports them
        sys.stdin.reconfigure(errors="surrogateescape")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    handle = trace.open("a", encoding="utf-8", errors="replace") if trace else None
    try:
        ChatSession(assistant, thread_id, category, user, handle, plain=plain).loop()
    finally:
        if handle:
            handle.close()
