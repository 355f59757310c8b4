"""Replay speed per graph, the same turns three ways in one run: one after the other with the LLM
decoding through `model.generate` (the baseline), one after the other with its bare-torch decoding
(llm/decoding.py, the default on CPU), and with the model calls of concurrent threads batched
(eval/batching.py, bare-torch decoding).

    python bench/bench_replay.py --run runs/default --dialogues 20 [--workers 16] [--split test]

Prints, per graph, seconds and turns/s of each way, the ratios against the baseline, and the time the
whole split would take the default way (the README's 5-minute budget for the `small` test split).
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
    ap.add_argument("--dialogues", type=int, default=20, help="dialogues replayed (both ways)")
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    set_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    from agent.assistant import Assistant, RunPaths, memory_checkpointer
    from eval.replay import replay_graph, replay_points
    from uneed.corpus import load_corpus

    corpus = load_corpus(args.data or RunPaths.from_run(args.run).data, skip_invalid=True)
    all_points = replay_points(corpus, args.split)
    points = replay_points(corpus, args.split, args.dialogues)
    print(f"{len(points)} turns from {args.dialogues} {args.split} dialogues ({len(all_points)} in the split)")
    print("| graph | turns | model.generate, sequential | bare decoding, sequential | bare decoding, batched "
          f"({args.workers} workers) | whole split, bare sequential |")
    print("|---|---|---|---|---|---|")
    for kind in ("llm", "crs"):
        assistant = Assistant.from_run(args.run, kind, checkpointer=memory_checkpointer())
        replay_graph(assistant, points[:2], corpus, 1, progress=False)  # warm-up
        for llm in assistant.llms:
            llm.bare_decoding = False
        base = replay_graph(assistant, points, corpus, 1, progress=False)
        for llm in assistant.llms:
            llm.bare_decoding = True
        seq = replay_graph(assistant, points, corpus, 1, progress=False)
        bat = replay_graph(assistant, points, corpus, args.workers, progress=False)

        def cell(r):
            return f"{r['seconds']:.1f} s, {r['turns_per_s']:.2f} turns/s ({base['seconds'] / r['seconds']:.2f}x)"

        print(f"| {kind} | {len(points)} | {base['seconds']:.1f} s, {base['turns_per_s']:.2f} turns/s | {cell(seq)} | "
              f"{cell(bat)} | {len(all_points) / seq['turns_per_s']:.0f} s |", flush=True)

if __name__ == "__main__":
    main()
