"""End-to-end latency: a PNG on disk to a label map on the host, timed stage by stage.

Model-only latency (`bench.measure.latency.measure_latency`) times ``model(x)`` on a random tensor already on the
device. A deployed segmenter also decodes the image, normalises it, and turns the logits into labels.
`measure_end_to_end` times
that whole path, one image per call, in four stages (`STAGES`):

* ``decode``: the PNG read from disk and decoded (`bench.data.cityscapes.read_image`, as the evaluator's dataset reads
  it);
* ``preprocess``: to a uint8 ``(1, 3, H, W)`` tensor, to the device, normalised with the model's mean and std;
* ``model``: the forward pass: whole image (one call) or sliding window (every crop, stitched), as
  `bench.measure.inference` runs it (`model_logits`, under the precision's autocast);
* ``postprocess``: the logits resized to the label size and reduced to labels (`resize_argmax`), copied to the host.

The computation is the evaluator's (`bench.measure.inference.predict`): the labels of a call are those `predict` gives
for the same image. The clock is `bench.measure.clock.Clock`, as for model-only latency: ``time.perf_counter`` on the
CPU; on CUDA a ``torch.cuda.Event`` at every stage boundary, each waited for before the next stage starts. The stages of
a call are consecutive marks, so a call's end-to-end time is exactly the sum of its stage times. Warm-up calls come
first (not timed); there is no re-measurement of noisy attempts (the latency rows of the sweep have that).

`end_to_end_rows` turns it into tidy efficiency rows: whole image always, sliding window as well when the model's
``meta.eval_crop`` is smaller than the image. Metric and stage names are the constants below, for reports to import.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segbench.bench.data.cityscapes import read_image
from segbench.bench.measure.clock import Clock
from segbench.bench.measure.efficiency import efficiency_row
from segbench.bench.measure.inference import model_logits, normalize, resize_argmax, window_starts
from segbench.bench.measure.latency import (
    Distribution,
    cudnn_benchmark,
    device_name,
    moved_for_timing,
    resolve_device,
    strict_fp32,
    summarize,
)
from segbench.bench.results.schema import (
    E2E_STAGES,
    LATENCY_E2E_MEDIAN,
    LATENCY_E2E_P90,
    LATENCY_E2E_P99,
    LATENCY_STAGE,
    THROUGHPUT_E2E,
)
from segbench.bench.run.config import InferenceSpec

STAGES = E2E_STAGES
"""The stages of one end-to-end call, in order (`bench.results.E2E_STAGES`, the contract's names)."""


@dataclass
class EndToEndStats(Distribution):
    """Timed end-to-end calls of one image (warm-up calls excluded), in milliseconds: `samples` are the per-call
    end-to-end times (each the sum of that call's stage times), with their statistics
    (`bench.measure.latency.Distribution`).

    Attributes:
        mode: "whole" or "slide".
        image_size: (H, W) of the image; label_size: (H, W) of the label map.
        crop, stride, num_crops: the sliding window (None for whole-image inference).
        stage_samples: per-call times of each of `STAGES`.
        stage_median_ms: median time of each stage.
        images_per_s: ``1000 / median_ms``.
        device (with its index), device_name, precision, channels_last, threads, clock, warmup, iters: what the
            numbers were measured on and how.
        labels: int64 ``(H, W)`` label map of the last call, on the host.
    """

    mode: str
    image_size: tuple[int, int]
    label_size: tuple[int, int]
    crop: tuple[int, int] | None
    stride: tuple[int, int] | None
    num_crops: int | None
    stage_samples: dict[str, list[float]]
    stage_median_ms: dict[str, float]
    images_per_s: float
    device: str
    device_name: str
    precision: str
    channels_last: bool
    threads: int
    clock: str
    warmup: int
    iters: int
    labels: torch.Tensor = field(repr=False)


def _one_call(
    model: nn.Module,
    path: Path,
    spec: InferenceSpec,
    device: torch.device,
    label_size: tuple[int, int] | None,
    clock: Clock,
) -> tuple[list[float], torch.Tensor, tuple[int, int]]:
    """One image through the pipeline: the milliseconds of each of `STAGES`, the labels (host), the image's size."""
    laps: list[float] = []
    start = clock.mark()

    def lap() -> None:
        nonlocal start
        end = clock.mark()
        laps.append(clock.elapsed_ms(start, end))  # on CUDA: waits for the stage's work before the next one starts
        start = end

    image = read_image(path)
    lap()
    images = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).unsqueeze(0).to(device)
    x = normalize(images, model.meta.mean, model.meta.std)
    lap()
    logits = model_logits(model, x, spec)
    lap()
    size = tuple(x.shape[-2:])
    if spec.mode == "whole" and label_size is not None and tuple(label_size) != size:
        # as `predict` does for labels of another size: the logits to the image's size first, then to the labels'
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    labels = resize_argmax(logits, tuple(label_size or size))[0].cpu()
    lap()
    return laps, labels, (int(size[0]), int(size[1]))


