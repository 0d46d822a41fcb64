"""Turn images into logits and label maps: normalisation, whole or sliding-window inference, flip, precision.

Semantics follow mmseg's `EncoderDecoder` test path (the code SegFormer's Cityscapes numbers come from):

* **whole**: one forward pass; logits are resized (bilinear, `align_corners=False`) to the input size.
* **slide** (`slide_inference`): windows of `crop` moved by `stride`; the number of windows along an axis is
  `max(H - crop_h + stride_h - 1, 0) // stride_h + 1`, the last window is shifted back so that it ends at the
  border, and a window is smaller than the crop when the image is. Each window's logits are resized to the window
  and summed into the image; every pixel is divided by the number of windows that covered it.
* **flip**: the horizontally flipped image is predicted too and the softmax probabilities of both are averaged
  (mmseg's `aug_test` averages probabilities); the returned scores are then the log of the averaged probabilities,
  so their argmax and softmax are those of the average.

Logits are accumulated in float32 whatever the autocast precision.

Label maps on the CPU (`predict`, whole mode without flip) never hold the full-resolution logits: they are resized
and reduced to labels in bands of rows (see `resize_argmax`), with the same numbers as resizing everything first.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segbench.bench.measure._numba import compiled
from segbench.bench.measure.calibration import CalibrationCounter
from segbench.bench.run.config import InferenceSpec, autocast_dtype, check_precision


class NonFiniteLogitsError(RuntimeError):
    """The model produced NaN or inf logits."""


def _autocast(spec: InferenceSpec, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = autocast_dtype(check_precision(spec.precision, device=str(device)))
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _scaled_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """`mean * 255` and `std * 255` as `(1, 3, 1, 1)` tensors on `device`, made once per (values, device, dtype).

    Making them is a pageable host-to-device copy, which waits for the device; cached, a GPU loop that normalises every
    batch never waits here. Made outside inference mode, so that they also serve code that records autograd.
    """
    with torch.inference_mode(False):
        m = torch.tensor(mean, dtype=dtype).view(1, 3, 1, 1) * 255.0
        s = torch.tensor(std, dtype=dtype).view(1, 3, 1, 1) * 255.0
        return m.to(device), s.to(device)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 RGB `(B, 3, H, W)` in [0, 255] (or float already in [0, 255]) -> `(img / 255 - mean) / std`, float32.

    The mean and std tensors are made on the images' device once and reused (`_scaled_stats`): no host sync per call.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    x = images.float()
    m, s = _scaled_stats(tuple(map(float, mean)), tuple(map(float, std)), x.device, x.dtype)
    return (x - m) / s


def nonfinite_message(model: nn.Module, spec: InferenceSpec) -> str:
    """What `NonFiniteLogitsError` says about `model` (also for checks made later, off the host)."""
    name = getattr(getattr(model, "meta", None), "name", type(model).__name__)
    hint = "check the weights and the input" if spec.precision == "fp32" else "try precision fp32 (overflow?)"
    return f"model {name} produced NaN or inf logits (precision {spec.precision}); {hint}"


def _check_finite(out: torch.Tensor, model: nn.Module, spec: InferenceSpec) -> None:
    if not bool(torch.isfinite(out).all()):
        raise NonFiniteLogitsError(nonfinite_message(model, spec))


def _forward(
    model: nn.Module, x: torch.Tensor, size: tuple[int, int] | None, spec: InferenceSpec, check_finite: bool = False
) -> torch.Tensor:
    """Model logits for normalised `x`, resized to `size` (None: as the model returns them), float32.

    With `check_finite`, the model's own output is checked before resizing: bilinear weights are non-negative and
    sum to one, so the resized logits are finite exactly when the model's are, at a fraction of the cost.
    """
    if spec.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with _autocast(spec, x.device):
        out = model(x)
    out = out.float()
    if check_finite:
        _check_finite(out, model, spec)
    if size is not None and tuple(out.shape[-2:]) != tuple(size):
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
    return out


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Start offsets of the sliding windows along one axis (mmseg's grid, last window aligned to the border)."""
    grids = max(length - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, length) - crop, 0) for i in range(grids)]


def slide_windows(h: int, w: int, spec: InferenceSpec) -> list[tuple[int, int, int, int]]:
    """The sliding windows `(y1, x1, y2, x2)` over an `h` x `w` image, row by row (`spec` resolved, mode slide)."""
    ch, cw = spec.crop
    sh, sw = spec.stride
    return [
        (y, xx, min(y + ch, h), min(xx + cw, w)) for y in window_starts(h, ch, sh) for xx in window_starts(w, cw, sw)
    ]


