"""Speed: `measure_latency` per precision and memory format, eager and compiled; energy through NVML; the cudagraphs
deploy backend; `calibrated_latency` against an independent timing; the pipeline's throughput at 1024x2048."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

from segbench import suites
from segbench.bench.data.cityscapes import CityscapesDataset
from segbench.bench.deploy import ArtifactCache, check_deployment, reference_logits
from segbench.bench.deploy.backends import AutocastModule
from segbench.bench.measure.clock import Clock
from segbench.bench.measure.efficiency import NVML_STATE_KEYS, efficiency_sweep, hardware_info
from segbench.bench.measure.inference import normalize, predict
from segbench.bench.measure.latency import calibrated_latency, calibration_workload, measure_latency, strict_fp32
from segbench.bench.measure.metrics import ConfusionCounter
from segbench.bench.results.store import RunStore
from segbench.bench.run.config import InferenceSpec, RunConfig, default_workers
from segbench.bench.run.runner import run
from segbench.models.user import first_line

DEMO = suites.get_suite("demo")


def _mean_ms(fn: Callable[[], Any], device: torch.device, calls: int) -> float:
    """Milliseconds per call of `calls` back-to-back calls, host clock around device waits: an independent timer."""
    clock = Clock(device)
    clock.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    clock.synchronize()
    return (time.perf_counter() - t0) * 1e3 / calls


# --------------------------------------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu(budget_s=120)
def test_latency_cpu(cpu_mode, rows, seeded):
    """`measure_latency` of SegFormer-B0 in fp32 at 128x256 on the CPU."""
    s = measure_latency(seeded("segformer-b0"), (128, 256), device="cpu", warmup=2, iters=5, max_retries=0)
    ok = math.isfinite(s.median_ms) and s.median_ms > 0 and s.clock == "perf_counter"
    rows.judged(
        ok,
        "cpu fp32 128x256",
        f"{s.median_ms:.1f} ms, peak RSS {s.peak_memory_mib:.0f} MiB",
        f"{s.memory_kind}, {s.threads} threads, cv {s.cv:.2f}",
    )


def _extra_fields(stats: Any) -> str:
    """Fields of a latency record beyond the ones this test reads (TF32 flags, SDPA backend, recompiles...)."""
    known = {
        "samples",
        "median_ms",
        "p90_ms",
        "p99_ms",
        "iqr_ms",
        "mean_ms",
        "std_ms",
        "cv",
        "noisy",
        "attempts",
        "attempt_cvs",
        "cv_threshold",
        "warmup",
        "iters",
        "clock",
        "images_per_s",
        "peak_memory_mib",
        "memory_kind",
        "threads",
        "device",
        "device_name",
        "precision",
        "input_size",
        "batch_size",
        "channels_last",
        "compiled",
    }
    extra = {k: v for k, v in vars(stats).items() if k not in known and v is not None}
    return "; ".join(f"{k}={v}" for k, v in extra.items())


def _dynamo_counts() -> tuple[int, int]:
    """(frames dynamo compiled, graphs it made) so far in this process."""
    from torch._dynamo.utils import counters

    return counters["frames"]["ok"], counters["stats"]["unique_graphs"]


@pytest.mark.gpu(budget_s=120)  # 12 eager measurements and one cold torch.compile of B0
def test_latency_cuda(cuda, rows, seeded):
    """`measure_latency` of SegFormer-B0 at 512x1024, every precision x channels-last on "cuda" and "cuda:N" (the peak
    memory is the same), and compiled against eager with Dynamo's recompile count and graph counters."""
    model = seeded("segformer-b0")
    size, args = (512, 1024), {"warmup": 3, "iters": 10, "max_retries": 1}
    bf16 = torch.cuda.is_bf16_supported()
    eager = None  # fp16, NCHW: what the compiled model is compared with
    for precision in ("fp32", "fp16", "bf16"):
        for channels_last in (False, True):
            name = f"B0 {precision}{' NHWC' if channels_last else ''}"
            if precision == "bf16" and not bf16:
                rows.skipped(name, "bf16 not supported on this GPU")
                continue
            a = measure_latency(model, size, device="cuda", precision=precision, channels_last=channels_last, **args)
            b = measure_latency(
                model, size, device=f"cuda:{cuda.index}", precision=precision, channels_last=channels_last, **args
            )
            eager = a if (precision, channels_last) == ("fp16", False) else eager
            same = abs(a.peak_memory_mib - b.peak_memory_mib) <= 1.0 and a.peak_memory_mib > 0
            detail = f"'cuda' / 'cuda:{cuda.index}' recorded as {a.device} / {b.device}; {_extra_fields(a)}"
            if not same:  # the same device string again: does the order (warm-up, autotuning) make the difference?
                c = measure_latency(
                    model, size, device="cuda", precision=precision, channels_last=channels_last, **args
                )
                detail += f"; 'cuda' measured again: {c.peak_memory_mib:.1f} MiB"
            figure = f"{a.median_ms:.2f}/{b.median_ms:.2f} ms, peak {a.peak_memory_mib:.1f}/{b.peak_memory_mib:.1f} MiB"
            rows.judged(same, name, figure, detail)
    before = _dynamo_counts()
    compiled = measure_latency(model, size, device="cuda", precision="fp16", compile=True, **args)
    after = _dynamo_counts()
    recompiles, fallback = compiled.dynamo_recompiles, compiled.dynamo_eager_fallback
    rows.judged(
        compiled.compiled and not recompiles and not fallback,
        "compiled vs eager (fp16)",
        f"{eager.median_ms:.2f} -> {compiled.median_ms:.2f} ms ({eager.median_ms / compiled.median_ms:.2f}x)",
        f"dynamo_recompiles={recompiles}, dynamo_eager_fallback={fallback}; dynamo counters +{after[0] - before[0]} "
        f"frames, +{after[1] - before[1]} graphs",
    )


