"""Threads outlive the server: the same tests on SQLite and on a real PostgreSQL server. A server killed
with -9 and started again has every thread exactly as it was and continues it as if nothing happened;
several server processes over one PostgreSQL database serve the same threads consistently."""
import asyncio
import os
import threading

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client

from agent.assistant import Assistant, memory_checkpointer

from servers import PostgresServer, ServerProcess, new_database

CONVERSATIONS = {  # assistant -> (category, the user's turns before the kill, the turn after the restart)
    "crs": ("美妆行业", ["有没有适合干皮的面霜", "预算三百以内"], "好的，就这款吧"),
    "llm": ("大家电行业", ["想买个滚筒洗衣机"], "要十公斤的"),
}
CUT_SHORT = "预算五千以内"  # an llm-thread turn the kill cuts off in the middle


@pytest.fixture(scope="module")
def pg_url():
    """A real PostgreSQL server for this module (or the one PRESALES_TEST_PG_URL names)."""
    if os.environ.get("PRESALES_TEST_PG_URL"):
        yield os.environ["PRESALES_TEST_PG_URL"]
        return
    server = PostgresServer()
    try:
        url = server.start()
    except Exception:
        server.stop()
        raise
    yield url
    server.stop()


@pytest.fixture(scope="module")
def reference(agent_run):
    return {kind: Assistant.from_run(agent_run, kind, checkpointer=memory_checkpointer()) for kind in CONVERSATIONS}


def _db(backend, request, tmp_path, name):
    if backend == "sqlite":
        return str(tmp_path / f"{name}.sqlite")
    return new_database(request.getfixturevalue("pg_url"), name)


def _message(text):
    return {"messages": [{"role": "user", "content": text}]}


def _snapshot(client, thread_id):
    """Everything the client can read about a thread."""
    thread = client.threads.get(thread_id)
    return {"thread": {k: thread[k] for k in ("thread_id", "metadata", "status", "values", "created_at")},
            "state": client.threads.get_state(thread_id),
            "history": client.threads.get_history(thread_id, limit=1000)}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_and_restart_continues_every_thread(backend, agent_run, reference, request, tmp_path):
    db = _db(backend, request, tmp_path, f"restart_{backend}")
    server = ServerProcess(agent_run, db, tmp_path / "server.log").start()
    try:
        client = get_sync_client(url=server.url, api_key=None)
        threads = {}
        for kind, (category, before, _after) in CONVERSATIONS.items():
            threads[kind] = client.threads.create(metadata={"category": category})["thread_id"]
            for text in before:
                client.runs.wait(threads[kind], kind, input=_message(text))
        seen = _snapshot(client, threads["crs"])
        # the llm thread is killed in the middle of a turn: after its second node update
        updates = 0
        for part in client.runs.stream(threads["llm"], "llm", input=_message(CUT_SHORT), stream_mode="updates"):
            updates += part.event == "updates"
            if updates == 2:
                server.kill()  # -9: no shutdown code runs
                break
    finally:
        server.kill()
    assert server.proc.returncode == -9

    again = ServerProcess(agent_run, db, tmp_path / "server2.log").start()
    try:
        client = get_sync_client(url=again.url, api_key=None)
        assert {t["thread_id"] for t in client.threads.search(limit=100)} == set(threads.values())
        assert _snapshot(client, threads["crs"]) == seen, "an idle thread changed across the restart"
        cut = client.threads.get_state(threads["llm"])
        assert [t["text"] for t in cut["values"]["transcript"] if t["speaker"] == "用户"][-1] == CUT_SHORT
        # ... and each thread goes on exactly as one that was never interrupted (the turn cut short is
        # finished first: enqueue waits out the lease the killed process still held)
        for kind, (category, before, after) in CONVERSATIONS.items():
            turns = before + ([CUT_SHORT] if kind == "llm" else []) + [after]
            expected = [reference[kind].send(text, thread_id=f"ref-{backend}-{kind}", category=category)
                        for text in turns]
            values = client.runs.wait(threads[kind], kind, input=_message(after), multitask_strategy="enqueue")
            # what to look at when it differs: where the kill left the turn, and the servers' own accounts
            why = (f"{kind} thread: killed with next={cut['next']}; server log before the kill:\n"
                   f"{server.log_tail(1500)}\nafter the restart:\n{again.log_tail(1500)}\ntranscripts, expected and got:\n"
                   f"{[t['text'] for t in expected[-1].state['transcript']]}\n{[t['text'] for t in values['transcript']]}")
            assert values["reply"] == expected[-1].reply, why
            assert values["transcript"] == expected[-1].state["transcript"]
            assert values["needs"] == expected[-1].state["needs"]
        assert client.threads.get_state(threads["llm"])["next"] == []
    finally:
        again.stop()


