"""Data-parallel training across processes and machines (``torchrun``), one rule for every sampler.

Every rank draws the **same global batch** with the same seeded generator (the trainer's, so the
draws do not depend on the number of processes) and keeps its own contiguous shard of it
(``shard``); after the backward pass the gradients are averaged over the ranks (``average_gradients``:
one flattened all-reduce per step), so the union of the ranks' batches is the single-process batch
and the averaged gradient is the single-process gradient, up to the order of the floating-point sums.
The global batch must divide by the number of processes (equal shards make the average of the
shards' mean losses the mean loss of the batch).

Why not the ``DistributedDataParallel`` wrapper: DDP reduces gradients only through its own
``forward``, and the method contract (``sbir_core.models.base``) computes a loss with
``training_loss(batch)`` or a whole ``train_step`` with inner loops (StyleMeUp's meta-gradient), not
with ``forward``. The same all-reduce, called by the method after its backward pass, serves both. What
this gives up is DDP's overlap of communication with the backward pass (its gradient buckets); that
cost has not been measured on GPUs here (``python -m sbir_core.bench train --processes 1,2`` measures
the CPU scaling of this scheme only).

Backends: ``gloo`` on CPUs, ``nccl`` when the config's device is CUDA. Rank 0 evaluates, writes
checkpoints, stores trained states and results; every rank reads a checkpoint to resume, so a run
can resume with another number of processes (the global batch, hence the run, is the same). With
one process (no ``torchrun``) every function here is a no-op.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sbir_core.errors import SBIRError


class DistributedError(SBIRError, RuntimeError):
    """A distributed setting that cannot work, or a collective that failed (a process died)."""


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def context() -> Context:
    """This process's rank and the number of processes (0 and 1 without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size())
    return Context()


def init_from_env(device: str = "cpu", timeout_s: float = 600.0) -> Context:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1); a no-op
    for a single process. ``gloo`` for CPUs, ``nccl`` for CUDA (one GPU per local rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_initialized()):
        return context()
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed")
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=dt.timedelta(seconds=timeout_s))
    return context()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def batch_size_of(batch: dict) -> int:
    """The number of independent items a sampler's batch holds: its tasks, or its anchors (``idx``)."""
    if "tasks" in batch:
        return len(batch["tasks"])
    if "idx" in batch:
        return len(batch["idx"])
    raise DistributedError(
        f"cannot tell the batch size of a batch with keys {sorted(batch)}: give it 'idx' or "
        f"'tasks', or override Method.shard_batch"
    )


def shard(batch: dict, rank: int, world: int) -> dict:
    """Rank ``rank``'s contiguous ``1 / world`` of a batch: every tensor (along dim 0) and list whose
    length is the batch size is cut; everything else (scalars, options) is kept whole."""
    n = batch_size_of(batch)
    if n % world:
        raise DistributedError(
            f"the global batch of {n} does not divide among {world} processes; choose a "
            f"batch size that is a multiple of {world}"
        )
    lo, hi = rank * n // world, (rank + 1) * n // world
    out = {}
    for key, value in batch.items():
        if (
            torch.is_tensor(value)
            and value.dim() >= 1
            and len(value) == n
            or isinstance(value, list)
            and len(value) == n
        ):
            out[key] = value[lo:hi]
        else:
            out[key] = value
    return out


def _collective(fn, what: str):
    try:
        return fn()
    except RuntimeError as err:  # gloo / nccl: a peer closed the connection, timed out, or died
        ctx = context()
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world}: the {what} failed ({err}); another process "
            f"probably died. Run the same command again to resume from the last "
            f"checkpoint"
        ) from err


def average_gradients(params) -> None:
    """Replace each parameter's gradient by its mean over the ranks (one flattened all-reduce)."""
    ctx = context()
    if not ctx.active:
        return
    grads = [p.grad for p in params if p.requires_grad and p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads]) if grads else torch.zeros(0)
    # every rank must reduce the same parameters (a rank whose step left one without a gradient would
    # otherwise sum misaligned tensors): compare the sizes first, and fail on every rank alike
    size = torch.tensor([flat.numel(), -flat.numel()], dtype=torch.float64)
    _collective(lambda: dist.all_reduce(size, op=dist.ReduceOp.MAX), "gradient size check")
    if size[0] != -size[1]:
        raise DistributedError(
            f"rank {ctx.rank}: the ranks' gradients differ in size ({int(-size[1])} to "
            f"{int(size[0])} values): a parameter got a gradient on some ranks only"
        )
    _collective(lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM), "gradient all-reduce")
    flat /= ctx.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_value(value: float) -> float:
    """A number (a loss) averaged over the ranks; the same number on every rank."""
    ctx = context()
    if not ctx.active:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    _collective(lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM), "loss all-reduce")
    return float(t) / ctx.world


def barrier() -> None:
    if context().active:
        _collective(dist.barrier, "barrier")
