"""Latency, throughput and peak memory, measured the way timings can be trusted.

`time_callable` times calls with the one clock, `bench.measure.clock.Clock`: warm-up calls (not timed), then timed
calls; on CUDA each call is bracketed by ``torch.cuda.Event`` records on the measured device's stream and waited for, on
CPU by ``time.perf_counter``. When the coefficient of variation of the timed calls is above a threshold it measures
again (up to `max_retries` times), keeps the steadiest attempt and flags the result ``noisy`` if even that one stays
above the threshold.

`measure_latency` runs a model through that clock under ``torch.inference_mode()``, with optional autocast
(fp16/bf16), ``channels_last`` and ``torch.compile``, and records what the number means: device (with its index),
precision, input and batch size, thread count, peak memory, the TF32 settings (always off: fp32 means IEEE fp32), the
SDPA kernel the model's attention ran, for a compiled model Dynamo's recompilations and any fall-back to eager, and on
CUDA the energy per image and mean power of the GPU over the timed calls (`bench.measure.energy`, through NVML).
"""

from __future__ import annotations

import contextlib
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend
from torch.utils._python_dispatch import TorchDispatchMode

from segbench.bench.measure.clock import Clock
from segbench.bench.measure.energy import EnergyMeter, EnergyWindow
from segbench.bench.measure.flops import _check_size
from segbench.bench.results.schema import CALIBRATION_MEDIAN, LATENCY_CALIBRATED, LATENCY_RAW_MEDIAN, make_row
from segbench.bench.run.config import autocast_dtype


@dataclass
class Distribution:
    """Per-call times in milliseconds and their statistics, as `summarize` computes them (warm-up calls excluded).

    Attributes:
        samples: per-call times, in call order.
        median_ms, p90_ms, p99_ms, mean_ms, std_ms, iqr_ms: statistics of `samples` (std: sample std, ddof=1;
            percentiles and IQR with linear interpolation).
        cv: coefficient of variation, ``std_ms / mean_ms``.
    """

    samples: list[float]
    median_ms: float
    p90_ms: float
    p99_ms: float
    iqr_ms: float
    mean_ms: float
    std_ms: float
    cv: float


@dataclass
class TimingStats(Distribution):
    """Summary of timed calls (`Distribution` of the kept attempt) and how they were timed.

    Attributes:
        noisy: True when `cv` stayed above `cv_threshold` after all attempts.
        attempts: how many timed runs were made (1 + re-measurements).
        attempt_cvs: the CV of every attempt, in order.
        cv_threshold, warmup, iters: the settings used.
        clock: ``"cuda.Event"`` or ``"perf_counter"``.
    """

    noisy: bool
    attempts: int
    attempt_cvs: list[float]
    cv_threshold: float
    warmup: int
    iters: int
    clock: str