def measure_end_to_end(
    model: nn.Module,
    image_file: str | Path,
    *,
    inference: InferenceSpec | None = None,
    device: str | torch.device = "cpu",
    warmup: int = 3,
    iters: int = 20,
    label_size: tuple[int, int] | None = None,
) -> EndToEndStats:
    """Time `image_file` (an 8-bit RGB PNG) from disk to labels on the host, per stage, under inference mode.

    As `bench.measure.latency.measure_latency`: the model is put in eval mode and moved to `device` (NHWC weights with
    ``inference.channels_last``) for the measurement and put back afterwards; fp32 is IEEE fp32 (`strict_fp32`) and
    on CUDA ``cudnn.benchmark`` is on. The model is called on whatever shape the image (or its windows) has.

    Args:
        model: a segmentation model with `.meta` (mean, std; eval_crop and eval_stride for a window not given).
        image_file: the PNG.
        inference: mode ("whole" or "slide"), crop, stride, crops per forward (`batch_size`), precision and
            channels_last; a missing crop or stride is the model's (`InferenceSpec.resolve`). Flip is not timed.
        device: where the model runs (``"cuda"`` is recorded with its index).
        warmup: untimed calls first.
        iters: timed calls.
        label_size: (H, W) of the labels; None: the image's.
    """
    spec = (inference or InferenceSpec()).resolve(model.meta)
    if spec.flip:
        raise ValueError("end-to-end latency times whole-image or sliding-window inference without flip")
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1; got {warmup}, {iters}")
    device = resolve_device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available here: use device='cpu'")
    clock = Clock(device)
    calls = _timed_calls(model, Path(image_file), spec, device, label_size, clock, warmup, iters)
    laps_per_call, labels, image_size = [c[0] for c in calls], calls[-1][1], calls[-1][2]
    stage_samples = {stage: [laps[i] for laps in laps_per_call] for i, stage in enumerate(STAGES)}
    samples = [sum(laps) for laps in laps_per_call]
    stats = summarize(samples)
    slide = spec.mode == "slide"
    return EndToEndStats(
        mode=spec.mode,
        image_size=image_size,
        label_size=(int(labels.shape[-2]), int(labels.shape[-1])),
        crop=spec.crop if slide else None,
        stride=spec.stride if slide else None,
        num_crops=_num_crops(image_size, spec) if slide else None,
        samples=samples,
        stage_samples=stage_samples,
        **stats,
        stage_median_ms={stage: summarize(times)["median_ms"] for stage, times in stage_samples.items()},
        images_per_s=1e3 / stats["median_ms"],
        device=str(device),
        device_name=device_name(device),
        precision=spec.precision,
        channels_last=spec.channels_last,
        threads=torch.get_num_threads(),
        clock=clock.kind,
        warmup=warmup,
        iters=iters,
        labels=labels,
    )


def _timed_calls(
    model: nn.Module,
    path: Path,
    spec: InferenceSpec,
    device: torch.device,
    label_size: tuple[int, int] | None,
    clock: Clock,
    warmup: int,
    iters: int,
) -> list[tuple[list[float], torch.Tensor, tuple[int, int]]]:
    """`warmup` untimed calls, then `iters` timed ones (`_one_call` each), with the model in eval mode on `device`
    (`moved_for_timing`), strict fp32, on CUDA ``cudnn.benchmark``, under inference mode; the model is put back
    afterwards."""
    was_training = model.training
    settings = cudnn_benchmark(True) if device.type == "cuda" else contextlib.nullcontext()
    try:
        with (
            moved_for_timing(model.eval(), device, spec.channels_last),
            strict_fp32(),
            settings,
            torch.inference_mode(),
        ):
            for _ in range(warmup):
                _one_call(model, path, spec, device, label_size, clock)
            clock.synchronize()
            return [_one_call(model, path, spec, device, label_size, clock) for _ in range(iters)]
    finally:
        model.train(was_training)


