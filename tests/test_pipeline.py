"""The main job, `scripts/run_default.sh`, end to end with PROFILE=tiny (the tiny corpus and configs):
every step runs in order, hands its outputs to the next, and a second run skips what is done."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(out: Path, data: Path, parallel: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROFILE": "tiny", "SKIP_SETUP": "1", "OUT": str(out), "DATA": str(data),
           "PARALLEL": "1" if parallel else "0", "EPISODES": "4"}  # 4 simulated shoppers a policy: the step runs
    return subprocess.run(["bash", "scripts/run_default.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def test_run_default_tiny_end_to_end(tmp_path):
    """First with PARALLEL=1 (the default: steps that wait on nothing run at once, a log each), then again
    one step after another, which finds everything done, then side by side again (the logs are kept)."""
    out, data = tmp_path / "run", tmp_path / "data"
    done = run_script(out, data, parallel=True)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = {p.stem: p.read_text("utf-8") for p in (out / "logs").glob("*.log")}
    assert set(logs) == {"train_crs", "train_crs_llm", "trivial_baselines", "replay_test", "simulate_shoppers"}
    for name, text in logs.items():  # each log ends with its step's wall time
        assert text.rstrip().splitlines()[-1].startswith(f"{name}: "), name
        assert f"{name}: " in done.stdout, name
    # the LLM's trainings run alone, on the terminal, with every core
    for trainer in ("training.llm_base", "training.llm", "training.controller"):
        assert f" {trainer}: " in done.stderr, trainer
    # the cores are shared out among the 3 steps of the CRS group, not taken by each
    share = max(1, len(os.sched_getaffinity(0)) // 3)
    for name in ("train_crs", "train_crs_llm"):
        assert f"device cpu, {share} torch threads" in logs[name], name
    # written to a file, the log is one line per event: no progress-bar frames, and a summary line for
    # every epoch of every training
    log = done.stdout + done.stderr + "".join(logs.values())
    assert "\r" not in log, [line for line in log.split("\n") if "\r" in line][:3]
    for trainer in ("training.crs", "training.llm_base", "training.llm", "training.controller"):
        assert any(f" {trainer}: " in line and "epoch 1" in line for line in log.splitlines()), trainer
    for step in ("crs", "llm", "crs-llm", "llm-crs", "controller"):
        assert (out / step / "test_metrics.json").is_file(), step
    assert (out / "llm-base" / "model" / "config.json").is_file()
    assert "Table 3" in (out / "tables.md").read_text("utf-8")
    assert (out / "agent.yaml").read_text("utf-8").strip() == f"data: {data.resolve()}"
    assert (out / "replay" / "replay.md").is_file() and (out / "simulate" / "simulate.md").is_file()
    # the combined prediction files hold each split once
    lines = (out / "crs" / "predictions_all.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == sum(len(p.read_text("utf-8").splitlines()) for p in (out / "crs").glob("predictions_*.jsonl")
                             if p.name != "predictions_all.jsonl")
    finished = {p: p.stat().st_mtime_ns for p in [*out.glob("*/test_metrics.json"), out / "replay" / "replay.json",
                                                   out / "simulate" / "simulate.json"]}
    again = run_script(out, data)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # nothing retrained, no report made again
    # and once more with the steps side by side: the skipped steps' logs keep the trainings that made them
    assert run_script(out, data, parallel=True).returncode == 0
    kept = (out / "logs" / "train_crs.log").read_text("utf-8")
    assert kept.startswith(logs["train_crs"]) and " training.crs: " in kept
    assert kept.rstrip().splitlines()[-1].startswith("train_crs: ") and kept.count("--- ") == 2

    # cross-fitting after it (scripts/cross_fit.sh): the fold CRSs beside the cross-fitted LLM-assisted CRS,
    # both cross-fitted receivers in the tables beside the in-sample ones
    env = {**os.environ, "PROFILE": "tiny", "OUT": str(out), "FOLDS": "2"}
    xfit = subprocess.run(["bash", "scripts/cross_fit.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert xfit.returncode == 0, xfit.stderr[-3000:]
    assert {"crs_fold_0", "crs_fold_1", "crs_llm_xfit"} <= {p.stem for p in (out / "logs").glob("*.log")}
    for fold in ("llm-0", "llm-1", "crs-0", "crs-1"):
        assert (out / "xfit" / fold / "test_metrics.json").is_file(), fold
    tables = (out / "tables.md").read_text("utf-8")
    assert "LLM assisting CRS, cross-fitted" in tables and "CRS assisting LLM, cross-fitted" in tables
    bad = subprocess.run(["bash", "scripts/cross_fit.sh"], cwd=ROOT, env={**env, "FOLDS": "1"}, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "FOLDS must be a whole number of at least 2" in bad.stderr


def test_unknown_profile_is_refused(tmp_path):
    env = {**os.environ, "PROFILE": "huge", "SKIP_SETUP": "1", "OUT": str(tmp_path / "r")}
    done = subprocess.run(["bash", "scripts/run_default.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "PROFILE must be default, tiny or gpu" in done.stderr


def test_a_failed_step_of_a_parallel_group_stops_the_job_and_shows_its_log(tmp_path):
    """PARALLEL=1: a step that fails is named with the end of its log, and no later step starts."""
    real = subprocess.run(["bash", "-c", "command -v presales"], capture_output=True, text=True).stdout.strip()
    assert real, "presales is not on PATH"
    fake = tmp_path / "bin" / "presales"
    fake.parent.mkdir()
    fake.write_text(f'#!/usr/bin/env bash\nif [ "$1 $2" = "train crs" ]; then\n'
                    f'  echo "stand-in failure of $1 $2" >&2; exit 3\nfi\nexec {real} "$@"\n')
    fake.chmod(0o755)
    out = tmp_path / "run"
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "PROFILE": "tiny", "SKIP_SETUP": "1",
           "OUT": str(out), "DATA": str(tmp_path / "data"), "PARALLEL": "1"}
    done = subprocess.run(["bash", "scripts/run_default.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode != 0
    assert "error: train_crs failed" in done.stderr and "stand-in failure of train crs" in done.stderr
    assert "error: train_crs_llm failed" in done.stderr
    assert (out / "baselines.json").is_file()  # the step beside them finished
    assert not (out / "llm-crs").exists() and not (out / "tables.md").exists()
