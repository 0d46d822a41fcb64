"""Multi-process evaluation under `torchrun`: process group, image sharding, reductions, rank-0-only writes.

Launch any run with the standard launcher, e.g. `torchrun --nproc_per_node 4 run_bench.py ...` (or several nodes
with `--nnodes` and a rendezvous endpoint). The launcher sets `RANK`, `WORLD_SIZE` and `LOCAL_RANK`; without them
everything here degrades to a single process and never touches `torch.distributed`.

* Backend: NCCL when the device is CUDA (rank `r` uses `cuda:LOCAL_RANK`), gloo on CPU.
* Sharding: rank `r` of `W` takes images `r, r + W, r + 2W, ...`. Every image is evaluated exactly once, uneven
  tails included (unlike `DistributedSampler`, which pads by repeating images).
* Confusion matrices are integer and additive, so `all_reduce(SUM)` of the per-rank matrices equals the matrix of a
  single-process run exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, local rank, device, and whether it set up the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def setup(device: str = "cpu") -> DistContext:
    """Join the process group that `torchrun` describes in the environment (if any) and pick this rank's device.

    Args:
        device: "cpu", "cuda" or "cuda:<i>". Under torchrun with CUDA, the rank uses `cuda:LOCAL_RANK`.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device 'cpu'")
    if world <= 1:
        return DistContext(device=dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        here = True
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, initialized_here=here)


def teardown(ctx: DistContext) -> None:
    """Leave the process group if `setup` created it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(n: int, rank: int, world_size: int) -> range:
    """Indices of `n` items for `rank` of `world_size`: `rank, rank + W, ...` (no duplicates, no skips)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    return range(rank, n, world_size)


def all_reduce_(tensor: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce ("sum" or "max") across ranks; a no-op in a single process."""
    if ctx.enabled:
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def broadcast(obj: T, ctx: DistContext) -> T:
    """Rank 0's (picklable) object on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T], ctx: DistContext) -> T:
    """Run `fn` on rank 0 and give its result to every rank; an exception there is raised on every rank.

    Keeps all ranks in step when rank 0 decides something (run folder, resume check) that may fail.
    """
    result: Any = None
    error: BaseException | None = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as exc:  # re-raised below on every rank
            error = exc
    if ctx.enabled:
        result, error = broadcast((result, error), ctx)
    if error is not None:
        raise error
    return result


def any_failed(failed: bool, ctx: DistContext) -> bool:
    """True on every rank when any rank reports a failure (so that no rank waits for a peer that gave up)."""
    if not ctx.enabled:
        return failed
    flag = torch.tensor([int(failed)], device=ctx.device)
    all_reduce_(flag, ctx, "max")
    return bool(flag.item())


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
