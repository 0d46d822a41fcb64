"""A prepared GPU check: one run of at most 5 minutes on one GPU, one PASS/FAIL table with figures (issue 16).

    python -m benchmarks.gpu_check --device cuda                  # everything, on the current GPU
    python -m benchmarks.gpu_check --device cuda:1 --only clock,latency
    python -m benchmarks.gpu_check --device cpu                   # the CPU-meaningful rows; the rest say "needs CUDA"
    python -m benchmarks.gpu_check --device cuda --json check.json   # the rows as JSON too

The checks, in order (`--only` takes these names):

  environment  torch, CUDA, cuDNN, the GPU, TF32 flags, bf16 support, SDPA backends, the packages runs need
  clock        `torch.cuda._sleep` of about 5 ms read by segbench's Clock on "cuda" and "cuda:N" against raw CUDA
               events; a perf_counter negative control (about 0: the host clock sees only the launch)
  latency      `measure_latency`, SegFormer-B0 at 512x1024, fp32/fp16/bf16 x channels-last: the peak memory is the
               same for "cuda" and "cuda:N"; compiled vs eager with Dynamo's recompile count and graph counters
  energy       NVML (nvidia-ml-py): the efficiency rows' energy per image (J) and mean power (W) for B0 fp16 at
               512x1024, consistent with its latency; `hardware_info`'s clocks, power limit and persistence mode
  cudagraphs   the cudagraphs deploy backend: the demo SegFormer-B0 captured at 128x256 agrees with eager fp32
               (`check_deployment`, fp32 and fp16), refuses another shape, and its replay is timed against eager
  accuracy     demo models on synthetic scenes, fp32 and fp16, whole and slide, 2 workers: GPU confusion matrices
               equal a CPU run in fp32, and CUDA's sync debug mode finds no host sync in the per-batch calls
  faults       a NaN model fails only its own cells with the deferred message; an allocation far beyond the device
               fails its cells with the out-of-memory message while the run goes on
  numerics     SegFormer-B5 at 1024x2048: max |fp16 - fp32| (and bf16) logit difference, all finite; fp16 under each
               SDPA backend (flash, efficient, cuDNN, math) compared
  confusion    `ConfusionCounter`'s device path against the CPU kernel on random 2x1024x2048 labels: equal counts
  nccl         a 1-rank process group (NCCL; gloo on the CPU): all_reduce of int64 and float64, barrier, and rank 0's
               long step before the collective the other ranks would wait in
  calibrated   `calibrated_latency`: its calibration and model medians agree with an independent timing (ms, not us)
  pipeline     end-to-end cell throughput against forward-only at 1024x2048 with DataLoader workers, and the cell's
               confusion matrix against the same images predicted directly

With `--device cpu` each check runs what is meaningful on a CPU, at small sizes (under 2 minutes on 2 cores), and
says "needs CUDA" for the rest. Each check has a time budget (and the run 5 minutes in all): a check that crashes or
runs past it is a FAIL row with its one-line error, and the other checks still run. Exit code: 1 when a row FAILs,
2 when the check cannot start (CUDA asked for but absent), else 0.

The script runs from a checkout without installing segbench. A GPU machine's CUDA PyTorch image often lacks
imagecorruptions-imaug and cityscapesScripts (pure-Python wheels); the environment check's packages row names whatever
is missing, and `CARRY` (printed at start, and when segbench's own imports fail) says how to bring it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import inspect
import json
import math
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch import nn

CARRY = """\
# Carrying this check to a bare GPU machine (a copy of the working tree, a CUDA PyTorch, maybe no package registry):
#   with a registry there:  pip install -e ".[test]"
#   without one: runs need two pure-Python wheels that such an image lacks. Here, with the registry:
#     python -m pip download --no-deps --only-binary=:all: -d wheels imagecorruptions-imaug cityscapesScripts
#   and for the energy check's NVML rows (energy, power, clocks) the same with nvidia-ml-py;
#   carry wheels/ with the tree (an untracked folder travels with a copy of the working tree), and there:
#     python -m pip install --no-index --no-deps --target /tmp/site wheels/*.whl && export PYTHONPATH=/tmp/site
#     python -m benchmarks.gpu_check --device cuda --json gpu_check.json
#   segbench itself needs no install: the script imports it from the checkout."""

try:
    from segbench import models, suites
    from segbench.bench.data.cityscapes import CityscapesDataset
    from segbench.bench.data.synthetic import write_synthetic_cityscapes
    from segbench.bench.deploy import ArtifactCache, check_deployment, reference_logits
    from segbench.bench.deploy.backends import AutocastModule
    from segbench.bench.measure.clock import Clock
    from segbench.bench.measure.efficiency import NVML_STATE_KEYS, efficiency_sweep, hardware_info
    from segbench.bench.measure.inference import normalize, predict
    from segbench.bench.measure.latency import (
        calibrated_latency,
        calibration_workload,
        cpu_model_name,
        measure_latency,
    )
    from segbench.bench.measure.metrics import ConfusionCounter, mean_iou
    from segbench.bench.results.schema import (
        CALIBRATION_MEDIAN,
        ENERGY_PER_IMAGE,
        LATENCY_CALIBRATED,
        LATENCY_MEDIAN,
        LATENCY_RAW_MEDIAN,
        POWER_MEAN,
        UNAVAILABLE,
    )
    from segbench.bench.results.store import RunStore
    from segbench.bench.run import distributed
    from segbench.bench.run.config import InferenceSpec, RunConfig, default_workers, usable_cores
    from segbench.bench.run.outcome import RunFailed, RunResult
    from segbench.bench.run.runner import run
    from segbench.models.base import WeightsInfo
except ImportError as exc:  # a bare machine: say what to carry before anything else
    if __name__ == "__main__":
        sys.exit(f"{CARRY}\ngpu_check: cannot import segbench or what it needs ({exc}); carry it as above")
    raise


PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
NEEDS_CUDA = "needs CUDA"
TOTAL_BUDGET_S = 285.0
"""The checks' time in all (5 minutes less the start): each check gets its budget or what is left, whichever is less."""

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

DEMO = suites.get_suite("demo")
GPU_PRECISIONS = ("fp32", "fp16")
"""The accuracy check's precisions on a GPU: fp32, compared with the CPU, then the half precision."""


