"""`presales serve`: load a run's graphs, open the thread storage, serve the app with uvicorn.

Everything that can fail on the user's input (the run directory, the database) is checked before the
server listens, so a mistake is one clear line and a non-zero exit.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Iterable

from agent.assistant import GRAPHS, Assistant, RunPaths
from uneed.errors import PresalesError

from .app import Engine, create_app
from .storage import open_storage

log = logging.getLogger(__name__)


def load_graphs(run: Path, checkpointer, graphs: Iterable[str]) -> tuple[dict, object]:
    """The compiled graphs of the run (by assistant id) over one checkpointer, and the corpus."""
    out, corpus = {}, None
    for kind in graphs:
        assistant = Assistant.from_run(run, kind, checkpointer=checkpointer)
        out[kind] = assistant.graph
        corpus = assistant.corpus
    return out, corpus


async def build_engine(run: Path, db: str | None, graphs: Iterable[str] = GRAPHS) -> Engine:
    graphs = list(dict.fromkeys(graphs))
    for kind in graphs:
        if kind not in GRAPHS:
            raise PresalesError(f"--graph must be one of {', '.join(GRAPHS)}, got {kind!r}")
    RunPaths.from_run(run)  # a missing or incomplete run directory is a clear error before anything opens
    storage = await open_storage(db or str(Path(run) / "threads.sqlite"))
    try:
        loaded, corpus = await asyncio.to_thread(load_graphs, Path(run), storage.checkpointer, graphs)
    except BaseException:
        await storage.close()
        raise
    log.info("assistants %s over %s", ", ".join(loaded), storage.url)
    return Engine(loaded, corpus, storage)


async def _serve(run: Path, host: str, port: int, db: str | None, api_keys: set[str], graphs: Iterable[str]) -> None:
    import uvicorn

    engine = await build_engine(run, db, graphs)
    app = create_app(engine, api_keys)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    try:
        await server.serve()
    finally:
        if engine.runs:  # let turns in flight finish, so no accepted turn is lost on a clean shutdown
            await asyncio.gather(*list(engine.runs), return_exceptions=True)
        await engine.storage.close()
    if not server.started:
        raise PresalesError(f"the server could not listen on {host}:{port} (see the log above)")


def serve(run: Path, host: str = "127.0.0.1", port: int = 8123, db: str | None = None,
          api_keys: Iterable[str] = (), graphs: Iterable[str] = GRAPHS) -> None:
    keys = {k for k in api_keys if k}
    if not keys and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without API keys: anyone who can reach it can use every thread", host)
    asyncio.run(_serve(Path(run), host, port, db, keys, graphs))
