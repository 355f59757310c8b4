"""Runs are replaced atomically: a training writes into a staging directory and swaps it in only when
it has finished; a finished run is kept unless --overwrite; a failure, Ctrl-C or kill at any point
leaves the previous run intact and loadable; two trainings into one run directory are refused."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.crs import main as train_crs
from training.runtime import RunDir

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--config", str(ROOT / "configs" / "crs_tiny.yaml"), "--rec-epochs", "1", "--epochs", "2",
         "--max-train-samples", "16", "--valid-samples", "4", "--predict-splits", "test",
         "--max-predict-samples", "4", "--progress", "false", "--num-threads", "1"]


def default_sigint() -> None:
    """In the child: Ctrl-C raises KeyboardInterrupt even when the suite itself was started in the background
    (a shell's `cmd &` starts it with SIGINT ignored, and a Python started so never installs its handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tiny_corpus_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "crs"
    assert train_crs(["--data", str(tiny_corpus_dir), "--out", str(out), *QUICK]) == 0
    return out


def assert_intact(run: Path, before: dict[str, bytes]) -> None:
    from crs.inference import CRS

    assert snapshot(run) == before
    assert json.loads((run / "test_metrics.json").read_text("utf-8"))["test"]
    CRS.load(run, device="cpu")  # still loadable


def test_a_finished_run_is_refused_without_overwrite(finished, tiny_corpus_dir, capsys):
    before = snapshot(finished)
    assert train_crs(["--data", str(tiny_corpus_dir), "--out", str(finished), *QUICK]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--overwrite" in err[0]
    assert_intact(finished, before)


def test_a_failing_overwrite_keeps_the_old_run(finished, tiny_corpus_dir, tmp_path, capsys):
    before = snapshot(finished)
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "readme.txt").write_text("hello", encoding="utf-8")
    rc = train_crs(["--data", str(tiny_corpus_dir), "--out", str(finished), *QUICK, "--overwrite",
                    "--base-model", str(not_a_model)])
    assert rc == 2
    assert "error:" in capsys.readouterr().err
    assert_intact(finished, before)


def test_a_second_training_into_the_same_run_is_refused(finished, tiny_corpus_dir, capsys):
    holder = RunDir.staged(finished, overwrite=True)  # another training holds the run
    try:
        assert train_crs(["--data", str(tiny_corpus_dir), "--out", str(finished), *QUICK, "--overwrite"]) == 2
        assert "another training is writing" in capsys.readouterr().err
    finally:
        holder.release()
    assert (finished / "test_metrics.json").is_file()


def test_an_interrupted_swap_is_restored(tmp_path):
    final = tmp_path / "run"
    old = tmp_path / ".run.old"
    old.mkdir()
    (old / "test_metrics.json").write_text("{}", encoding="utf-8")
    with pytest.raises(Exception, match="already holds a run"):
        RunDir.staged(final)  # the run is back in place, and it is a finished run
    assert (final / "test_metrics.json").is_file() and not old.exists()


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the training ended (rc {proc.returncode}) before {path.name} appeared:\n"
                                 + proc.stderr.read().decode("utf-8", "replace")[-2000:])
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.02)


@pytest.mark.parametrize("marker,sig", [("config.yaml", signal.SIGINT),
                                        ("best", signal.SIGKILL), ("predictions_valid.jsonl", signal.SIGKILL)])
def test_a_killed_retraining_leaves_the_previous_run_intact(finished, tiny_corpus_dir, marker, sig):
    before = snapshot(finished)
    staging = finished.with_name(f".{finished.name}.staging")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # predicting valid, then test and train (seconds more) leaves time to kill it after the first file
    late = ["--predict-splits", "valid", "test", "train", "--max-predict-samples", "40"]
    proc = subprocess.Popen([sys.executable, "-m", "training.crs", "--data", str(tiny_corpus_dir), "--out",
                             str(finished), *QUICK, *late, "--overwrite", "--seed", "7"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    wait_for(staging / marker, proc)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    assert proc.returncode != 0, proc.stderr.read().decode("utf-8", "replace")[-3000:]
    assert_intact(finished, before)


DROPPED_CTRL_C = """
import signal, sys
from training.runtime import RunDir

run = RunDir.staged(sys.argv[1], overwrite=True)
run.write_json("test_metrics.json", {"test": {"new": 1}})


class Finaliser:
    def __del__(self):  # a Ctrl-C that lands in a finaliser: Python prints it and drops it
        signal.raise_signal(signal.SIGINT)
        for _ in range(1000):
            pass


Finaliser()
print("still running", flush=True)
try:
    run.log(epoch=1)
    print("logged", flush=True)
    run.commit()
except KeyboardInterrupt:
    print("stopped", flush=True)
run.release()
again = RunDir.staged(sys.argv[2])  # the next training of this process (a notebook) is not stopped by it
again.log(epoch=1)
again.commit()
print("next run finished", flush=True)
"""


def test_a_ctrl_c_that_python_drops_still_stops_the_run(finished, tmp_path):
    """Seen in the suite: the KeyboardInterrupt was raised in the regex package's Group.__del__, Python dropped
    it, and the retraining went on to replace the finished run."""
    before = snapshot(finished)
    script = tmp_path / "dropped.py"
    script.write_text(DROPPED_CTRL_C, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script), str(finished), str(tmp_path / "next")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, preexec_fn=default_sigint)
    assert "Exception ignored" in proc.stderr, proc.stderr
    assert proc.stdout.splitlines() == ["still running", "stopped", "next run finished"], proc.stderr
    assert_intact(finished, before)
    assert (tmp_path / "next" / "log.jsonl").is_file()


def test_resume_after_a_kill_finishes_and_swaps_in(finished, tiny_corpus_dir, tmp_path):
    run = tmp_path / "crs"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "training.crs", "--data", str(tiny_corpus_dir), "--out", str(run),
                             *QUICK], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staging = run.with_name(f".{run.name}.staging")
    wait_for(staging / "checkpoint" / "trainer.pt", proc)
    proc.kill()
    proc.wait(timeout=60)
    assert not run.exists()  # nothing half-written where the run belongs
    assert train_crs(["--data", str(tiny_corpus_dir), "--out", str(run), *QUICK, "--resume"]) == 0
    assert (run / "test_metrics.json").is_file() and not staging.exists()
    epochs = [r["epoch"] for r in map(json.loads, (run / "log.jsonl").read_text("utf-8").splitlines())]
    assert epochs[0] == 1 and epochs[-1] == 3
