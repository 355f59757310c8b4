"""Data checks that protect training: missing or empty splits, empty item knowledge, timestamps parsed as
times, duplicate sids, a BOM, over-long utterances, deep nesting."""
import json
import shutil
from pathlib import Path

import pytest

from presales.cli import main as cli
from uneed.corpus import ALLOW_NO_ITEM_KG, ALLOW_NO_VALID, load_corpus
from uneed.validate import CorpusError


@pytest.fixture()
def corpus_dir(tiny_corpus_dir, tmp_path) -> Path:
    dst = tmp_path / "corpus"
    shutil.copytree(tiny_corpus_dir, dst)
    return dst


def dialogues(root: Path, split: str) -> list:
    return json.loads((root / f"{split}_dialogue.json").read_text("utf-8"))


def write(root: Path, split: str, data) -> None:
    (root / f"{split}_dialogue.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize("how", ["missing", "empty"])
@pytest.mark.parametrize("split", ["train", "valid"])
def test_a_missing_or_empty_split_is_an_error(corpus_dir, capsys, split, how):
    if how == "missing":
        (corpus_dir / f"{split}_dialogue.json").unlink()
    else:
        write(corpus_dir, split, [])
    with pytest.raises(CorpusError, match=f"{split}_dialogue.json"):
        load_corpus(corpus_dir)
    assert cli(["data", "validate", str(corpus_dir)]) == 2
    assert f"{split}_dialogue.json" in capsys.readouterr().err
    if split == "valid":
        assert not load_corpus(corpus_dir, allow=[ALLOW_NO_VALID]).split("valid")


@pytest.mark.parametrize("content", ["", "item_id_encrypt,seller_id_encrypt,relation_name,value\n"])
def test_empty_item_knowledge_is_an_error_unless_allowed(corpus_dir, content):
    (corpus_dir / "item_kg.txt").write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match="no item knowledge"):
        load_corpus(corpus_dir, skip_invalid=True)
    assert not load_corpus(corpus_dir, skip_invalid=True, allow=[ALLOW_NO_ITEM_KG]).items


def test_a_bom_is_accepted_in_every_file(corpus_dir):
    for path in corpus_dir.iterdir():
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    corpus = load_corpus(corpus_dir)
    assert corpus.split("train") and corpus.items and corpus.behaviours


def test_behaviour_times_are_parsed_as_times(corpus_dir):
    path = corpus_dir / "user_action.txt"
    lines = path.read_text("utf-8").splitlines()
    seller, user, item, when, action = lines[1].split(",")
    lines.append(f"{seller},{user},{item},2022/11/15 23:59:59,0")  # another format: a later behaviour
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(corpus_dir)
    [issue] = info.value.report.errors
    assert (issue.file, issue.line, issue.field) == ("user_action.txt", len(lines), "actime")
    assert "YYYY-MM-DD HH:MM:SS" in issue.message and "2022/11/15" in issue.message
    corpus = load_corpus(corpus_dir, skip_invalid=True)  # left out, not put before the dialogue
    assert corpus.report.skipped_rows == [("user_action.txt", len(lines))]


def test_iso_times_are_compared_as_times(corpus_dir):
    path = corpus_dir / "user_action.txt"
    lines = path.read_text("utf-8").splitlines()
    seller, user, item, when, action = lines[1].split(",")
    lines.append(f"{seller},{user},new-item,{when[:10]}T{when[11:]},0")  # the same moment, ISO-written
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = load_corpus(corpus_dir)
    assert "new-item" not in corpus.user_behaviours(user, before=when)
    assert "new-item" in corpus.user_behaviours(user, before=f"{when[:10]} 23:59:59")


def test_a_malformed_turn_time_names_the_turn(corpus_dir):
    data = dialogues(corpus_dir, "train")
    data[0]["dialogue"][1]["time"] = "yesterday"
    write(corpus_dir, "train", data)
    with pytest.raises(CorpusError) as info:
        load_corpus(corpus_dir)
    [issue] = info.value.report.errors
    assert issue.sid == data[0]["sid"] and issue.field == "dialogue[1].time" and "YYYY-MM-DD" in issue.message


def test_duplicate_sids_are_errors(corpus_dir):
    train = dialogues(corpus_dir, "train")
    test = dialogues(corpus_dir, "test")
    test[0]["sid"] = train[3]["sid"]
    write(corpus_dir, "test", test)
    with pytest.raises(CorpusError, match="duplicate sid"):
        load_corpus(corpus_dir)
    corpus = load_corpus(corpus_dir, skip_invalid=True)
    assert len(corpus.split("test")) == len(test) - 1
    assert corpus.report.skipped_dialogues == [("test_dialogue.json", train[3]["sid"])]


def test_over_long_utterances_are_cut_with_a_warning(corpus_dir):
    data = dialogues(corpus_dir, "train")
    turn = next(t for t in data[0]["dialogue"] if t["attributes"] and t["attributes"][0]["start"] >= 0)
    turn["attributes"].append({"key": "颜色", "value": "红色", "start": 5000, "exclusive_end": 5002})
    turn["send_content"] = turn["send_content"] + "很" * (5000 - len(turn["send_content"])) + "红色" + "啊" * 100_000
    write(corpus_dir, "train", data)
    corpus = load_corpus(corpus_dir)
    cut = next(t for t in corpus.split("train")[0].dialogue if t.seq_no == turn["seq_no"])
    assert len(cut.send_content) == 2000
    assert [a.value for a in cut.attributes] == [a["value"] for a in turn["attributes"][:-1]]
    [warning] = [i for i in corpus.report.warnings if "cut to 2000" in i.message]
    assert warning.sid == data[0]["sid"] and warning.seq_no == turn["seq_no"]
    assert len(next(t for t in load_corpus(corpus_dir, max_utterance_chars=10_000).split("train")[0].dialogue
                    if t.seq_no == turn["seq_no"]).send_content) == 10_000


def test_deep_nesting_is_a_clear_error(corpus_dir, capsys):
    (corpus_dir / "test_dialogue.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(CorpusError, match="nested too deeply"):
        load_corpus(corpus_dir)
    assert cli(["data", "validate", str(corpus_dir)]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and "Traceback" not in err and "RecursionError" not in err


def test_crs_training_without_a_valid_split_needs_the_flag_and_keeps_the_last_epoch(corpus_dir, tmp_path, capsys):
    from training.crs import main as train_crs

    (corpus_dir / "valid_dialogue.json").unlink()
    quick = ["--data", str(corpus_dir), "--config", str(Path(__file__).resolve().parents[1] / "configs" /
                                                         "crs_tiny.yaml"),
             "--rec-epochs", "1", "--epochs", "2", "--max-train-samples", "16", "--predict-splits", "test",
             "--max-predict-samples", "4", "--progress", "false"]
    assert train_crs([*quick, "--out", str(tmp_path / "run")]) == 2
    assert "valid_dialogue.json: missing split file" in capsys.readouterr().err
    assert train_crs([*quick, "--out", str(tmp_path / "run"), "--allow-no-valid"]) == 0
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text("utf-8"))
    assert metrics["best_epoch"] == 3
    # nothing to fit on valid: the model says it has no re-ranker, and loads without one
    from crs.inference import CRS

    crs = CRS.load(tmp_path / "run")
    assert not crs.config.rerank and crs.reranker is None and "reranker" not in metrics