@dataclass
class LatencyStats(TimingStats):
    """`TimingStats` of a model's forward pass plus what they were measured on.

    Attributes:
        images_per_s: ``batch_size * 1000 / median_ms``.
        peak_memory_mib: CUDA: what the model's inference needs, from ``torch.cuda.max_memory_allocated`` during the
            timed calls (peak stats reset after the warm-up, so cudnn.benchmark trials and compilation workspaces are
            not in it) less the memory that other tensors held when they started (`model_peak_bytes`): weights,
            input, activations and workspaces, without the other tensors that live on the device (nor a library's
            workspace that stays allocated once created, such as cuBLAS's, whichever model created it).
            CPU: peak resident set size of the whole process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), a
            high-water mark since the process started, so it includes everything that ran before.
        memory_kind: ``"cuda_max_allocated_model"`` or ``"cpu_process_peak_rss"``.
        threads: ``torch.get_num_threads()`` during the measurement.
        device: the torch device string with its index (``"cuda:0"``, never ``"cuda"``); device_name: GPU or CPU model.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (the last two via autocast).
        input_size: (H, W); batch_size; channels_last; compiled: whether ``torch.compile`` was applied.
        dynamo_recompiles: compilations of an already compiled frame during the measurement (guard failures), 0 when
            the timed calls ran the one graph compiled in warm-up; None without ``torch.compile``.
        dynamo_eager_fallback: whether Dynamo gave up on a frame (recompile limit hit, or a frame it could not
            compile), which then ran eagerly although `compiled` is True; None without ``torch.compile``.
        tf32_matmul, tf32_cudnn: whether TF32 was allowed for fp32 cuBLAS matmuls / cuDNN convolutions during the
            measurement (`tf32_flags`); `measure_latency` turns both off, so fp32 is IEEE fp32.
        sdpa_backend: the kernel ``scaled_dot_product_attention`` chose for the model's calls (`SDPBackend` names,
            lower case, "+"-joined when calls differ: ``"flash_attention"``, ``"efficient_attention"``,
            ``"cudnn_attention"``, ``"math"``; on the CPU ``"flash_attention"`` is ATen's CPU flash kernel); None when
            the model calls no SDPA.
        energy_per_image_j: CUDA with NVML (`bench.measure.energy.EnergyMeter`): the GPU board's energy over the kept
            attempt's timed calls (the window from before the first to after the last, synchronised, idle gaps between
            calls included) divided by its images, ``iters * batch_size``; None on the CPU, without nvidia-ml-py, or
            when NVML gave no reading (`energy_note` says why).
        power_mean_w: that energy over the window's wall time (W); None alike.
        energy_source: ``"nvml_total_energy"`` (the energy counter, Volta and newer) or ``"nvml_power_sampling"``
            (power read every 20 ms and integrated); None alike.
        energy_note: on CUDA, why there is no energy reading (one line); None when there is one, and on the CPU.
    """

    images_per_s: float = 0.0
    peak_memory_mib: float = 0.0
    memory_kind: str = ""
    threads: int = 0
    device: str = "cpu"
    device_name: str = ""
    precision: str = "fp32"
    input_size: tuple[int, int] = (0, 0)
    batch_size: int = 1
    channels_last: bool = False
    compiled: bool = False
    dynamo_recompiles: int | None = None
    dynamo_eager_fallback: bool | None = None
    tf32_matmul: bool = False
    tf32_cudnn: bool = False
    sdpa_backend: str | None = None
    energy_per_image_j: float | None = None
    power_mean_w: float | None = None
    energy_source: str | None = None
    energy_note: str | None = None


# --------------------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default method)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples: list[float]) -> dict[str, float]:
    """Median, p90, p99, IQR, mean, std (ddof=1) and CV of a list of times."""
    if not samples:
        raise ValueError("cannot summarise an empty list of timings")
    s = sorted(samples)
    mean = statistics.fmean(s)
    std = statistics.stdev(s) if len(s) > 1 else 0.0
    return {
        "median_ms": statistics.median(s),
        "p90_ms": _percentile(s, 90),
        "p99_ms": _percentile(s, 99),
        "iqr_ms": _percentile(s, 75) - _percentile(s, 25),
        "mean_ms": mean,
        "std_ms": std,
        "cv": std / mean if mean > 0 else 0.0,
    }


# --------------------------------------------------------------------------------------------------------------------
# Timing a callable
# --------------------------------------------------------------------------------------------------------------------


