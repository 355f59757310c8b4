"""Data-parallel training over several processes: everything the trainings need for it, in one place.

    torchrun --nproc_per_node 4 -m presales.cli train crs|llm-base|llm --data DIR --out RUN ...
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 8 -m presales.cli ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `setup()` joins the process group (NCCL with CUDA, else gloo)
and every process trains a replica of the model on its share of each global batch:

- **Sharding.** The batches of an epoch are the same in every process (they are drawn from the seed, as in
  one process); process r takes items r, r+W, r+2W, ... of each global batch (`Dist.shard`), so
  `--batch-size` stays the global batch and a run on W processes takes the same steps as a run on one.
- **Gradients.** Each process backpropagates its shard's mean loss weighted by its share of the global
  batch (`Dist.scale`: n_r / sum n, the count all-reduced on the device, no host sync); `sync_grads` then sums
  the gradients over the processes (bucketed all-reduces), so every replica takes the same optimizer step
  as one process on the whole batch. A parameter that no process used keeps no gradient, as in one process.
- **Agreement.** The loss a process reports is the global batch's (`Dist.scale` all-reduces it beside the
  weight), so logs, divergence checks and the best model are the same everywhere; `any_true` makes a
  stop decision (the time budget) common, so no process waits alone in a collective.
- **Rank 0 writes.** Only the main process writes the run directory (log, checkpoints, best model,
  predictions, metrics; `RunDir` ignores the others' writes), logs at INFO and draws progress bars; the
  others load a checkpoint for `--resume` from the same staging directory once rank 0 has prepared it.

One process (no WORLD_SIZE, or 1) is the default: every method is then a no-op, at no cost.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Sequence, TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T")

TIMEOUT_ENV = "PRESALES_DIST_TIMEOUT_MIN"  # minutes a process waits in a collective (rank 0 validating)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------------------------ data
    def shard(self, batch: Sequence[T]) -> tuple[list[T], bool]:
        """This process's share of a global batch: items rank, rank + W, ...; and whether it is real.
        A share that would be empty (a global batch smaller than W) is the batch's first item, to be
        weighted 0 (`scale(loss, 0)`), so that every process still takes part in the step."""
        if not self.enabled:
            return list(batch), True
        mine = list(batch[self.rank::self.world])
        return (mine, True) if mine else (list(batch[:1]), False)

    # ------------------------------------------------------------------------------------ gradients
    def scale(self, loss: torch.Tensor, n: float, tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(what to backpropagate, the global batch's loss, the global batch's tokens): `loss` is the mean
        over this process's n items (samples, or the tokens the loss averages), `tokens` what it read;
        the first is loss * n / N (N: the items of all processes), the second sum_r loss_r n_r / N, all on
        the loss's device, without waiting for them (one all-reduce of three numbers)."""
        if not self.enabled:
            return loss, loss.detach(), torch.as_tensor(float(tokens))
        import torch.distributed as dist

        contribution = loss.detach().float() * float(n) if n else torch.zeros((), device=loss.device)  # never NaN * 0
        sums = torch.stack([torch.as_tensor(float(n), device=loss.device, dtype=torch.float32), contribution,
                            torch.as_tensor(float(tokens), device=loss.device, dtype=torch.float32)])
        dist.all_reduce(sums)
        total = sums[0].clamp(min=1e-12)
        return loss * (float(n) / total).to(loss.dtype), sums[1] / total, sums[2]

    def sync_grads(self, params: Iterable[torch.nn.Parameter], bucket_mb: float = 64.0) -> None:
        """Sum the gradients over the processes (they were scaled by `scale`). A parameter keeps no
        gradient only when no process gave it one."""
        if not self.enabled:
            return
        import torch.distributed as dist

        params = [p for p in params if p.requires_grad]
        if not params:
            return
        device = params[0].device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        used = [p for p, h in zip(params, has.tolist()) if h]
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        limit = int(bucket_mb * 2 ** 20)
        bucket: list[torch.Tensor] = []
        size = 0
        for p in used:
            bucket.append(p.grad)
            size += p.grad.numel() * p.grad.element_size()
            if size >= limit:
                _all_reduce_flat(bucket)
                bucket, size = [], 0
        if bucket:
            _all_reduce_flat(bucket)

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's weights in every replica (the same seed builds the same model; this makes sure)."""
        if not self.enabled:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    # ------------------------------------------------------------------------------------ agreement
    @property
    def device(self) -> torch.device:
        """Where this process's collectives of small values run (NCCL takes only CUDA tensors)."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def any_true(self, flag: bool) -> bool:
        """Whether `flag` holds in any process (every process gets the same answer)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()

    def close(self) -> None:
        """Leave the process group (at the end of a training; a later setup() joins again)."""
        global _CURRENT
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        _CURRENT = Dist()


def _all_reduce_flat(grads: list[torch.Tensor]) -> None:
    import torch.distributed as dist

    if len(grads) == 1:
        dist.all_reduce(grads[0])
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


_CURRENT = Dist()


def current() -> Dist:
    """The process's place in the group (one process, rank 0, when none was set up)."""
    return _CURRENT


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def setup(device: str = "auto") -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE > 1), once per process; else one process.
    NCCL when CUDA is used (each process on the GPU LOCAL_RANK), else gloo. Processes other than
    rank 0 log only warnings."""
    global _CURRENT
    if not launched() or _CURRENT.enabled:
        return _CURRENT
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            from uneed.errors import PresalesError

            raise PresalesError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) visible; "
                                "start at most one process per GPU (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
    minutes = float(os.environ.get(TIMEOUT_ENV, "120"))
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    _CURRENT = Dist(rank, world, local_rank, backend)
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    log.info("data-parallel training: %d processes (%s), this is rank %d", world, backend, rank)
    return _CURRENT