def window_count(boxes: list[tuple[int, int, int, int]], h: int, w: int, device: torch.device) -> torch.Tensor:
    """float32 `(1, 1, h, w)`: how many of `boxes` cover each pixel (what stitched logits are divided by)."""
    count = torch.zeros((1, 1, h, w), dtype=torch.float32, device=device)
    for y1, x1, y2, x2 in boxes:
        count[:, :, y1:y2, x1:x2] += 1
    return count


def _slide(
    model: nn.Module, x: torch.Tensor, num_classes: int | None, spec: InferenceSpec, check_finite: bool = False
) -> torch.Tensor:
    b, _, h, w = x.shape
    boxes = slide_windows(h, w, spec)
    crop_size = (boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1])  # every window has the same size
    crops = torch.cat([x[:, :, y1:y2, x1:x2] for y1, x1, y2, x2 in boxes])  # window-major: (n_windows * B, 3, ...)
    outs = [_forward(model, chunk, crop_size, spec, check_finite) for chunk in crops.split(spec.batch_size)]
    logits = torch.cat(outs)
    c = logits.shape[1] if num_classes is None else num_classes
    total = x.new_zeros((b, c, h, w), dtype=torch.float32)
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        total[:, :, y1:y2, x1:x2] += logits[k * b : (k + 1) * b]
    return total / window_count(boxes, h, w, x.device)


def _single(model: nn.Module, x: torch.Tensor, spec: InferenceSpec, check_finite: bool = False) -> torch.Tensor:
    if spec.mode == "whole":
        return _forward(model, x, tuple(x.shape[-2:]), spec, check_finite)
    return _slide(model, x, None, spec, check_finite)


def image_scores(
    model: nn.Module,
    x: torch.Tensor,
    spec: InferenceSpec,
    check_finite: bool = False,
    single: Callable[..., torch.Tensor] = _single,
) -> torch.Tensor:
    """`predict_logits` on a normalised batch (`spec` resolved), without its inference mode: the scores at the input
    size, flip-averaged with `spec.flip`. `single` makes one pass (`_single`'s signature); the attacks pass one whose
    sliding window backpropagates crop by crop (`bench.measure.attacks`)."""
    logits = single(model, x, spec, check_finite)
    if spec.flip:
        flipped = single(model, x.flip(-1), spec, check_finite).flip(-1)
        # log((softmax(a) + softmax(b)) / 2), computed in log space so confident pixels cannot underflow to -inf
        logits = torch.logaddexp(logits.log_softmax(1), flipped.log_softmax(1)) - math.log(2.0)
    return logits


def model_logits(model: nn.Module, x: torch.Tensor, spec: InferenceSpec, check_finite: bool = False) -> torch.Tensor:
    """`predict`'s model step on a normalised batch (`spec` resolved, no flip): whole, the model's own float32 logits
    at its output size, for `resize_argmax`; slide, the windows' logits stitched at the input size."""
    slide = spec.mode == "slide"
    return _slide(model, x, None, spec, check_finite) if slide else _forward(model, x, None, spec, check_finite)


@torch.inference_mode()
def predict_logits(
    model: nn.Module, images: torch.Tensor, spec: InferenceSpec, check_finite: bool = False
) -> torch.Tensor:
    """Per-pixel class scores at the input resolution.

    Args:
        model: a segmentation model with `.meta` (mean, std, eval_crop, eval_stride), already on the images' device.
        images: uint8 RGB `(B, 3, H, W)` (or float in [0, 255]); normalised here with the model's mean/std.
        spec: inference settings; a missing crop/stride is taken from `model.meta`.
        check_finite: raise `NonFiniteLogitsError` when the model outputs NaN or inf (one host sync per forward).

    Returns:
        float32 `(B, num_classes, H, W)`: logits, or with `spec.flip` the log of the flip-averaged probabilities.
    """
    spec = spec.resolve(model.meta)
    return image_scores(model, normalize(images, model.meta.mean, model.meta.std), spec, check_finite)


def _argmax_rows_kernel(scores: np.ndarray, row0: int, out: np.ndarray) -> None:
    """`out[i, r, x]` = index of the largest `scores[i, :, row0 + r, x]`: the first one on ties, the first NaN if any.

    The same rule as `torch.max(dim=1).indices`. Plain Python here; compiled with numba
    (`bench.measure._numba.compiled`).
    """
    b, c, _, w = scores.shape
    best = np.empty(w, dtype=scores.dtype)
    for i in range(b):
        for r in range(out.shape[1]):
            labels = out[i, r]
            best[:] = scores[i, 0, row0 + r]
            labels[:] = 0
            for k in range(1, c):
                row = scores[i, k, row0 + r]
                for x in range(w):
                    v = row[x]
                    # v > best is False whenever either is NaN: a NaN takes over once, then nothing beats it
                    if v > best[x] or (v != v and best[x] == best[x]):
                        best[x] = v
                        labels[x] = k