def time_callable(
    fn: Callable[[], Any],
    warmup: int = 5,
    iters: int = 20,
    device: str | torch.device = "cpu",
    cv_threshold: float = 0.1,
    max_retries: int = 2,
    after_warmup: Callable[[], None] | None = None,
    around_attempt: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> TimingStats:
    """Time `fn()`: `warmup` untimed calls, then `iters` timed calls, re-measured while the spread is high.

    Args:
        fn: the work to time, called without arguments.
        warmup: untimed calls before the first attempt (lazy init, cudnn autotuning, compilation, caches).
        iters: timed calls per attempt.
        device: where `fn` runs: ``"cuda[:i]"`` uses CUDA events with synchronisation, anything else
            ``time.perf_counter``.
        cv_threshold: an attempt whose coefficient of variation (std / mean) exceeds this is re-measured.
        max_retries: re-measurements allowed after the first attempt.
        after_warmup: called once between the warm-up and the first timed call (e.g. to reset peak-memory stats, so
            that warm-up's autotuning and compilation workspaces are not counted).
        around_attempt: a context manager each attempt's timed calls run in, made anew per attempt (entered once the
            device was synchronised, left once the last call's end was waited for): e.g. an energy window
            (`bench.measure.energy.EnergyMeter.window`). The kept attempt is the first of the lowest CV in
            ``attempt_cvs``.

    Returns:
        Statistics of the attempt with the lowest CV; ``noisy`` is True if that CV is still above the threshold.
    """
    if warmup < 0 or iters < 1 or max_retries < 0:
        raise ValueError(f"need warmup >= 0, iters >= 1, max_retries >= 0; got {warmup}, {iters}, {max_retries}")
    if cv_threshold <= 0:
        raise ValueError(f"cv_threshold must be > 0, got {cv_threshold}")
    clock = Clock(device, timer=time.perf_counter)  # this module's `time`, which tests may stand in for
    for _ in range(warmup):
        fn()
    if after_warmup is not None:
        after_warmup()
    best: tuple[list[float], dict[str, float]] | None = None
    cvs: list[float] = []
    for _ in range(max_retries + 1):
        clock.synchronize()  # the first start mark comes after all the device's queued work, not before it
        with around_attempt() if around_attempt is not None else contextlib.nullcontext():
            samples = [clock.time_ms(fn) for _ in range(iters)]
        stats = summarize(samples)
        cvs.append(stats["cv"])
        if best is None or stats["cv"] < best[1]["cv"]:
            best = (samples, stats)
        if stats["cv"] <= cv_threshold:
            break
    samples, stats = best
    return TimingStats(
        samples=samples,
        **stats,
        noisy=stats["cv"] > cv_threshold,
        attempts=len(cvs),
        attempt_cvs=cvs,
        cv_threshold=cv_threshold,
        warmup=warmup,
        iters=iters,
        clock=clock.kind,
    )


# --------------------------------------------------------------------------------------------------------------------
# What a measurement runs on: the device's index, fp32 numerics, the SDPA kernel, Dynamo
# --------------------------------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device) -> torch.device:
    """`device` with its index: ``"cuda"`` becomes ``cuda:<current device>``, the GPU PyTorch would use; any other
    device is returned as it is.

    Tensors always carry their index and ``torch.device("cuda:0") != torch.device("cuda")``, so devices are compared
    and recorded in this form. Without CUDA, ``"cuda"`` stays as it is (for the caller to report).
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return device


FP32_PRECISION_SETTINGS = (
    "cuda.matmul",
    "cudnn",
    "cudnn.conv",
    "cudnn.rnn",
    "mkldnn",
    "mkldnn.matmul",
    "mkldnn.conv",
    "mkldnn.rnn",
)
"""The ``torch.backends`` objects whose ``fp32_precision`` decides whether fp32 matmuls and convolutions may run in
TF32 (cuBLAS, cuDNN) or in TF32/bf16 (oneDNN on the CPU), each parent before its operators."""


def _backend(path: str) -> Any:
    obj = torch.backends
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def fp32_precision() -> dict[str, str]:
    """``fp32_precision`` of each of `FP32_PRECISION_SETTINGS` (``"ieee"``, ``"tf32"``, ``"bf16"`` or ``"none"``).

    The newer API reads without error even where a process mixed it with the legacy flags (``allow_tf32``,
    ``torch.set_float32_matmul_precision``), whose getters then raise.
    """
    return {path: _backend(path).fp32_precision for path in FP32_PRECISION_SETTINGS}


def tf32_flags() -> dict[str, bool]:
    """Whether fp32 cuBLAS matmuls (``tf32_matmul``) and cuDNN convolutions (``tf32_cudnn``) may use TF32 now.

    What the legacy ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32`` say (PyTorch's
    defaults: False and True: "fp32" convolutions on Ampere and later are TF32 unless turned off), read through
    ``fp32_precision``, which never raises.
    """
    return {
        "tf32_matmul": torch.backends.cuda.matmul.fp32_precision == "tf32",
        "tf32_cudnn": torch.backends.cudnn.conv.fp32_precision == "tf32",
    }


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """fp32 as IEEE fp32 for the block (no TF32 in cuBLAS or cuDNN, no TF32 or bf16 in oneDNN); afterwards every
    setting is as before.

    Turned off through the legacy flags first, which keeps them readable (PyTorch raises on reading a legacy flag that
    disagrees with the newer setting), then through every ``fp32_precision`` of `FP32_PRECISION_SETTINGS`, which also
    covers a process-wide ``torch.backends.fp32_precision = "tf32"`` that the legacy flags leave in place.
    """
    saved = fp32_precision()
    legacy: dict[str, Any] = {}
    with contextlib.suppress(RuntimeError):  # raises where the process mixed the two APIs: nothing to restore there
        legacy["matmul"] = torch.get_float32_matmul_precision()
    with contextlib.suppress(RuntimeError):
        legacy["cudnn"] = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        for path in FP32_PRECISION_SETTINGS:
            _backend(path).fp32_precision = "ieee"
        yield
    finally:
        if "matmul" in legacy:
            torch.set_float32_matmul_precision(legacy["matmul"])
        if "cudnn" in legacy:
            torch.backends.cudnn.allow_tf32 = legacy["cudnn"]
        for path, value in saved.items():
            _backend(path).fp32_precision = value


def sdpa_enabled() -> dict[str, bool]:
    """Which kernels ``scaled_dot_product_attention`` may choose from (``torch.backends.cuda.*_sdp_enabled()``).

    ``flash``, ``mem_efficient`` and ``cudnn`` are CUDA kernels and ``math`` the composite fallback. The CPU has two,
    switched by the same flags: ATen's CPU flash kernel (``flash``) and ``math``.
    """
    cuda = torch.backends.cuda
    return {
        "flash": cuda.flash_sdp_enabled(),
        "mem_efficient": cuda.mem_efficient_sdp_enabled(),
        "cudnn": cuda.cudnn_sdp_enabled(),
        "math": cuda.math_sdp_enabled(),
    }


class _SdpaProbe(TorchDispatchMode):
    """Records the kernel every ``scaled_dot_product_attention`` call selects, by asking ATen's own selector,
    ``torch._fused_sdp_choice``, with the call's arguments (as autocast has cast them)."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.aten.scaled_dot_product_attention.default:
            self.kernels.add(SDPBackend(torch._fused_sdp_choice(*args, **kwargs)).name.lower())
        return func(*args, **kwargs)


def sdpa_backend(fn: Callable[[], Any]) -> str | None:
    """Call `fn()` once and name the kernel its ``scaled_dot_product_attention`` calls selected (`SDPBackend` names in
    lower case, sorted and "+"-joined when calls differ); None when it made no such call.

    `fn` must run its model under ``torch.inference_mode()``: there the dispatcher shows the SDPA call itself (with
    autograd on, it shows the chosen kernel, or for math the matmuls it decomposes into).
    """
    with _SdpaProbe() as probe:
        fn()
    return "+".join(sorted(probe.kernels)) or None


def compile_static(model: nn.Module) -> Callable[..., Any]:
    """``torch.compile`` for one measured configuration, after ``torch._dynamo.reset()``: static shapes
    (``dynamic=False``, so a graph specialised to this input size, never a symbolic-shape one), and no cache entries of
    earlier configurations, which would make sizes symbolic or count towards the recompile limit (8 per frame, past
    which Dynamo runs the frame eagerly). The reset is process-wide: other compiled models compile again on their next
    call."""
    from torch._dynamo.utils import clear_compilation_metrics

    torch._dynamo.reset()
    clear_compilation_metrics()
    return torch.compile(model, dynamic=False)


def _dynamo_outcome() -> tuple[int, bool]:
    """(recompilations, fell back to eager) since `compile_static`, from Dynamo's record of each compilation: one with a
    ``recompile_reason`` compiled an already compiled frame again because a guard failed; one with a ``fail_type`` is a
    frame Dynamo gave up on (recompile limit hit, or code it cannot compile), which then runs eagerly."""
    from torch._dynamo.utils import get_compilation_metrics

    metrics = get_compilation_metrics()
    return sum(m.recompile_reason is not None for m in metrics), any(m.fail_type is not None for m in metrics)


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


def cpu_model_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


CPU_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The /proc/cpuinfo flags that decide which kernels run (int8 dot products, native bf16, AMX tiles)."""


def cpu_isa_flags() -> list[str]:
    """Which of `CPU_ISA_FLAGS` the CPU has, from /proc/cpuinfo (Linux); [] when it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except (OSError, IndexError):
        return []
    return [flag for flag in CPU_ISA_FLAGS if flag in flags]


def device_name(device: str | torch.device) -> str:
    """GPU name for a CUDA device, CPU model otherwise."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model_name()


def model_peak_bytes(peak_allocated: int, resident: int, own: int) -> int:
    """The CUDA memory one model's inference needs: its weights and input (`own` bytes) plus what the timed calls
    allocated on top of the `resident` bytes at their start (activations, workspaces). Other tensors resident on the
    device (another model of the same run, the caller's data, a library's persistent workspace) are left out:
    `peak_allocated - (resident - own)`."""
    return peak_allocated - (resident - own)


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` set to `enabled` for the block, as it was afterwards (every CUDA timer here
    turns it on: cuDNN picks its fastest kernels during warm-up)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


@contextlib.contextmanager
def restored(model: nn.Module) -> Iterator[nn.Module]:
    """`model` for the block; afterwards each of its parameters and buffers is its original tensor again (device,
    dtype and strides exactly as before, so a model whose weights were NHWC on purpose stays so), whatever the block
    did to them: a timer that moved the model to its device leaves nothing behind."""
    params = [(m, name, p, p.data) for m in model.modules() for name, p in m._parameters.items() if p is not None]
    buffers = [(m, name, b) for m in model.modules() for name, b in m._buffers.items() if b is not None]
    try:
        yield model
    finally:
        for module, name, param, data in params:
            module._parameters[name] = param  # `Module.to` swaps in a new Parameter where it cannot reset `.data`
            param.data = data
        for module, name, buffer in buffers:
            module._buffers[name] = buffer


@contextlib.contextmanager
def moved_for_timing(model: nn.Module, device: torch.device, channels_last: bool) -> Iterator[int]:
    """The model on `device` (NHWC weights with `channels_last`) for the block, `restored` afterwards. Yields the
    bytes of the model's weights and buffers, which are all on `device` then (counted without comparing devices: a
    tensor's ``cuda:0`` is not equal to ``torch.device("cuda")``)."""
    with restored(model):
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}.values()
        yield sum(t.numel() * t.element_size() for t in tensors)


