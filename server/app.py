"""The FastAPI app: the Agent Protocol routes that LangGraph's own server exposes and the official
`langgraph-sdk` client calls (checked against its source), for the two graphs as assistants `llm`
and `crs`, plus `GET /` (the chat page) and `GET /items/{id}` (an item's knowledge, for the page).

    GET  /ok, /health                          liveness (no key needed)
    GET  /assistants/{id}, /assistants/{id}/graph; POST /assistants/search
    POST /threads; GET|PATCH|DELETE /threads/{id}; POST /threads/search
    GET  /threads/{id}/state[/{checkpoint_id}]; POST /threads/{id}/history
    POST /threads/{id}/runs/wait               one user turn, answered with the final state values
    POST /threads/{id}/runs/stream             the same turn as server-sent events: metadata, then
                                               `values` and/or `updates` (every node update, with its
                                               tool calls and the reply), `error` if the run fails

A run executes in a task of its own, decoupled from the connection: a client that goes away loses its
stream, never the turn. The graphs' nodes are synchronous, so LangGraph runs them in the event loop's
thread pool: model work never blocks the loop. Errors are JSON `{"message", "status"}`, never a trace.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from langchain_core.messages import BaseMessage, HumanMessage
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.state import new_thread_state
from uneed.schema import DOMAINS

from . import models as m
from .storage import RunLease, Storage, ThreadRecord, claim_thread, now_iso

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page.html")
PUBLIC_PATHS = {"/ok", "/health", "/", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/favicon.ico"}
MAX_BODY_BYTES = 64 * 1024
DESCRIPTIONS = {
    "llm": "Graph 1: the fine-tuned LLM in control, calling the CRS tools (CRS assisting LLM).",
    "crs": "Graph 2: the CRS in control, calling the LLM as a tool (LLM assisting CRS).",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message, "status": status}, status_code=status, headers=dict(headers or {}))


def key_owner(key: str) -> str:
    """Threads are owned by a digest of the key that made them (the key itself is never stored)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


class KeyAuth:
    """ASGI middleware: with keys configured, every route but the public ones needs `x-api-key` (or
    `Authorization: Bearer KEY`); the caller's owner id goes to request.state.owner. It also refuses
    bodies over MAX_BODY_BYTES before anything reads them."""

    def __init__(self, app, keys: set[str]):
        self.app = app
        self.owners = {key: key_owner(key) for key in keys}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            return await error_response(413, f"the request body is over {MAX_BODY_BYTES} bytes")(scope, receive, send)
        owner = ""
        if self.owners and scope["path"] not in PUBLIC_PATHS:
            key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
            if key not in self.owners:
                message = "an API key is required: send it in the x-api-key header" if not key else "invalid API key"
                return await error_response(401, message, {"WWW-Authenticate": "ApiKey"})(scope, receive, send)
            owner = self.owners[key]
        scope.setdefault("state", {})["owner"] = owner
        return await self.app(scope, receive, send)


def jsonable(obj: Any) -> Any:
    """State values (LangChain messages included) as plain JSON data."""
    if isinstance(obj, BaseMessage):
        return jsonable(obj.model_dump())
    if isinstance(obj, BaseModel):
        return jsonable(obj.model_dump(mode="json"))
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")


