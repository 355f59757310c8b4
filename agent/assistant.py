"""One object to talk to either graph: it loads the trained models from a run directory, compiles
the graph with a checkpointer, and runs user turns in threads.

A run directory (what scripts/run_default.sh writes):
    RUN/agent.yaml       data: the U-NEED-format directory the models were trained on
    RUN/crs/             the CRS (presales train crs)
    RUN/crs-llm/         the CRS trained with LLM predictions (graph 2; falls back to crs/)
    RUN/llm/             the instruction-tuned LLM (presales train llm)
    RUN/controller/      the LLM fine-tuned as controller (graph 1; falls back to llm/)
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from uneed.corpus import Corpus, load_corpus
from uneed.errors import PresalesError
from uneed.schema import DOMAINS

from .messages import normalise_message
from .policy import PolicyConfig
from .state import new_thread_state

log = logging.getLogger(__name__)
GRAPHS = ("llm", "crs")
LAST_NODE = {"llm": "finish", "crs": "respond"}  # the node that ends a turn that replies normally
HOW_TO_TRAIN = "train one with `bash scripts/run_default.sh` (see README), which writes runs/default"


@dataclass
class RunPaths:
    root: Path
    data: Path
    crs: Path
    crs_llm: Path
    llm: Path
    controller: Path

    @classmethod
    def from_run(cls, root: str | Path) -> "RunPaths":
        root = Path(root)
        if not root.is_dir():
            raise PresalesError(f"no trained run at {root}: {HOW_TO_TRAIN}")
        data = run_data_dir(root)

        def pick(*names: str) -> Path:
            for name in names:
                if (root / name).is_dir():
                    return root / name
            raise PresalesError(f"{root} has none of {', '.join(n + '/' for n in names)}: {HOW_TO_TRAIN}")

        return cls(root, data, pick("crs"), pick("crs-llm", "crs"), pick("llm"), pick("controller", "llm"))


def run_data_dir(root: str | Path) -> Path:
    """The corpus directory a run was trained on (RUN/agent.yaml, written by scripts/run_default.sh)."""
    root = Path(root)
    meta_file = root / "agent.yaml"
    if not meta_file.is_file():
        raise PresalesError(f"{root} is not an agent run directory (no agent.yaml): {HOW_TO_TRAIN}")
    meta = yaml.safe_load(meta_file.read_text(encoding="utf-8")) or {}
    data = Path(meta.get("data", ""))
    if not data.is_absolute():
        data = (root / data).resolve() if (root / data).exists() else data.resolve()
    return data


@dataclass
class TurnResult:
    thread_id: str
    reply: str
    events: list[dict] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


class Assistant:
    """Runs user turns through graph 'llm' (LLM in control) or 'crs' (CRS in control)."""

    def __init__(self, graph: Any, corpus: Corpus, graph_kind: str, models: dict[str, Any] | None = None,
                 leases: "ThreadLeases | None" = None):
        self.graph = graph
        self.corpus = corpus
        self.kind = graph_kind
        # the loaded models the graph calls (for batching, eval): 'crs', 'llm', and in graph 1 'writer'
        # (the LLM that writes its replies, when it is not the controller)
        self.models = dict(models or {})
        self.leases = leases or ThreadLeases(None)

    @property
    def llms(self) -> list[Any]:
        """The loaded LLMs the graph calls, each once."""
        out = []
        for name in ("llm", "writer"):
            model = self.models.get(name)
            if model is not None and all(model is not m for m in out):
                out.append(model)
        return out

    # ------------------------------------------------------------------------------- building
    @classmethod
    def from_run(cls, run_dir: str | Path, graph_kind: str = "llm", checkpointer: Any = None,
                 db_path: str | Path | None = None, policy: PolicyConfig | None = None) -> "Assistant":
        if graph_kind not in GRAPHS:
            raise PresalesError(f"--graph must be one of {', '.join(GRAPHS)}, got {graph_kind!r}")
        policy = policy or PolicyConfig()
        if policy.reply_writer not in ("llm", "controller"):
            raise PresalesError(f"--reply-writer must be llm or controller, got {policy.reply_writer!r}")
        paths = RunPaths.from_run(run_dir)
        corpus = load_corpus(paths.data, skip_invalid=True, require_splits=False)  # its items and behaviours
        from llm.inference import LLM

        leases = ThreadLeases(None)
        if checkpointer is None:
            db_path = Path(db_path or paths.root / "threads.sqlite")
            checkpointer = sqlite_checkpointer(db_path)
            leases = ThreadLeases(db_path)
        if graph_kind == "crs":
            from .graph_crs import build_crs_graph

            models = {"crs": load_crs(paths.crs_llm, corpus), "llm": LLM.load(paths.llm)}
            graph = build_crs_graph(models["crs"], models["llm"], corpus.items, policy, checkpointer=checkpointer)
        else:
            from llm.chat_model import PresalesChatModel

            from .graph_llm import build_llm_graph

            chat = PresalesChatModel.from_path(str(paths.controller))
            models = {"crs": load_crs(paths.crs, corpus), "llm": chat.llm}
            if policy.reply_writer == "llm":  # the instruction-tuned LLM writes graph 1's replies
                models["writer"] = chat.llm if paths.llm == paths.controller else LLM.load(paths.llm)
            graph = build_llm_graph(chat, models["crs"], corpus.items, policy, attributes=known_attributes(corpus),
                                    checkpointer=checkpointer, writer=models.get("writer"))
        return cls(graph, corpus, graph_kind, models, leases)

    # -------------------------------------------------------------------------------- threads
    @staticmethod
    def config(thread_id: str) -> dict:
        return {"configurable": {"thread_id": thread_id}}

    def _input(self, thread_id: str, text: str, category: str | None, user_id: str | None,
               seller_id: str | None = None) -> dict[str, Any]:
        """The graph input of a turn; `text` is already normalised (agent.messages)."""
        if not text:
            raise PresalesError("the message is empty: say what you are looking for")
        existing = self.graph.get_state(self.config(thread_id)).values
        if existing:
            if category and category != existing.get("category"):
                raise PresalesError(f"thread {thread_id} is about {existing.get('category')}, not {category}")
            return {"messages": [HumanMessage(text)]}
        category = category or next(iter(DOMAINS))
        if category not in DOMAINS:
            raise PresalesError(f"unknown category {category!r}; choose one of {', '.join(DOMAINS)}")
        behaviours = self.corpus.user_behaviours(user_id) if user_id else []
        return {**new_thread_state(category, behaviours, seller_id or ""), "messages": [HumanMessage(text)]}

    def send(self, text: str, thread_id: str | None = None, category: str | None = None,
             user_id: str | None = None, seller_id: str | None = None) -> TurnResult:
        """Run one user turn to the reply; returns the reply, this turn's events and the new state."""
        events: list[dict] = []
        thread_id = thread_id or uuid.uuid4().hex[:12]
        for _node, update in self.stream(text, thread_id, category, user_id, seller_id):
            events.extend((update or {}).get("events", []))
        state = self.state(thread_id)
        return TurnResult(thread_id, state.get("reply", ""), events, state)

    def stream(self, text: str, thread_id: str, category: str | None = None,
               user_id: str | None = None, seller_id: str | None = None) -> Iterator[tuple[str, dict]]:
        """(node, its state update) as each node finishes; a new thread's seller (when known) is preferred."""
        if not isinstance(text, str):
            raise PresalesError(f"the message must be text, got {type(text).__name__}")
        text, notes = normalise_message(text)  # bounded and plain before it enters the state or a checkpoint
        with self.leases.hold(thread_id):  # one turn at a time per thread, across processes on one database
            payload = self._input(thread_id, text, category, user_id, seller_id)
            if notes:
                log.warning("message of thread %s normalised: %s", thread_id, notes)
                yield "input", {"events": [{"node": "input", **notes}]}
            for chunk in self.graph.stream(payload, self.config(thread_id), stream_mode="updates"):
                for node, update in chunk.items():
                    yield node, update if isinstance(update, dict) else {}

    def exists(self, thread_id: str) -> bool:
        return bool(self.graph.get_state(self.config(thread_id)).values)

    def seed_thread(self, thread_id: str, values: dict[str, Any]) -> None:
        """Write a conversation state (e.g. a corpus dialogue's gold history) into a fresh thread as if
        its last turn had just ended, so the next `send` runs on top of it; nothing is generated."""
        if self.graph.get_state(self.config(thread_id)).values:
            raise PresalesError(f"thread {thread_id} already exists: seed only a fresh thread")
        self.graph.update_state(self.config(thread_id), values, as_node=LAST_NODE[self.kind])

    def state(self, thread_id: str) -> dict[str, Any]:
        return dict(self.graph.get_state(self.config(thread_id)).values)

    def history(self, thread_id: str) -> list[dict[str, Any]]:
        """Checkpoints of a thread, newest first: step, next nodes, reply so far."""
        out = []
        for snap in self.graph.get_state_history(self.config(thread_id)):
            meta = snap.metadata or {}
            out.append({"step": meta.get("step"), "next": list(snap.next), "reply": snap.values.get("reply", ""),
                        "checkpoint_id": snap.config["configurable"].get("checkpoint_id")})
        return out