# --------------------------------------------------------------------------------------------------------------------
# Rows, checks and the context they share
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table.

    Attributes:
        name: what the row measures, within its check.
        status: PASS, FAIL or SKIP.
        figure: the number(s) the status rests on.
        detail: how it was measured, or why it failed or was skipped.
        check: the check that made it (filled in by `run_checks`).
        seconds: the check's wall time (filled in by `run_checks`).
    """

    name: str
    status: str
    figure: str = ""
    detail: str = ""
    check: str = ""
    seconds: float = 0.0


def judged(ok: bool, name: str, figure: str, detail: str = "") -> Row:
    """A PASS row when `ok`, else a FAIL row."""
    return Row(name, PASS if ok else FAIL, figure, detail)


def needs_cuda(*names: str) -> Iterator[Row]:
    """SKIP rows for the parts of a check that only a GPU can answer."""
    for name in names:
        yield Row(name, SKIP, "", NEEDS_CUDA)


@dataclass
class Context:
    """What the checks share: the device, a scratch folder, and synthetic scenes made once per size.

    Attributes:
        device: the measured device (``cpu`` or ``cuda:N``).
        tmp: a scratch folder, removed at the end of the run.
    """

    device: torch.device
    tmp: Path
    _scenes: dict[tuple[int, tuple[int, int]], Path] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def index(self) -> int:
        """The GPU's index (``cuda`` is made to mean this one at start)."""
        return self.device.index or 0

    def scenes(self, num_images: int, size: tuple[int, int]) -> Path:
        """A synthetic Cityscapes of `num_images` scenes of `size`; large sets are written by several processes."""
        key = (num_images, size)
        if key not in self._scenes:
            root = self.tmp / f"scenes-{num_images}-{size[0]}x{size[1]}"
            processes = min(8, usable_cores(), num_images) if size[0] * size[1] >= 2**19 else 1
            per = math.ceil(num_images / processes)
            shares = [(k, min(per, num_images - k * per)) for k in range(processes) if num_images > k * per]
            if len(shares) == 1:
                write_synthetic_cityscapes(root, num_images, size)
            else:  # each share its own city and seed, so that shares never collide; spawn: this process may hold CUDA
                with ProcessPoolExecutor(len(shares), mp_context=get_context("spawn")) as pool:
                    jobs = [
                        pool.submit(write_synthetic_cityscapes, root, n, size, seed=k, city=f"synth{k}")
                        for k, n in shares
                    ]
                    for job in jobs:
                        job.result()
            self._scenes[key] = root
        return self._scenes[key]


@dataclass(frozen=True)
class Check:
    """A named check: `fn(context)` yields its rows; on the CPU a `cuda_only` check is one SKIP row.

    Attributes:
        name: the name `--only` takes.
        fn: the check.
        budget_s: seconds it may take (on a GPU, at full size); past that it is stopped and FAILs.
        cuda_only: nothing of it is meaningful on a CPU.
    """

    name: str
    fn: Callable[[Context], Iterable[Row]]
    budget_s: float
    cuda_only: bool = False


