"""Where threads live: a LangGraph checkpointer (the graph state of every thread, with its history) and
one small table of thread records beside it in the same database (owner, metadata, graph, run lease).

    SQLite (default)  AsyncSqliteSaver + aiosqlite, one file
    PostgreSQL        AsyncPostgresSaver + a psycopg connection pool (--db postgresql://...)

A run holds its thread through a *lease* in the table: claiming is one atomic UPDATE that succeeds only
when the thread is idle or its lease ran out, so several server processes over one database never run
the same thread twice at once. A running turn renews its lease (RunLease); a process killed mid-run
leaves a lease that simply expires, so no thread stays busy for ever.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from uneed.errors import PresalesError

log = logging.getLogger(__name__)
LEASE_S = 30.0  # a run's hold on its thread; renewed every LEASE_S / 3 while the run lasts

SCHEMA = """
CREATE TABLE IF NOT EXISTS presales_threads (
    thread_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    graph_id TEXT,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    run_id TEXT,
    lease_until DOUBLE PRECISION NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)"""
COLUMNS = "thread_id, owner, graph_id, metadata, status, run_id, lease_until, created_at, updated_at"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class ThreadRecord:
    thread_id: str
    owner: str
    graph_id: str | None
    metadata: dict[str, Any]
    status: str  # idle | busy | error (the last run failed)
    run_id: str | None
    lease_until: float
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Any) -> "ThreadRecord":
        values = list(row.values()) if isinstance(row, dict) else list(row)
        rec = cls(*values)
        rec.metadata = json.loads(rec.metadata) if isinstance(rec.metadata, str) else dict(rec.metadata or {})
        return rec

    @property
    def busy(self) -> bool:
        return self.status == "busy" and self.lease_until > time.time()

    @property
    def public_status(self) -> str:
        if self.busy:
            return "busy"
        return "error" if self.status == "error" else "idle"


class ThreadTable:
    """The thread records, in SQLite or PostgreSQL (the same SQL; only the placeholders differ)."""

    def __init__(self, execute, placeholder: str):
        self._execute = execute  # async (sql, params, fetch) -> rows (fetch) or affected row count
        self._ph = placeholder

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._ph)

    async def setup(self) -> None:
        await self._execute(SCHEMA, (), False)

    async def create(self, thread_id: str, owner: str, metadata: dict, graph_id: str | None) -> bool:
        """Insert a thread; False when the id is taken."""
        stamp = now_iso()
        count = await self._execute(self._sql(
            f"INSERT INTO presales_threads ({COLUMNS}) VALUES (?, ?, ?, ?, 'idle', NULL, 0, ?, ?) "
            "ON CONFLICT (thread_id) DO NOTHING"),
            (thread_id, owner, graph_id, json.dumps(metadata, ensure_ascii=False), stamp, stamp), False)
        return count == 1

    async def get(self, thread_id: str) -> ThreadRecord | None:
        rows = await self._execute(self._sql(f"SELECT {COLUMNS} FROM presales_threads WHERE thread_id = ?"),
                                   (thread_id,), True)
        return ThreadRecord.from_row(rows[0]) if rows else None

    async def search(self, owner: str) -> list[ThreadRecord]:
        """The owner's threads, newest first (filtering and paging are done by the caller)."""
        rows = await self._execute(self._sql(
            f"SELECT {COLUMNS} FROM presales_threads WHERE owner = ? ORDER BY created_at DESC, thread_id"),
            (owner,), True)
        return [ThreadRecord.from_row(r) for r in rows]

    async def delete(self, thread_id: str) -> None:
        await self._execute(self._sql("DELETE FROM presales_threads WHERE thread_id = ?"), (thread_id,), False)

    async def update_metadata(self, thread_id: str, metadata: dict) -> None:
        await self._execute(self._sql("UPDATE presales_threads SET metadata = ?, updated_at = ? WHERE thread_id = ?"),
                            (json.dumps(metadata, ensure_ascii=False), now_iso(), thread_id), False)

    async def bind_graph(self, thread_id: str, graph_id: str) -> bool:
        """Tie a thread to the graph of its first run; False when it is tied to another one."""
        await self._execute(self._sql(
            "UPDATE presales_threads SET graph_id = ? WHERE thread_id = ? AND graph_id IS NULL"),
            (graph_id, thread_id), False)
        rec = await self.get(thread_id)
        return rec is not None and rec.graph_id == graph_id

    async def claim(self, thread_id: str, run_id: str) -> bool:
        """Take the thread for a run: atomic, succeeds only when nobody holds a live lease on it."""
        now = time.time()
        count = await self._execute(self._sql(
            "UPDATE presales_threads SET status = 'busy', run_id = ?, lease_until = ?, updated_at = ? "
            "WHERE thread_id = ? AND (status <> 'busy' OR lease_until < ?)"),
            (run_id, now + LEASE_S, now_iso(), thread_id, now), False)
        return count == 1

    async def renew(self, thread_id: str, run_id: str) -> None:
        await self._execute(self._sql(
            "UPDATE presales_threads SET lease_until = ? WHERE thread_id = ? AND run_id = ? AND status = 'busy'"),
            (time.time() + LEASE_S, thread_id, run_id), False)

    async def release(self, thread_id: str, run_id: str, failed: bool = False) -> None:
        await self._execute(self._sql(
            "UPDATE presales_threads SET status = ?, lease_until = 0, updated_at = ? WHERE thread_id = ? AND run_id = ?"),
            ("error" if failed else "idle", now_iso(), thread_id, run_id), False)