def measure_latency(
    model: nn.Module,
    input_size: tuple[int, int],
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    warmup: int = 10,
    iters: int = 50,
    channels_last: bool = False,
    compile: bool = False,
    cv_threshold: float = 0.1,
    max_retries: int = 2,
) -> LatencyStats:
    """Latency of ``model(x)`` for a random (batch_size, 3, H, W) input, under ``torch.inference_mode()``.

    The model is put in eval mode and moved to `device` (and to ``channels_last`` if asked) for the measurement; its
    device, memory format and mode are restored afterwards. So are the global settings the measurement changes: TF32
    is off (`strict_fp32`: "fp32" is IEEE fp32, and so are the ops autocast leaves in fp32), and on CUDA
    ``cudnn.benchmark`` is on. Before the warm-up, one untimed call names the SDPA kernel (`sdpa_backend`). With
    `compile`, Dynamo is reset and the model compiled for this one input size (`compile_static`), and recompilations or
    a fall-back to eager are recorded and warned about. On CUDA the peak-memory statistics are reset after the warm-up,
    so that cudnn.benchmark trials and compilation or autotuning workspaces do not count, and each attempt's timed calls
    run in an energy window (`bench.measure.energy.EnergyMeter`, through NVML when nvidia-ml-py is installed): the kept
    attempt's energy per image and mean power are recorded (a window that NVML gave no reading for is warned about).

    Args:
        model: the network.
        input_size: (H, W).
        batch_size: images per call.
        device: ``"cpu"``, ``"cuda"`` (the current GPU, recorded with its index), ``"cuda:1"``...
        precision: ``"fp32"``, or ``"fp16"`` / ``"bf16"`` through ``torch.autocast`` (weights stay fp32).
        warmup: untimed calls first (with ``compile=True`` the first one compiles).
        iters: timed calls per attempt.
        channels_last: use the NHWC memory format for weights and input.
        compile: wrap the model in ``torch.compile`` (default mode, static shapes).
        cv_threshold: re-measure while the coefficient of variation is above this.
        max_retries: re-measurements allowed.
    """
    input_size, dtype, device = _check_latency_args(input_size, precision, batch_size, device, compile, warmup)
    was_training = model.training
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    probe = _Probe(device)
    try:
        with moved_for_timing(model.eval(), device, channels_last) as weight_bytes, strict_fp32(), probe.settings():
            x = torch.randn(batch_size, 3, *input_size, device=device).contiguous(memory_format=memory_format)
            numerics = tf32_flags()
            sdpa = sdpa_backend(_step(model, x, autocast))
            runner = compile_static(model) if compile else model
            timing = time_callable(
                _step(runner, x, autocast), warmup, iters, device, cv_threshold, max_retries, **probe.hooks()
            )
            memory = probe.peak_memory(weight_bytes + x.numel() * x.element_size())
    finally:
        model.train(was_training)
        probe.close()

    where = f"{input_size[0]}x{input_size[1]}, batch {batch_size}, {precision}"
    return LatencyStats(
        **vars(timing),
        images_per_s=batch_size * 1e3 / timing.median_ms,
        **memory,
        threads=torch.get_num_threads(),
        device=str(device),
        device_name=device_name(device),
        precision=precision,
        input_size=input_size,
        batch_size=batch_size,
        channels_last=channels_last,
        compiled=compile,
        sdpa_backend=sdpa,
        **numerics,
        **probe.outcome(timing.attempt_cvs, iters * batch_size, compile, where),
    )


