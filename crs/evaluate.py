"""Predicting a split with a CRS and scoring it with uneed.metrics (shared by training and eval/).

Scores per task, overall and per category (the dialogue's domain):
    understand, elicit   precision, recall, f1 of the parsed tags / keys
    recommend            accuracy, hit@5, mrr@5, ndcg@5 of the gold item among its candidates
    recommend_catalog    hit@10, hit@50, mrr@50, ndcg@50 of the gold item in the whole catalog
    respond              bleu-1, bleu-2, distinct-1, distinct-2 (characters)
"""
from __future__ import annotations

import logging
from typing import Iterable, Mapping, Sequence

from uneed.corpus import Corpus, Item
from uneed.metrics import evaluate, rank_of
from uneed.tasks import TASKS, CRSExample, TaskSample, build_samples, crs_example, parse_keys, parse_tags

log = logging.getLogger(__name__)


def split_examples(corpus: Corpus, split: str, llm_predictions: Mapping[str, object] | None = None,
                   tasks: Iterable[str] = TASKS, max_per_task: int | None = None,
                   items: Mapping[str, Item] | None = None) -> tuple[list[TaskSample], list[CRSExample]]:
    """Samples of a split and their CRS sequences (with the LLM's predictions when given).

    Recommendation samples without candidates are left out (they cannot be ranked)."""
    samples = [s for s in build_samples(corpus, split, tasks) if s.task != "recommend" or s.candidates]
    if max_per_task is not None:
        seen: dict[str, int] = {}
        kept = []
        for s in samples:
            if seen.get(s.task, 0) < max_per_task:
                kept.append(s)
                seen[s.task] = seen.get(s.task, 0) + 1
        samples = kept
    items = corpus.items if items is None else items
    llm = llm_predictions or {}
    return samples, [crs_example(s, items, llm.get(s.key)) for s in samples]


def score_predictions(samples: Sequence[TaskSample], rows: Sequence[dict]) -> dict[str, dict]:
    """{task: {'all': {...}, '<domain>': {...}}} for every task present (plus recommend_catalog)."""
    by_key = {r["key"]: r for r in rows}
    out: dict[str, dict] = {}
    for task in TASKS:
        pairs = [(s, by_key[s.key]) for s in samples if s.task == task and s.key in by_key]
        if not pairs:
            continue
        cats = [s.domain for s, _ in pairs]
        if task == "understand":
            out[task] = evaluate(task, [parse_tags(r["prediction"])[0] for _, r in pairs], [s.target for s, _ in pairs], cats)
        elif task == "elicit":
            out[task] = evaluate(task, [parse_keys(r["prediction"])[0] for _, r in pairs], [s.target for s, _ in pairs], cats)
        elif task == "respond":
            out[task] = evaluate(task, [r["prediction"] for _, r in pairs], [s.target for s, _ in pairs], cats)
        else:
            ranks = [rank_of(s.target, r["prediction"]) for s, r in pairs]
            out[task] = evaluate(task, ranks, ranks, cats)
            if all("catalog_top" in r for _, r in pairs):
                cranks = [rank_of(s.target, r["catalog_top"]) for s, r in pairs]
                out["recommend_catalog"] = evaluate("recommend_catalog", cranks, cranks, cats)
    return out


def headline(metrics: Mapping[str, dict]) -> dict[str, float]:
    """The few overall numbers worth printing: understand/elicit f1, recommend acc/mrr@5, respond bleu-1/distinct-1."""
    pick = {"understand": ["f1"], "elicit": ["f1"], "recommend": ["accuracy", "hit@5", "mrr@5"],
            "recommend_catalog": ["hit@10", "hit@50", "mrr@50"], "respond": ["bleu-1", "bleu-2", "distinct-1"]}
    out = {}
    for task, names in pick.items():
        for name in names:
            if task in metrics and name in metrics[task].get("all", {}):
                out[f"{task}/{name}"] = round(float(metrics[task]["all"][name]), 4)
    return out