@dataclass
class Engine:
    """What the routes work with: the compiled graphs (by assistant id), the corpus, the storage."""
    graphs: dict[str, Any]
    corpus: Any
    storage: Storage
    started: str = field(default_factory=now_iso)
    runs: set = field(default_factory=set)  # running turn tasks, kept referenced until they finish

    # ------------------------------------------------------------------------------------ lookups
    def graph(self, assistant_id: str) -> Any:
        if assistant_id not in self.graphs:
            raise ApiError(404, f"unknown assistant {assistant_id!r}: use {' or '.join(self.graphs)}")
        return self.graphs[assistant_id]

    async def thread(self, thread_id: str, owner: str) -> ThreadRecord:
        rec = await self.storage.threads.get(thread_id)
        if rec is None or rec.owner != owner:  # another key's thread does not exist for this caller
            raise ApiError(404, f"thread {thread_id} not found")
        return rec

    def graph_of(self, rec: ThreadRecord) -> Any:
        return self.graphs.get(rec.graph_id or "") or next(iter(self.graphs.values()))

    @staticmethod
    def config(thread_id: str, checkpoint_id: str | None = None) -> dict:
        conf = {"thread_id": thread_id, "checkpoint_ns": ""}
        if checkpoint_id:
            conf["checkpoint_id"] = checkpoint_id
        return {"configurable": conf}

    # ----------------------------------------------------------------------------------- threads
    async def create_thread(self, body: m.ThreadCreate, owner: str) -> ThreadRecord:
        metadata = check_metadata(body.metadata, self.graphs)
        thread_id = body.thread_id or str(uuid.uuid4())
        if not await self.storage.threads.create(thread_id, owner, metadata, metadata.get("graph_id")):
            rec = await self.storage.threads.get(thread_id)
            if body.if_exists == "do_nothing" and rec is not None and rec.owner == owner:
                return rec
            raise ApiError(409, f"thread {thread_id} already exists")
        return await self.storage.threads.get(thread_id)

    async def thread_body(self, rec: ThreadRecord, with_values: bool = True) -> m.Thread:
        values = None
        if with_values:
            values = jsonable((await self.graph_of(rec).aget_state(self.config(rec.thread_id))).values)
        return m.Thread(thread_id=rec.thread_id, created_at=rec.created_at, updated_at=rec.updated_at,
                        metadata={**rec.metadata, **({"graph_id": rec.graph_id} if rec.graph_id else {})},
                        status=rec.public_status, values=values)

    async def state_body(self, rec: ThreadRecord, checkpoint_id: str | None = None) -> m.ThreadState:
        snap = await self.graph_of(rec).aget_state(self.config(rec.thread_id, checkpoint_id))
        if checkpoint_id and (snap.config or {}).get("configurable", {}).get("checkpoint_id") != checkpoint_id:
            raise ApiError(404, f"thread {rec.thread_id} has no checkpoint {checkpoint_id}")
        return snapshot_body(rec.thread_id, snap)

    # -------------------------------------------------------------------------------------- runs
    async def start_run(self, thread_id: str, body: m.RunCreate, owner: str) -> "RunHandle":
        """Check everything a run needs and claim its thread; the turn then runs in its own task.
        Every refusal happens here, before a stream starts, so it is a plain HTTP error."""
        graph = self.graph(body.assistant_id)
        text = body.input.messages[-1].content
        if len(text) > m.MAX_MESSAGE_CHARS:
            raise ApiError(413, f"the message has {len(text)} characters; at most {m.MAX_MESSAGE_CHARS} are taken")
        if not text.strip():
            raise ApiError(422, "input.messages[0].content is empty: say what you are looking for")
        try:
            rec = await self.thread(thread_id, owner)
        except ApiError:
            if body.if_not_exists != "create":
                raise
            rec = await self.create_thread(m.ThreadCreate(thread_id=thread_id, if_exists="do_nothing"), owner)
        if not await self.storage.threads.bind_graph(thread_id, body.assistant_id):
            bound = (await self.storage.threads.get(thread_id)).graph_id
            raise ApiError(409, f"thread {thread_id} runs on assistant {bound!r}, not {body.assistant_id!r}")
        run_id = str(uuid.uuid4())
        if not await claim_thread(self.storage.threads, thread_id, run_id, wait=body.multitask_strategy == "enqueue"):
            raise ApiError(409, f"thread {thread_id} is busy with another run (multitask_strategy=reject); "
                                "retry when it is idle or send multitask_strategy=enqueue")
        lease = RunLease(self.storage.threads, thread_id, run_id)
        lease.start()
        try:
            snapshot = await graph.aget_state(self.config(thread_id))
            payload = self.turn_input(rec, snapshot.values, text)
        except BaseException:
            await lease.release()
            raise
        handle = RunHandle(run_id, thread_id, body.assistant_id, body.modes())
        # A turn cut short (its server was killed mid-run) left pending nodes: it is finished first.
        task = asyncio.create_task(handle.execute(graph, payload, self.config(thread_id), lease,
                                                  resume_first=bool(snapshot.next)))
        self.runs.add(task)
        task.add_done_callback(self.runs.discard)
        return handle

    def turn_input(self, rec: ThreadRecord, existing: Mapping[str, Any], text: str) -> dict[str, Any]:
        """The graph input of one user turn; a thread's first turn also sets up its state (category,
        behaviours of its user), exactly as `presales chat` does."""
        if existing:
            return {"messages": [HumanMessage(text)]}
        category = rec.metadata.get("category") or next(iter(DOMAINS))
        user_id = rec.metadata.get("user_id")
        behaviours = self.corpus.user_behaviours(str(user_id)) if user_id else []
        return {**new_thread_state(category, behaviours), "messages": [HumanMessage(text)]}


