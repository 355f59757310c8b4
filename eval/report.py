"""Markdown tables in the layout of the paper's tables 1-4: one row per method, for each category
the task's metrics, then 'All'. Input: {method: uneed.metrics.evaluate(...) output}.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from uneed.metrics import TASK_METRICS
from uneed.schema import DOMAINS

SHORT = {"precision": "P", "recall": "R", "f1": "F1", "accuracy": "Acc.", "hit@5": "H@5", "mrr@5": "M@5",
         "ndcg@5": "N@5", "hit@10": "H@10", "hit@50": "H@50", "mrr@50": "M@50", "ndcg@50": "N@50",
         "bleu-1": "B-1", "bleu-2": "B-2", "distinct-1": "D-1", "distinct-2": "D-2",
         "ask-names-attribute": "Ask", "knowledge-true": "True", "repetition": "Rep."}


def task_table(task: str, results: Mapping[str, Mapping[str, Mapping[str, float]]],
               metrics: Sequence[str] | None = None, categories: Sequence[str] | None = None) -> str:
    metrics = list(metrics or TASK_METRICS[task])
    present = {c for r in results.values() for c in r if c != "all"}
    cats = list(categories) if categories else [d for d in DOMAINS if d in present] + sorted(present - set(DOMAINS))
    groups = cats + ["all"]
    names = [f"{DOMAINS.get(c, c)} {SHORT.get(m, m)}" if c != "all" else f"All {SHORT.get(m, m)}"
             for c in groups for m in metrics]
    lines = ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for method, res in results.items():
        cells = []
        for c in groups:
            for m in metrics:
                value = res.get(c, {}).get(m)
                cells.append("-" if value is None else f"{value:.4f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
