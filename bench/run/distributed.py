"""Multi-process evaluation under `torchrun`: process group, image sharding, reductions, rank-0-only writes.

Launch any run with the standard launcher, e.g. `torchrun --nproc_per_node 4 run_bench.py ...` (or several nodes
with `--nnodes` and a rendezvous endpoint). The launcher sets `RANK`, `WORLD_SIZE` and `LOCAL_RANK`; without them
everything here degrades to a single process and never touches `torch.distributed`.

* Backend: NCCL when the device is CUDA, gloo on CPU. Rank `r` uses `cuda:(LOCAL_RANK % visible GPUs)`: the local
  rank itself on a node whose ranks all see every GPU, `cuda:0` where each task sees only its own GPU (SLURM).
* Timeout: rank 0 runs the efficiency cells alone (FLOP tracing, compiles, several resolutions) while the other ranks
  wait in a collective, so the group's timeout is long: `SEGBENCH_DIST_TIMEOUT_MIN` minutes (default
  `DEFAULT_TIMEOUT_MIN`), not NCCL's 10 minutes, after which the NCCL watchdog would abort the waiting ranks.
* Sharding: rank `r` of `W` takes images `r, r + W, r + 2W, ...`. Every image is evaluated exactly once, uneven
  tails included (unlike `DistributedSampler`, which pads by repeating images).
* Confusion matrices are integer and additive, so `all_reduce(SUM)` of the per-rank matrices equals the matrix of a
  single-process run exactly.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

DEFAULT_TIMEOUT_MIN = 240.0
"""Minutes a rank may wait in one collective (`SEGBENCH_DIST_TIMEOUT_MIN` overrides): longer than rank 0's longest
efficiency sweep (a large model's FLOP tracing, compiles and timings at four resolutions)."""


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


def collective_timeout() -> datetime.timedelta:
    """How long a rank waits in one collective before the group gives up: `SEGBENCH_DIST_TIMEOUT_MIN` minutes, else
    `DEFAULT_TIMEOUT_MIN`."""
    value = os.environ.get("SEGBENCH_DIST_TIMEOUT_MIN")
    if value is None:
        return datetime.timedelta(minutes=DEFAULT_TIMEOUT_MIN)
    try:
        minutes = float(value)
    except ValueError:
        minutes = float("nan")
    if not minutes > 0 or minutes == float("inf"):
        raise ValueError(f"environment variable SEGBENCH_DIST_TIMEOUT_MIN={value!r} is not a number of minutes > 0")
    return datetime.timedelta(minutes=minutes)


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """This rank's GPU: `cuda:(local_rank % visible GPUs)` (every rank of a node sees all its GPUs, or each sees only
    its own, as under SLURM with one GPU per task); `device` itself when it is not CUDA."""
    if device.type != "cuda":
        return device
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device: str = "cpu") -> DistContext:
    """Join the process group that `torchrun` describes in the environment (if any) and pick this rank's device.

    Args:
        device: "cpu", "cuda" or "cuda:<i>". Under torchrun with CUDA, the rank uses `rank_device` (its local rank
            among the GPUs it sees).

    Raises:
        ValueError: CUDA asked for but not there; a malformed torchrun or `SEGBENCH_DIST_TIMEOUT_MIN` variable.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device 'cpu'")
    if world <= 1:
        return DistContext(device=dev)
    timeout = collective_timeout()
    dev = rank_device(dev, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timeout)
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
        except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
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
