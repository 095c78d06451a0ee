"""Training across processes under ``torchrun``: the one place that knows about process groups.

``torchrun --nproc-per-node N --no-python superpos run ...`` starts N copies of the command with RANK,
WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR / MASTER_PORT, or a c10d rendezvous across nodes) in
their environment. ``session()`` (entered once by ``engine.cli.main``) joins the process group —
gloo on the CPU, NCCL when the run trains on CUDA — and leaves it at the end; without those
variables (or with WORLD_SIZE=1) nothing is initialised and every helper here is the identity, so a
single process runs exactly the code it always ran.

What the jobs do with it (``docs/distributed.md``):

- every rank computes the same *global* batch a single process would use and trains on its
  contiguous block [r·B/W, (r+1)·B/W) (``block``); gradients are summed or averaged across ranks,
  so N processes equal one process on the same global batch up to the order of float additions;
- the model is wrapped in ``torch.nn.parallel.DistributedDataParallel`` (``wrap_model``); the
  SAE trainers (hand-written backward passes) all-reduce their gradients in one flat buffer
  (``all_reduce_sum_``) and use the global batch's statistics (``sum_``, ``gather_rows``);
- only the writer (rank 0) writes checkpoints, the tokenizer, the token cache, progress and the
  bundle (``is_writer``); the others wait at a ``barrier`` where a file they need is being made;
- a stop (Ctrl+C, a cancel) is agreed on by all ranks at the same step (``agree``).

Shape legend: B global batch, W world size, b = B/W rows per rank.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist

from engine.config import ConfigError

__all__ = ["Context", "current", "session", "is_writer", "barrier", "block", "check_divisible", "agree",
           "all_reduce_sum_", "all_reduce_max_", "sum_", "min_", "gather_rows", "wrap_model", "rank_device",
           "RankBlocks", "rank_source", "env_world_size"]

# Rank 0 may evaluate, harvest and write the bundle while the others wait at a barrier: hours, not
# the 30 minutes torch allows a collective by default.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=12)


@dataclass(frozen=True)
class Context:
    """This process's place in the run: rank r of world_size; local_rank picks its GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


_SINGLE = Context()
_current = _SINGLE


def current() -> Context:
    """The running process group's context (rank 0 of 1 outside torchrun)."""
    return _current


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when absent)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start the run with torchrun") \
            from None


def _backend(device_name: str) -> str:
    wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    return "nccl" if wants_cuda and dist.is_nccl_available() else "gloo"


@contextlib.contextmanager
def session(device_name: str = "auto") -> Iterator[Context]:
    """Join torchrun's process group for the duration of a command (a no-op for one process)."""
    global _current
    world = env_world_size()
    if world == 1 or _current.active:
        yield _current
        return
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise ConfigError("WORLD_SIZE is set but RANK is not: start distributed runs with torchrun") from None
    backend = _backend(device_name)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    _current = Context(rank=rank, world_size=world, local_rank=local_rank)
    try:
        yield _current
    finally:
        _current = _SINGLE
        if dist.is_initialized():
            dist.destroy_process_group()


def is_writer() -> bool:
    """Whether this process writes files and prints progress (rank 0, or the only process)."""
    return _current.rank == 0


def barrier() -> None:
    if _current.active:
        dist.barrier()


def check_divisible(batch_size: int, what: str) -> None:
    """Refuse a global batch the ranks cannot split evenly (one line, the flag to change)."""
    world = _current.world_size
    if batch_size % world:
        raise ConfigError(f"{what} is {batch_size}, which {world} processes cannot split evenly; "
                          f"use a multiple of {world} or another --nproc-per-node")


def block(batch: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous rows [r·b, (r+1)·b) of a global batch (the batch itself for one process)."""
    if not _current.active:
        return batch
    b = batch.shape[0] // _current.world_size
    return batch[_current.rank * b:(_current.rank + 1) * b]


def agree(flag: bool) -> bool:
    """True on every rank when it is true on any (a cancel seen by one rank stops all at the same step)."""
    if not _current.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _on_collective_device(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    target = _collective_device()
    return (t, False) if t.device == target else (t.to(target), True)


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Sum each tensor over the ranks, in place, through one flat buffer (one collective)."""
    if not _current.active or not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    flat, moved = _on_collective_device(flat)
    dist.all_reduce(flat)
    if moved:
        flat = flat.to(tensors[0].device)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def all_reduce_max_(t: torch.Tensor) -> None:
    """Elementwise maximum over the ranks, in place."""
    if not _current.active:
        return
    work, moved = _on_collective_device(t)
    dist.all_reduce(work, op=dist.ReduceOp.MAX)
    if moved:
        t.copy_(work)


def sum_(t: torch.Tensor) -> torch.Tensor:
    """The sum over the ranks of `t` (a new tensor; `t` itself for one process)."""
    if not _current.active:
        return t
    work = t.clone()
    all_reduce_sum_([work])
    return work


def min_(value: float) -> float:
    """The minimum of a number over the ranks."""
    if not _current.active:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return float(t.item())


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The global batch from every rank's block, in rank order (``block``'s inverse)."""
    if not _current.active:
        return x
    work, moved = _on_collective_device(x.contiguous())
    parts = [torch.empty_like(work) for _ in range(_current.world_size)]
    dist.all_gather(parts, work)
    out = torch.cat(parts)
    return out.to(x.device) if moved else out


def rank_device(device: torch.device) -> torch.device:
    """cuda:LOCAL_RANK for a CUDA run under torchrun (each process its own GPU); else `device`."""
    if _current.active and device.type == "cuda":
        return torch.device("cuda", _current.local_rank)
    return device


class _LossModule(torch.nn.Module):
    """``model.loss`` as a forward pass, so DistributedDataParallel's hooks see it."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x, y)


def wrap_model(model: torch.nn.Module, device: torch.device):
    """A callable ``(x, y) -> loss``: ``model.loss`` itself, or under torchrun the model's loss inside
    DistributedDataParallel (gradients averaged over the ranks during the backward pass)."""
    if not _current.active:
        return model.loss
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(_LossModule(model), device_ids=ids)


class RankBlocks:
    """An activation source that yields this rank's block of each global batch of another source."""

    def __init__(self, source):
        self.source = source
        self.d_in = source.d_in

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[torch.Tensor]:
        for batch in self.source.iter_batches(batch_size, start=start):
            yield block(batch)


def rank_source(source):
    """`source` for this rank: a source whose ``iter_batches`` takes ``rank`` and ``world_size``
    (a sharded cache) is asked for this rank's block directly; any other is sliced by ``RankBlocks``."""
    if not _current.active:
        return source
    params = inspect.signature(source.iter_batches).parameters
    if "rank" in params and "world_size" in params:
        return _ShardedSource(source)
    return RankBlocks(source)


class _ShardedSource:
    def __init__(self, source):
        self.source = source
        self.d_in = source.d_in

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[torch.Tensor]:
        return self.source.iter_batches(batch_size, start=start, rank=_current.rank,
                                        world_size=_current.world_size)
