"""Evaluate a fine-tuned LLM on one split of a U-NEED-format directory.

    python -m eval.llm_eval --run runs/llm --data data/small --split test [--crs-predictions FILE|DIR]
                            [--max-samples N] [--out FILE.json] [--predictions FILE.jsonl]

Scores the four tasks, overall and per category (llm.evaluation): understanding and elicitation
P/R/F1; recommendation accuracy on the <= 20 lettered candidates (an LLM names one item, so hit@5
and mrr@5 are not defined, as in the paper's table 3); response bleu-1/2 and distinct-1/2. --run is
a `presales train llm` run dir, an adapter dir or any plain HF causal-LM dir. An LLM tuned with CRS
predictions (section 3.4) should get the CRS predictions of the same split (--crs-predictions).
Writes the metrics JSON (default RUN/eval_{split}.json) and, when asked, the prediction rows.
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

log = logging.getLogger("eval.llm_eval")


@dataclass
class LLMEvalArgs:
    """Evaluate a fine-tuned LLM on a split."""

    run: str = field(metadata={"help": "LLM run directory, adapter directory or HF model directory"})
    data: str = field(metadata={"help": "U-NEED-format directory"})
    split: str = field(default="test", metadata={"help": "train | valid | test"})
    crs_predictions: str | None = field(default=None, metadata={"help": "CRS predictions (file or directory), "
                                                                         "for a CRS-assisted LLM"})
    tasks: list[str] = field(default_factory=lambda: ["understand", "elicit", "recommend", "respond"],
                             metadata={"help": "tasks to evaluate"})
    max_samples: int | None = field(default=None, metadata={"help": "cap samples per task"})
    batch_size: int = 16
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    trust_remote_code: bool = False
    out: str | None = field(default=None, metadata={"help": "metrics JSON (default RUN/eval_{split}.json)"})
    predictions: str | None = field(default=None, metadata={"help": "also write the prediction rows here"})
    span_values: bool | None = field(default=None, metadata={"help": "understanding values decoded as spans of "
                                                                     "the utterance (default: as the model was "
                                                                     "saved, on unless turned off)"})


def evaluate_run(run: str | Path, data: str | Path, split: str = "test", crs_predictions: str | None = None,
                 tasks=("understand", "elicit", "recommend", "respond"), max_samples: int | None = None,
                 batch_size: int = 16, device: str = "auto", trust_remote_code: bool = False,
                 span_values: bool | None = None) -> tuple[dict, list[dict]]:
    """(metrics by task, prediction rows) of a fine-tuned LLM on one split."""
    from llm.evaluation import evaluate_llm
    from llm.inference import LLM
    from uneed.corpus import load_corpus
    from uneed.tasks import build_samples

    if split not in ("train", "valid", "test"):
        raise PresalesError(f"--split must be train, valid or test, got {split!r}")
    llm = LLM.load(run, device=device, trust_remote_code=trust_remote_code or None)
    if span_values is not None:
        llm.settings.span_values = span_values
    corpus = load_corpus(data)
    crs = None
    if crs_predictions:
        from uneed.tasks import load_crs_predictions

        crs = load_crs_predictions(crs_predictions)
    samples = build_samples(corpus, split, tasks)
    if max_samples:
        per: dict[str, int] = {}
        kept = []
        for s in samples:
            if per.get(s.task, 0) < max_samples:
                per[s.task] = per.get(s.task, 0) + 1
                kept.append(s)
        samples = kept
    if crs is not None:
        missing = sum(s.key not in crs for s in samples)
        if missing:
            log.warning("CRS predictions missing for %d of %d samples: plain prompts used", missing, len(samples))
    # the reply checks' question cues come from the train split, as in training and eval.crs_eval
    return evaluate_llm(llm, samples, corpus.items, crs, batch_size=batch_size, progress=True,
                        cue_samples=build_samples(corpus, "train", ["respond"]))


def main(argv=None) -> int:
    args = parse_args(LLMEvalArgs, argv, prog="presales eval llm")
    setup_logging()
    start = time.time()
    metrics, rows = evaluate_run(args.run, args.data, args.split, args.crs_predictions, args.tasks, args.max_samples,
                                 args.batch_size, args.device, args.trust_remote_code, args.span_values)
    run = Path(args.run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent) / f"eval_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"split": args.split, "metrics": metrics, "seconds": time.time() - start},
                              ensure_ascii=False, indent=2), encoding="utf-8")
    if args.predictions:
        from uneed.tasks import write_predictions

        write_predictions(args.predictions, rows)
    for task, groups in metrics.items():
        log.info("%s: %s", task, {k: round(v, 4) for k, v in groups.get("all", {}).items()})
    log.info("metrics written to %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
