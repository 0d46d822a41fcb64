"""The machine: torch and the packages runs import; on a GPU the GPU, CUDA, cuDNN, TF32 flags, bf16 and SDPA backends;
segbench's Clock against known durations; a 1-rank process group through segbench's collectives."""

from __future__ import annotations

import importlib.util
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

from segbench.bench.measure.clock import Clock
from segbench.bench.measure.latency import cpu_model_name, fp32_precision, sdpa_enabled, tf32_flags
from segbench.bench.run import distributed
from segbench.bench.run.config import usable_cores

REQUIRED = (
    ("imagecorruptions", "imagecorruptions-imaug"),
    ("cityscapesscripts", "cityscapesScripts"),
    ("numba", "numba"),
    ("timm", "timm"),
    ("safetensors", "safetensors"),
    ("filelock", "filelock"),
    ("pandas", "pandas"),
    ("skimage", "scikit-image"),
    ("cv2", "opencv-python"),
    ("scipy", "scipy"),
    ("PIL", "pillow"),
    ("tqdm", "tqdm"),
)
"""(import name, distribution) of what the checks' runs import beside torch."""


# --------------------------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu(budget_s=10)
def test_environment(rows):
    """torch, and the packages runs import (a bare GPU machine's image often lacks some: see the carry note)."""
    rows.info(
        "torch",
        f"torch {torch.__version__}",
        f"Python {platform.python_version()}, {torch.get_num_threads()} threads on {usable_cores()} cores "
        f"({cpu_model_name()})",
    )
    missing = [dist for module, dist in REQUIRED if importlib.util.find_spec(module) is None]
    found = f"{len(REQUIRED) - len(missing)} of {len(REQUIRED)}"
    detail = ", ".join(d for _, d in REQUIRED)
    if missing:
        detail = f"missing: {', '.join(missing)} (see the carry note: python -m benchmarks.gpu_check --help)"
    rows.judged(not missing, "packages runs import", found, detail)


@pytest.mark.gpu(budget_s=10)
def test_gpu_environment(cuda, rows):
    """The GPU, CUDA and cuDNN, the TF32 flags and fp32 precisions, bf16, and the SDPA backends, as segbench reads
    them for its provenance."""
    props = torch.cuda.get_device_properties(cuda)
    rows.info(
        "GPU, CUDA, cuDNN",
        props.name,
        f"{cuda} of {torch.cuda.device_count()}, sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} "
        f"GiB, {props.multi_processor_count} SMs; CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
    )
    flags = ", ".join(f"{k}={v}" for k, v in tf32_flags().items())
    precisions = ", ".join(f"{k}={v}" for k, v in fp32_precision().items())
    rows.info("TF32 flags", flags, f"fp32_precision: {precisions}")
    bf16 = torch.cuda.is_bf16_supported()
    rows.info("bf16", "supported" if bf16 else "not supported", "torch.cuda.is_bf16_supported()")
    enabled = sdpa_enabled()
    on = [name for name, v in enabled.items() if v]
    detail = ", ".join(f"{k}={v}" for k, v in enabled.items())
    rows.info("SDPA backends", f"{len(on)} of {len(enabled)} enabled", detail)


# --------------------------------------------------------------------------------------------------------------------
# Clock
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu(budget_s=15)
def test_clock_cpu_sleep(rows):
    """segbench's Clock on the host: a 5 ms sleep."""
    ms = statistics.median(Clock("cpu").time_ms(lambda: time.sleep(0.005)) for _ in range(5))
    rows.judged(4.5 <= ms <= 20, "cpu: time.sleep(5 ms)", f"{ms:.2f} ms", "Clock('cpu'), perf_counter, median of 5")