@dataclass
class Storage:
    checkpointer: Any
    threads: ThreadTable
    url: str
    _stack: contextlib.AsyncExitStack = field(repr=False, default_factory=contextlib.AsyncExitStack)

    async def delete_thread(self, thread_id: str) -> None:
        await self.checkpointer.adelete_thread(thread_id)
        await self.threads.delete(thread_id)

    async def close(self) -> None:
        await self._stack.aclose()


async def open_storage(db: str) -> Storage:
    """Open (and set up) the database: a SQLite file path, or a postgresql:// URL."""
    if db.startswith(("postgresql://", "postgres://")):
        return await _open_postgres(db)
    if "://" in db:
        raise PresalesError(f"--db must be a SQLite file path or a postgresql:// URL, got {db!r}")
    return await _open_sqlite(Path(db))


async def _open_sqlite(path: Path) -> Storage:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    stack = contextlib.AsyncExitStack()
    try:
        saver_conn = await aiosqlite.connect(str(path), timeout=30)
        stack.push_async_callback(saver_conn.close)
        table_conn = await aiosqlite.connect(str(path), timeout=30)
        stack.push_async_callback(table_conn.close)
        for conn in (saver_conn, table_conn):  # WAL: readers never wait for the writer
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA busy_timeout=30000")
    except Exception as exc:
        await stack.aclose()
        raise PresalesError(f"cannot open the SQLite database {path}: {exc}") from exc
    lock = asyncio.Lock()  # one statement at a time on the table's connection

    async def execute(sql: str, params: tuple, fetch: bool):
        async with lock:
            cursor = await table_conn.execute(sql, params)
            rows = await cursor.fetchall() if fetch else None
            await table_conn.commit()
            return rows if fetch else cursor.rowcount

    saver = AsyncSqliteSaver(saver_conn)
    await saver.setup()
    table = ThreadTable(execute, "?")
    await table.setup()
    return Storage(saver, table, str(path), stack)


async def _open_postgres(url: str) -> Storage:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    import psycopg

    try:  # one plain connection first: its error says why (refused, no such database, authentication)
        probe = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
        await probe.close()
    except psycopg.Error as exc:
        raise PresalesError(f"cannot connect to PostgreSQL at {_redact(url)}: {str(exc).strip().splitlines()[0]}") from exc
    stack = contextlib.AsyncExitStack()
    pool = AsyncConnectionPool(url, min_size=1, max_size=10, open=False,
                               kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:
        await pool.close()
        raise PresalesError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc
    stack.push_async_callback(pool.close)

    async def execute(sql: str, params: tuple, fetch: bool):
        async with pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall() if fetch else cursor.rowcount

    saver = AsyncPostgresSaver(pool)
    table = ThreadTable(execute, "%s")
    # Two processes starting at once over a fresh database would race on CREATE TABLE: serialize the setup.
    # The lock is polled, never waited for inside a statement: the saver's migrations build indexes
    # CONCURRENTLY, which waits for every open transaction, and a blocked pg_advisory_lock() is one; the
    # two processes would then wait on each other forever (a cycle through the client PostgreSQL cannot see).
    async with pool.connection() as conn:
        while not (await (await conn.execute("SELECT pg_try_advisory_lock(7215001) AS got")).fetchone())["got"]:
            await asyncio.sleep(0.2)
        try:
            await saver.setup()
            await table.setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(7215001)")
    return Storage(saver, table, _redact(url), stack)


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, userinfo = head.partition("//")
    return f"{scheme}//{userinfo.split(':', 1)[0]}:***@{tail}"


class RunLease:
    """Holds a claimed thread for one run: renews the lease in the background, releases it at the end."""

    def __init__(self, table: ThreadTable, thread_id: str, run_id: str):
        self.table, self.thread_id, self.run_id = table, thread_id, run_id
        self._task: asyncio.Task | None = None

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            try:
                await self.table.renew(self.thread_id, self.run_id)
            except Exception as exc:  # noqa: BLE001 - a missed renewal only shortens the lease
                log.warning("could not renew the lease of thread %s: %s", self.thread_id, exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew())

    async def release(self, failed: bool = False) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.table.release(self.thread_id, self.run_id, failed)


async def claim_thread(table: ThreadTable, thread_id: str, run_id: str, wait: bool, timeout: float = 300.0,
                       poll: float = 0.05) -> bool:
    """Claim now (wait=False) or keep trying until the thread is free (the 'enqueue' strategy)."""
    deadline = time.monotonic() + timeout
    while True:
        if await table.claim(thread_id, run_id):
            return True
        if not wait or time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll)
        poll = min(poll * 1.5, 0.5)