# --------------------------------------------------------------------------------------------------------------------
# Energy
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu(budget_s=15)
def test_energy_cpu(cpu_mode, rows, seeded):
    """On the CPU the efficiency rows have no energy, and `hardware_info` has the NVML keys (empty)."""
    found = efficiency_sweep(seeded("segformer-tiny"), [(64, 128)], conventions=(), warmup=1, iters=3, max_retries=0)
    metrics = {r["metric"] for r in found}
    keys = set(NVML_STATE_KEYS) <= hardware_info("cpu").keys()
    ok = "latency_median" in metrics and not metrics & {"energy_per_image", "power_mean"} and keys
    rows.judged(ok, "cpu: no energy rows", f"{len(found)} rows", f"NVML keys in hardware_info: {keys}")


@pytest.mark.gpu(budget_s=15)
def test_energy_cuda(cuda, rows, seeded):
    """NVML through segbench: `efficiency_sweep`'s ``energy_per_image`` (J) and ``power_mean`` (W) rows for B0 fp16 at
    512x1024 (200 timed calls: a window of about a second, well over NVML's 20-100 ms updates), which must agree with
    the latency (energy per image ~ power x time per image); `hardware_info`'s clocks, power limit and persistence
    mode."""
    pytest.importorskip("pynvml", reason="nvidia-ml-py (pynvml) not installed: see the carry note")
    size, calls = (512, 1024), 200
    found = efficiency_sweep(
        seeded("segformer-b0"),
        [size],
        device=str(cuda),
        precision="fp16",
        conventions=(),
        warmup=5,
        iters=calls,
        max_retries=0,
    )
    by = {r["metric"]: r for r in found}
    energy, power, median = (by.get(m, {}).get("value") for m in ("energy_per_image", "power_mean", "latency_median"))
    info = hardware_info(cuda)
    limit = info["gpu_power_limit_w"]
    if energy is None or power is None:
        rows.judged(False, "energy per image (NVML)", "no energy rows", f"metrics: {', '.join(by)}")
    else:
        ratio = energy / (power * median / 1e3)  # >= 1: the window also holds the host's gaps between calls
        ok = energy > 0 and 10 <= power <= 1.5 * (limit or 2000) and 0.9 <= ratio <= 3
        rows.judged(
            ok,
            "energy per image (NVML)",
            f"{energy:.4f} J/img, {power:.0f} W",
            f"{by['energy_per_image']['energy_source']}; B0 fp16 {size[0]}x{size[1]}, {calls} calls of {median:.2f} "
            f"ms; J/img / (W x median) = {ratio:.2f} (bound 0.9-3); power limit {limit} W",
        )
    clocks = {k: info[k] for k in NVML_STATE_KEYS}
    ok = all(isinstance(clocks[k], int) and clocks[k] > 0 for k in ("gpu_sm_clock_mhz", "gpu_sm_clock_max_mhz"))
    rows.judged(
        ok and (limit or 0) > 0,
        "GPU clocks and power limit",
        f"SM {clocks['gpu_sm_clock_mhz']} of {clocks['gpu_sm_clock_max_mhz']} MHz, limit {limit} W",
        ", ".join(f"{k}={v}" for k, v in clocks.items()) + " (read just after the measurement)",
    )


