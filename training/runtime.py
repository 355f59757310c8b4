"""What every training script shares: seeds, device and precision, the run directory, checkpoints
that survive a crash (write to a temporary name, then rename), a per-epoch log and its plot.

A run directory:
    RUN/config.yaml        the arguments of the run (reproduce with --config RUN/config.yaml)
    RUN/log.jsonl          one JSON object per logged step/epoch (loss, validation metrics, ...)
    RUN/checkpoint/        the latest state, for --resume
    RUN/best/              the best model by the validation metric
    RUN/curves.png         loss and validation curves
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uneed.arguments import save_yaml
from uneed.device import autocast  # noqa: F401  (the training scripts import it from here)

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA GPU is visible")
    return device


class RunDir:
    """A run's directory. It is made by the first write, so a run that fails on its inputs leaves nothing."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

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
        save_yaml(args, self._made() / "config.yaml")

    def log(self, **row: Any) -> None:
        row.setdefault("time", time.time())
        with (self._made() / "log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def read_log(self) -> list[dict]:
        path = self.path / "log.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def write_json(self, name: str, data: Any) -> Path:
        path = self._made() / name
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def plot_curves(self, keys: list[str], name: str = "curves.png") -> Path | None:
        """Plot logged values by epoch, one panel per key; returns the file or None when nothing was logged."""
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


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written directory into place, so a crash never leaves a half-written checkpoint."""
    old = final.with_name(f".{final.name}.old")
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
