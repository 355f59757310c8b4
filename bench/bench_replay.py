"""Replay speed per graph: turns/s with the model calls of concurrent threads batched (eval/batching.py)
against the same turns run one after the other, measured in the same run.

    python bench/bench_replay.py --run runs/default --dialogues 20 [--workers 16] [--split test]

Prints, per graph, the turns, seconds and turns/s of both ways and their ratio, and the time the
whole split would take batched (the README's 5-minute budget for the `small` test split).
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
    print("| graph | turns | sequential s | turns/s | batched s (workers) | turns/s | speed-up | whole split, batched |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("llm", "crs"):
        assistant = Assistant.from_run(args.run, kind, checkpointer=memory_checkpointer())
        replay_graph(assistant, points[:2], corpus, 1, progress=False)  # warm-up
        seq = replay_graph(assistant, points, corpus, 1, progress=False)
        bat = replay_graph(assistant, points, corpus, args.workers, progress=False)
        print(f"| {kind} | {len(points)} | {seq['seconds']:.1f} | {seq['turns_per_s']:.2f} | {bat['seconds']:.1f} "
              f"({args.workers}) | {bat['turns_per_s']:.2f} | {seq['seconds'] / bat['seconds']:.2f}x | "
              f"{len(all_points) / bat['turns_per_s']:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
