"""Does a deployed model compute the same function as the eager fp32 model? Logit and argmax agreement, with a verdict.

Three numbers over a set of images, candidate `b` against reference `a` (eager fp32, IEEE fp32: `strict_fp32`):

- ``max_abs``: the largest ``|a - b|`` over every logit of every image;
- ``max_rel``: ``max_abs / max |a|``: the largest difference relative to the largest reference logit. Not an
  element-wise ``|a - b| / |a|``, which explodes where a logit crosses zero and says nothing about the prediction;
  the same definition as `benchmarks/bench_fast_segformer.py`;
- ``argmax_agreement``: the percentage of pixels whose predicted class (argmax over the class axis) is the same.

A candidate agrees when both stay within its precision's tolerance (`TOLERANCES`); a non-finite logit or a logit map of
another shape never agrees. The meter keeps running maxima and counts only: pure, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    """The most a precision may move the logits: ``max_rel`` (see the module docstring) and the least argmax
    agreement, in percent."""

    max_rel: float
    min_argmax: float


TOLERANCES: dict[str, Tolerance] = {
    # fp32: the same maths, other kernels and summation orders (ONNX Runtime's fused ops, the fast path's folded
    # decoder): rounding only, ~1e-7 per op, measured 5e-7 relative and 100% argmax on SegFormer-B0 and DeepLabV3+
    # (MobileNetV2). 1e-4 is the target for the fast path; more is a different function.
    "fp32": Tolerance(max_rel=1e-4, min_argmax=99.9),
    # bf16: an 8-bit mantissa rounds each op at ~4e-3 and the errors add up over depth; autocast keeps softmax and
    # LayerNorm in fp32. Measured (CPU autocast, demo weights, synthetic scenes at 128x256, the scale they were trained
    # at): 0.6% / 99.9% (SegFormer-B0), 1.7% / 99.8% (DeepLabV3+ MobileNetV2); at 512x1024, out of that scale,
    # SegFormer-B0 still agrees (0.7% / 99.8%) and DeepLabV3+ does not (3.2% / 98.7%).
    "bf16": Tolerance(max_rel=5e-2, min_argmax=99.0),
    # fp16: an 11-bit mantissa (~5e-4 per op), eight times finer than bf16, but a 65504 range: an overflow (LayerNorm
    # in fp16 TensorRT engines, NVIDIA/TensorRT#2564) shows as inf or a huge difference and fails. Not measured here
    # (no GPU): set between fp32 and bf16.
    "fp16": Tolerance(max_rel=1e-2, min_argmax=99.5),
    # int8: 256 levels per tensor (per channel for weights), activation ranges calibrated on a few images and
    # clipped beyond them. Measured (ONNX Runtime, `export.quantize_int8`, 4 calibration scenes, demo weights): at
    # 128x256 4.5% / 99.6% (SegFormer-B0), 7.5% / 99.4% (DeepLabV3+); at 512x1024 5.0% / 98.4% and 11% / 96.2%.
    # mmseg reports about 1 mIoU lost to int8; more than 2% of pixels changing class is more than that.
    "int8": Tolerance(max_rel=0.25, min_argmax=98.0),
}
"""Per precision, how far a deployed model may be from eager fp32 and still count as the same model."""


@dataclass(frozen=True)
class Agreement:
    """A candidate's logits against eager fp32 over `images` images (`pixels` logit-map pixels in all).

    Attributes:
        precision: the candidate's precision, whose tolerance decides `agrees`.
        max_abs, max_rel, argmax_agreement: see the module docstring (argmax agreement in percent); ``inf`` and 0.0
            for a candidate with non-finite logits or logits of another shape.
        images, pixels: what was compared.
        tolerance: `TOLERANCES[precision]`.
        agrees: both numbers within the tolerance.
        note: why a candidate cannot agree whatever the numbers (non-finite logits, another shape), else "".
    """

    precision: str
    max_abs: float
    max_rel: float
    argmax_agreement: float
    images: int
    pixels: int
    tolerance: Tolerance
    agrees: bool
    note: str = ""

    @property
    def verdict(self) -> str:
        return "agrees" if self.agrees else "disagrees"

    def line(self) -> str:
        """One line for logs and tables: the numbers, the tolerance and the verdict."""
        tol = self.tolerance
        why = f" ({self.note})" if self.note else ""
        return (
            f"max|d| {self.max_abs:.2e}, rel {self.max_rel:.2e}, argmax {self.argmax_agreement:.2f}% over "
            f"{self.images} image(s) (tolerance rel <= {tol.max_rel:g}, argmax >= {tol.min_argmax:g}%): "
            f"{self.verdict}{why}"
        )


def tolerance(precision: str) -> Tolerance:
    if precision not in TOLERANCES:
        raise ValueError(f"no agreement tolerance for precision {precision!r}; known: {', '.join(TOLERANCES)}")
    return TOLERANCES[precision]


class AgreementMeter:
    """Accumulates the agreement of candidate logits with reference logits, batch by batch."""

    def __init__(self) -> None:
        self.max_abs = 0.0
        self.max_ref = 0.0
        self.same = 0
        self.pixels = 0
        self.images = 0
        self.note = ""

    def update(self, reference: torch.Tensor, candidate: torch.Tensor) -> None:
        """Add one batch: `reference` and `candidate` logits (B, K, h, w), any float dtype, any device."""
        a = reference.detach().float()
        b = candidate.detach().to(a.device, torch.float32)
        self.images += a.shape[0]
        self.pixels += a.shape[0] * a.shape[2] * a.shape[3]
        self.max_ref = max(self.max_ref, a.abs().max().item())
        if a.shape != b.shape:
            self.note = self.note or f"logits {tuple(b.shape)}, eager {tuple(a.shape)}"
            self.max_abs = math.inf
            return
        if not torch.isfinite(b).all():
            self.note = self.note or "non-finite logits"
            self.max_abs = math.inf
            return
        self.max_abs = max(self.max_abs, (a - b).abs().max().item())
        self.same += (a.argmax(1) == b.argmax(1)).sum().item()

    def result(self, precision: str) -> Agreement:
        """The agreement so far, judged against `TOLERANCES[precision]`."""
        if not self.images:
            raise ValueError("no images compared: the agreement check needs at least one image")
        tol = tolerance(precision)
        max_rel = self.max_abs / self.max_ref if self.max_ref > 0 else (0.0 if self.max_abs == 0 else math.inf)
        argmax = 100.0 * self.same / self.pixels if not self.note else 0.0
        agrees = not self.note and max_rel <= tol.max_rel and argmax >= tol.min_argmax
        return Agreement(precision, self.max_abs, max_rel, argmax, self.images, self.pixels, tol, agrees, self.note)


def reference_logits(model: torch.nn.Module, images: Iterable[torch.Tensor], device: str | torch.device) -> list:
    """Eager fp32 logits of `model` for each image batch (NCHW, normalised), in IEEE fp32 (no TF32: `strict_fp32`),
    on `device`; computed once and compared with every candidate."""
    from segbench.bench.measure.latency import strict_fp32

    out = []
    with torch.inference_mode(), strict_fp32():
        for x in images:
            out.append(model(x.to(device)).float())
    return out


def measure_agreement(
    candidate: Callable[[torch.Tensor], torch.Tensor],
    images: Iterable[torch.Tensor],
    references: Iterable[torch.Tensor],
    precision: str,
) -> Agreement:
    """Run `candidate` on each image batch and compare with the matching reference logits (`reference_logits`).

    The candidate runs under `strict_fp32`, as `measure_latency` times it: its fp32 ops are IEEE fp32.
    """
    from segbench.bench.measure.latency import strict_fp32

    meter = AgreementMeter()
    with torch.inference_mode(), strict_fp32():
        for x, ref in zip(images, references, strict=True):
            meter.update(ref, candidate(x.to(ref.device)))
    return meter.result(precision)


__all__ = [
    "TOLERANCES",
    "Agreement",
    "AgreementMeter",
    "Tolerance",
    "measure_agreement",
    "reference_logits",
    "tolerance",
]
