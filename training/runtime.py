"""What every training script shares: seeds, device and precision, the run directory, checkpoints
that survive a crash (write to a temporary name, then rename), a per-epoch log and its plot.

A run directory:
    RUN/config.yaml        the arguments of the run (reproduce with --config RUN/config.yaml)
    RUN/log.jsonl          one JSON object per logged step/epoch (loss, validation metrics, ...)
    RUN/checkpoint/        the latest state, for --resume
    RUN/best/              the best model by the validation metric
    RUN/curves.png         loss and validation curves

A training writes into a staging directory beside RUN (`.RUN.staging`) and swaps it in only when it
has finished (`RunDir.staged` ... `run.commit()`): a failure, Ctrl-C or kill at any point leaves the
previous run intact and loadable, and `--resume` continues the interrupted staging directory. A
finished run is replaced only with `--overwrite`; two trainings into one RUN are refused (a lock).
Python drops a KeyboardInterrupt raised inside a finaliser (`Exception ignored in ... __del__`), so a
staged run also watches Ctrl-C itself (`watch_interrupts`): a dropped one stops it at the next epoch's
log line, and never lets it be swapped in.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uneed.arguments import save_yaml
from uneed.device import autocast  # noqa: F401  (the training scripts import it from here)

log = logging.getLogger(__name__)

_interrupted = False  # set by every Ctrl-C of a process that watches them


def _on_interrupt(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    signal.default_int_handler(signum, frame)  # KeyboardInterrupt, as without the watch


def watch_interrupts() -> None:
    """Remember every Ctrl-C. The KeyboardInterrupt is raised where Python happens to be, and when that is a
    library object's `__del__` run by the garbage collector (seen: the `regex` package's Group.__del__ during
    tokenisation) Python prints it and goes on; `check_interrupted` raises it again. A process that ignores
    Ctrl-C (started with SIGINT ignored) or runs this off the main thread is left as it is."""
    global _interrupted
    _interrupted = False  # a new run: a Ctrl-C that stopped an earlier one in this process (a notebook) is done with
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_interrupt)


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came that nothing acted on."""
    if _interrupted:
        raise KeyboardInterrupt("interrupted (Ctrl-C): the run was not swapped in")


def set_seed(seed: int) -> None:
    """Seed every generator; on a machine without a GPU also pick torch's deterministic kernels: with two
    CPU threads, two CRS trainings of one config and seed ended with different weights (102 of 118
    tensors); with them, equal bit for bit, at no measurable cost (README, reproducibility). GPU runs
    keep the fast kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(requested: str = "auto") -> torch.device:
    """The device of this process: CUDA when there is a GPU (under torchrun, the GPU LOCAL_RANK)."""
    from training.distributed import current

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA GPU is visible")
    if device.type == "cuda" and device.index is None and current().enabled:
        device = torch.device("cuda", current().local_rank)
    log.info("device %s, %d torch threads", device, torch.get_num_threads())
    return device


class RunDir:
    """A run's directory. It is made by the first write, so a run that fails on its inputs leaves nothing."""

    def __init__(self, path: str | os.PathLike, final: str | os.PathLike | None = None, lock: Any = None,
                 writer: bool = True):
        self.path = Path(path)
        self.final = Path(final) if final is not None else self.path  # where commit() puts a staged run
        self._lock = lock
        self.writer = writer  # False in the processes other than rank 0 of a data-parallel run: they write nothing

    @classmethod
    def staged(cls, out: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> "RunDir":
        """A run that writes into `.OUT.staging` and becomes OUT at `commit()`.

        Refused (PresalesError) when OUT already holds a run and neither `overwrite` nor `resume` is
        given, or when another training holds OUT. `resume` continues an interrupted staging
        directory, else a copy of the finished run at OUT."""
        from training.distributed import current
        from uneed.errors import PresalesError

        watch_interrupts()
        dist = current()
        final = Path(out)
        if dist.enabled:  # rank 0 prepares the staging directory, then the others read from it (--resume)
            error = None
            if dist.is_main:
                try:
                    run = cls._staged(final, overwrite, resume)
                except PresalesError as exc:
                    error = exc
            if dist.any_true(error is not None):
                raise error or PresalesError(f"rank 0 could not prepare {final}; see its error")
            if dist.is_main:
                return run
            return cls(final.with_name(f".{final.name}.staging"), final, None, writer=False)
        return cls._staged(final, overwrite, resume)

    @classmethod
    def _staged(cls, final: Path, overwrite: bool, resume: bool) -> "RunDir":
        from uneed.errors import PresalesError

        if final.exists() and not final.is_dir():
            raise PresalesError(f"--out {final} is a file, not a run directory")
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = (final.parent / f".{final.name}.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise PresalesError(f"another training is writing {final} right now; wait for it or pick another --out")
        recover_swap(final)
        staging = final.with_name(f".{final.name}.staging")
        holds_run = final.is_dir() and any(final.iterdir())
        if holds_run and not (overwrite or resume):
            lock.close()
            raise PresalesError(f"{final} already holds a run; pass --overwrite to replace it (it is kept until "
                                "the new one has finished) or --resume to continue it")
        if resume:
            if not (staging / "checkpoint").is_dir():  # nothing interrupted: continue a copy of the finished run
                shutil.rmtree(staging, ignore_errors=True)
                if holds_run:
                    shutil.copytree(final, staging)
            else:
                log.info("resuming the interrupted run in %s", staging)
        elif staging.exists():
            shutil.rmtree(staging)  # an interrupted run nobody resumed
        return cls(staging, final, lock)

    def commit(self) -> Path:
        """Swap the finished staging directory in as the run (the old run goes only once the new one is there)."""
        check_interrupted()
        if self.writer and self.path != self.final and self.path.is_dir():  # a run that wrote nothing replaces nothing
            replace_dir(self.path, self.final)
            self.path = self.final
        self.release()
        return self.final

    def release(self) -> None:
        """Let another training write this run (the lock also goes when the process ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _made(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    @property
    def best(self) -> Path:
        return self.path / "best"

    def save_config(self, args: Any) -> None:
        if not self.writer:
            return
        save_yaml(args, self._made() / "config.yaml")

    def log(self, **row: Any) -> None:
        check_interrupted()  # every training logs each epoch: a dropped Ctrl-C stops it there
        if not self.writer:
            return
        row.setdefault("time", time.time())
        with (self._made() / "log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def read_log(self) -> list[dict]:
        path = self.path / "log.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def write_json(self, name: str, data: Any) -> Path:
        if not self.writer:
            return self.path / name
        path = self._made() / name
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def plot_curves(self, keys: list[str], name: str = "curves.png") -> Path | None:
        """Plot logged values by epoch, one panel per key; returns the file or None when nothing was logged."""
        if not self.writer:
            return None
        rows = [r for r in self.read_log() if "epoch" in r]
        keys = [k for k in keys if any(k in r for r in rows)]
        if not keys:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
        for ax, key in zip(axes[0], keys):
            pts = [(r["epoch"], r[key]) for r in rows if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
            ax.set_title(key)
            ax.set_xlabel("epoch")
        fig.tight_layout()
        path = self._made() / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def recover_swap(final: Path) -> None:
    """A kill between the two renames of `replace_dir` leaves only `.NAME.old`: put it back."""
    old = final.with_name(f".{final.name}.old")
    if old.is_dir() and not final.exists():
        old.rename(final)
        log.warning("restored %s from an interrupted swap", final)


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written directory into place, so a crash never leaves a half-written checkpoint."""
    old = final.with_name(f".{final.name}.old")
    recover_swap(final)
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def staging_dir(final: Path) -> Path:
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp
