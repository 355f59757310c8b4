"""`presales eval tables`: the reply checks of every row are scored again from its test predictions."""
import json

import pytest

from eval import tables
from uneed.corpus import load_corpus
from uneed.errors import PresalesError
from uneed.replies import evaluate_replies
from uneed.tasks import build_samples


def test_reply_checks_are_rescored_from_the_predictions(tiny_corpus_dir, tmp_path):
    corpus = load_corpus(tiny_corpus_dir)
    test = build_samples(corpus, "test", ["respond"])
    run = tmp_path / "run"
    (run / "crs").mkdir(parents=True)
    (run / "agent.yaml").write_text(f"data: {tiny_corpus_dir}\n", encoding="utf-8")
    stale = {"all": {"ask-names-attribute": 0.123, "knowledge-true": 0.123, "repetition": 0.5}}
    (run / "crs" / "test_metrics.json").write_text(json.dumps({"test": {"respond_checks": stale}}), encoding="utf-8")
    rows = [{"key": s.key, "task": "respond", "prediction": s.target} for s in test]
    (run / "crs" / "predictions_test.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows),
                                                        encoding="utf-8")
    assert tables.main(["--run", str(run)]) == 0
    text = (run / "tables.md").read_text("utf-8")
    want = evaluate_replies(test, [s.target for s in test], corpus.items,
                            build_samples(corpus, "train", ["respond"]))["all"]
    row = next(line for line in text.split("### Table 4b")[1].splitlines() if line.startswith("| CRS"))
    assert f"{want['knowledge-true']:.4f}" in row and f"{want['ask-names-attribute']:.4f}" in row
    assert "0.1230" not in row
    # a broken prediction file is named, not a traceback
    (run / "crs" / "predictions_test.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(PresalesError, match="predictions_test.jsonl: line 1"):
        tables.main(["--run", str(run)])