def _sleep_cycles(ms: float) -> int:
    """GPU cycles that `torch.cuda._sleep` spins for about `ms` milliseconds, measured with raw CUDA events on the
    current device (a few rounds, so that the clocks have ramped up)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    cycles = 10_000_000
    for _ in range(3):
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        per_ms = cycles / start.elapsed_time(end)
        cycles = int(per_ms * 20)  # the next rounds: about 20 ms
    return int(per_ms * ms)


def _raw_event_ms(fn: Callable[[], Any]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


@pytest.mark.gpu(budget_s=15)
def test_clock_cuda_sleep(cuda, rows):
    """segbench's Clock against a 5 ms kernel on "cuda" and "cuda:N" (against raw events), a perf_counter negative
    control (about 0: the host clock sees only the launch), and the deferred reads."""
    cycles = _sleep_cycles(5.0)

    def kernel() -> None:
        torch.cuda._sleep(cycles)

    for name in ("cuda", f"cuda:{cuda.index}"):
        clock = Clock(name)
        clock.synchronize()
        ours, raw = [], []
        for _ in range(5):  # alternating, so that a change of the GPU's clock hits both alike
            ours.append(clock.time_ms(kernel))
            raw.append(_raw_event_ms(kernel))
        a, reference = statistics.median(ours), statistics.median(raw)
        ok = abs(a - reference) <= 0.1 * reference and 2.5 <= a <= 10
        figure = f"{a:.2f} ms (raw events {reference:.2f})"
        rows.judged(ok, f"{name}: _sleep(5 ms)", figure, f"Clock({name!r}).time_ms, median of 5")
    torch.cuda.synchronize()
    ms = Clock("cpu").time_ms(kernel)
    torch.cuda.synchronize()
    rows.judged(ms < 0.5, "perf_counter control", f"{ms:.3f} ms", "the same kernel on the host clock: its launch only")
    clock = Clock(f"cuda:{cuda.index}")
    clock.synchronize()
    for _ in range(4):
        start = clock.mark()
        kernel()
        clock.add("sleep", start, clock.mark())
    total = clock.seconds()["sleep"] * 1e3
    ok = abs(total - 4 * reference) <= 0.4 * reference
    rows.judged(ok, "deferred reads", f"{total:.2f} ms for 4", "Clock.add x4, one seconds(); within 10%")


# --------------------------------------------------------------------------------------------------------------------
# A process group
# --------------------------------------------------------------------------------------------------------------------


class _OneRankGroup(distributed.DistContext):
    """segbench's distributed context over a real 1-rank group, with its collectives switched on (a 1-rank context
    otherwise skips them)."""

    @property
    def enabled(self) -> bool:
        return True


@pytest.mark.gpu(budget_s=20)
def test_process_group(device, rows, tmp_path):
    """A 1-rank process group (NCCL on a GPU, gloo on the CPU) through segbench's collectives: all_reduce of int64
    and float64 (exact), barrier, and rank 0's long step (`on_main`) before the broadcast the other ranks wait in."""
    import torch.distributed as dist

    cuda = device.type == "cuda"
    backend = "nccl" if cuda else "gloo"
    if dist.is_initialized():
        raise RuntimeError("a process group is already initialised in this process")
    timeout = distributed.collective_timeout()
    device_id = {"device_id": device} if cuda else {}  # NCCL's communicator on the measured GPU
    store = dist.FileStore(str(tmp_path / "process-group"), 1)  # as torch's own NCCL tests rendezvous
    dist.init_process_group(backend, store=store, rank=0, world_size=1, timeout=timeout, **device_id)
    group = _OneRankGroup(rank=0, world_size=1, local_rank=0, device=device)
    try:
        ints = torch.tensor([2**40 + 7, -3, 0], dtype=torch.int64, device=device)
        floats = torch.tensor([0.1, 1e-300, -2.5], dtype=torch.float64, device=device)
        t0 = time.perf_counter()
        got_i = distributed.all_reduce_(ints.clone(), group).cpu()
        got_f = distributed.all_reduce_(floats.clone(), group, "max").cpu()
        ms = (time.perf_counter() - t0) * 1e3
        ok = torch.equal(got_i, ints.cpu()) and torch.equal(got_f, floats.cpu())
        rows.judged(ok, f"{backend} all_reduce int64 + float64", f"exact, {ms:.1f} ms", "sum and max, 1 rank")
        t0 = time.perf_counter()
        distributed.barrier(group)
        flags = (distributed.any_failed(False, group), distributed.any_failed(True, group))
        ms = (time.perf_counter() - t0) * 1e3
        rows.judged(flags == (False, True), f"{backend} barrier, any_failed", f"{ms:.1f} ms", f"any_failed {flags}")
        step = 3.0 if cuda else 1.0
        t0 = time.perf_counter()
        value = distributed.on_main(lambda: (time.sleep(step), {"answer": 42})[1], group)
        seconds = time.perf_counter() - t0
        ok = value == {"answer": 42} and seconds >= step
        detail = f"group timeout {timeout.total_seconds() / 60:.0f} min (segbench's)"
        rows.judged(ok, f"{backend} rank-0 long step", f"{step:.0f} s step, {seconds:.2f} s", detail)
    finally:
        dist.destroy_process_group()