class RunHandle:
    """One running turn: its task pushes (event, data) pairs into a queue that a stream may read."""

    def __init__(self, run_id: str, thread_id: str, assistant_id: str, modes: list[str]):
        self.run_id, self.thread_id, self.assistant_id, self.modes = run_id, thread_id, assistant_id, modes
        self.queue: asyncio.Queue = asyncio.Queue()
        self.done = asyncio.Event()
        self.error: str | None = None
        self.final: dict[str, Any] = {}

    async def execute(self, graph: Any, payload: dict, config: dict, lease: RunLease, resume_first: bool = False) -> None:
        started = time.perf_counter()
        try:
            if resume_first:
                log.warning("thread %s: finishing the turn a previous run left unfinished", self.thread_id)
            for graph_input in ([None] if resume_first else []) + [payload]:
                # durability "sync": each step's checkpoint is written before the next step starts, so a
                # server killed mid-turn keeps every step a client has seen but the last (LangGraph's
                # default, "async", writes while the next step runs: a kill could lose the message itself)
                async for mode, chunk in graph.astream(graph_input, config, stream_mode=["values", "updates"],
                                                       durability="sync"):
                    if mode == "values":
                        self.final = chunk
                    if mode in self.modes:
                        self.queue.put_nowait((mode, jsonable(chunk)))
        except Exception as exc:  # noqa: BLE001 - reported to the client as an `error` event
            log.exception("run %s on thread %s failed", self.run_id, self.thread_id)
            self.error = f"{type(exc).__name__}: {exc}"
            self.queue.put_nowait(("error", {"error": type(exc).__name__, "message": str(exc)}))
        finally:
            try:
                await lease.release(failed=self.error is not None)
            except Exception as exc:  # noqa: BLE001 - the lease then expires on its own (storage.LEASE_S)
                log.error("run %s: could not release thread %s: %s", self.run_id, self.thread_id, exc)
            log.info("run %s thread %s assistant %s: %s in %.2fs", self.run_id, self.thread_id, self.assistant_id,
                     "error" if self.error else "success", time.perf_counter() - started)
            self.queue.put_nowait(None)
            self.done.set()

    async def events(self) -> AsyncIterator[bytes]:
        yield sse("metadata", {"run_id": self.run_id, "attempt": 1})
        while (item := await self.queue.get()) is not None:
            yield sse(*item)


def check_metadata(metadata: dict[str, Any], graphs: Mapping[str, Any]) -> dict[str, Any]:
    category = metadata.get("category")
    if category is not None and category not in DOMAINS:
        raise ApiError(422, f"metadata.category {category!r} is unknown; use one of {', '.join(DOMAINS)}")
    graph_id = metadata.get("graph_id")
    if graph_id is not None and graph_id not in graphs:
        raise ApiError(422, f"metadata.graph_id {graph_id!r} is unknown; use {' or '.join(graphs)}")
    user_id = metadata.get("user_id")
    if user_id is not None and not isinstance(user_id, (str, int)):
        raise ApiError(422, "metadata.user_id must be a string")
    return dict(metadata)


