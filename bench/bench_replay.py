"""Replay speed per graph: the same turns several ways in one run, against the baseline of one
process decoding through `model.generate`.

    python bench/bench_replay.py --run runs/default --dialogues 20 [--split test] [--processes 2]

Ways (each adds one thing to the one before):
  generate        one process, one turn at a time, the LLM decoding through `model.generate` (baseline)
  bare            its bare-torch decoding (llm/decoding.py, the default on CPU)
  jump-forward    the parts of a tool call the format fixes fed in, not decoded (llm/forcing.py)
  bf16 prefill    the prompt pass in bfloat16 (where the CPU has bf16 matrix units; else as before)
  processes       the turns shared out among --processes worker processes (`presales replay`'s default
                  on CPU: one per core)
Prints seconds, turns/s and the ratio to the baseline per way, the turns whose prediction differs from
the baseline's per way, and the time the whole split would take the default way.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bench_parser, set_threads  # noqa: E402


def main() -> None:
    ap = bench_parser(__doc__, data=False)
    ap.add_argument("--run", default="runs/default")
    ap.add_argument("--data", default="", help="U-NEED-format directory (default: the run's corpus)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--dialogues", type=int, default=20, help="dialogues replayed (every way)")
    ap.add_argument("--processes", type=int, default=0, help="worker processes of the last way (0: one per core)")
    args = ap.parse_args()
    set_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    from agent.assistant import Assistant, RunPaths, memory_checkpointer
    from eval.replay import GraphSpec, default_processes, replay_graph, replay_points
    from uneed.corpus import load_corpus
    from uneed.device import cpu_bf16_matmul

    processes = args.processes or default_processes()
    corpus = load_corpus(args.data or RunPaths.from_run(args.run).data, skip_invalid=True)
    all_points = replay_points(corpus, args.split)
    points = replay_points(corpus, args.split, args.dialogues)
    print(f"{len(points)} turns from {args.dialogues} {args.split} dialogues ({len(all_points)} in the split)")
    bf16 = cpu_bf16_matmul()
    print("| graph | turns | generate (baseline) | bare | jump-forward | bf16 prefill" + ("" if bf16 else " (no bf16 units)")
          + f" | {processes} processes | turns differing from the baseline | whole split, default way |")
    print("|---|---|---|---|---|---|---|---|---|")
    import llm.inference

    forcing = llm.inference._forcing
    for kind in ("llm", "crs"):
        assistant = Assistant.from_run(args.run, kind, checkpointer=memory_checkpointer())
        replay_graph(assistant, points[:2], corpus, 1, progress=False)  # warm-up
        runs = {}
        llm.inference._forcing = lambda tokenizer, forced: None  # noqa: E731 - jump-forward off
        for llm_ in assistant.llms:
            llm_.bare_decoding = False
        runs["generate"] = replay_graph(assistant, points, corpus, 1, progress=False)
        for llm_ in assistant.llms:
            llm_.bare_decoding = True
        runs["bare"] = replay_graph(assistant, points, corpus, 1, progress=False)
        llm.inference._forcing = forcing
        runs["jump-forward"] = replay_graph(assistant, points, corpus, 1, progress=False)
        for llm_ in assistant.llms:
            llm_.bf16_prefill = bf16
        runs["bf16"] = replay_graph(assistant, points, corpus, 1, progress=False)
        runs["processes"] = replay_graph(GraphSpec(args.run, kind, bf16_prefill=bf16), points, corpus, 1,
                                         progress=False, processes=processes)
        base = runs["generate"]["seconds"]
        baseline = [r["prediction"] for r in runs["generate"]["records"]]
        differing = ", ".join(str(sum(r["prediction"] != b for r, b in zip(run["records"], baseline)))
                              for run in list(runs.values())[1:])

        def cell(r):
            return f"{r['seconds']:.1f} s, {r['turns_per_s']:.2f} turns/s ({base / r['seconds']:.2f}x)"

        print(f"| {kind} | {len(points)} | " + " | ".join(cell(r) for r in runs.values()) +
              f" | {differing} | {len(all_points) / runs['processes']['turns_per_s']:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
