"""Latency of one user turn for each graph with the trained default models on CPU, and how it splits
between the LLM (generation), the CRS (its model calls and the FAISS index) and the rest (graph,
state, checkpointer, tool plumbing).

    python bench/bench_agent.py --run runs/default --dialogues 6

The user side of test dialogues is replayed turn by turn (each dialogue in its own thread, an
in-memory checkpointer), the first turn of each graph excluded as warm-up.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

from agent.assistant import Assistant, memory_checkpointer


class Stopwatch:
    """Accumulates wall time of calls to the methods of an object, under one label."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)

    def wrap(self, obj, label: str, methods: list[str]) -> None:
        for name in methods:
            original = getattr(obj, name)

            def timed(*args, _original=original, **kwargs):
                t0 = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.totals[label] += time.perf_counter() - t0

            setattr(obj, name, timed)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench(run: str, kind: str, dialogues: int) -> dict:
    from crs.inference import CRS
    from llm.inference import LLM

    watch = Stopwatch()
    # every CRS and LLM instance this graph loads is timed
    crs_load, llm_load = CRS.load, LLM.load

    def crs_timed(*a, **k):
        crs = crs_load(*a, **k)
        watch.wrap(crs, "crs", ["understand", "elicit", "recommend", "respond"])
        return crs

    def llm_timed(*a, **k):
        llm = llm_load(*a, **k)
        watch.wrap(llm, "llm", ["generate", "letter_scores"])
        return llm

    CRS.load, LLM.load = crs_timed, llm_timed
    try:
        assistant = Assistant.from_run(run, kind, checkpointer=memory_checkpointer())
    finally:
        CRS.load, LLM.load = crs_load, llm_load
    rows = []
    for d in assistant.corpus.split("test")[:dialogues]:
        for text in [t.send_content for t in d.dialogue if t.is_user][:4]:
            before = dict(watch.totals)
            t0 = time.perf_counter()
            assistant.send(text, thread_id=f"{kind}-{d.sid}", category=d.domain, user_id=d.userid)
            total = time.perf_counter() - t0
            llm = watch.totals["llm"] - before.get("llm", 0.0)
            crs = watch.totals["crs"] - before.get("crs", 0.0)
            rows.append((total, llm, crs))
    rows = rows[1:]  # warm-up
    totals = [r[0] for r in rows]
    return {"graph": kind, "turns": len(rows), "p50_s": statistics.median(totals), "p99_s": percentile(totals, 0.99),
            "mean_s": statistics.mean(totals), "llm_share": sum(r[1] for r in rows) / sum(totals),
            "crs_share": sum(r[2] for r in rows) / sum(totals),
            "other_share": 1 - (sum(r[1] + r[2] for r in rows) / sum(totals))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/default")
    parser.add_argument("--dialogues", type=int, default=6)
    args = parser.parse_args()
    print("| graph | turns | p50 (s) | p99 (s) | mean (s) | LLM | CRS | graph and rest |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("llm", "crs"):
        r = bench(args.run, kind, args.dialogues)
        print(f"| {r['graph']} | {r['turns']} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | {r['mean_s']:.2f} | "
              f"{r['llm_share']:.0%} | {r['crs_share']:.0%} | {r['other_share']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