def snapshot_body(thread_id: str, snap: Any) -> m.ThreadState:
    conf = (snap.config or {}).get("configurable", {})
    parent = (snap.parent_config or {}).get("configurable") if snap.parent_config else None
    return m.ThreadState(
        values=jsonable(snap.values or {}), next=list(snap.next or ()),
        checkpoint=m.CheckpointRef(thread_id=thread_id, checkpoint_ns=conf.get("checkpoint_ns", ""),
                                   checkpoint_id=conf.get("checkpoint_id")),
        metadata=jsonable(snap.metadata or {}), created_at=snap.created_at,
        parent_checkpoint=m.CheckpointRef(thread_id=thread_id, checkpoint_ns=parent.get("checkpoint_ns", ""),
                                          checkpoint_id=parent.get("checkpoint_id")) if parent else None,
        tasks=[{"id": t.id, "name": t.name, "error": str(t.error) if t.error else None, "interrupts": [],
                "checkpoint": None, "state": None, "result": jsonable(getattr(t, "result", None))}
               for t in (snap.tasks or ())])


def assistant_body(assistant_id: str, started: str) -> m.Assistant:
    return m.Assistant(assistant_id=assistant_id, graph_id=assistant_id, name=assistant_id,
                       description=DESCRIPTIONS.get(assistant_id, ""), created_at=started, updated_at=started)


def matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(metadata.get(k) == v for k, v in wanted.items())