def _num_crops(image_size: tuple[int, int], spec: InferenceSpec) -> int:
    """The windows of a sliding-window pass over an image of `image_size`."""
    rows, cols = (len(window_starts(n, c, s)) for n, c, s in zip(image_size, spec.crop, spec.stride))
    return rows * cols


def end_to_end_rows(
    model: nn.Module,
    image_file: str | Path,
    *,
    model_name: str | None = None,
    suite: str = "",
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    warmup: int = 3,
    iters: int = 20,
    label_size: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """End-to-end latency of `image_file` as tidy efficiency rows: whole image, and sliding window too when the
    model's ``meta.eval_crop`` is smaller than the image (its crop and ``eval_stride``, one crop per forward).

    Every row has the nine result columns (``condition="efficiency"``; corruption, category and severity None) plus
    ``resolution`` (the image's "HxW"), ``batch_size`` 1, ``precision``, ``device`` (with its index), ``convention``
    None, ``inference`` ("whole" or "slide"), ``device_name``, ``threads``, ``channels_last`` and ``clock``; the
    sliding-window rows also ``crop`` and ``stride`` ("HxW") and ``num_crops``. Metrics: ``latency_e2e_median``,
    ``latency_e2e_p90``, ``latency_e2e_p99`` (ms), ``throughput_e2e`` (img/s), and ``latency_stage`` (ms, the stage's
    median) once per stage of `STAGES`, named in its ``stage`` key.

    Args:
        model: the network, with `.meta`.
        image_file: an 8-bit RGB PNG (e.g. the first image of the suite's split).
        model_name: name for the rows (default: ``model.meta.name``).
        suite: suite name for the rows.
        device, warmup, iters, label_size: see `measure_end_to_end`.
        precision, channels_last: the inference settings (autocast precision, NHWC input and weights).
    """
    device = resolve_device(device)
    name = model_name or getattr(model.meta, "name", None) or type(model).__name__
    base = InferenceSpec(mode="whole", precision=precision, device=str(device), channels_last=channels_last)
    timing = {"device": device, "warmup": warmup, "iters": iters, "label_size": label_size}
    results = [measure_end_to_end(model, image_file, inference=base, **timing)]
    crop = getattr(model.meta, "eval_crop", None)
    height, width = results[0].image_size
    if crop and (height > crop[0] or width > crop[1]):
        slide = InferenceSpec(mode="slide", precision=precision, device=str(device), channels_last=channels_last)
        results.append(measure_end_to_end(model, image_file, inference=slide, **timing))
    return [row for stats in results for row in _rows(name, suite, stats)]


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _rows(model: str, suite: str, stats: EndToEndStats) -> list[dict[str, Any]]:
    keys = {
        "resolution": _size(stats.image_size),
        "batch_size": 1,
        "precision": stats.precision,
        "device": stats.device,
        "inference": stats.mode,
        "device_name": stats.device_name,
        "threads": stats.threads,
        "channels_last": stats.channels_last,
        "clock": stats.clock,
    }
    if stats.mode == "slide":
        keys.update(crop=_size(stats.crop), stride=_size(stats.stride), num_crops=stats.num_crops)
    rows = [
        efficiency_row(model, suite, LATENCY_E2E_MEDIAN, stats.median_ms, **keys),
        efficiency_row(model, suite, LATENCY_E2E_P90, stats.p90_ms, **keys),
        efficiency_row(model, suite, LATENCY_E2E_P99, stats.p99_ms, **keys),
        efficiency_row(model, suite, THROUGHPUT_E2E, stats.images_per_s, **keys),
    ]
    rows += [efficiency_row(model, suite, LATENCY_STAGE, stats.stage_median_ms[s], stage=s, **keys) for s in STAGES]
    return rows
