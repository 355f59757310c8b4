"""Metrics of the LLM on the four tasks (appendix D; table 3 of the paper for recommendation):

    understand, elicit   precision / recall / F1 of the parsed tags (keys) against the gold ones
    recommend            accuracy on the <= 20 lettered candidates (an LLM names one item, so hit@5
                         and mrr@5 are not defined for it)
    respond              bleu-1, bleu-2, distinct-1, distinct-2 (characters)

each overall ('all') and per category (the dialogue's domain).
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

from uneed.corpus import Item
from uneed.metrics import evaluate
from uneed.tasks import TaskSample, parse_keys, parse_tags

log = logging.getLogger(__name__)

LLM_TASK_METRICS = {
    "understand": ["precision", "recall", "f1"],
    "elicit": ["precision", "recall", "f1"],
    "recommend": ["accuracy"],
    "respond": ["bleu-1", "bleu-2", "distinct-1", "distinct-2"],
}


def score_rows(samples: Sequence[TaskSample], rows: Sequence[Mapping], items: Mapping[str, Item] | None = None,
               cue_samples: Sequence[TaskSample] = ()) -> dict[str, dict]:
    """{task: uneed.metrics.evaluate(...) result} for prediction rows aligned with samples; with `items`
    also the reply checks of the responses ('respond_checks', uneed.replies; `cue_samples`: the train
    split's response samples, for the question cues)."""
    by_task: dict[str, tuple[list, list, list]] = {}
    for s, row in zip(samples, rows):
        preds, golds, cats = by_task.setdefault(s.task, ([], [], []))
        pred = row["prediction"]
        if s.task == "understand":
            preds.append(parse_tags(pred)[0] if isinstance(pred, str) else list(pred))
            golds.append(list(s.target))
        elif s.task == "elicit":
            preds.append(parse_keys(pred)[0] if isinstance(pred, str) else list(pred))
            golds.append(list(s.target))
        elif s.task == "recommend":
            choice = pred[0] if isinstance(pred, list) and pred else (pred if isinstance(pred, str) else None)
            preds.append(0 if choice and choice == s.target else None)
            golds.append(s.target)
        else:
            preds.append(str(pred))
            golds.append(str(s.target))
        cats.append(s.domain)
    out = {task: evaluate(task, p, g, c, metrics=LLM_TASK_METRICS[task]) for task, (p, g, c) in by_task.items()}
    if items is not None and "respond" in by_task:
        from uneed.replies import evaluate_replies

        out["respond_checks"] = evaluate_replies(samples, [str(r["prediction"]) for r in rows], items, cue_samples)
    return out


def evaluate_llm(llm, samples: Sequence[TaskSample], items: Mapping[str, Item],
                 crs_predictions: Mapping[str, object] | None = None, batch_size: int = 8,
                 progress: bool = False, cue_samples: Sequence[TaskSample] = ()) -> tuple[dict[str, dict], list[dict]]:
    """(metrics by task, prediction rows) of `llm` (an llm.inference.LLM) on `samples`."""
    samples = [s for s in samples if s.task != "recommend" or s.candidates]
    rows = llm.predict(samples, items, crs_predictions, batch_size=batch_size, progress=progress)
    return score_rows(samples, rows, items, cue_samples), rows


def flat_metrics(metrics: Mapping[str, Mapping], prefix: str = "", group: str = "all") -> dict[str, float]:
    """{'understand/f1': 0.31, ...} of one group, for log lines."""
    out = {}
    for task, groups in metrics.items():
        for name, value in groups.get(group, {}).items():
            if name != "n":
                out[f"{prefix}{task}/{name}"] = round(float(value), 4)
    return out