def load_crs(path: Path, corpus: Corpus):
    """A trained CRS with the corpus's leaf categories (the kind-of-item filter of its recommendations);
    one saved before item groups were gets them from the corpus too (category filter)."""
    from crs.inference import CRS

    crs = CRS.load(path)
    if not crs.item_domains:
        crs.set_item_groups(corpus.item_domains(), {i: item.seller_id for i, item in corpus.items.items()})
    crs.set_item_leaves({i: item.leaf for i, item in corpus.items.items() if item.leaf})
    return crs


def known_attributes(corpus: Corpus) -> set[str]:
    """Attribute names annotated in the train dialogues: what a question may be about."""
    return {a.key for d in corpus.split("train") for t in d.dialogue for a in t.attributes}


def sqlite_checkpointer(path: str | Path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A writer in another process (a turn, or its own setup) holds the database for a moment:
        # wait for it rather than fail with "database is locked".
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=60)
        saver = SqliteSaver(conn)
        # Two processes opening a new database at once race on switching it to WAL and creating the
        # tables; a file lock beside it makes the setup one process at a time.
        with open(f"{path}.setup.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            saver.setup()
    except (OSError, sqlite3.Error) as exc:
        raise PresalesError(f"--db {path}: cannot open the thread database ({exc})") from None
    return saver


class ThreadBusyError(PresalesError):
    """Another turn of the same thread is running and did not finish in time."""


class ThreadLeases:
    """One writer per thread: a turn holds its thread's lease from reading the state to its last
    checkpoint. With a database the lease is an exclusive file lock beside it (`DB.locks/`), so it
    holds across processes and threads; without one (in-memory checkpointer) a lock per thread in
    this process. A turn waits up to `wait_s` for the lease, then is refused (ThreadBusyError)."""

    def __init__(self, db_path: str | Path | None, wait_s: float = 60.0):
        self.db_path = Path(db_path) if db_path is not None else None
        self.dir = Path(f"{db_path}.locks") if db_path is not None else None
        self.wait_s = wait_s
        self._local: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, thread_id: str) -> Iterator[None]:
        with self._guard:
            local = self._local.setdefault(thread_id, threading.Lock())
        if not local.acquire(timeout=self.wait_s):
            raise ThreadBusyError(self._busy(thread_id))
        try:
            if self.dir is None:
                yield
                return
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                fh = (self.dir / (hashlib.sha1(thread_id.encode("utf-8")).hexdigest()[:20] + ".lock")).open("a")
            except OSError as exc:
                raise PresalesError(f"cannot lock thread {thread_id} in {self.dir} ({exc})") from None
            try:
                deadline = time.monotonic() + self.wait_s
                while True:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise ThreadBusyError(self._busy(thread_id)) from None
                        time.sleep(0.05)
                yield
            finally:
                fh.close()  # releases the lock
        finally:
            local.release()

    def _busy(self, thread_id: str) -> str:
        return (f"thread {thread_id} is busy with another turn (waited {self.wait_s:.0f}s); send the message "
                "again when it has finished")


def memory_checkpointer():
    return InMemorySaver()
