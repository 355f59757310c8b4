"""The training loop that `train llm-base`, `train llm` and `train controller` share.

A TrainLoop runs epochs of batches: the caller's loss, backward (with gradient accumulation), grad
clipping, optimizer and scheduler steps, a tqdm bar, the time budget (--max-minutes) and the step cap
(--max-steps). It stops mid-epoch and resumes at (epoch, batch) from a checkpoint's trainer state.
Validation, logging and checkpoints stay with the caller, as callbacks.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch

from training.distributed import current
from training.runtime import RunDir
from uneed.logs import progress_bar

STATE_FILE = "trainer_state.pt"  # in a checkpoint directory: what TrainLoop(state=...) resumes from


def length_batches(lengths: Sequence[int], batch_size: int, seed: int, shuffle: bool = True,
                   pool: int = 50) -> list[list[int]]:
    """Batches of similar length (less padding): shuffle, sort within pools of batch_size*pool, cut,
    shuffle the batches. Deterministic in `seed`, so a resumed epoch sees the same order."""
    idx = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(idx)
    batches = []
    step = max(1, batch_size * pool)
    for start in range(0, len(idx), step):
        chunk = sorted(idx[start:start + step], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def cosine_schedule(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def save_trainer_state(directory: Path, **state) -> None:
    state["rng"] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    torch.save(state, directory / STATE_FILE)


def load_trainer_state(directory: Path) -> dict:
    from uneed.errors import PresalesError

    path = directory / STATE_FILE
    if not path.is_file():
        raise PresalesError(f"--resume: no {STATE_FILE} in {directory}; start without --resume")
    state = torch.load(path, map_location="cpu", weights_only=False)
    rng = state.get("rng") or {}
    if "python" in rng:
        random.setstate(rng["python"])
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    return state


@dataclass
class Epoch:
    """One epoch as the end-of-epoch callback sees it."""

    index: int  # 0-based
    losses: list[float] = field(default_factory=list)  # one per batch trained in this process
    tokens: int = 0
    stopped: bool = False  # the time budget or the step cap ended training in this epoch
    resume_at: tuple[int, int] = (0, 0)  # (epoch, batch) that a checkpoint written now continues from
    started: float = field(default_factory=time.time)

    @property
    def train_loss(self) -> float:
        return sum(self.losses) / max(1, len(self.losses))

    def seconds(self) -> float:
        """Seconds since the epoch began, up to now (so it counts whatever the callback did before)."""
        return time.time() - self.started


class TrainLoop:
    """The loop; `state` is a trainer state saved from checkpoint_state() (for --resume), `name` starts the
    progress bar's label.

    The clock behind max_minutes and elapsed() starts when the loop is made."""

    def __init__(self, optimizer, scheduler, params: Iterable[torch.nn.Parameter], *, max_grad_norm: float = 1.0,
                 grad_accum: int = 1, max_minutes: float = 0.0, max_steps: int = 0, log_steps: int = 0,
                 save_steps: int = 0, run: RunDir | None = None, progress: bool = True, name: str = "train",
                 logger: logging.Logger | None = None, state: Mapping | None = None):
        self.optimizer, self.scheduler, self.params = optimizer, scheduler, list(params)
        self.max_grad_norm, self.grad_accum = max_grad_norm, grad_accum
        self.max_minutes, self.max_steps = max_minutes, max_steps
        self.log_steps, self.save_steps, self.run = log_steps, save_steps, run
        self.progress, self.name = progress, name
        self.log = logger or logging.getLogger(__name__)  # the caller's, so its warnings keep their name
        self.start_epoch, self.start_batch, self.global_step, self.elapsed_before = 0, 0, 0, 0.0
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            self.start_epoch, self.start_batch = state["epoch"], state["batch"]
            self.global_step, self.elapsed_before = state["global_step"], state.get("elapsed", 0.0)
        self.first_loss: float | None = None  # of the first batch this process trains
        self.stopped = False
        self.t0 = time.time()
        self._tokens_since_log, self._log_t0 = 0, self.t0  # tokens/s of each logged stretch of steps

    def elapsed(self) -> float:
        """Training seconds so far, the runs before a resume included."""
        return self.elapsed_before + time.time() - self.t0

    def checkpoint_state(self, epoch: int, batch: int) -> dict:
        """What a checkpoint saves (save_trainer_state) so that `state=` resumes at
        (epoch, batch)."""
        return dict(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(), epoch=epoch,
                    batch=batch, global_step=self.global_step, elapsed=self.elapsed())

    def fit(self, epochs: int, batches: Callable[[int], list[list[int]]],
            batch_loss: Callable[[list[int]], tuple[torch.Tensor, int]], on_epoch: Callable[[Epoch], None],
            on_save: Callable[[int, int], None] | None = None) -> bool:
        """Train up to `epochs`; True when max_minutes or max_steps stopped it early.

        batches(epoch): the epoch's (global) batches of example indices, the same each time it is asked (a
        resumed epoch skips the batches done) and in every process; batch_loss(indices): (loss, tokens) or
        (loss, tokens, n), the loss a mean over n items (default: len(indices)); on_save(epoch, batch): every
        save_steps optimizer steps; on_epoch(Epoch): after each epoch (validation, log, checkpoint).

        Data-parallel (training.distributed, under torchrun): each process trains on its share of each
        batch and the gradients are summed before the step, so the steps, the losses in `Epoch` (the
        global batches') and the stops are those of one process; the callbacks run in every process
        (they write through RunDir, whose writes only rank 0 makes)."""
        budget = self.max_minutes * 60 if self.max_minutes else float("inf")
        dist = current()
        for epoch in range(self.start_epoch, epochs):
            order = batches(epoch)
            skip = self.start_batch if epoch == self.start_epoch else 0
            ep = Epoch(epoch)
            self._tokens_since_log, self._log_t0 = 0, time.time()  # a stretch never spans the validation between epochs
            bar = progress_bar(total=len(order), initial=skip, desc=f"{self.name} epoch {epoch + 1}/{epochs}",
                               enabled=self.progress and dist.is_main, dynamic_ncols=True)
            for b in range(skip, len(order)):
                batch, real = dist.shard(order[b])  # this process's share of the global batch (all of it in one)
                loss, tokens, *weight = batch_loss(batch)
                n = (weight[0] if weight else len(batch)) if real else 0
                loss, value, tokens = dist.scale(loss, n, tokens if real else 0)  # the global batch's loss
                (loss / self.grad_accum).backward()
                tokens = int(tokens)
                self._tokens_since_log += tokens
                if (b + 1) % self.grad_accum == 0 or b + 1 == len(order):
                    self._step(value, epoch, b + 1, on_save)
                value = value.item()
                self.first_loss = value if self.first_loss is None else self.first_loss
                ep.losses.append(value)
                ep.tokens += tokens
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}", refresh=False)
                if self.max_steps and self.global_step >= self.max_steps:
                    self.stopped = True
                    break
                if budget != float("inf") and dist.any_true(self.elapsed() > budget):  # every process stops here
                    self.log.warning("--max-minutes %.1f reached at epoch %d, batch %d/%d: stopping",
                                     self.max_minutes, epoch + 1, b + 1, len(order))
                    self.stopped = True
                    break
            bar.close()
            ep.stopped = self.stopped
            ep.resume_at = (epoch, b + 1) if self.stopped else (epoch + 1, 0)
            on_epoch(ep)
            if self.stopped:
                break
        return self.stopped

    def _step(self, loss: torch.Tensor, epoch: int, batch: int, on_save) -> None:
        current().sync_grads(self.params)  # data-parallel: the gradient of the whole global batch
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        if self.run is not None and self.log_steps and self.global_step % self.log_steps == 0:
            now = time.time()
            self.run.log(step=self.global_step, train_loss_step=loss.item(), lr=self.scheduler.get_last_lr()[0],
                         tokens=self._tokens_since_log, tokens_per_s=self._tokens_since_log / max(now - self._log_t0, 1e-9))
            self._tokens_since_log, self._log_t0 = 0, now
        if on_save is not None and self.save_steps and self.global_step % self.save_steps == 0:
            on_save(epoch, batch)