def create_app(engine: Engine, api_keys: set[str] | frozenset = frozenset()) -> FastAPI:
    app = FastAPI(title="presales-crs-llm agent server", version="0.1.0",
                  description="Agent Protocol routes (as LangGraph's server) over the two graphs of presales-crs-llm: "
                              "`llm` (the LLM in control) and `crs` (the CRS in control).")
    app.state.engine = engine

    # ------------------------------------------------------------------------------------ errors
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return error_response(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors()[:3]:
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return error_response(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception):
        log.exception("internal error")
        return error_response(500, f"internal error: {type(exc).__name__} (see the server log)")

    responses = {status: {"model": m.ErrorBody} for status in (401, 404, 409, 413, 422)}
    owner_of = lambda request: request.state.owner  # noqa: E731 - set by KeyAuth

    # ------------------------------------------------------------------------------------ health
    @app.get("/ok", response_model=m.Health, tags=["health"])
    async def ok() -> m.Health:
        return m.Health(ok=True)

    @app.get("/health", response_model=m.Health, tags=["health"])
    async def health() -> m.Health:
        return m.Health(ok=True)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    # -------------------------------------------------------------------------------- assistants
    @app.get("/assistants/{assistant_id}", response_model=m.Assistant, responses=responses, tags=["assistants"])
    async def get_assistant(assistant_id: str) -> m.Assistant:
        engine.graph(assistant_id)
        return assistant_body(assistant_id, engine.started)

    @app.post("/assistants/search", response_model=list[m.Assistant], responses=responses, tags=["assistants"])
    async def search_assistants(body: m.AssistantSearch) -> list[m.Assistant]:
        found = [assistant_body(a, engine.started) for a in engine.graphs
                 if (body.graph_id in (None, a)) and not body.metadata]
        return found[body.offset:body.offset + body.limit]

    @app.get("/assistants/{assistant_id}/graph", responses=responses, tags=["assistants"])
    async def assistant_graph(assistant_id: str) -> dict[str, Any]:
        return jsonable(engine.graph(assistant_id).get_graph().to_json())

    # ----------------------------------------------------------------------------------- threads
    @app.post("/threads", response_model=m.Thread, responses=responses, tags=["threads"])
    async def create_thread(body: m.ThreadCreate, request: Request) -> m.Thread:
        rec = await engine.create_thread(body, owner_of(request))
        return await engine.thread_body(rec)

    @app.post("/threads/search", response_model=list[m.Thread], responses=responses, tags=["threads"])
    async def search_threads(body: m.ThreadSearch, request: Request) -> list[m.Thread]:
        found = [r for r in await engine.storage.threads.search(owner_of(request))
                 if matches({**r.metadata, "graph_id": r.graph_id}, body.metadata)
                 and (body.status is None or r.public_status == body.status)
                 and (body.ids is None or r.thread_id in body.ids)]
        return [await engine.thread_body(r, with_values=False) for r in found[body.offset:body.offset + body.limit]]

    @app.get("/threads/{thread_id}", response_model=m.Thread, responses=responses, tags=["threads"])
    async def get_thread(thread_id: str, request: Request) -> m.Thread:
        return await engine.thread_body(await engine.thread(thread_id, owner_of(request)))

    @app.patch("/threads/{thread_id}", response_model=m.Thread, responses=responses, tags=["threads"])
    async def patch_thread(thread_id: str, body: m.ThreadPatch, request: Request) -> m.Thread:
        rec = await engine.thread(thread_id, owner_of(request))
        metadata = check_metadata({**rec.metadata, **body.metadata}, engine.graphs)
        started = bool((await engine.graph_of(rec).aget_state(engine.config(thread_id))).values)
        for key in ("category", "user_id", "graph_id"):
            if started and metadata.get(key) != rec.metadata.get(key):
                raise ApiError(409, f"thread {thread_id} has started: its {key} cannot change")
        await engine.storage.threads.update_metadata(thread_id, metadata)
        return await engine.thread_body(await engine.thread(thread_id, owner_of(request)))

    @app.delete("/threads/{thread_id}", status_code=204, responses=responses, tags=["threads"])
    async def delete_thread(thread_id: str, request: Request) -> Response:
        rec = await engine.thread(thread_id, owner_of(request))
        if rec.busy:
            raise ApiError(409, f"thread {thread_id} is busy with a run; delete it when the run is over")
        await engine.storage.delete_thread(thread_id)
        return Response(status_code=204)

    @app.get("/threads/{thread_id}/state", response_model=m.ThreadState, responses=responses, tags=["threads"])
    async def thread_state(thread_id: str, request: Request) -> m.ThreadState:
        return await engine.state_body(await engine.thread(thread_id, owner_of(request)))

    @app.get("/threads/{thread_id}/state/{checkpoint_id}", response_model=m.ThreadState, responses=responses,
             tags=["threads"])
    async def thread_state_at(thread_id: str, checkpoint_id: str, request: Request) -> m.ThreadState:
        return await engine.state_body(await engine.thread(thread_id, owner_of(request)), checkpoint_id)

    @app.post("/threads/{thread_id}/history", response_model=list[m.ThreadState], responses=responses,
              tags=["threads"])
    async def thread_history(thread_id: str, body: m.HistoryRequest, request: Request) -> list[m.ThreadState]:
        rec = await engine.thread(thread_id, owner_of(request))
        before = body.before if isinstance(body.before, str) or body.before is None else body.before.checkpoint_id
        out = []
        async for snap in engine.graph_of(rec).aget_state_history(
                engine.config(thread_id), limit=body.limit, filter=body.metadata or None,
                before=engine.config(thread_id, before) if before else None):
            out.append(snapshot_body(thread_id, snap))
        return out

    # -------------------------------------------------------------------------------------- runs
    @app.post("/threads/{thread_id}/runs/wait", responses=responses, tags=["runs"])
    async def run_wait(thread_id: str, body: m.RunCreate, request: Request) -> dict[str, Any]:
        handle = await engine.start_run(thread_id, body, owner_of(request))
        await handle.done.wait()
        if handle.error:
            raise ApiError(500, f"the run failed: {handle.error}")
        return jsonable(handle.final)

    @app.post("/threads/{thread_id}/runs/stream", responses={**responses, 200: {"content": {"text/event-stream": {}}}},
              tags=["runs"])
    async def run_stream(thread_id: str, body: m.RunCreate, request: Request) -> StreamingResponse:
        handle = await engine.start_run(thread_id, body, owner_of(request))
        return StreamingResponse(handle.events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "Content-Location": f"/threads/{thread_id}/runs/{handle.run_id}"})

    # ------------------------------------------------------------------------------------- items
    @app.get("/items/{item_id}", response_model=m.Item, responses=responses, tags=["items"])
    async def get_item(item_id: str) -> m.Item:
        item = engine.corpus.items.get(item_id)
        if item is None:
            raise ApiError(404, f"item {item_id} not found")
        return m.Item(item_id=item.item_id, seller_id=item.seller_id, knowledge=item.knowledge, text=item.text())

    app.add_middleware(KeyAuth, keys=set(api_keys))
    return app