def _check_latency_args(
    input_size: tuple[int, int], precision: str, batch_size: int, device: str | torch.device, compile: bool, warmup: int
) -> tuple[tuple[int, int], torch.dtype | None, torch.device]:
    """(H, W), the autocast dtype (None for fp32) and the device to time on (`resolve_device`); raises ValueError on a
    bad size, an unknown precision, a batch size below 1, CUDA asked for where there is none, or compilation without
    a warm-up call to compile in."""
    input_size = _check_size(input_size, "input_size")
    dtype = autocast_dtype(precision)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available here: use device='cpu'")
    device = resolve_device(device)
    if compile and warmup < 1:
        raise ValueError("compile=True needs warmup >= 1 so that compilation is not timed")
    return input_size, dtype, device


def _step(
    module: Callable[..., Any], x: torch.Tensor, autocast: contextlib.AbstractContextManager
) -> Callable[[], None]:
    """One timed call: ``module(x)`` under inference mode and the precision's autocast."""

    def step() -> None:
        with torch.inference_mode(), autocast:
            module(x)

    return step


class _Probe:
    """What `measure_latency` records around the timed calls besides their times. On CUDA: ``cudnn.benchmark`` on, the
    bytes resident when the timed calls start (read once the warm-up is done, with the peak-memory statistics reset),
    and one energy window per attempt (`bench.measure.energy.EnergyMeter`); on the CPU, the process's peak RSS. Then
    the energy of the kept attempt and what compilation did."""

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"
        self.resident = 0  # CUDA: bytes allocated when the timed calls start
        self.meter = EnergyMeter(device) if self.cuda else None
        self.windows: list[EnergyWindow] = []  # one per attempt

    def settings(self) -> contextlib.AbstractContextManager:
        return cudnn_benchmark(True) if self.cuda else contextlib.nullcontext()

    def hooks(self) -> dict[str, Any]:
        """`time_callable`'s `after_warmup` and `around_attempt` (None on the CPU)."""
        return {
            "after_warmup": self._reset_peak if self.cuda else None,
            "around_attempt": self._energy_window if self.cuda else None,
        }

    def _reset_peak(self) -> None:
        torch.cuda.synchronize(self.device)
        self.resident = torch.cuda.memory_allocated(self.device)  # the model, its input, whatever else stays allocated
        torch.cuda.reset_peak_memory_stats(self.device)

    @contextlib.contextmanager
    def _energy_window(self) -> Iterator[None]:
        with self.meter.window() as window:
            self.windows.append(window)
            yield

    def peak_memory(self, own: int) -> dict[str, Any]:
        """`peak_memory_mib` and `memory_kind`: on CUDA the model's own peak (`model_peak_bytes`; `own`: the bytes of
        its weights and input), on the CPU the process's peak RSS."""
        if self.cuda:
            peak = model_peak_bytes(torch.cuda.max_memory_allocated(self.device), self.resident, own) / 2**20
            return {"peak_memory_mib": peak, "memory_kind": "cuda_max_allocated_model"}
        return {"peak_memory_mib": _peak_rss_mib(), "memory_kind": "cpu_process_peak_rss"}

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()

    def outcome(self, cvs: list[float], images: int, compiled: bool, where: str) -> dict[str, Any]:
        """`LatencyStats`' energy fields (`_energy_fields`, of the attempt `time_callable` kept) and Dynamo fields
        (`_dynamo_outcome`; None when not `compiled`). Warns (at `measure_latency`'s caller) when NVML reads this GPU
        yet gave no number, and when the compiled model recompiled or fell back to eager during the measurement."""
        energy = _energy_fields(self.meter, self.windows, cvs, images)
        if self.meter is not None and self.meter.reason is None and energy["energy_note"]:
            warnings.warn(f"no energy reading at {where}: {energy['energy_note']}", RuntimeWarning, stacklevel=3)
        recompiles, fallback = _dynamo_outcome() if compiled else (None, None)
        if recompiles or fallback:
            warnings.warn(
                f"torch.compile at {where}: {recompiles} recompilation(s)"
                f"{' and a fall-back to eager' if fallback else ''} during the measurement",
                RuntimeWarning,
                stacklevel=3,
            )
        return {**energy, "dynamo_recompiles": recompiles, "dynamo_eager_fallback": fallback}