def test_several_processes_over_one_postgres_database(agent_run, pg_url, tmp_path):
    db = new_database(pg_url, "multi_process")
    servers = [ServerProcess(agent_run, db, tmp_path / f"server{i}.log", graphs=("crs",)) for i in range(2)]
    failures = []

    def start(server):
        try:
            server.start()
        except Exception as exc:  # noqa: BLE001 - reported below, in the test's own thread
            failures.append(exc)

    started = [threading.Thread(target=start, args=(s,)) for s in servers]  # both set up the empty database at once
    for t in started:
        t.start()
    for t in started:
        t.join()
    try:
        assert not failures, failures
        one, two = (get_sync_client(url=s.url, api_key=None) for s in servers)
        tid = one.threads.create(metadata={"category": "手机行业"})["thread_id"]
        two.runs.wait(tid, "crs", input=_message("推荐一款拍照好的手机"))
        one.runs.wait(tid, "crs", input=_message("预算三千左右"))
        assert _snapshot(one, tid) == _snapshot(two, tid)
        users = [t["text"] for t in two.threads.get_state(tid)["values"]["transcript"] if t["speaker"] == "用户"]
        assert users == ["推荐一款拍照好的手机", "预算三千左右"]

        async def busy_across_processes():
            a, b = (get_client(url=s.url, api_key=None) for s in servers)
            stream = a.runs.stream(tid, "crs", input=_message("要大屏的"), stream_mode="updates")
            assert (await stream.__anext__()).event == "metadata"  # process one holds the thread now
            with pytest.raises(httpx.HTTPStatusError) as caught:
                await b.runs.wait(tid, "crs", input=_message("要长续航的"))
            queued = asyncio.create_task(b.runs.wait(tid, "crs", input=_message("要长续航的"),
                                                     multitask_strategy="enqueue"))
            [part async for part in stream]
            await queued
            # many threads across both processes at once
            made = [await (a if i % 2 else b).threads.create(metadata={"category": "鞋类行业"}) for i in range(4)]
            results = await asyncio.gather(*[(b if i % 2 else a).runs.wait(t["thread_id"], "crs",
                                                                          input=_message(f"找双{i}号跑步鞋"))
                                             for i, t in enumerate(made)])
            return caught.value.response.status_code, made, results

        status, made, results = asyncio.run(busy_across_processes())
        assert status == 409
        users = [t["text"] for t in one.threads.get_state(tid)["values"]["transcript"] if t["speaker"] == "用户"]
        assert users == ["推荐一款拍照好的手机", "预算三千左右", "要大屏的", "要长续航的"]
        for i, values in enumerate(results):
            assert [t["text"] for t in values["transcript"] if t["speaker"] == "用户"] == [f"找双{i}号跑步鞋"]
        assert _snapshot(one, made[0]["thread_id"]) == _snapshot(two, made[0]["thread_id"])
    finally:
        for s in servers:
            s.stop()


def test_serve_refuses_what_it_cannot_use_in_one_line(agent_run, tmp_path):
    import subprocess
    import sys

    from servers import ROOT

    def serve(*args):
        proc = subprocess.run([sys.executable, "-m", "presales.cli", "serve", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        return proc.returncode, proc.stderr.strip().splitlines()[-1], proc.stderr

    code, last, err = serve("--run", str(tmp_path / "none"))
    assert code == 2 and last.startswith("error: no trained run at") and "Traceback" not in err
    code, last, err = serve("--run", str(agent_run), "--db", "mysql://host/db")
    assert code == 2 and "must be a SQLite file path or a postgresql:// URL" in last and "Traceback" not in err
