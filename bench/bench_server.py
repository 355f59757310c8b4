"""Load on the HTTP agent endpoint over loopback: N concurrent clients (the official langgraph-sdk
async client) hold multi-turn conversations for S seconds against `presales serve`; requests/s, turn
latency p50/p99 and errors, against the floor measured in the same run: the model's own turn latency
in process, one turn at a time (the same graph, no HTTP, no database).

    python bench/bench_server.py --run runs/default --graph crs --clients 32 --seconds 60

Each client replays the user side of test dialogues (up to --turns turns per conversation, a new
thread for each), optionally waiting --think seconds between its messages. The server runs as its own
process with a fresh SQLite file (or --db), serving only the benchmarked graph; the run directory is
only read.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def conversations(run: str, turns: int) -> list[tuple[str, list[str]]]:
    """(category, user messages) of the run's test dialogues (train ones when there are few)."""
    from agent.assistant import RunPaths
    from uneed.corpus import load_corpus

    corpus = load_corpus(RunPaths.from_run(run).data, skip_invalid=True)
    out = []
    for split in ("test", "valid", "train"):
        for d in corpus.split(split):
            users = [t.send_content for t in d.dialogue if t.is_user and t.send_content.strip()][:turns]
            if users:
                out.append((d.domain, users))
    return out


def floor_latency(run: str, graph: str, convs: list, turns_wanted: int) -> list[float]:
    """The model's own turn latency: the graph in process, in-memory checkpointer, one turn at a time."""
    from agent.assistant import Assistant, memory_checkpointer

    assistant = Assistant.from_run(run, graph, checkpointer=memory_checkpointer())
    times, first = [], True
    for i, (category, users) in enumerate(convs):
        for text in users:
            t0 = time.perf_counter()
            assistant.send(text, thread_id=f"floor-{i}", category=category)
            if first:  # warm-up
                first = False
                continue
            times.append(time.perf_counter() - t0)
            if len(times) >= turns_wanted:
                return times
    return times


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: str, graph: str, db: str, log_path: Path, threads: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "presales.cli", "serve", "--run", run, "--graph", graph,
                             "--db", db, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(url + "/ok", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"error: the server did not start within 300 s; see {log_path}")


async def load(url: str, graph: str, convs: list, clients: int, seconds: float, think: float) -> dict:
    from langgraph_sdk import get_client

    latencies, errors, requests, samples, empty = [], [], 0, [], 0
    deadline = time.monotonic() + seconds

    async def client_loop(k: int) -> None:
        nonlocal requests, empty
        client = get_client(url=url, api_key=None, timeout=300)
        n = k
        while time.monotonic() < deadline:
            category, users = convs[n % len(convs)]
            n += clients
            try:
                thread = await client.threads.create(metadata={"category": category})
                requests += 1
            except Exception as exc:  # noqa: BLE001 - counted, reported
                errors.append(f"create: {type(exc).__name__}: {exc}"[:200])
                continue
            for text in users:
                if time.monotonic() >= deadline:
                    return
                t0 = time.perf_counter()
                try:
                    values = await client.runs.wait(thread["thread_id"], graph,
                                                    input={"messages": [{"role": "user", "content": text}]})
                    requests += 1
                    empty += not str(values.get("reply", "")).strip()  # the model's doing, not the server's
                    latencies.append(time.perf_counter() - t0)
                    if len(samples) < 3:
                        samples.append((text, values.get("reply", "")))
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"run: {type(exc).__name__}: {exc}"[:200])
                if think:
                    await asyncio.sleep(think)

    started = time.perf_counter()
    await asyncio.gather(*[client_loop(k) for k in range(clients)])
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "requests": requests, "elapsed": elapsed, "samples": samples,
            "empty_replies": empty}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/default", help="agent run directory (read only)")
    ap.add_argument("--graph", default="crs", choices=["crs", "llm"])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--turns", type=int, default=4, help="user turns per conversation")
    ap.add_argument("--think", type=float, default=0.0, help="seconds a client waits between its messages")
    ap.add_argument("--floor-turns", type=int, default=20, help="turns timed in process for the floor")
    ap.add_argument("--db", default=None, help="threads database (default: a fresh SQLite file in a temp dir)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "0")),
                    help="OMP threads of the server process (0: the default)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    convs = conversations(args.run, args.turns)
    if not convs:
        raise SystemExit(f"error: {args.run} has no dialogues to replay")
    print(f"floor: graph {args.graph} in process, {args.floor_turns} turns one at a time ...", flush=True)
    floor = floor_latency(args.run, args.graph, convs, args.floor_turns)

    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    db = args.db or str(tmp / "threads.sqlite")
    proc, url = start_server(args.run, args.graph, db, tmp / "server.log", args.threads)
    try:
        print(f"load: {args.clients} clients for {args.seconds:.0f} s against {url} (log {tmp / 'server.log'}) ...",
              flush=True)
        result = asyncio.run(load(url, args.graph, convs, args.clients, args.seconds, args.think))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()

    lat = result["latencies"]
    figures = {
        "graph": args.graph, "clients": args.clients, "seconds": round(result["elapsed"], 1), "think_s": args.think,
        "turns": len(lat), "requests": result["requests"], "errors": len(result["errors"]),
        "empty_replies": result["empty_replies"],
        "requests_per_s": round(result["requests"] / result["elapsed"], 2),
        "turns_per_s": round(len(lat) / result["elapsed"], 2),
        "turn_p50_s": round(percentile(lat, 0.5), 3), "turn_p99_s": round(percentile(lat, 0.99), 3),
        "floor_turns": len(floor), "floor_p50_s": round(percentile(floor, 0.5), 3),
        "floor_mean_s": round(statistics.fmean(floor), 3) if floor else None,
        "floor_turns_per_s": round(1 / statistics.fmean(floor), 2) if floor else None,
    }
    figures["p50_over_floor"] = round(figures["turn_p50_s"] / figures["floor_p50_s"], 2) if floor else None
    figures["throughput_over_floor"] = (round(figures["turns_per_s"] / figures["floor_turns_per_s"], 2)
                                        if floor else None)
    print()
    print("| graph | clients | s | turns | requests/s | turns/s | p50 | p99 | errors | floor p50 (1 turn at a time) "
          "| p50 / floor | turns/s / floor's |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    f = figures
    print(f"| {f['graph']} | {f['clients']} | {f['seconds']} | {f['turns']} | {f['requests_per_s']} | {f['turns_per_s']} "
          f"| {f['turn_p50_s']} s | {f['turn_p99_s']} s | {f['errors']} | {f['floor_p50_s']} s | {f['p50_over_floor']}x "
          f"| {f['throughput_over_floor']}x |")
    for err in result["errors"][:5]:
        print("error:", err)
    for text, reply in result["samples"]:
        print(f"sample: {text} → {reply[:80]}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
