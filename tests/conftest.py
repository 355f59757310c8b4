import os
import shutil
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "uneed-samples"
if not SAMPLES.is_dir():  # CI lays shared/ beside the clone
    SAMPLES = Path(os.environ.get("UNEED_SAMPLES", "../shared/uneed-samples")).resolve()


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"the real U-NEED samples are expected at {SAMPLES}")
    return SAMPLES


@pytest.fixture()
def samples_copy(tmp_path, samples_dir) -> Path:
    """A writable copy of the real samples, to break on purpose."""
    dst = tmp_path / "uneed"
    shutil.copytree(samples_dir, dst)
    for p in dst.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return dst


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory) -> Path:
    """The embedded corpus at tiny scale, generated once per test session."""
    from uneed.synth import synthesize

    out = tmp_path_factory.mktemp("tiny")
    synthesize(out, scale="tiny", seed=0, progress=False)
    return out


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="session")
def agent_run(tiny_corpus_dir, tmp_path_factory) -> Path:
    """A complete agent run directory of tiny models (CRS, LLM, LLM-assisted CRS, controller), trained
    for seconds each: enough to drive both graphs end to end through real models."""
    from training import llm as train_llm
    from training import llm_base
    from training.controller import main as train_controller
    from training.crs import main as train_crs

    run = tmp_path_factory.mktemp("agent_run")
    (run / "agent.yaml").write_text(f"data: {tiny_corpus_dir}\n", encoding="utf-8")
    crs_args = ["--data", str(tiny_corpus_dir), "--config", str(CONFIGS / "crs_tiny.yaml"), "--rec-epochs", "1",
                "--epochs", "2", "--predict-splits", "test", "--progress", "false"]
    assert train_crs([*crs_args, "--out", str(run / "crs")]) == 0
    assert llm_base.main(["--data", str(tiny_corpus_dir), "--out", str(run / "llm-base"),
                          "--config", str(CONFIGS / "llm_base_tiny.yaml")]) == 0
    assert train_llm.main(["--data", str(tiny_corpus_dir), "--out", str(run / "llm"), "--base-model",
                           str(run / "llm-base"), "--config", str(CONFIGS / "llm_lora_tiny.yaml"),
                           "--predict-train", "40"]) == 0
    llm_preds = run / "llm" / "predictions_all.jsonl"
    llm_preds.write_text("".join(p.read_text("utf-8") for p in sorted((run / "llm").glob("predictions_*.jsonl"))),
                         encoding="utf-8")
    assert train_crs([*crs_args, "--out", str(run / "crs-llm"), "--llm-predictions", str(llm_preds)]) == 0
    assert train_controller(["--data", str(tiny_corpus_dir), "--out", str(run / "controller"), "--base-model",
                             str(run / "llm"), "--max-train-samples", "48", "--max-valid-samples", "8",
                             "--max-test-decisions", "8", "--batch-size", "8", "--lr", "0.005",
                             "--tool-format", "brief", "--progress", "false"]) == 0
    return run
