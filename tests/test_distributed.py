"""Data-parallel training under torchrun (issue 13, item 4): two gloo processes on CPU take the same steps
as one process at the same global batch, only rank 0 writes, and a stopped run resumes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.distributed import Dist
from training.runtime import RunDir

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), "-m", "presales.cli", "train", *args], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text("utf-8").splitlines()]


def test_one_process_is_the_plain_path(tmp_path):
    one = Dist()
    assert not one.enabled and one.is_main and one.shard([3, 1, 2]) == ([3, 1, 2], True)
    loss = torch.tensor(2.5, requires_grad=True)
    back, value, tokens = one.scale(loss, 7, 11)
    assert back is loss and float(value) == 2.5 and int(tokens) == 11
    second = Dist(rank=1, world=2)
    assert second.shard(list(range(5))) == ([1, 3], True)
    assert Dist(rank=0, world=2).shard(list(range(5))) == ([0, 2, 4], True)
    assert second.shard([9]) == ([9], False)  # nothing of its own: the first item, to be weighted 0
    quiet = RunDir(tmp_path / "run", writer=False)  # rank > 0 writes nothing
    quiet.log(epoch=1, loss=1.0)
    quiet.write_json("x.json", {})
    quiet.save_config({"a": 1})
    assert not (tmp_path / "run").exists()


def test_llm_base_two_processes_match_one_and_resume(tiny_corpus_dir, tmp_path):
    from training import llm_base

    args = ["--data", str(tiny_corpus_dir), "--config", str(CONFIGS / "llm_base_tiny.yaml"), "--log-steps", "1",
            "--max-valid-blocks", "1", "--num-threads", "1", "--batch-size", "8", "--progress", "false"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert llm_base.main([*args, "--out", str(one), "--max-steps", "6"]) == 0
    torchrun(["llm-base", *args, "--out", str(two), "--max-steps", "3"])  # stopped after 3 steps ...
    done = torchrun(["llm-base", *args, "--out", str(two), "--max-steps", "6", "--resume"])  # ... and resumed
    assert "data-parallel training: 2 processes (gloo)" in done.stderr
    assert done.stderr.count("saved the base model") == 1  # rank 0 alone logs at INFO
    single = [r["train_loss_step"] for r in rows(one) if "train_loss_step" in r]
    parallel = [r["train_loss_step"] for r in rows(two) if "train_loss_step" in r]
    assert len(single) == len(parallel) == 6  # one log line per step: only rank 0 writes
    assert single[0] > single[-1] + 0.5  # it learns
    assert parallel == pytest.approx(single, abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".two")) == [".two.lock"]
    assert (two / "model" / "config.json").is_file()


def test_crs_two_processes_match_one(tiny_corpus_dir, tmp_path):
    from training.crs import main as train_crs

    args = ["--data", str(tiny_corpus_dir), "--config", str(CONFIGS / "crs_tiny.yaml"), "--dropout", "0",
            "--rec-epochs", "1", "--epochs", "1", "--max-train-samples", "24", "--batch-size", "8",
            "--rec-batch-size", "8", "--valid-samples", "4", "--max-predict-samples", "4", "--predict-splits", "test",
            "--progress", "false", "--num-threads", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert train_crs([*args, "--out", str(one)]) == 0
    torchrun(["crs", *args, "--out", str(two)])
    a, b = [r for r in rows(one) if "epoch" in r], [r for r in rows(two) if "epoch" in r]
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2]
    for x, y in zip(a, b):
        losses = sorted(k for k in x if k.startswith("train_loss_"))
        assert losses == sorted(k for k in y if k.startswith("train_loss_"))
        # exact for recommendation, the decoder and the elicitation head; the extraction head's valueless-key
        # term is averaged per process (crs loss_count), a difference of ~1e-3
        assert [y[k] for k in losses] == pytest.approx([x[k] for k in losses], rel=5e-3), (x, y)
    assert len((two / "predictions_test.jsonl").read_text("utf-8").splitlines()) > 0
    assert (two / "best" / "crs_config.json").is_file() and (two / "test_metrics.json").is_file()


def test_controller_refuses_torchrun_in_one_line(monkeypatch, tmp_path):
    from training.controller import main as train_controller
    from uneed.errors import PresalesError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PresalesError, match="runs in one process"):
        train_controller(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--base-model", str(tmp_path)])
