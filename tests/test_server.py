"""The HTTP agent endpoint over real sockets: `presales serve` on a loopback port (tiny trained models,
SQLite threads, API keys), driven by the official langgraph-sdk client (sync and async), raw HTTP for
the errors, schemathesis against its OpenAPI schema, and headless Chromium on its chat page."""
import asyncio
import json
import os
import shutil

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from agent.assistant import Assistant, memory_checkpointer
from uneed.corpus import load_corpus

from servers import ServerProcess

KEY_A, KEY_B = "key-alpha-123", "key-bravo-456"
ACCEPT = "好的，就这款吧"


@pytest.fixture(scope="module")
def server(agent_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("server")
    proc = ServerProcess(agent_run, str(base / "threads.sqlite"), base / "server.log", keys=(KEY_A, KEY_B)).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def script(tiny_corpus_dir):
    """The user side of a real test dialogue (its first user turns) and an acceptance."""
    corpus = load_corpus(tiny_corpus_dir)
    d = next(d for d in corpus.split("test") if d.domain == "美妆行业")
    return d.domain, [t.send_content for t in d.dialogue if t.is_user][:2] + [ACCEPT]


@pytest.fixture(scope="module")
def reference(agent_run):
    """What `presales chat` runs for the same messages: the same graphs, in process, default policy."""
    return {kind: Assistant.from_run(agent_run, kind, checkpointer=memory_checkpointer()) for kind in ("crs", "llm")}


def _message(text):
    return {"messages": [{"role": "user", "content": text}]}


def _turn_events(updates):
    """The events of one turn as the stream delivered them: every node update's events, in order."""
    return [ev for chunk in updates for update in chunk.values() for ev in (update or {}).get("events", [])]


def _chat_turns(assistant, thread, domain, messages):
    return [assistant.send(text, thread_id=thread, category=domain) for text in messages]


# ----------------------------------------------------------------------------- the SDK, both graphs
def test_sync_client_conversation_crs_equals_chat(server, script, reference):
    domain, messages = script
    client = get_sync_client(url=server.url, api_key=KEY_A)
    thread = client.threads.create(metadata={"category": domain, "user_id": "sdk-user"})
    assert thread["status"] == "idle" and thread["metadata"]["category"] == domain
    expected = _chat_turns(reference["crs"], "ref-crs", domain, messages)
    for text, want in zip(messages, expected):
        updates, values, meta = [], [], []
        for part in client.runs.stream(thread["thread_id"], "crs", input=_message(text),
                                       stream_mode=["updates", "values"]):
            {"updates": updates, "values": values, "metadata": meta}[part.event].append(part.data)
        assert meta and meta[0]["run_id"]
        # every node of the turn arrives as its own update, and the nodes are graph 2's
        nodes = [node for chunk in updates for node in chunk]
        assert nodes[0] == "receive" and nodes[-1] == "respond" and "understand" in nodes
        assert _turn_events(updates) == json.loads(json.dumps(want.events, ensure_ascii=False, default=str))
        assert values[-1]["reply"] == want.reply and values[-1]["reply"].strip()
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"]["needs"] == expected[-1].state["needs"]
    assert state["values"]["recommended"] == expected[-1].state["recommended"]
    assert [t["text"] for t in state["values"]["transcript"] if t["speaker"] == "用户"] == messages
    assert state["next"] == [] and state["checkpoint"]["checkpoint_id"]
    history = client.threads.get_history(thread["thread_id"], limit=100)
    assert history[0]["checkpoint"] == state["checkpoint"] and len(history) >= 5 * len(messages)
    # an earlier checkpoint can be read back: the one before the last turn has one user message fewer
    before = next(h for h in history if len(h["values"].get("transcript", [])) == len(state["values"]["transcript"]) - 2)
    old = client.threads.get_state(thread["thread_id"], checkpoint_id=before["checkpoint"]["checkpoint_id"])
    assert old["values"]["transcript"] == state["values"]["transcript"][:-2]


def test_async_client_conversation_llm_equals_chat(server, script, reference):
    domain, messages = script
    expected = _chat_turns(reference["llm"], "ref-llm", domain, messages)

    async def converse():
        client = get_client(url=server.url, api_key=KEY_A)
        thread = await client.threads.create(metadata={"category": domain})
        seen = []
        for i, text in enumerate(messages):
            if i == 1:  # one turn through runs.wait: the final values, its events at the end of the list
                before = len((await client.threads.get_state(thread["thread_id"]))["values"]["events"])
                values = await client.runs.wait(thread["thread_id"], "llm", input=_message(text))
                seen.append((values["events"][before:], values["reply"]))
                continue
            updates, reply = [], None
            async for part in client.runs.stream(thread["thread_id"], "llm", input=_message(text),
                                                 stream_mode="updates"):
                if part.event == "updates":
                    updates.append(part.data)
                    for update in part.data.values():
                        reply = (update or {}).get("reply", reply)
            seen.append((_turn_events(updates), reply))
        return thread, seen, await client.threads.get(thread["thread_id"])

    thread, seen, after = asyncio.run(converse())
    for (events, reply), want in zip(seen, expected):
        assert reply == want.reply
        assert events == json.loads(json.dumps(want.events, ensure_ascii=False, default=str))
    assert any(ev.get("node") == "controller" for events, _ in seen for ev in events)
    assert after["metadata"]["graph_id"] == "llm" and after["status"] == "idle"
    assert after["values"]["recommended"] == expected[-1].state["recommended"]


def test_assistants_and_graph(server):
    client = get_sync_client(url=server.url, api_key=KEY_A)
    assert {a["assistant_id"] for a in client.assistants.search()} == {"llm", "crs"}
    assert client.assistants.get("crs")["graph_id"] == "crs"
    nodes = {n["id"] for n in client.assistants.get_graph("llm")["nodes"]}
    assert {"controller", "tools", "absorb", "fallback"} <= nodes
    with pytest.raises(NotFoundError, match="unknown assistant"):
        client.assistants.get("gpt")


# ---------------------------------------------------------------------------------------- threads
def test_threads_create_search_patch_delete(server):
    a = get_sync_client(url=server.url, api_key=KEY_A)
    made = a.threads.create(thread_id="crud-1", metadata={"category": "手机行业", "tag": "x"})
    assert made["thread_id"] == "crud-1"
    assert a.threads.create(thread_id="crud-1", if_exists="do_nothing")["metadata"]["tag"] == "x"
    with pytest.raises(ConflictError, match="already exists"):
        a.threads.create(thread_id="crud-1")
    a.threads.create(thread_id="crud-2", metadata={"category": "鞋类行业", "tag": "x"})
    found = {t["thread_id"] for t in a.threads.search(metadata={"tag": "x"})}
    assert found == {"crud-1", "crud-2"}
    assert [t["thread_id"] for t in a.threads.search(metadata={"category": "鞋类行业", "tag": "x"})] == ["crud-2"]
    assert a.threads.update("crud-2", metadata={"note": "vip"})["metadata"] == {"category": "鞋类行业", "tag": "x",
                                                                               "note": "vip"}
    a.threads.delete("crud-1")
    with pytest.raises(NotFoundError):
        a.threads.get("crud-1")
    assert [t["thread_id"] for t in a.threads.search(metadata={"tag": "x"})] == ["crud-2"]


def test_a_thread_belongs_to_its_key(server):
    a = get_sync_client(url=server.url, api_key=KEY_A)
    b = get_sync_client(url=server.url, api_key=KEY_B)
    thread = a.threads.create(metadata={"category": "服装行业", "owner": "a"})
    a.runs.wait(thread["thread_id"], "crs", input=_message("想买件羽绒服"))
    tid = thread["thread_id"]
    for call in (lambda: b.threads.get(tid), lambda: b.threads.get_state(tid), lambda: b.threads.get_history(tid),
                 lambda: b.runs.wait(tid, "crs", input=_message("你好")), lambda: b.threads.delete(tid),
                 lambda: b.threads.update(tid, metadata={"x": 1})):
        # runs.wait raises httpx's own status error, the other calls the SDK's NotFoundError
        with pytest.raises(httpx.HTTPStatusError) as caught:
            call()
        assert caught.value.response.status_code == 404
    assert all(t["metadata"].get("owner") != "a" for t in b.threads.search(limit=1000))
    assert a.threads.get(tid)["values"]["transcript"][0]["text"] == "想买件羽绒服"  # untouched by b


def test_errors_are_json_with_a_message(server):
    url, key = server.url, {"x-api-key": KEY_A}
    with httpx.Client(base_url=url, timeout=60) as http:
        def check(response, status, fragment):
            assert response.status_code == status, response.text
            body = response.json()
            assert fragment in body["message"] and body["status"] == status
            assert "Traceback" not in response.text

        assert http.get("/ok").json() == {"ok": True} and http.get("/health").status_code == 200
        check(http.post("/threads", json={}), 401, "API key is required")
        check(http.post("/threads", json={}, headers={"x-api-key": "wrong"}), 401, "invalid API key")
        check(http.post("/threads", content=b"{not json", headers={**key, "content-type": "application/json"}),
              422, "invalid request")
        check(http.post("/threads", json={"metadata": {"category": "宠物行业"}}, headers=key), 422, "category")
        tid = http.post("/threads", json={"metadata": {"category": "美妆行业"}}, headers=key).json()["thread_id"]
        run = f"/threads/{tid}/runs/wait"
        check(http.post(run, json={"assistant_id": "nope", "input": _message("hi")}, headers=key), 404,
              "unknown assistant")
        check(http.post(run, json={"assistant_id": "crs", "input": _message("面" * 2001)}, headers=key), 413,
              "2001 characters")
        check(http.post(run, json={"assistant_id": "crs", "input": _message("  ")}, headers=key), 422, "empty")
        check(http.post(run, json={"assistant_id": "crs"}, headers=key), 422, "input")
        check(http.post(run, json={"assistant_id": "crs", "input": {"messages": "hi"}}, headers=key), 422, "messages")
        check(http.post(f"/threads/{tid}/runs/stream", json={"assistant_id": "crs", "input": _message("hi"),
                                                             "stream_mode": "messages"}, headers=key),
              422, "stream_mode")
        check(http.post("/threads/missing/runs/wait", json={"assistant_id": "crs", "input": _message("hi")},
                        headers=key), 404, "not found")
        check(http.get("/no/such/route", headers=key), 404, "Not Found")
        check(http.post("/threads", content=b"x" * 70000, headers={**key, "content-type": "application/json"}),
              413, "over")
        # the 2,000-character message itself is taken
        ok = http.post(run, json={"assistant_id": "crs", "input": _message("面" * 2000)}, headers=key)
        assert ok.status_code == 200 and ok.json()["reply"]
        check(http.post(run, json={"assistant_id": "llm", "input": _message("hi")}, headers=key), 409,
              "runs on assistant 'crs'")
        # a run may create its thread
        made = http.post("/threads/made-by-run/runs/wait", headers=key, json={
            "assistant_id": "crs", "input": _message("推荐个手机"), "if_not_exists": "create"})
        assert made.status_code == 200 and made.json()["transcript"][0]["text"] == "推荐个手机"


# ------------------------------------------------------------------------------------ concurrency
def test_many_threads_at_once_do_not_mix(server, reference):
    messages = ["有没有补水的面膜", "想买个滚筒洗衣机", "推荐一款拍照好的手机", "找双跑步鞋", "有没有显瘦的连衣裙",
                "洗面奶哪款好"]
    categories = ["美妆行业", "大家电行业", "手机行业", "鞋类行业", "服装行业", "美妆行业"]
    expected = [reference["crs"].send(text, thread_id=f"mix-{i}", category=cat).reply
                for i, (text, cat) in enumerate(zip(messages, categories))]

    async def all_at_once():
        client = get_client(url=server.url, api_key=KEY_A)
        threads = [await client.threads.create(metadata={"category": c}) for c in categories]
        results = await asyncio.gather(*[client.runs.wait(t["thread_id"], "crs", input=_message(text))
                                         for t, text in zip(threads, messages)])
        return threads, results

    threads, results = asyncio.run(all_at_once())
    for thread, result, text, category, reply in zip(threads, results, messages, categories, expected):
        assert result["category"] == category
        assert [t["text"] for t in result["transcript"] if t["speaker"] == "用户"] == [text]
        assert result["reply"] == reply


def test_a_busy_thread_rejects_or_queues_a_second_run(server):
    async def scenario():
        client = get_client(url=server.url, api_key=KEY_A)
        thread = await client.threads.create(metadata={"category": "美妆行业"})
        tid = thread["thread_id"]
        stream = client.runs.stream(tid, "llm", input=_message("有没有适合干皮的面霜"), stream_mode="updates")
        first = await stream.__anext__()  # the run has claimed the thread once its stream has begun
        assert first.event == "metadata"
        busy = (await client.threads.get(tid))["status"]
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.runs.wait(tid, "llm", input=_message("预算三百以内"))
        assert caught.value.response.status_code == 409 and "busy" in caught.value.response.text
        queued = [asyncio.create_task(client.runs.wait(tid, "llm", input=_message(text), multitask_strategy="enqueue"))
                  for text in ("预算三百以内", "要保湿的")]
        rest = [part async for part in stream]
        await asyncio.gather(*queued)
        state = await client.threads.get_state(tid)
        return busy, rest, state, await client.threads.get(tid)

    busy, rest, state, after = asyncio.run(scenario())
    assert busy == "busy" and after["status"] == "idle"
    assert any(p.event == "updates" for p in rest)
    users = [t["text"] for t in state["values"]["transcript"] if t["speaker"] == "用户"]
    assert users[0] == "有没有适合干皮的面霜" and sorted(users[1:]) == sorted(["预算三百以内", "要保湿的"])
    assert len([t for t in state["values"]["transcript"] if t["speaker"] == "客服"]) == 3  # every turn answered


# ------------------------------------------------------------------------------- schema and page
def test_openapi_page_and_chat_page(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        schema = http.get("/openapi.json").json()
        for path in ("/threads", "/threads/{thread_id}/runs/wait", "/threads/{thread_id}/runs/stream",
                     "/threads/{thread_id}/state", "/threads/{thread_id}/history", "/threads/search", "/ok"):
            assert path in schema["paths"], path
        assert "RunCreate" in schema["components"]["schemas"]
        assert http.get("/docs").status_code == 200
        page = http.get("/")
        assert page.status_code == 200 and "runs/stream" in page.text


def test_fuzz_every_route_against_the_openapi_schema(server):
    """Property-based requests from the schema (schemathesis): whatever they carry, never a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures = []
    def fuzz(operation, mode):
        label = f"{operation.label} ({mode.value})"

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=12, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(base_url=server.url, headers={"x-api-key": KEY_A}, timeout=60)
            if response.status_code >= 500 or "Traceback" in response.text:
                failures.append(f"{label}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400 and "message" not in response.json():
                failures.append(f"{label}: {response.status_code} without a message: {response.text[:200]}")

        try:
            check()
        except Unsatisfiable:  # an operation without parameters has no invalid request to make
            assert mode == GenerationMode.NEGATIVE, label

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)
    assert not failures, failures


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser") or os.environ.get("CHROMIUM")
    if not path:
        pytest.fail("Chromium is not installed: `apt-get install chromium` (.ci/run does)")
    return path


def test_chat_page_in_headless_chromium(server, chromium, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(server.url + "/")
            page.fill("#apikey", KEY_A)
            page.dispatch_event("#apikey", "change")
            page.select_option("#assistant", "crs")
            page.fill("#text", "有没有适合干皮的面霜")
            page.click("#go")
            expect(page.locator("#messages .msg.assistant")).to_have_count(1, timeout=60_000)
            assert page.locator("#messages .msg.assistant").inner_text().strip()
            steps = page.locator("#steps .step")
            assert steps.count() >= 4
            assert "crs.understand" in page.locator("#steps").inner_text()
            page.fill("#text", "预算三百以内")
            page.click("#go")
            expect(page.locator("#messages .msg.assistant")).to_have_count(2, timeout=60_000)
            assert page.locator("#messages .msg.error").count() == 0
            thread_id = page.locator("#thread").inner_text().removeprefix("thread ").strip()
            shot = os.environ.get("PRESALES_PAGE_SCREENSHOT")
            page.screenshot(path=shot or str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    # what the page showed is the thread's state on the server
    state = get_sync_client(url=server.url, api_key=KEY_A).threads.get_state(thread_id)
    assert [t["text"] for t in state["values"]["transcript"] if t["speaker"] == "用户"] == ["有没有适合干皮的面霜",
                                                                                          "预算三百以内"]