# --------------------------------------------------------------------------------------------------------------------
# CUDA graphs
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu(budget_s=20)
def test_cudagraphs_cpu(cpu_mode, rows, seeded):
    """The cudagraphs deploy backend on the CPU: unavailable, in one line."""
    cell = check_deployment("cudagraphs", seeded("segformer-tiny"), [torch.randn(1, 3, 64, 128)], device="cpu")
    ok = cell.status == "unavailable" and "CUDA" in cell.reason and "\n" not in cell.reason
    rows.judged(ok, "cpu: unavailable in one line", cell.status, cell.reason)


@pytest.mark.gpu(budget_s=20)
def test_cudagraphs_cuda(cuda, rows, seeded, scenes, tmp_path):
    """The cudagraphs deploy backend, through `check_deployment`: the demo SegFormer-B0 (trained on synthetic scenes:
    few pixels near a tie) captured at 128x256 agrees with eager fp32 at fp32 and fp16, refuses another input shape,
    and its replay is timed against eager (a launch-bound size, where graphs help)."""
    name, size = "segformer-b0", (128, 256)
    model = seeded(name, weights=DEMO.weights[name]).to(cuda)
    dataset = CityscapesDataset(scenes(4, size))
    images = [normalize(dataset[i]["image"][None].to(cuda), model.meta.mean, model.meta.std) for i in range(2)]
    references = reference_logits(model, images, cuda)
    cache = ArtifactCache(tmp_path / "deploy")
    graphed = None
    for precision in ("fp32", "fp16"):
        cell = check_deployment("cudagraphs", model, images, precision, cache, device=cuda, references=references)
        if cell.built is None:
            rows.judged(False, f"cudagraphs {precision} vs eager", cell.status, cell.reason)
            continue
        with torch.inference_mode(), strict_fp32():  # eager at the same precision, TF32 off as in the graph
            same = AutocastModule(model, precision, "cuda")(images[0]).float()
            gap = (cell.built(images[0]) - same).abs().max().item()
        rows.judged(
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
        refused = first_line(exc)
    args = {"device": str(cuda), "warmup": 5, "iters": 50, "max_retries": 1}
    eager = measure_latency(model, size, precision="fp16", **args)
    replay = measure_latency(graphed.module, size, **args)  # fp16 inside the graph
    ok = replay.median_ms <= 1.25 * eager.median_ms and refused.startswith("ValueError: cudagraphs:")
    rows.judged(
        ok,
        "replay vs eager latency",
        f"{eager.median_ms:.2f} -> {replay.median_ms:.2f} ms ({eager.median_ms / replay.median_ms:.2f}x)",
        f"B0 fp16 {size[0]}x{size[1]}, batch 1, median of 50; another shape: {refused}",
    )


# --------------------------------------------------------------------------------------------------------------------
# Calibrated latency
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu(budget_s=15)
def test_calibrated_latency(device, rows, seeded):
    """`calibrated_latency`: its calibration and raw model medians against an independent host-clock timing of the
    same calls: within 3x on a GPU, 100x on a CPU (a loaded one moves both); a unit slip, us or s for ms, is 1000x."""
    cuda = device.type == "cuda"
    name, size = ("segformer-b0", (512, 1024)) if cuda else ("segformer-tiny", (128, 256))
    model = seeded(name).to(device)
    found = {r["metric"]: r for r in calibrated_latency(model, size, device=str(device), warmup=3, iters=10)}
    calib, raw, ratio = (found[m]["value"] for m in ("calibration_median", "latency_raw_median", "latency_calibrated"))
    work = calibration_workload(device)
    x = torch.randn(1, 3, *size, device=device)
    with torch.inference_mode():
        ind_calib = _mean_ms(work, device, 50)
        ind_raw = _mean_ms(lambda: model(x), device, 5)
    bound = 3 if cuda else 100
    ok = all(1 / bound <= a / b <= bound for a, b in ((calib, ind_calib), (raw, ind_raw)))
    units = {found[m]["unit"] for m in ("calibration_median", "latency_raw_median")}
    rows.judged(
        ok and units == {"ms"},
        f"calibration median ({name} {size[0]}x{size[1]})",
        f"{calib:.3f} ms (independent {ind_calib:.3f})",
        f"model {raw:.2f} ms (independent {ind_raw:.2f}), latency_calibrated {ratio:.1f}x; unit {'/'.join(units)}; "
        f"bound {bound}x",
    )


# --------------------------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu(budget_s=60)
def test_pipeline(cuda, rows, seeded, scenes, tmp_path):
    """End-to-end cell throughput (PNG decoding, DataLoader workers, copies, inference, metric) against forward-only
    and inference-only on the same 32 scenes at 1024x2048 on the device (B0, fp32); the cell's confusion matrix must
    equal the one of the direct predictions. The ratio is shown (the performance issue's goal: at least 90%)."""
    name, n, size = "segformer-b0", 32, (1024, 2048)
    root = scenes(n, size)
    model = seeded(name).to(cuda)
    dataset = CityscapesDataset(root)
    items = [dataset[i] for i in range(len(dataset))]
    xs = [it["image"][None].to(cuda) for it in items]
    ys = [it["label"][None].to(cuda) for it in items]
    spec = InferenceSpec(mode="whole")
    counter = ConfusionCounter(19, device=cuda)
    clock = Clock(cuda)
    with torch.inference_mode():
        predict(model, xs[0], spec, check_finite=False)  # warm-up
        forward = (
            len(xs)
            * 1e3
            / _mean_ms(lambda: [model(normalize(x, model.meta.mean, model.meta.std)) for x in xs], cuda, 1)
        )
        clock.synchronize()
        t0 = time.perf_counter()
        for x, y in zip(xs, ys):
            counter.add(predict(model, x, spec, check_finite=False), y)
        clock.synchronize()
        inference = len(xs) / (time.perf_counter() - t0)
    workers = default_workers(str(cuda))
    config = RunConfig(
        suite="gpu-check",
        models=(name,),
        data_root=str(root),
        out_dir=str(tmp_path / "runs"),
        run_id="pipeline",
        device=str(cuda),
        workers=workers,
        allow_random_weights=True,
        quiet=True,
    )
    result = run(config, ["clean"], spec, model_factory=lambda _name, **kw: model)
    t = result.timing[f"{name}__clean"]
    e2e = n / t["total"]
    matrix = torch.tensor(RunStore(result.run_dir).finished()[f"{name}__clean"]["confusion_matrix"])
    same = torch.equal(matrix, counter.matrix().cpu())
    ratio = e2e / forward
    note = "" if ratio >= 0.9 else " (below the 90% goal)"
    rows.judged(
        same,
        "end-to-end vs forward-only",
        f"{e2e:.1f} img/s = {100 * ratio:.0f}% of {forward:.1f}{note}",
        f"inference-only {inference:.1f} img/s; {n} scenes {size[0]}x{size[1]}, {workers} workers; model/data/metric "
        f"{t['model']:.2f}/{t['data']:.2f}/{t['metric']:.2f} s of {t['total']:.2f}; matrices "
        f"{'equal' if same else 'DIFFER'}",
    )