BAND_ROWS = 8  # source rows resized per band: 8 x 4 output rows x 19 classes x 2048 px x 4 B = 2.5 MB, cache-sized


def resize_argmax(
    logits: torch.Tensor,
    size: tuple[int, int],
    band_rows: int | None = None,
    calibration: CalibrationCounter | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """`F.interpolate(logits, size, mode="bilinear", align_corners=False).max(1).indices`, with identical labels.

    On the CPU, when the height grows by a power-of-two factor `k` (1 included; SegFormer's stride-4 logits of an
    image whose sides divide by 4), the rows are processed in bands of `band_rows` source rows, each padded by one
    source row on both sides. A band's output rows then see the same source rows, and (since `k` is a power of two)
    the same float32 source coordinates and weights, as in the full resize, so every value is bit-identical. The
    band's labels are taken right away by a compiled loop. This never materialises the full-resolution logits
    (40 MB for 19 classes at 512x1024): no page faults for a fresh buffer, and the band stays in cache. Other cases
    (CUDA, other factors, other dtypes, channels_last logits) take the plain path.

    Args:
        logits: `(B, C, h, w)` scores.
        size: `(H, W)` of the label map.
        band_rows: source rows per band (default `BAND_ROWS`).
        calibration: also add the softmax calibration of the resized logits against `labels` (`(B, H, W)`) into this
            counter (`bench.measure.calibration`), in the same pass.

    Returns:
        int64 `(B, H, W)` labels.
    """
    b, c, h, w = logits.shape
    out_h, out_w = size
    k = out_h // h if h and out_h % h == 0 else 0
    plain = logits.device.type != "cpu" or logits.dtype != torch.float32 or not logits.is_contiguous()
    if plain or k < 1 or k & (k - 1) or c == 0:
        if (h, w) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        if calibration is not None:
            return calibration.add_logits(logits, labels)
        # max(dim).indices is argmax (first index on ties, NaN wins), about 4x faster on CPU for a strided class dim
        return logits.max(1).indices
    kernel = compiled(_argmax_rows_kernel)
    band_rows = band_rows or BAND_ROWS
    result = torch.empty((b, out_h, out_w), dtype=torch.int64)
    out = result.numpy()
    if (h, w) == (out_h, out_w):  # nothing to resize (F.interpolate would copy)
        if calibration is not None:
            calibration.add_band(logits, 0, labels, result, kernel)
        else:
            kernel(logits.numpy(), 0, out)
        return result
    for start in range(0, h, band_rows):
        stop = min(start + band_rows, h)
        lo, hi = max(start - 1, 0), min(stop + 1, h)
        band = F.interpolate(logits[:, :, lo:hi], size=((hi - lo) * k, out_w), mode="bilinear", align_corners=False)
        if calibration is not None:
            rows = slice(start * k, stop * k)
            calibration.add_band(band, (start - lo) * k, labels[:, rows], result[:, rows], kernel)
        else:
            kernel(band.numpy(), (start - lo) * k, out[:, start * k : stop * k])
    return result


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    spec: InferenceSpec,
    out_size: tuple[int, int] | None = None,
    check_finite: bool = True,
    calibration: CalibrationCounter | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Label map per image: logits resized to `out_size` (bilinear, `align_corners=False`), then argmax.

    Args:
        model: see `predict_logits`.
        images: uint8 RGB `(B, 3, H, W)`.
        spec: inference settings.
        out_size: (H, W) of the labels; None keeps the input size.
        check_finite: raise `NonFiniteLogitsError` when any logit is NaN or inf (costs one host sync).
        calibration: add the softmax calibration of the scored logits against `labels` into this counter
            (`bench.measure.calibration.CalibrationCounter`; `labels` at `out_size`).

    Returns:
        int64 `(B, *out_size)` train ids.
    """
    size = tuple(images.shape[-2:])
    spec = spec.resolve(model.meta)
    if spec.mode == "whole" and not spec.flip and (out_size is None or tuple(out_size) == size):
        # the model's own logits go straight to resize_argmax: the same labels as resizing to `size` first
        x = normalize(images, model.meta.mean, model.meta.std)
        return resize_argmax(_forward(model, x, None, spec, check_finite), size, calibration=calibration, labels=labels)
    logits = predict_logits(model, images, spec, check_finite)
    out = size if out_size is None else tuple(out_size)
    return resize_argmax(logits, out, calibration=calibration, labels=labels)