def _energy_fields(meter: EnergyMeter | None, windows: list[EnergyWindow], cvs: list[float], images: int) -> dict:
    """`LatencyStats`' energy fields from the window of the attempt `time_callable` kept (the first of the lowest CV in
    `cvs`, one window per attempt): all None on the CPU (no `meter`); on CUDA a reading, or `energy_note` saying why
    there is none."""
    fields: dict[str, Any] = dict.fromkeys(("energy_per_image_j", "power_mean_w", "energy_source", "energy_note"))
    if meter is None:
        return fields
    kept = windows[cvs.index(min(cvs))]
    if kept.reading is None:
        return {**fields, "energy_note": kept.reason}
    return {
        **fields,
        "energy_per_image_j": kept.reading.per_item(images),
        "power_mean_w": kept.reading.power_w,
        "energy_source": kept.reading.source,
    }


# --------------------------------------------------------------------------------------------------------------------
# Calibrated speed measurement (what bench.track.regression gates: model time / calibration time, same process)
# --------------------------------------------------------------------------------------------------------------------


def calibration_workload(device: str | torch.device = "cpu") -> Callable[[], None]:
    """A fixed compute workload (a few dense matmuls and a conv, ~0.2 GFLOP) that runs on the same threads and
    device as the model, so that it slows down with the machine."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, generator=g).to(device)
    x = torch.randn(1, 16, 64, 64, generator=g).to(device)
    w = torch.randn(16, 16, 3, 3, generator=g).to(device)

    def work() -> None:
        y = a
        for _ in range(4):
            y = torch.tanh(y @ a)
        torch.nn.functional.conv2d(x, w, padding=1)

    return work


def timed_pairs(
    fn: Callable[[], Any],
    calibrate: Callable[[], Any],
    warmup: int = 3,
    iters: int = 20,
    device: str | torch.device = "cpu",
) -> tuple[list[float], list[float]]:
    """Time `fn` and `calibrate` alternately; returns per-iteration milliseconds of each (warm-up excluded).

    Both are timed by the same `bench.measure.clock.Clock` as `measure_latency`: on CUDA, events on `device`'s stream,
    each call waited for before the next one starts.
    """
    clock = Clock(device)
    model_ms, calib_ms = [], []
    clock.synchronize()
    for i in range(warmup + iters):
        c, m = clock.time_ms(calibrate), clock.time_ms(fn)
        if i >= warmup:
            calib_ms.append(c)
            model_ms.append(m)
    return model_ms, calib_ms


def calibrated_latency(
    model: nn.Module,
    input_size: tuple[int, int],
    device: str | torch.device = "cpu",
    warmup: int = 3,
    iters: int = 20,
    model_name: str = "",
    suite: str = "",
) -> list[dict[str, Any]]:
    """Rows for regression tracking: `latency_calibrated` (median of model / calibration time, with every ratio in
    `samples`), and for information the raw `latency_raw_median` and `calibration_median` (ms).

    As `measure_latency`: the device with its index, strict fp32 (no TF32), and the model's tensors put back after.
    """
    device = resolve_device(device)
    with moved_for_timing(model.eval(), device, channels_last=False), strict_fp32(), torch.inference_mode():
        x = torch.randn(1, 3, *input_size, device=device)
        work = calibration_workload(device)
        model_ms, calib_ms = timed_pairs(lambda: model(x), work, warmup, iters, device)
    ratios = [m / c for m, c in zip(model_ms, calib_ms)]
    keys = {
        "model": model_name or getattr(getattr(model, "meta", None), "name", type(model).__name__),
        "suite": suite,
        "condition": "efficiency",
        "resolution": f"{input_size[0]}x{input_size[1]}",
        "batch_size": 1,
        "precision": "fp32",
        "device": str(device),
    }
    return [
        make_row(LATENCY_CALIBRATED, statistics.median(ratios), **keys, samples=ratios),
        make_row(LATENCY_RAW_MEDIAN, statistics.median(model_ms), **keys),
        make_row(CALIBRATION_MEDIAN, statistics.median(calib_ms), **keys),
    ]
