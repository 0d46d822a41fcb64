"""Efficiency of a segmentation model: parameters, FLOPs with a stated convention, latency, throughput, memory, and on
a GPU energy and power.

The public API lives here; the FLOP counters are in `bench.measure.flops` and the timing harness in
`bench.measure.latency`.

    >>> from segbench.bench.measure.efficiency import count_params, count_flops, measure_latency
    >>> count_flops(model, (512, 512), convention="paper").gmacs          # SegFormer-B0, 150 classes: ~8.4
    >>> measure_latency(model, (512, 1024), device="cuda", precision="fp16").median_ms

`efficiency_sweep` turns all of it into tidy result rows (``model, suite, condition, corruption, category,
severity, metric, value, unit`` plus the keys that say what the number is), and `hardware_info` records the
machine the numbers came from.

Every row of a sweep has the nine result columns (``condition="efficiency"``; corruption, category and severity
None) plus ``resolution`` ("HxW" or None), ``batch_size``, ``precision``, ``device`` and ``convention`` (None where
they do not apply). Metrics: ``params``, ``params_backbone``, ``params_head`` (M); ``gmacs``, ``gflops`` per convention
at batch 1 (GMAC / GFLOP, with the counter's description in ``counter``), of the architecture as published
(``model.architecture()`` when the model has it); ``gmacs_executed``, ``gflops_executed`` when the model runs a
different graph (SegFormer's fast path); ``gmacs_sliding`` when the model's ``meta.eval_crop`` is smaller than the
resolution (per-crop cost x windows, with ``crop``, ``stride``, ``num_crops``); ``latency_median``, ``latency_p90``,
``latency_p99``, ``latency_iqr`` (ms), ``latency_cv`` (ratio), ``throughput`` (img/s) and ``peak_memory`` (MiB, with
``memory_kind``); on CUDA with NVML (nvidia-ml-py) also ``energy_per_image`` (J) and ``power_mean`` (W), with
``energy_source`` (`bench.measure.energy`; left out where not measured). Latency rows also carry ``device_name``,
``threads``, ``noisy``, ``channels_last``, ``compiled``, ``dynamo_recompiles`` and ``dynamo_eager_fallback`` (None
when not compiled), ``tf32_matmul``, ``tf32_cudnn`` and ``sdpa_backend`` (`bench.measure.latency.LatencyStats`);
``device`` has its index (``"cuda:0"``). A (resolution, batch size, precision) that runs out of memory
(`bench.run.oom.is_out_of_memory`) gives one ``oom`` row (value 1, unit "flag") with the same keys, the measured ones
None.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import platform
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from segbench.bench.measure.energy import NvmlUnavailable, nvml_device
from segbench.bench.measure.flops import (
    CONVENTIONS,
    DEFAULT_CONVENTIONS,
    PAPER_RULES,
    FlopCount,
    SlidingWindowFlops,
    _check_size,
    count_flops,
    module_groups,
    sdpa_flop_jit,
    segformer_attention_macs,
    sliding_window_flops,
    sliding_window_grid,
)
from segbench.bench.measure.latency import (
    LatencyStats,
    TimingStats,
    cpu_isa_flags,
    cpu_model_name,
    device_name,
    measure_latency,
    resolve_device,
    summarize,
    time_callable,
)
from segbench.bench.results.schema import (
    ENERGY_PER_IMAGE,
    GFLOPS,
    GFLOPS_EXECUTED,
    GMACS,
    GMACS_EXECUTED,
    GMACS_SLIDING,
    LATENCY_CV,
    LATENCY_IQR,
    LATENCY_MEDIAN,
    LATENCY_P90,
    LATENCY_P99,
    OOM,
    PARAMS,
    PARAMS_BACKBONE,
    PARAMS_HEAD,
    PEAK_MEMORY,
    POWER_MEAN,
    THROUGHPUT,
    make_row,
)
from segbench.bench.run import allocator
from segbench.bench.run.config import PRECISIONS, usable_cores
from segbench.bench.run.oom import is_out_of_memory

CITYSCAPES_SHORT_SIDES = (512, 640, 768, 1024)
"""Short sides of the efficiency curves (Cityscapes' 1:2 aspect; 1024 is the full evaluation resolution)."""


# --------------------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ParamCount:
    """Parameter counts, in parameters (not millions).

    Attributes:
        total: every parameter of the model, shared tensors counted once.
        backbone: parameters of ``model.backbone`` (0 when the model has none).
        head: everything outside the backbone (``total - backbone``): the decode head and any auxiliary head.
        by_module: per top-level child module (``{"backbone": ..., "decode_head": ...}``).
        trainable: parameters with ``requires_grad``.
    """

    total: int
    backbone: int
    head: int
    by_module: dict[str, int] = field(default_factory=dict)
    trainable: int = 0

    def millions(self, part: str = "total") -> float:
        """A count in millions: ``part`` is ``"total"``, ``"backbone"``, ``"head"``, ``"trainable"`` or a key of
        `by_module`."""
        if part in ("total", "backbone", "head", "trainable"):
            return getattr(self, part) / 1e6
        if part in self.by_module:
            return self.by_module[part] / 1e6
        raise ValueError(
            f"unknown part {part!r}: use total, backbone, head, trainable or one of {list(self.by_module)}"
        )


def _numel(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def count_params(model: nn.Module) -> ParamCount:
    """Count the parameters of `model` in total, in its backbone, in its head(s) and per top-level module.

    A model that holds its weights outside torch (an ONNX graph run by ONNX Runtime) says how many it has in a
    `num_parameters` attribute, which is taken when the module itself has none.
    """
    total = _numel(model.parameters()) or int(getattr(model, "num_parameters", 0) or 0)
    backbone_module = getattr(model, "backbone", None)
    backbone = _numel(backbone_module.parameters()) if isinstance(backbone_module, nn.Module) else 0
    return ParamCount(
        total=total,
        backbone=backbone,
        head=total - backbone,
        by_module={name: _numel(child.parameters()) for name, child in model.named_children()},
        trainable=_numel(p for p in model.parameters() if p.requires_grad),
    )


# --------------------------------------------------------------------------------------------------------------------
# Hardware provenance
# --------------------------------------------------------------------------------------------------------------------


def _gpu_driver() -> str | None:
    try:
        import pynvml  # nvidia-ml-py, if installed

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # noqa: BLE001 - any failure means "ask nvidia-smi instead"
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def hardware_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """The machine behind a set of numbers: CPU, GPU (when CUDA is available), library versions, threads.

    Args:
        device: the device measured: its GPU is the one described (``"cuda"`` and None: the current GPU; a CPU
            device: the current GPU too, as part of the machine).

    Keys: ``cpu_model``, ``cpu_isa`` (its kernel-deciding ISA flags: AVX2, AVX-512, VNNI, bf16, AMX;
    `bench.measure.latency.cpu_isa_flags`), ``cpu_count`` (logical cores), ``cpu_affinity`` (cores this process may
    use), ``torch_threads``, ``torch_version``, ``python_version``, ``platform``, ``allocator``
    (`bench.run.allocator.describe`), ``cuda_available``, and when CUDA is available ``gpu_index`` (the GPU described),
    ``gpu_name``, ``gpu_count``, ``gpu_memory_mib``, ``gpu_driver``, ``cuda_version``, ``cudnn_version`` (otherwise
    those are None). Through NVML (nvidia-ml-py, `bench.measure.energy.nvml_device`), each None where NVML cannot tell
    (no CUDA, no nvidia-ml-py, the GPU does not report it): ``gpu_sm_clock_mhz`` and ``gpu_mem_clock_mhz`` (the clocks
    when this is called, often an idle GPU's, lower than under load), ``gpu_sm_clock_max_mhz``, ``gpu_power_limit_w``
    (the limit the driver enforces) and ``gpu_persistence_mode`` (bool). Library versions beyond torch, CUDA and cuDNN
    (TensorRT, ONNX Runtime, nvidia-ml-py...) are in the run's provenance (`bench.run.provenance.package_versions`).
    """
    info: dict[str, Any] = {
        "cpu_model": cpu_model_name(),
        "cpu_isa": cpu_isa_flags(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "allocator": allocator.describe(),
        "cuda_available": torch.cuda.is_available(),
        "gpu_index": None,
        "gpu_name": None,
        "gpu_count": None,
        "gpu_memory_mib": None,
        "gpu_driver": None,
        "cuda_version": None,
        "cudnn_version": None,
        **dict.fromkeys(NVML_STATE_KEYS),
    }
    if info["cuda_available"]:
        gpu = resolve_device(device if device is not None and torch.device(device).type == "cuda" else "cuda")
        props = torch.cuda.get_device_properties(gpu)
        info.update(
            gpu_index=gpu.index,
            gpu_name=torch.cuda.get_device_name(gpu),
            gpu_count=torch.cuda.device_count(),
            gpu_memory_mib=props.total_memory / 2**20,
            gpu_driver=_gpu_driver(),
            cuda_version=torch.version.cuda,
            cudnn_version=torch.backends.cudnn.version(),
        )
        info.update(nvml_state(gpu))
    return info


NVML_STATE_KEYS = (
    "gpu_sm_clock_mhz",
    "gpu_mem_clock_mhz",
    "gpu_sm_clock_max_mhz",
    "gpu_power_limit_w",
    "gpu_persistence_mode",
)
"""The `hardware_info` keys read through NVML (`nvml_state`)."""


def nvml_state(device: str | torch.device) -> dict[str, Any]:
    """`NVML_STATE_KEYS` of `device`'s GPU: current SM and memory clocks (MHz, ``nvmlDeviceGetClockInfo``), the
    maximum SM clock (``nvmlDeviceGetMaxClockInfo``), the enforced power limit (W, ``nvmlDeviceGetEnforcedPowerLimit``
    in mW) and persistence mode (``nvmlDeviceGetPersistenceMode``); each None where it cannot be read, all None when
    NVML cannot open the device (`bench.measure.energy.nvml_device`)."""
    state: dict[str, Any] = dict.fromkeys(NVML_STATE_KEYS)
    try:
        with nvml_device(device) as (nvml, handle):
            readers = {
                "gpu_sm_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                "gpu_mem_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
                "gpu_sm_clock_max_mhz": lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM),
                "gpu_power_limit_w": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3,
                "gpu_persistence_mode": lambda: nvml.nvmlDeviceGetPersistenceMode(handle) == nvml.NVML_FEATURE_ENABLED,
            }
            for key, read in readers.items():
                with contextlib.suppress(Exception):  # NVMLError_NotSupported (persistence mode off Linux...)
                    state[key] = read()
    except NvmlUnavailable:
        pass
    return state


# --------------------------------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------------------------------


def cityscapes_resolutions(short_sides: Iterable[int] = CITYSCAPES_SHORT_SIDES) -> list[tuple[int, int]]:
    """(H, W) pairs at Cityscapes' 1:2 aspect for the given short sides: 512 -> (512, 1024)."""
    return [(int(s), 2 * int(s)) for s in short_sides]


def _size_str(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _model_name(model: nn.Module) -> str:
    meta = getattr(model, "meta", None)
    return getattr(meta, "name", None) or type(model).__name__


def efficiency_sweep(
    model: nn.Module,
    resolutions: Sequence[tuple[int, int]],
    batch_sizes: Sequence[int] = (1,),
    device: str | torch.device = "cpu",
    precision: str | Sequence[str] = "fp32",
    *,
    model_name: str | None = None,
    suite: str = "",
    conventions: Sequence[str] = DEFAULT_CONVENTIONS,
    latency: bool = True,
    sliding_window: bool = True,
    warmup: int = 5,
    iters: int = 20,
    channels_last: bool = False,
    compile: bool = False,
    cv_threshold: float = 0.1,
    max_retries: int = 2,
    curve: Sequence[tuple[int, int]] = (),
    saturation: float | None = None,
    executed: bool = True,
) -> list[dict[str, Any]]:
    """Parameters, FLOPs per resolution and latency per (resolution, batch size, precision) as tidy rows (the module
    docstring lists them, `bench.results.schema.METRICS` their units). A configuration that runs out of memory gives
    one ``oom`` row and a warning; the sweep goes on with the next configuration, but not with a larger batch at the
    same resolution and precision (it would not fit either).

    Throughput against batch size: with `saturation` (a relative gain, e.g. 0.05), the batch sizes of a resolution and
    precision are timed in increasing order until one gains less than that over the previous one in throughput (the
    device is saturated; that batch is still recorded) or runs out of memory: "up to the largest batch that fits or
    helps", without timing batches that only take longer.

    Args:
        model: the network.
        resolutions: (H, W) pairs, e.g. `cityscapes_resolutions()`.
        batch_sizes: batch sizes for the latency runs.
        device: where latency is measured (FLOPs are counted on the model's own device).
        precision: one precision or several (``"fp32"``, ``"fp16"``, ``"bf16"``).
        model_name: name for the rows (default: ``model.meta.name`` or the class name).
        suite: suite name for the rows.
        conventions: FLOP conventions to count (`bench.measure.flops.CONVENTIONS`); empty to skip FLOPs. A model from a
            source other than the registry counts with the ones its `source_info` allows instead.
        latency: measure latency (False: parameters and FLOPs only).
        sliding_window: add the sliding-window cost where the model's eval crop is smaller than the image.
        warmup, iters, channels_last, compile, cv_threshold, max_retries: passed to `measure_latency`.
        curve: more resolutions, each timed at batch 1 only (a latency-vs-resolution curve beside the main grid;
            FLOPs counted there too); one already in `resolutions` is not timed twice.
        saturation: stop timing larger batches once throughput gains less than this fraction (see above).
        executed: count the executed graph's FLOPs too (``*_executed`` rows) when the model runs another graph than
            its `architecture()`; False for a deployment variant, whose graph (ONNX Runtime, TensorRT, a compiled
            module) no module-level counter sees into.
    """
    grid = _sweep_grid(resolutions, curve, batch_sizes)
    precisions = _check_precisions(precision)
    conventions = _flop_conventions(model, conventions)
    row = functools.partial(efficiency_row, model_name or _model_name(model), suite)
    device = str(resolve_device(device))
    # Parameters and FLOPs of the architecture as published; a model that runs a rewritten graph (SegFormer's fast
    # path) says so through `architecture()`, and its executed graph's FLOPs are added as *_executed rows.
    arch = model.architecture() if callable(getattr(model, "architecture", None)) else model
    params = count_params(arch)
    rows = [row(metric, params.millions(part)) for metric, part in _PARAM_PARTS]
    timing = {
        "warmup": warmup,
        "iters": iters,
        "channels_last": channels_last,
        "compile": compile,
        "cv_threshold": cv_threshold,
        "max_retries": max_retries,
    }
    for size, batches in grid:
        rows += _cost_rows(row, model, arch, size, conventions, sliding_window, executed)
        if latency:
            for prec in precisions:
                rows += _batch_rows(row, model, size, batches, prec, device, timing, saturation)
    return rows


_PARAM_PARTS = ((PARAMS, "total"), (PARAMS_BACKBONE, "backbone"), (PARAMS_HEAD, "head"))
"""The parameter rows of a sweep and the `ParamCount` part each counts."""


def _sweep_grid(
    resolutions: Sequence[tuple[int, int]], curve: Sequence[tuple[int, int]], batch_sizes: Sequence[int]
) -> list[tuple[tuple[int, int], list[int]]]:
    """(resolution, batch sizes) in sweep order: each of `resolutions` with every batch size (in increasing order),
    then each of `curve` not among them at batch 1."""
    resolutions = [_check_size(r, "resolution") for r in resolutions]
    curve = [size for size in (_check_size(r, "curve resolution") for r in curve) if size not in resolutions]
    return [*((r, sorted(batch_sizes)) for r in resolutions), *((r, [1]) for r in curve)]


def _check_precisions(precision: str | Sequence[str]) -> list[str]:
    """One precision or several, as a list; raises ValueError on an unknown one."""
    precisions = [precision] if isinstance(precision, str) else list(precision)
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}: use one of {', '.join(PRECISIONS)}")
    return precisions


def _flop_conventions(model: nn.Module, conventions: Sequence[str]) -> Sequence[str]:
    """The FLOP conventions to count (raises ValueError on an unknown one): the ones asked for, or, for a model from
    hf:/py:/torchscript:/onnx:, the counters its source allows (fvcore and torch's counter; no paper convention outside
    the registry); none when none were asked for."""
    for c in conventions:
        if c not in CONVENTIONS:
            raise ValueError(f"unknown FLOP convention {c!r}: use one of {', '.join(CONVENTIONS)}")
    source = getattr(model, "source_info", None)
    if source is not None and conventions:
        return list(source.flop_conventions)
    return conventions


def _batch_rows(
    row: Callable[..., dict[str, Any]],
    model: nn.Module,
    size: tuple[int, int],
    batches: Sequence[int],
    precision: str,
    device: str,
    timing: dict[str, Any],
    saturation: float | None,
) -> list[dict[str, Any]]:
    """The latency rows of each batch size in turn, up to an out-of-memory one, or (with `saturation`) up to the first
    that gains less than that in throughput."""
    rows: list[dict[str, Any]] = []
    previous = None
    for batch in batches:
        measured = _latency_rows(row, model, size, batch, precision, device, timing)
        rows += measured
        throughput = next((r["value"] for r in measured if r["metric"] == THROUGHPUT), None)
        if throughput is None:  # out of memory: a larger batch would not fit either
            break
        if saturation is not None and previous is not None and throughput < previous * (1 + saturation):
            break
        previous = throughput
    return rows


_EFFICIENCY_KEYS = ("resolution", "batch_size", "precision", "device", "convention")


def efficiency_row(model: str, suite: str, metric: str, value: float, **extra: Any) -> dict[str, Any]:
    """One efficiency row (`bench.results.schema.make_row`, condition "efficiency"): the nine result columns, then
    resolution, batch size, precision, device and convention (None where unused), then the other keys of `extra`."""
    keys = {**dict.fromkeys(_EFFICIENCY_KEYS), **extra}
    return make_row(metric, value, model=model, suite=suite, condition="efficiency", **keys)


def _cost_rows(
    row: Callable[..., dict[str, Any]],
    model: nn.Module,
    arch: nn.Module,
    size: tuple[int, int],
    conventions: Sequence[str],
    sliding_window: bool,
    executed: bool = True,
) -> list[dict[str, Any]]:
    """FLOPs at one resolution, per convention: the architecture's, the executed graph's (with `executed`), the
    sliding window's."""
    meta = getattr(model, "meta", None)
    crop, stride = getattr(meta, "eval_crop", None), getattr(meta, "eval_stride", None)
    rows = []
    for convention in conventions:
        flops = count_flops(arch, size, convention=convention)
        common = {"resolution": _size_str(size), "batch_size": 1, "convention": convention, "counter": flops.counter}
        rows.append(row(GMACS, flops.gmacs, **common))
        rows.append(row(GFLOPS, flops.gflops, **common))
        if executed and arch is not model:
            graph = count_flops(model, size, convention=convention)
            rows.append(row(GMACS_EXECUTED, graph.gmacs, **common))
            rows.append(row(GFLOPS_EXECUTED, graph.gflops, **common))
        if sliding_window and crop and stride and (size[0] > crop[0] or size[1] > crop[1]):
            slide = sliding_window_flops(arch, size, crop, stride, convention=convention)
            extra = {"crop": _size_str(crop), "stride": _size_str(stride), "num_crops": slide.num_crops}
            rows.append(row(GMACS_SLIDING, slide.gmacs, **common, **extra))
    return rows


def _latency_rows(
    row: Callable[..., dict[str, Any]],
    model: nn.Module,
    size: tuple[int, int],
    batch: int,
    precision: str,
    device: str,
    timing: dict[str, Any],
) -> list[dict[str, Any]]:
    """Latency distribution, throughput and peak memory of one (resolution, batch size, precision), or one ``oom`` row
    when it runs out of memory (any other error is raised)."""
    keys = {"resolution": _size_str(size), "batch_size": batch, "precision": precision, "device": device}
    try:
        stats = measure_latency(model, size, batch_size=batch, device=device, precision=precision, **timing)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        error = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    else:
        common = {**keys, **{key: getattr(stats, key) for key in _LATENCY_KEYS}}
        return [
            row(LATENCY_MEDIAN, stats.median_ms, **common),
            row(LATENCY_P90, stats.p90_ms, **common),
            row(LATENCY_P99, stats.p99_ms, **common),
            row(LATENCY_IQR, stats.iqr_ms, **common),
            row(LATENCY_CV, stats.cv, **common),
            row(THROUGHPUT, stats.images_per_s, **common),
            row(PEAK_MEMORY, stats.peak_memory_mib, **common, memory_kind=stats.memory_kind),
            *_energy_rows(row, stats, common),
        ]
    # Out of memory. Out of the except block, the traceback and the failed call's frames (its activations) are gone:
    # collect what they left in reference cycles, then give the cached blocks back for the next configuration.
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    known = {
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "channels_last": timing["channels_last"],
        "compiled": timing["compile"],
    }
    common = {**keys, **dict.fromkeys(_LATENCY_KEYS), **known}  # the measured keys None
    oom = row(OOM, 1.0, **common, memory_kind=None)
    warnings.warn(
        f"{oom['model']}: out of memory at {keys['resolution']}, batch {batch}, {precision} on {device} ({error}); "
        "recorded as an oom row, the other configurations still run",
        RuntimeWarning,
        stacklevel=3,
    )
    return [oom]


def _energy_rows(row: Callable[..., dict[str, Any]], stats: LatencyStats, common: dict[str, Any]) -> list[dict]:
    """``energy_per_image`` (J) and ``power_mean`` (W), with ``energy_source``, where they were measured (CUDA with
    NVML); none otherwise."""
    measured = ((ENERGY_PER_IMAGE, stats.energy_per_image_j), (POWER_MEAN, stats.power_mean_w))
    return [row(m, v, **common, energy_source=stats.energy_source) for m, v in measured if v is not None]


_LATENCY_KEYS = (
    "device_name",
    "threads",
    "noisy",
    "channels_last",
    "compiled",
    "dynamo_recompiles",
    "dynamo_eager_fallback",
    "tf32_matmul",
    "tf32_cudnn",
    "sdpa_backend",
)
"""`LatencyStats` fields every latency row carries besides its configuration (resolution, batch size, precision,
device)."""


__all__ = [
    "CITYSCAPES_SHORT_SIDES",
    "CONVENTIONS",
    "NVML_STATE_KEYS",
    "PAPER_RULES",
    "PRECISIONS",
    "FlopCount",
    "LatencyStats",
    "ParamCount",
    "SlidingWindowFlops",
    "TimingStats",
    "cityscapes_resolutions",
    "count_flops",
    "efficiency_row",
    "count_params",
    "efficiency_sweep",
    "hardware_info",
    "measure_latency",
    "module_groups",
    "nvml_state",
    "sdpa_flop_jit",
    "segformer_attention_macs",
    "sliding_window_flops",
    "sliding_window_grid",
    "summarize",
    "time_callable",
]