class CheckTimeout(BaseException):
    """A check ran past its budget (a BaseException, so that no `except Exception` inside segbench swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `CheckTimeout` in the block after `seconds` (SIGALRM; no limit off the main thread or without it).

    A long C++ call (a compile, a kernel) is interrupted when it returns to Python.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"ran past its budget of {seconds:.3g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_checks(checks: Sequence[Check], ctx: Context, scale: float = 1.0, total_s: float = TOTAL_BUDGET_S) -> list[Row]:
    """Every check in order, each under its budget (times `scale`, and within `total_s` for the whole run).

    A check that raises, or runs past its budget, ends with one FAIL row carrying the one-line error; the rows it
    yielded before stay. Progress goes to stderr, one line per check.
    """
    rows: list[Row] = []
    start = time.perf_counter()
    for i, check in enumerate(checks, 1):
        t0 = time.perf_counter()
        left = total_s * scale - (t0 - start)
        got: list[Row] = []
        if check.cuda_only and not ctx.cuda:
            got.append(Row(check.name, SKIP, "", NEEDS_CUDA))
        elif left <= 0:
            got.append(Row("not run", FAIL, "", f"the run's {total_s * scale:.0f} s were spent before this check"))
        else:
            try:
                with time_limit(min(check.budget_s * scale, left)):
                    for row in check.fn(ctx):
                        got.append(row)
            except CheckTimeout as exc:
                got.append(Row("timeout", FAIL, "", f"{exc} (after {len(got)} rows)"))
            except Exception as exc:
                got.append(Row("crashed", FAIL, "", one_line(exc)))
        seconds = time.perf_counter() - t0
        rows += [dataclasses.replace(r, check=check.name, seconds=seconds) for r in got]
        failed = sum(r.status == FAIL for r in got)
        print(
            f"gpu_check [{i}/{len(checks)}] {check.name}: {len(got)} rows, {failed} FAIL ({seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """One aligned table: check, row, status, figure, seconds (on a check's first row) and detail."""
    head = ("check", "row", "status", "figure", "s", "detail")
    lines, seen = [], set()
    for r in rows:
        seconds = "" if r.check in seen else f"{r.seconds:.1f}"
        seen.add(r.check)
        lines.append((r.check, r.name, r.status, r.figure, seconds, r.detail))
    widths = [max(len(str(line[k])) for line in (head, *lines)) for k in range(len(head) - 1)]

    def fmt(line: Sequence[str]) -> str:
        cells = [str(c).ljust(w) if k != 4 else str(c).rjust(w) for k, (c, w) in enumerate(zip(line, widths))]
        return ("  ".join(cells) + "  " + line[-1]).rstrip()

    rule = "  ".join("-" * w for w in widths) + "  ------"
    return "\n".join([fmt(head), rule, *map(fmt, lines)])


# --------------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mean_ms(fn: Callable[[], Any], device: torch.device, calls: int) -> float:
    """Milliseconds per call of `calls` back-to-back calls, host clock around device waits: an independent timer."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3 / calls


def _seeded(name: str, **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    return models.create_model(name, **kwargs).eval()


def _tf32_flags() -> str:
    """The TF32 settings as torch reports them: the per-backend ``fp32_precision`` where torch has it (readable even
    where a process mixed it with the legacy flags, whose getters then raise), else the legacy flags."""
    b = torch.backends
    if hasattr(b.cuda.matmul, "fp32_precision"):
        return (
            f"fp32_precision: all={b.fp32_precision}, cuda.matmul={b.cuda.matmul.fp32_precision}, "
            f"cudnn.conv={b.cudnn.conv.fp32_precision}, cudnn.rnn={b.cudnn.rnn.fp32_precision}"
        )
    try:
        return (
            f"matmul allow_tf32={b.cuda.matmul.allow_tf32}, cudnn allow_tf32={b.cudnn.allow_tf32}, "
            f"float32_matmul_precision={torch.get_float32_matmul_precision()}"
        )
    except RuntimeError as exc:
        return f"unreadable ({one_line(exc)})"


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for matmuls and cuDNN convolutions in the block, set through the legacy switches (which keep torch's
    per-backend flags consistent, so both APIs stay readable); afterwards every flag is as before."""
    backends = torch.backends
    if hasattr(backends.cuda.matmul, "fp32_precision"):  # the legacy switches are views of these
        flags = (backends.cuda.matmul, backends.cudnn, backends.cudnn.conv, backends.cudnn.rnn)
        saved = [(flag, flag.fp32_precision) for flag in flags]
    else:
        saved = [(backends.cuda.matmul, backends.cuda.matmul.allow_tf32), (backends.cudnn, backends.cudnn.allow_tf32)]
    try:
        backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = False
        yield
    finally:
        for flag, value in saved:
            setattr(flag, "fp32_precision" if isinstance(value, str) else "allow_tf32", value)


def _cells(result: RunResult) -> dict[str, torch.Tensor]:
    """Confusion matrix of every finished cell of a run, by cell id."""
    return {cid: torch.tensor(rec["confusion_matrix"]) for cid, rec in RunStore(result.run_dir).finished().items()}


def _changed_pixels(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(cells whose matrices differ, pixels that changed class at least) between two runs' matrices."""
    if a.keys() != b.keys():
        raise ValueError(f"the runs have different cells: {sorted(a)} vs {sorted(b)}")
    diff = [int((a[k] - b[k]).abs().sum()) // 2 for k in a]
    return sum(d > 0 for d in diff), sum(diff)


# --------------------------------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------------------------------


def check_environment(ctx: Context) -> Iterator[Row]:
    """torch, the packages runs need; on a GPU: the GPU, CUDA and cuDNN, TF32 flags, bf16, SDPA backends."""
    yield Row(
        "torch",
        PASS,
        f"torch {torch.__version__}",
        f"Python {platform.python_version()}, {torch.get_num_threads()} threads on {usable_cores()} cores "
        f"({cpu_model_name()})",
    )
    missing = [dist for module, dist in REQUIRED if importlib.util.find_spec(module) is None]
    found = f"{len(REQUIRED) - len(missing)} of {len(REQUIRED)}"
    detail = ", ".join(d for _, d in REQUIRED)
    if missing:
        detail = f"missing: {', '.join(missing)} (see the carry note above)"
    yield judged(not missing, "packages runs import", found, detail)
    if not ctx.cuda:
        yield from needs_cuda("GPU, CUDA, cuDNN", "TF32 flags", "bf16", "SDPA backends")
        return
    props = torch.cuda.get_device_properties(ctx.device)
    yield Row(
        "GPU, CUDA, cuDNN",
        PASS,
        props.name,
        f"{ctx.device} of {torch.cuda.device_count()}, sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} "
        f"GiB, {props.multi_processor_count} SMs; CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
    )
    yield Row("TF32 flags", PASS, "", _tf32_flags())
    bf16 = torch.cuda.is_bf16_supported()
    yield Row("bf16", PASS, "supported" if bf16 else "not supported", "torch.cuda.is_bf16_supported()")
    sdp = torch.backends.cuda
    enabled = {
        "flash": sdp.flash_sdp_enabled(),
        "efficient": sdp.mem_efficient_sdp_enabled(),
        "cudnn": getattr(sdp, "cudnn_sdp_enabled", lambda: False)(),
        "math": sdp.math_sdp_enabled(),
    }
    on = [name for name, v in enabled.items() if v]
    yield Row("SDPA backends", PASS, f"{len(on)} of 4 enabled", ", ".join(f"{k}={v}" for k, v in enabled.items()))


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


def check_clock(ctx: Context) -> Iterator[Row]:
    """segbench's Clock against known durations: a host sleep on the CPU; on a GPU a 5 ms kernel on "cuda" and
    "cuda:N" (against raw events), a perf_counter negative control, and the deferred reads."""
    ms = statistics.median(Clock("cpu").time_ms(lambda: time.sleep(0.005)) for _ in range(5))
    yield judged(4.5 <= ms <= 20, "cpu: time.sleep(5 ms)", f"{ms:.2f} ms", "Clock('cpu'), perf_counter, median of 5")
    if not ctx.cuda:
        yield from needs_cuda("cuda: _sleep(5 ms)", "cuda:N: _sleep(5 ms)", "perf_counter control", "deferred reads")
        return
    cycles = _sleep_cycles(5.0)

    def kernel() -> None:
        torch.cuda._sleep(cycles)

    for name in ("cuda", f"cuda:{ctx.index}"):
        clock = Clock(name)
        clock.synchronize()
        ours, raw = [], []
        for _ in range(5):  # alternating, so that a change of the GPU's clock hits both alike
            ours.append(clock.time_ms(kernel))
            raw.append(_raw_event_ms(kernel))
        a, reference = statistics.median(ours), statistics.median(raw)
        ok = abs(a - reference) <= 0.1 * reference and 2.5 <= a <= 10
        figure = f"{a:.2f} ms (raw events {reference:.2f})"
        yield judged(ok, f"{name}: _sleep(5 ms)", figure, f"Clock({name!r}).time_ms, median of 5")
    torch.cuda.synchronize()
    ms = Clock("cpu").time_ms(kernel)
    torch.cuda.synchronize()
    yield judged(ms < 0.5, "perf_counter control", f"{ms:.3f} ms", "the same kernel on the host clock: its launch only")
    clock = Clock(f"cuda:{ctx.index}")
    clock.synchronize()
    for _ in range(4):
        start = clock.mark()
        kernel()
        clock.add("sleep", start, clock.mark())
    total = clock.seconds()["sleep"] * 1e3
    ok = abs(total - 4 * reference) <= 0.4 * reference
    yield judged(ok, "deferred reads", f"{total:.2f} ms for 4", "Clock.add x4, one seconds(); within 10%")


def _extra_fields(stats: Any) -> str:
    """Fields of a latency record beyond the ones this script reads (TF32 flags, SDPA backend, recompiles...)."""
    known = {
        "samples", "median_ms", "p90_ms", "p99_ms", "iqr_ms", "mean_ms", "std_ms", "cv", "noisy", "attempts",
        "attempt_cvs", "cv_threshold", "warmup", "iters", "clock", "images_per_s", "peak_memory_mib", "memory_kind",
        "threads", "device", "device_name", "precision", "input_size", "batch_size", "channels_last", "compiled",
    }  # fmt: skip
    extra = {k: v for k, v in vars(stats).items() if k not in known and v is not None}
    return "; ".join(f"{k}={v}" for k, v in extra.items())


def _dynamo_counts() -> tuple[int, int]:
    """(frames dynamo compiled, graphs it made) so far in this process."""
    from torch._dynamo.utils import counters

    return counters["frames"]["ok"], counters["stats"]["unique_graphs"]


def check_latency(ctx: Context) -> Iterator[Row]:
    """`measure_latency`: on the CPU fp32 at 128x256; on a GPU B0 at 512x1024, every precision x channels-last on
    "cuda" and "cuda:N" (peaks equal), and compiled against eager with dynamo's counters."""
    model = _seeded("segformer-b0")
    if not ctx.cuda:
        s = measure_latency(model, (128, 256), device="cpu", warmup=2, iters=5, max_retries=0)
        ok = math.isfinite(s.median_ms) and s.median_ms > 0 and s.clock == "perf_counter"
        yield judged(ok, "cpu fp32 128x256", f"{s.median_ms:.1f} ms, peak RSS {s.peak_memory_mib:.0f} MiB",
                     f"{s.memory_kind}, {s.threads} threads, cv {s.cv:.2f}")  # fmt: skip
        yield from needs_cuda("cuda vs cuda:N peak, every precision", "compiled vs eager")
        return
    size, args = (512, 1024), {"warmup": 3, "iters": 10, "max_retries": 1}
    bf16 = torch.cuda.is_bf16_supported()
    eager = None  # fp16, NCHW: what the compiled model is compared with
    for precision in ("fp32", "fp16", "bf16"):
        for channels_last in (False, True):
            name = f"B0 {precision}{' NHWC' if channels_last else ''}"
            if precision == "bf16" and not bf16:
                yield Row(name, SKIP, "", "bf16 not supported on this GPU")
                continue
            a = measure_latency(model, size, device="cuda", precision=precision, channels_last=channels_last, **args)
            b = measure_latency(model, size, device=f"cuda:{ctx.index}", precision=precision,
                                channels_last=channels_last, **args)  # fmt: skip
            eager = a if (precision, channels_last) == ("fp16", False) else eager
            same = abs(a.peak_memory_mib - b.peak_memory_mib) <= 1.0 and a.peak_memory_mib > 0
            detail = f"'cuda' / 'cuda:{ctx.index}' recorded as {a.device} / {b.device}; {_extra_fields(a)}"
            if not same:  # the same device string again: does the order (warm-up, autotuning) make the difference?
                c = measure_latency(model, size, device="cuda", precision=precision, channels_last=channels_last,
                                    **args)  # fmt: skip
                detail += f"; 'cuda' measured again: {c.peak_memory_mib:.1f} MiB"
            figure = f"{a.median_ms:.2f}/{b.median_ms:.2f} ms, peak {a.peak_memory_mib:.1f}/{b.peak_memory_mib:.1f} MiB"
            yield judged(same, name, figure, detail)
    before = _dynamo_counts()
    compiled = measure_latency(model, size, device="cuda", precision="fp16", compile=True, **args)
    after = _dynamo_counts()
    recompiles, fallback = (getattr(compiled, k, None) for k in ("dynamo_recompiles", "dynamo_eager_fallback"))
    yield judged(
        compiled.compiled and not recompiles and not fallback,
        "compiled vs eager (fp16)",
        f"{eager.median_ms:.2f} -> {compiled.median_ms:.2f} ms ({eager.median_ms / compiled.median_ms:.2f}x)",
        f"dynamo_recompiles={recompiles}, dynamo_eager_fallback={fallback}; dynamo counters +{after[0] - before[0]} "
        f"frames, +{after[1] - before[1]} graphs",
    )


def check_energy(ctx: Context) -> Iterator[Row]:
    """NVML through segbench: `efficiency_sweep`'s ``energy_per_image`` (J) and ``power_mean`` (W) rows for B0 fp16 at
    512x1024 (200 timed calls: a window of about a second, well over NVML's 20-100 ms updates), which must agree with
    the latency (energy per image ~ power x time per image); `hardware_info`'s clocks, power limit and persistence
    mode. On the CPU: no energy rows and the NVML keys present."""
    if not ctx.cuda:
        rows = efficiency_sweep(_seeded("segformer-tiny"), [(64, 128)], conventions=(), warmup=1, iters=3,
                                max_retries=0)  # fmt: skip
        metrics = {r["metric"] for r in rows}
        keys = set(NVML_STATE_KEYS) <= hardware_info("cpu").keys()
        ok = LATENCY_MEDIAN in metrics and not metrics & {ENERGY_PER_IMAGE, POWER_MEAN} and keys
        yield judged(ok, "cpu: no energy rows", f"{len(rows)} rows", f"NVML keys in hardware_info: {keys}")
        yield from needs_cuda("energy per image (NVML)", "GPU clocks and power limit")
        return
    if importlib.util.find_spec("pynvml") is None:
        for name in ("energy per image (NVML)", "GPU clocks and power limit"):
            yield Row(name, SKIP, "", "nvidia-ml-py (pynvml) not installed: see the carry note")
        return
    size, calls = (512, 1024), 200
    rows = efficiency_sweep(_seeded("segformer-b0"), [size], device=str(ctx.device), precision="fp16",
                            conventions=(), warmup=5, iters=calls, max_retries=0)  # fmt: skip
    by = {r["metric"]: r for r in rows}
    energy, power, median = (by.get(m, {}).get("value") for m in (ENERGY_PER_IMAGE, POWER_MEAN, LATENCY_MEDIAN))
    info = hardware_info(ctx.device)
    limit = info["gpu_power_limit_w"]
    if energy is None or power is None:
        yield Row("energy per image (NVML)", FAIL, "no energy rows", f"metrics: {', '.join(by)}")
    else:
        ratio = energy / (power * median / 1e3)  # >= 1: the window also holds the host's gaps between calls
        ok = energy > 0 and 10 <= power <= 1.5 * (limit or 2000) and 0.9 <= ratio <= 3
        yield judged(
            ok,
            "energy per image (NVML)",
            f"{energy:.4f} J/img, {power:.0f} W",
            f"{by[ENERGY_PER_IMAGE]['energy_source']}; B0 fp16 {size[0]}x{size[1]}, {calls} calls of {median:.2f} "
            f"ms; J/img / (W x median) = {ratio:.2f} (bound 0.9-3); power limit {limit} W",
        )
    clocks = {k: info[k] for k in NVML_STATE_KEYS}
    ok = all(isinstance(clocks[k], int) and clocks[k] > 0 for k in ("gpu_sm_clock_mhz", "gpu_sm_clock_max_mhz"))
    yield judged(
        ok and (limit or 0) > 0,
        "GPU clocks and power limit",
        f"SM {clocks['gpu_sm_clock_mhz']} of {clocks['gpu_sm_clock_max_mhz']} MHz, limit {limit} W",
        ", ".join(f"{k}={v}" for k, v in clocks.items()) + " (read just after the measurement)",
    )


def check_cudagraphs(ctx: Context) -> Iterator[Row]:
    """The cudagraphs deploy backend, through `check_deployment`: the demo SegFormer-B0 (trained on synthetic scenes:
    few pixels near a tie) captured at 128x256 agrees with eager fp32 at fp32 and fp16, refuses another input shape,
    and its replay is timed against eager (a launch-bound size, where graphs help). On the CPU: unavailable, one
    line."""
    if not ctx.cuda:
        cell = check_deployment("cudagraphs", _seeded("segformer-tiny"), [torch.randn(1, 3, 64, 128)], device="cpu")
        ok = cell.status == UNAVAILABLE and "CUDA" in cell.reason and "\n" not in cell.reason
        yield judged(ok, "cpu: unavailable in one line", cell.status, cell.reason)
        yield from needs_cuda("cudagraphs fp32 vs eager", "cudagraphs fp16 vs eager", "replay vs eager latency")
        return
    name, size = "segformer-b0", (128, 256)
    model = _seeded(name, weights=DEMO.weights[name]).to(ctx.device)
    dataset = CityscapesDataset(ctx.scenes(4, size))
    images = [normalize(dataset[i]["image"][None].to(ctx.device), model.meta.mean, model.meta.std) for i in range(2)]
    references = reference_logits(model, images, ctx.device)
    cache = ArtifactCache(ctx.tmp / "deploy")
    graphed = None
    for precision in ("fp32", "fp16"):
        cell = check_deployment("cudagraphs", model, images, precision, cache, device=ctx.device,
                                references=references)  # fmt: skip
        if cell.built is None:
            yield Row(f"cudagraphs {precision} vs eager", FAIL, cell.status, cell.reason)
            continue
        with torch.inference_mode(), exact_fp32():  # eager at the same precision, TF32 off as in the graph
            same = AutocastModule(model, precision, "cuda")(images[0]).float()
            gap = (cell.built(images[0]) - same).abs().max().item()
        yield judged(
            cell.status == "agrees",
            f"cudagraphs {precision} vs eager",
            f"argmax {cell.agreement.argmax_agreement:.2f}%, rel {cell.agreement.max_rel:.1e}",
            f"{cell.agreement.line()}; vs eager {precision} max|d| {gap:.2e}; build {cell.built.build_s:.2f} s; "
            f"{cell.built.detail}",
        )
        graphed = cell.built if precision == "fp16" else graphed
    if graphed is None:
        return
    try:
        graphed(images[0][..., : size[1] // 2])
        refused = "no error"
    except ValueError as exc:
        refused = one_line(exc)
    args = {"device": str(ctx.device), "warmup": 5, "iters": 50, "max_retries": 1}
    eager = measure_latency(model, size, precision="fp16", **args)
    replay = measure_latency(graphed.module, size, **args)  # fp16 inside the graph
    ok = replay.median_ms <= 1.25 * eager.median_ms and refused.startswith("ValueError: cudagraphs:")
    yield judged(
        ok,
        "replay vs eager latency",
        f"{eager.median_ms:.2f} -> {replay.median_ms:.2f} ms ({eager.median_ms / replay.median_ms:.2f}x)",
        f"B0 fp16 {size[0]}x{size[1]}, batch 1, median of 50; another shape: {refused}",
    )


class SyncWatch:
    """Host syncs that CUDA's sync debug mode reports inside some functions, by function and call number.

    Each watched function runs with ``torch.cuda.set_sync_debug_mode("warn")`` and its own warnings record; a sync
    warning is kept as (function, call number, place), any other warning is passed on unchanged. Calls are numbered
    per function and first argument (the model of `predict`, the counter or clock of a method: one per cell), so that
    call 1 is a cell's first batch, which may make a cached tensor once.

    Args:
        targets: (owner, attribute) of each function to watch; one that is missing is left out (see `watched`).
    """

    def __init__(self, targets: Sequence[tuple[Any, str]]):
        self.targets = [(o, a) for o, a in targets if hasattr(o, a)]
        self.watched = [f"{getattr(o, '__name__', type(o).__name__)}.{a}" for o, a in self.targets]
        self.calls: dict[tuple[str, int], int] = {}
        self.syncs: list[tuple[str, int, str]] = []
        self._saved: list[tuple[Any, str, Any]] = []
        self._seen: list[Any] = []  # first arguments kept alive, so that their ids stay theirs

    def __enter__(self) -> SyncWatch:
        for (owner, attr), label in zip(self.targets, self.watched):
            self._saved.append((owner, attr, inspect.getattr_static(owner, attr)))  # as stored: put back unchanged
            setattr(owner, attr, self._wrap(getattr(owner, attr), label))
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, attr, original in reversed(self._saved):
            setattr(owner, attr, original)
        self._saved.clear()
        self._seen.clear()

    def _wrap(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def watched(*args: Any, **kwargs: Any) -> Any:
            key = (label, id(args[0]) if args else 0)
            if key not in self.calls:
                self._seen.append(args[0] if args else None)
            call = self.calls[key] = self.calls.get(key, 0) + 1
            previous = torch.cuda.get_sync_debug_mode()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    result = fn(*args, **kwargs)
                finally:
                    torch.cuda.set_sync_debug_mode(previous)
            for w in caught:
                if "synchroniz" in str(w.message):
                    self.syncs.append((label, call, f"{Path(w.filename).name}:{w.lineno}"))
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            return result

        return watched

    def after_first_call(self) -> list[tuple[str, int, str]]:
        """Syncs in any call but the first with the same first argument (a cell's first batch)."""
        return [s for s in self.syncs if s[1] > 1]


@dataclass(frozen=True)
class AccuracyPlan:
    """The accuracy check's runs: on a GPU the demo models (trained on synthetic scenes, so that few pixels sit near a
    tie) on 4 scenes of 128x256; on the CPU the tiny test variants on 2 scenes of 64x128 (a determinism check).

    Attributes:
        models: the two models; weights: their checkpoints; root: the scenes; slide: the sliding window (3x3
        windows on these scenes); label: what the rows say about it.
    """

    models: tuple[str, ...]
    weights: dict[str, str]
    root: Path
    slide: InferenceSpec
    label: str

    @classmethod
    def for_device(cls, ctx: Context) -> AccuracyPlan:
        if ctx.cuda:
            names, weights, n, size = DEMO.default_models, dict(DEMO.weights), 4, (128, 256)
        else:
            names, weights, n, size = ("segformer-tiny", "fcn-mit-tiny"), {}, 2, (64, 128)
        slide = InferenceSpec(
            mode="slide", crop=(size[0] // 2, size[1] // 2), stride=(size[0] * 3 // 8, size[1] * 3 // 8)
        )
        label = f"{', '.join(names)}; {n} scenes {size[0]}x{size[1]}, clean + fog-2, batch 2"
        return cls(names, weights, ctx.scenes(n, size), slide, label)

    def run(self, ctx: Context, device: str, precision: str, mode: str, workers: int) -> dict[str, torch.Tensor]:
        """The confusion matrices of one run, by cell id."""
        config = RunConfig(
            suite="gpu-check",
            models=self.models,
            weights=self.weights,
            data_root=str(self.root),
            out_dir=str(ctx.tmp / "runs"),
            run_id=f"accuracy-{device.replace(':', '')}-{precision}-{mode}-w{workers}",
            device=device,
            precision=precision,
            batch_size=2,
            workers=workers,
            allow_random_weights=True,
            quiet=True,
        )
        return _cells(run(config, ["clean", "fog-2"], self.slide if mode == "slide" else InferenceSpec(mode="whole")))


def check_accuracy(ctx: Context) -> Iterator[Row]:
    """Two models on synthetic scenes (clean, fog-2), whole and slide: on the CPU, 0 vs 2 workers give equal matrices;
    on a GPU, fp32 (TF32 off) equals the CPU, fp16 stays within 1 mIoU point, and no per-batch call syncs the host."""
    from segbench.bench.run import accuracy

    plan = AccuracyPlan.for_device(ctx)
    reference = {mode: plan.run(ctx, "cpu", "fp32", mode, 0) for mode in ("whole", "slide")}
    if not ctx.cuda:
        for mode in ("whole", "slide"):
            cells, pixels = _changed_pixels(reference[mode], plan.run(ctx, "cpu", "fp32", mode, 2))
            figure = f"{len(reference[mode]) - cells} of {len(reference[mode])} matrices equal"
            yield judged(cells == 0, f"cpu 2 workers = 0 workers ({mode})", figure, f"{pixels} px differ; {plan.label}")
        yield from needs_cuda("GPU fp32 = CPU fp32", "GPU fp16 vs fp32", "no host sync per batch")
        return
    targets = [(accuracy, "predict"), (ConfusionCounter, "add"), (Clock, "mark"), (Clock, "add")]
    gpu: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    with SyncWatch(targets) as watch:
        for precision in GPU_PRECISIONS:
            for mode in ("whole", "slide"):
                with exact_fp32() if precision == "fp32" else contextlib.nullcontext():
                    gpu[precision, mode] = plan.run(ctx, str(ctx.device), precision, mode, 2)
    for mode in ("whole", "slide"):
        ref, got = reference[mode], gpu["fp32", mode]
        cells, pixels = _changed_pixels(ref, got)
        figure = f"{len(ref) - cells} of {len(ref)} matrices equal" + (f", >= {pixels} px differ" if cells else "")
        yield judged(cells == 0, f"GPU fp32 = CPU fp32 ({mode})", figure, f"TF32 off, 2 workers; {plan.label}")
    half = GPU_PRECISIONS[1]
    for mode in ("whole", "slide"):
        fp32, fp16 = gpu["fp32", mode], gpu[half, mode]
        delta = max(abs(100 * (mean_iou(fp16[k]) - mean_iou(fp32[k]))) for k in fp32)
        _, pixels = _changed_pixels(fp32, fp16)
        yield judged(delta <= 1.0, f"GPU {half} vs fp32 ({mode})", f"max |dmIoU| {delta:.3f} pt",
                     f">= {pixels} px changed class; bound 1 pt")  # fmt: skip
    late = watch.after_first_call()
    first = [s for s in watch.syncs if s[1] == 1]
    places = ", ".join(sorted({f"{f} in {where}" for f, _, where in late})) or "none"
    calls = sum(watch.calls.values())
    detail = f"watched {', '.join(watch.watched)} ({calls} calls); after a cell's first batch: {places}"
    if first:
        detail += f"; in a first batch only: {', '.join(sorted({f'{f} in {w}' for f, _, w in first}))}"
    yield judged(not late, "no host sync per batch", f"{len(late)} syncs", detail)


class Faulty(nn.Module):
    """A stand-in model that fails on purpose: NaN logits (``"nan"``), or an allocation of four times the device's
    memory in its forward (``"oom"``: a real CUDA out-of-memory error)."""

    def __init__(self, name: str, fault: str, num_classes: int = 19):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)
        self.fault = fault
        self.meta = models.ModelMeta(name, "stand-in", "none", "conv", num_classes, output_stride=1)
        self.weights_info = WeightsInfo(random=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fault == "oom":
            total = torch.cuda.get_device_properties(x.device).total_memory
            torch.empty(4 * total, dtype=torch.uint8, device=x.device)
        return self.conv(x) * float("nan")


def check_faults(ctx: Context) -> Iterator[Row]:
    """A run with a NaN model (and on a GPU an out-of-memory model) beside SegFormer-tiny on clean and fog-1: only
    the faulty models' cells fail, each with its message, and the others finish."""
    faulty = {"nan-stand-in": "nan", **({"oom-stand-in": "oom"} if ctx.cuda else {})}

    def factory(name: str, **kwargs: Any) -> nn.Module:
        return Faulty(name, faulty[name]) if name in faulty else models.create_model(name, **kwargs)

    conditions = ("clean", "fog-1")
    config = RunConfig(
        suite="gpu-check",
        models=(*faulty, "segformer-tiny"),
        data_root=str(ctx.scenes(2, (64, 128))),
        out_dir=str(ctx.tmp / "runs"),
        run_id="faults",
        device=str(ctx.device),
        batch_size=2,
        allow_random_weights=True,
        quiet=True,
    )
    resident = torch.cuda.memory_allocated(ctx.device) if ctx.cuda else 0
    try:
        run(config, conditions, InferenceSpec(mode="whole"), model_factory=factory)
        raise AssertionError("the run with faulty models raised no RunFailed")
    except RunFailed as exc:
        result = exc.result
    finished = sorted(result.computed)
    others_ok = finished == [f"segformer-tiny__{c}" for c in conditions]
    where = "checked on the device, read once per condition" if ctx.cuda else "checked per batch on the CPU"
    nan = {c: result.failed.get(f"nan-stand-in__{c}", "") for c in conditions}
    ok = others_ok and all(f"cell nan-stand-in__{c}" in m and "produced NaN or inf logits" in m for c, m in nan.items())
    figure = f"{sum(map(bool, nan.values()))} of 2 cells failed, {len(finished)} others finished"
    yield judged(ok, "NaN model", figure, f"{where}: {nan['clean'] or result.failed}")
    if not ctx.cuda:
        yield from needs_cuda("out-of-memory model")
        return
    oom = {c: result.failed.get(f"oom-stand-in__{c}", "") for c in conditions}
    ok = others_ok and all("out of memory" in m and "lower the batch size" in m for m in oom.values())
    left = (torch.cuda.memory_allocated(ctx.device) - resident) / 2**20
    figure = f"{sum(map(bool, oom.values()))} of 2 cells failed, {len(finished)} others finished"
    yield judged(ok, "out-of-memory model", figure, f"{left:+.0f} MiB allocated after the run; {oom['clean']}")


def _sdpa_backends() -> list[tuple[str, Any]]:
    from torch.nn.attention import SDPBackend

    names = (("flash", "FLASH_ATTENTION"), ("efficient", "EFFICIENT_ATTENTION"), ("cudnn", "CUDNN_ATTENTION"),
             ("math", "MATH"))  # fmt: skip
    return [(name, getattr(SDPBackend, member)) for name, member in names if hasattr(SDPBackend, member)]


def check_numerics(ctx: Context) -> Iterator[Row]:
    """SegFormer-B5 (seeded random weights) at 1024x2048: fp16 and bf16 against fp32 (TF32 off), and fp16 under each
    SDPA backend against the math backend and fp32. Bound: 5% of the largest fp32 logit."""
    yield from numerics_rows(ctx.device, "segformer-b5", (1024, 2048), torch.cuda.is_bf16_supported())


def numerics_rows(device: torch.device, name: str, size: tuple[int, int], bf16: bool) -> Iterator[Row]:
    """`check_numerics` for any model, size and device (autocast on the device's type)."""
    from torch.nn.attention import sdpa_kernel

    model = _seeded(name).to(device)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    short = name.removeprefix("segformer-").upper()

    def logits(dtype: torch.dtype | None) -> torch.Tensor:
        autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
        with torch.inference_mode(), autocast:
            return model(x).float()

    with exact_fp32():
        ref = logits(None)
    scale = float(ref.abs().max())
    bound = 0.05 * scale
    where = f"{size[0]}x{size[1]}, TF32 off"
    yield judged(bool(torch.isfinite(ref).all()), f"{short} fp32 finite", f"max |logit| {scale:.3f}", where)
    for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        if dtype == torch.bfloat16 and not bf16:
            yield Row(f"{short} {precision} - fp32", SKIP, "", "bf16 not supported on this GPU")
            continue
        out = logits(dtype)
        finite, diff = bool(torch.isfinite(out).all()), float((out - ref).abs().max())
        agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
        yield judged(finite and diff <= bound, f"{short} {precision} - fp32", f"max |diff| {diff:.4f}",
                     f"finite={finite}, bound {bound:.4f}; argmax agrees on {100 * agree:.2f}% of pixels")  # fmt: skip
    outs: dict[str, torch.Tensor] = {}
    errors: dict[str, str] = {}
    for backend, member in _sdpa_backends():
        try:
            with sdpa_kernel(member):
                outs[backend] = logits(torch.float16)
        except RuntimeError as exc:  # no kernel of this backend for these inputs on this GPU
            errors[backend] = one_line(exc)
    math_out = outs.get("math")
    for backend, _ in _sdpa_backends():
        if backend in errors:
            yield Row(f"SDPA {backend} (fp16)", SKIP, "", f"not available here: {errors[backend]}"[:160])
            continue
        out = outs[backend]
        finite = bool(torch.isfinite(out).all())
        vs_ref = float((out - ref).abs().max())
        vs_math = float((out - math_out).abs().max()) if math_out is not None else float("nan")
        ok = finite and vs_ref <= bound and (math_out is None or vs_math <= bound)
        yield judged(ok, f"SDPA {backend} (fp16)", f"max |diff| {vs_math:.4f} vs math",
                     f"{vs_ref:.4f} vs fp32; finite={finite}; bound {bound:.4f}")  # fmt: skip


def check_confusion(ctx: Context) -> Iterator[Row]:
    """`ConfusionCounter` on random 2x1024x2048 labels (10% ignored): its device path (the GPU; on the CPU the
    `cpu_kernel=False` path) against the CPU's numba kernel, for uint8 and int64 labels, and out-of-range values."""
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 19, (2, 1024, 2048), generator=g, dtype=torch.uint8)
    target = torch.randint(0, 19, (2, 1024, 2048), generator=g, dtype=torch.uint8)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    labelled = int((target != 255).sum())
    where = str(ctx.device) if ctx.cuda else "cpu, cpu_kernel=False"

    def counted(p: torch.Tensor, t: torch.Tensor, on_device: bool) -> torch.Tensor:
        if not on_device:
            counter = ConfusionCounter(19, device="cpu")
        else:
            counter = ConfusionCounter(19, device=ctx.device, cpu_kernel=False)
            p, t = p.to(ctx.device), t.to(ctx.device)
        counter.add(p, t)
        return counter.matrix().cpu()

    for dtype in (torch.uint8, torch.int64):
        p, t = pred.to(dtype), target.to(dtype)
        kernel, device = counted(p, t, False), counted(p, t, True)
        same = torch.equal(kernel, device) and int(kernel.sum()) == labelled
        figure = f"{labelled:,} px, {'equal' if same else 'differ'}"
        yield judged(same, f"device = CPU kernel ({str(dtype).replace('torch.', '')})", figure, where)
    bad = pred.clone()
    bad[0, 0, 0] = 200
    raised = []
    for on_device in (False, True):
        try:
            counted(bad, target, on_device)
        except ValueError:
            raised.append(on_device)
    yield judged(len(raised) == 2, "out-of-range value raises", f"{len(raised)} of 2 paths raised", where)


class _OneRankGroup(distributed.DistContext):
    """segbench's distributed context over a real 1-rank group, with its collectives switched on (a 1-rank context
    otherwise skips them)."""

    @property
    def enabled(self) -> bool:
        return True


def check_nccl(ctx: Context) -> Iterator[Row]:
    """A 1-rank process group (NCCL on a GPU, gloo on the CPU) through segbench's collectives: all_reduce of int64
    and float64 (exact), barrier, and rank 0's long step (`on_main`) before the broadcast the other ranks wait in."""
    import torch.distributed as dist

    backend = "nccl" if ctx.cuda else "gloo"
    if dist.is_initialized():
        raise RuntimeError("a process group is already initialised in this process")
    timeout = getattr(distributed, "collective_timeout", None)
    kwargs: dict[str, Any] = {"timeout": timeout()} if timeout else {}
    device_id = {"device_id": ctx.device} if ctx.cuda else {}  # NCCL's communicator on the measured GPU
    store = dist.FileStore(str(ctx.tmp / "process-group"), 1)  # as torch's own NCCL tests rendezvous
    dist.init_process_group(backend, store=store, rank=0, world_size=1, **kwargs, **device_id)
    group = _OneRankGroup(rank=0, world_size=1, local_rank=0, device=ctx.device)
    try:
        ints = torch.tensor([2**40 + 7, -3, 0], dtype=torch.int64, device=ctx.device)
        floats = torch.tensor([0.1, 1e-300, -2.5], dtype=torch.float64, device=ctx.device)
        t0 = time.perf_counter()
        got_i = distributed.all_reduce_(ints.clone(), group).cpu()
        got_f = distributed.all_reduce_(floats.clone(), group, "max").cpu()
        ms = (time.perf_counter() - t0) * 1e3
        ok = torch.equal(got_i, ints.cpu()) and torch.equal(got_f, floats.cpu())
        yield judged(ok, f"{backend} all_reduce int64 + float64", f"exact, {ms:.1f} ms", "sum and max, 1 rank")
        t0 = time.perf_counter()
        distributed.barrier(group)
        flags = (distributed.any_failed(False, group), distributed.any_failed(True, group))
        ms = (time.perf_counter() - t0) * 1e3
        yield judged(flags == (False, True), f"{backend} barrier, any_failed", f"{ms:.1f} ms", f"any_failed {flags}")
        step = 3.0 if ctx.cuda else 1.0
        t0 = time.perf_counter()
        value = distributed.on_main(lambda: (time.sleep(step), {"answer": 42})[1], group)
        seconds = time.perf_counter() - t0
        limit = kwargs["timeout"].total_seconds() / 60 if "timeout" in kwargs else None
        detail = f"group timeout {limit:.0f} min (segbench's)" if limit else "torch's default group timeout"
        ok = value == {"answer": 42} and seconds >= step
        yield judged(ok, f"{backend} rank-0 long step", f"{step:.0f} s step, {seconds:.2f} s", detail)
    finally:
        dist.destroy_process_group()


def check_calibrated(ctx: Context) -> Iterator[Row]:
    """`calibrated_latency`: its calibration and raw model medians against an independent host-clock timing of the
    same calls: within 3x on a GPU, 100x on a CPU (a loaded one moves both); a unit slip, us or s for ms, is 1000x."""
    name, size = ("segformer-b0", (512, 1024)) if ctx.cuda else ("segformer-tiny", (128, 256))
    model = _seeded(name).to(ctx.device)
    rows = {r["metric"]: r for r in calibrated_latency(model, size, device=str(ctx.device), warmup=3, iters=10)}
    calib, raw, ratio = (rows[m]["value"] for m in (CALIBRATION_MEDIAN, LATENCY_RAW_MEDIAN, LATENCY_CALIBRATED))
    work = calibration_workload(ctx.device)
    x = torch.randn(1, 3, *size, device=ctx.device)
    with torch.inference_mode():
        ind_calib = _mean_ms(work, ctx.device, 50)
        ind_raw = _mean_ms(lambda: model(x), ctx.device, 5)
    bound = 3 if ctx.cuda else 100
    ok = all(1 / bound <= a / b <= bound for a, b in ((calib, ind_calib), (raw, ind_raw)))
    units = {rows[m]["unit"] for m in (CALIBRATION_MEDIAN, LATENCY_RAW_MEDIAN)}
    yield judged(
        ok and units == {"ms"},
        f"calibration median ({name} {size[0]}x{size[1]})",
        f"{calib:.3f} ms (independent {ind_calib:.3f})",
        f"model {raw:.2f} ms (independent {ind_raw:.2f}), latency_calibrated {ratio:.1f}x; unit {'/'.join(units)}; "
        f"bound {bound}x",
    )


def check_pipeline(ctx: Context) -> Iterator[Row]:
    """End-to-end cell throughput (PNG decoding, DataLoader workers, copies, inference, metric) against forward-only
    and inference-only on the same 32 scenes at 1024x2048 on the device (B0, fp32); the cell's confusion matrix must
    equal the one of the direct predictions. The ratio is shown (the performance issue's goal: at least 90%)."""
    yield from pipeline_rows(ctx, "segformer-b0", 32, (1024, 2048))


def pipeline_rows(ctx: Context, name: str, n: int, size: tuple[int, int]) -> Iterator[Row]:
    """`check_pipeline` for any model, number of scenes and size."""
    root = ctx.scenes(n, size)
    model = _seeded(name).to(ctx.device)
    dataset = CityscapesDataset(root)
    items = [dataset[i] for i in range(len(dataset))]
    xs = [it["image"][None].to(ctx.device) for it in items]
    ys = [it["label"][None].to(ctx.device) for it in items]
    spec = InferenceSpec(mode="whole")
    counter = ConfusionCounter(19, device=ctx.device)
    with torch.inference_mode():
        predict(model, xs[0], spec, check_finite=False)  # warm-up
        forward = len(xs) * 1e3 / _mean_ms(lambda: [model(normalize(x, model.meta.mean, model.meta.std)) for x in xs],
                                           ctx.device, 1)  # fmt: skip
        _sync(ctx.device)
        t0 = time.perf_counter()
        for x, y in zip(xs, ys):
            counter.add(predict(model, x, spec, check_finite=False), y)
        _sync(ctx.device)
        inference = len(xs) / (time.perf_counter() - t0)
    workers = default_workers(str(ctx.device))
    config = RunConfig(
        suite="gpu-check",
        models=(name,),
        data_root=str(root),
        out_dir=str(ctx.tmp / "runs"),
        run_id="pipeline",
        device=str(ctx.device),
        workers=workers,
        allow_random_weights=True,
        quiet=True,
    )
    result = run(config, ["clean"], spec, model_factory=lambda _name, **kw: model)
    t = result.timing[f"{name}__clean"]
    e2e = n / t["total"]
    same = torch.equal(_cells(result)[f"{name}__clean"], counter.matrix().cpu())
    ratio = e2e / forward
    note = "" if ratio >= 0.9 else " (below the 90% goal)"
    yield judged(
        same,
        "end-to-end vs forward-only",
        f"{e2e:.1f} img/s = {100 * ratio:.0f}% of {forward:.1f}{note}",
        f"inference-only {inference:.1f} img/s; {n} scenes {size[0]}x{size[1]}, {workers} workers; model/data/metric "
        f"{t['model']:.2f}/{t['data']:.2f}/{t['metric']:.2f} s of {t['total']:.2f}; matrices "
        f"{'equal' if same else 'DIFFER'}",
    )


CHECKS = (
    Check("environment", check_environment, 10),
    Check("clock", check_clock, 15),
    Check("latency", check_latency, 120),  # 12 eager measurements and one cold torch.compile of B0
    Check("energy", check_energy, 15),
    Check("cudagraphs", check_cudagraphs, 20),
    Check("accuracy", check_accuracy, 50),
    Check("faults", check_faults, 25),
    Check("numerics", check_numerics, 30, cuda_only=True),
    Check("confusion", check_confusion, 15),
    Check("nccl", check_nccl, 20),
    Check("calibrated", check_calibrated, 15),
    Check("pipeline", check_pipeline, 60, cuda_only=True),
)
"""The checks in order; budgets guard against a hung check, and the run as a whole stops at `TOTAL_BUDGET_S`."""


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, checks: Sequence[Check] = CHECKS) -> int:
    """Run the checks and print the table; returns the exit code (1 when a row FAILs, 2 when it cannot start).

    Args:
        argv: command-line arguments (None: `sys.argv[1:]`).
        checks: the checks to choose from (tests pass stand-ins).
    """
    names = [c.name for c in checks]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (default: cuda)")
    ap.add_argument("--only", help=f"comma list of checks (default: all): {', '.join(names)}")
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    ap.add_argument("--budget-scale", type=float, default=1.0, help="multiply every time budget (a slow machine)")
    args = ap.parse_args(argv)
    chosen = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        ap.error(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    device = torch.device(args.device)
    if device.type not in ("cpu", "cuda"):
        ap.error(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print(f"gpu_check: --device {args.device}, but torch {torch.__version__} sees no GPU", file=sys.stderr)
            return 2
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        torch.cuda.set_device(device)  # "cuda" then means the measured GPU
    print(CARRY)
    print(f"# device {device}, torch {torch.__version__}, checks: {', '.join(chosen)}\n", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        ctx = Context(device, Path(tmp))
        rows = run_checks([c for c in checks if c.name in chosen], ctx, args.budget_scale)
    seconds = time.perf_counter() - start
    failed = sum(r.status == FAIL for r in rows)
    print(format_table(rows))
    counts = {s: sum(r.status == s for r in rows) for s in (PASS, FAIL, SKIP)}
    print(f"\n{counts[PASS]} PASS, {counts[FAIL]} FAIL, {counts[SKIP]} SKIP in {seconds:.0f} s on {device}")
    if args.json is not None:
        payload = {"device": str(device), "torch": torch.__version__, "seconds": seconds, "counts": counts,
                   "rows": [dataclasses.asdict(r) for r in rows]}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
