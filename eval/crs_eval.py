"""Evaluate a trained CRS on one split of a U-NEED-format directory.

    python -m eval.crs_eval --run runs/crs --data data/small --split test [--llm-predictions FILE]
                            [--index flat|ivf|hnsw] [--out FILE.json] [--predictions FILE.jsonl]

Scores all four tasks, overall and per category (crs.evaluate.score_predictions): understanding and
elicitation P/R/F1; recommendation accuracy, hit@5, mrr@5 on the 20 candidates and hit@10, hit@50,
mrr@50 over the whole catalog; response bleu-1/2 and distinct-1/2 and the reply checks
(ask-names-attribute, knowledge-true, repetition). Writes the metrics JSON (default
RUN/eval_{split}.json) and, when asked, the prediction rows.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from uneed.arguments import parse_args
from uneed.errors import PresalesError
from uneed.logs import setup_logging

log = logging.getLogger("eval.crs_eval")


@dataclass
class CRSEvalArgs:
    """Evaluate a trained CRS on a split."""

    run: str = field(metadata={"help": "CRS run directory (uses RUN/best) or model directory"})
    data: str = field(metadata={"help": "U-NEED-format directory"})
    split: str = field(default="test", metadata={"help": "train | valid | test"})
    llm_predictions: str | None = field(default=None, metadata={"help": "LLM predictions, for an LLM-assisted CRS"})
    tasks: list[str] = field(default_factory=lambda: ["understand", "elicit", "recommend", "respond"],
                             metadata={"help": "tasks to evaluate"})
    index: str | None = field(default=None, metadata={"help": "FAISS index kind: flat | ivf | hnsw (default: the "
                                                              "model's)"})
    max_samples: int | None = field(default=None, metadata={"help": "cap samples per task"})
    context: str = field(default="own", metadata={"help": "what earlier turns carry: own (the CRS's own reading) | "
                                                         "gold (their annotations)"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    out: str | None = field(default=None, metadata={"help": "metrics JSON (default RUN/eval_{split}.json)"})
    predictions: str | None = field(default=None, metadata={"help": "also write the prediction rows here"})


def evaluate_run(run: str | Path, data: str | Path, split: str = "test", llm_predictions: str | None = None,
                 tasks=("understand", "elicit", "recommend", "respond"), index: str | None = None,
                 max_samples: int | None = None, device: str = "auto", context: str = "own") -> tuple[dict, list[dict]]:
    """(metrics, prediction rows) of a trained CRS on one split."""
    from crs.evaluate import CONTEXTS, headline, predict_samples, score_predictions, split_examples
    from crs.inference import CRS
    from uneed.corpus import load_corpus
    from uneed.tasks import read_predictions

    if split not in ("train", "valid", "test"):
        raise PresalesError(f"--split must be train, valid or test, got {split!r}")
    if context not in CONTEXTS:
        raise PresalesError(f"--context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    crs = CRS.load(run, device=device, index=index)
    corpus = load_corpus(data)
    llm = read_predictions(llm_predictions) if llm_predictions else None
    if crs.config.use_llm and llm is None:
        log.warning("this CRS was trained with LLM inputs; without --llm-predictions it runs without them")
    samples, examples = split_examples(corpus, split, llm, tasks=tasks, max_per_task=max_samples)
    if not samples:
        raise PresalesError(f"{data}: no {split} samples for tasks {list(tasks)}")
    unknown = sum(1 for ex in examples if ex.task == "recommend" and ex.gold_item not in crs.catalog)
    if unknown:
        log.warning("%d recommendation samples have a gold item the CRS catalog does not know", unknown)
    t0 = time.time()
    rows = predict_samples(crs, corpus, samples, llm, context=context)
    from uneed.tasks import build_samples

    metrics = score_predictions(samples, rows, corpus.items, build_samples(corpus, "train", ["respond"]))
    metrics["headline"] = headline(metrics)
    metrics["seconds"] = round(time.time() - t0, 1)
    metrics["split"] = split
    metrics["context"] = context
    return metrics, rows


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        args = parse_args(CRSEvalArgs, argv, prog="crs_eval")
        metrics, rows = evaluate_run(args.run, args.data, args.split, args.llm_predictions, args.tasks, args.index,
                                     args.max_samples, args.device, args.context)
        from uneed.tasks import write_predictions

        out = Path(args.out) if args.out else Path(args.run) / f"eval_{args.split}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
        if args.predictions:
            write_predictions(args.predictions, rows)
        print(json.dumps(metrics["headline"], ensure_ascii=False, indent=1))
        print(f"metrics written to {out}")
    except PresalesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
