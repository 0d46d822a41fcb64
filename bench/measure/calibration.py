"""Calibration of every accuracy cell: ECE, NLL and Brier score of the softmax of the logits whose argmax is scored.

Probabilities are the softmax of the logits after their resize to the label size (averaged logits for sliding
windows), over labelled pixels only. Nothing is stored per pixel: a `CalibrationCounter` keeps, per bin of the
top-label confidence (`bench.results.schema.CALIBRATION_BINS` equal-width bins; a confidence of exactly 1.0 falls in
the last bin, not in an extra one), the pixel count and correct count (int64) and the confidence sum (float64), plus
the NLL and Brier sums (float64). These add exactly across batches, ranks and shards (up to float64 summation order),
and the cell stores them (`to_dict`) so reliability diagrams can be drawn from the run's own files.

- ECE (%) = 100 * sum_b |correct_b - confidence_sum_b| / N: the pixel-weighted mean gap between accuracy and
  confidence over the bins (Guo et al. 2017; Naeini et al. 2015).
- NLL = -sum log p_y / N, nats per labelled pixel.
- Brier = sum (sum_k p_k^2 - 2 p_y + 1) / N = mean over pixels of sum_k (p_k - onehot_k)^2, from 0 to 2.

On the CPU the sums are taken band by band as `bench.measure.inference.resize_argmax` resizes (cache-sized bands,
the exponentials of one band at a time); elsewhere (CUDA) on the whole resized logits, with tensor operations that
stay on the device. The exponentials are float32 and summed in float64, so the figures agree with a float64
computation to about 1e-7 relative.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from segbench.bench.results.schema import BRIER, CALIBRATION_BINS, ECE, NLL


def _bin_pixels(s1, s2, shifted_y, pred, labels, ignore, classes, count, confidence, correct, sums) -> None:
    """Per labelled pixel (`labels` a class below `classes`, not `ignore`): confidence `1 / s1` (the softmax's top
    probability, with `s1 = sum_k exp(f_k - max f)` and `s2` the sum of their squares) into its bin of `count`,
    `confidence` and `correct` (`pred == label`), `-log p_y` into `sums[0]` and the Brier term into `sums[1]`, in
    float64. A NaN confidence (NaN logits, a cell the NaN check fails) goes to bin 0. Plain Python here; compiled."""
    bins = count.shape[0]
    flat_s1, flat_s2, flat_y = s1.ravel(), s2.ravel(), shifted_y.ravel()
    flat_pred, flat_labels = pred.ravel(), labels.ravel()
    for j in range(flat_labels.shape[0]):
        y = flat_labels[j]
        if y == ignore or y < 0 or y >= classes:
            continue
        conf = 1.0 / flat_s1[j]
        k = int(conf * bins) if conf == conf else 0
        k = min(max(k, 0), bins - 1)
        count[k] += 1
        confidence[k] += conf
        if flat_pred[j] == y:
            correct[k] += 1
        logp = flat_y[j] - math.log(flat_s1[j])
        sums[0] -= logp
        sums[1] += flat_s2[j] / (flat_s1[j] * flat_s1[j]) - 2.0 * math.exp(logp) + 1.0


CHUNK_ELEMENTS = 1 << 19
"""Logits per chunk of rows on the CPU path (2 MiB of float32): its exponentials and sums stay in cache."""


class CalibrationCounter:
    """Binned calibration sums of one cell (see the module docstring); `add` per batch, `all_reduce` across ranks."""

    TENSORS = ("count", "correct", "confidence", "sums")
    """The attributes that hold the sums: what adds up across batches, ranks and shards."""

    def __init__(self, ignore_index: int = 255, device: torch.device | str = "cpu", bins: int = CALIBRATION_BINS):
        self.ignore_index, self.bins = int(ignore_index), int(bins)
        device = torch.device(device)
        self.count = torch.zeros(bins, dtype=torch.int64, device=device)
        self.correct = torch.zeros(bins, dtype=torch.int64, device=device)
        self.confidence = torch.zeros(bins, dtype=torch.float64, device=device)
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # NLL, Brier

    def add_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Add `(B, C, H, W)` logits at the labels' size against `(B, H, W)` labels; returns the argmax labels (the
        first index on ties, as `torch.max`). Tensor operations on any device, no host sync."""
        top, pred = logits.max(1)
        self._add(logits, top, pred, labels)
        return pred

    def add_band(self, band: torch.Tensor, row0: int, labels: torch.Tensor, out: torch.Tensor, argmax) -> None:
        """The CPU path of `bench.measure.inference.resize_argmax`: the argmax of the float32 `band`'s rows from
        `row0` into `out` by its compiled kernel `argmax(scores, row0, out)` (the labels it gives without
        calibration), and the sums of those rows against `labels`: the exponentials vectorised by torch, the
        per-pixel terms and bins in one compiled loop (`_bin_pixels`; a dozen small tensor operations per band cost
        more than the exponentials, measured)."""

        argmax(band.numpy(), row0, out.numpy())
        step = max(1, CHUNK_ELEMENTS // (band.shape[0] * band.shape[1] * band.shape[3]))
        for r in range(0, out.shape[1], step):  # rows of a cache-sized chunk at a time: the temporaries stay in cache
            stop = min(r + step, out.shape[1])
            self._add_rows(band[:, :, row0 + r : row0 + stop], labels[:, r:stop], out[:, r:stop])

    def _add_rows(self, rows: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor) -> None:
        from segbench.bench.measure._numba import compiled

        shifted = rows - rows.amax(1, keepdim=True)
        e = shifted.exp()
        s1 = e.sum(1, dtype=torch.float64)
        s2 = e.mul_(e).sum(1, dtype=torch.float64)
        y = labels.long().clamp(0, rows.shape[1] - 1)
        shifted_y = shifted.gather(1, y.unsqueeze(1)).squeeze(1)
        pixels = (s1.numpy(), s2.numpy(), shifted_y.numpy(), pred.numpy(), labels.numpy())
        sums = (self.count.numpy(), self.confidence.numpy(), self.correct.numpy(), self.sums.numpy())
        compiled(_bin_pixels)(*pixels, self.ignore_index, rows.shape[1], *sums)

    def _add(self, logits: torch.Tensor, top: torch.Tensor, pred: torch.Tensor, labels: torch.Tensor) -> None:
        """The sums of labelled pixels: the softmax from the logits and their maximum `top`, its exponentials in
        float32 (vectorised; a float64 pass costs 2.4x as much, measured) summed over the classes in float64, every
        per-pixel term after that in float64; never a stored probability map."""
        shifted = logits.float() - top.float().unsqueeze(1)
        e = shifted.exp()
        s1 = e.sum(1, dtype=torch.float64)
        s2 = e.mul_(e).sum(1, dtype=torch.float64)
        valid = (labels != self.ignore_index) & (labels >= 0) & (labels < logits.shape[1])
        y = torch.where(valid, labels, torch.zeros_like(labels)).long()
        logp_y = (shifted.gather(1, y.unsqueeze(1)).squeeze(1).double() - s1.log())[valid]
        s1, s2 = s1[valid], s2[valid]
        conf = s1.reciprocal()
        # NaN logits (a cell the NaN check fails) must not break the binning: they land in bin 0, the sums turn NaN
        k = (conf * self.bins).nan_to_num_(0.0).long().clamp_(0, self.bins - 1)
        self.count += torch.bincount(k, minlength=self.bins)
        self.confidence += torch.bincount(k, weights=conf, minlength=self.bins)
        self.correct += torch.bincount(k[(pred == y)[valid]], minlength=self.bins)
        brier = s2 / s1.square() - 2.0 * logp_y.exp() + 1.0
        self.sums += torch.stack([-logp_y.sum(), brier.sum()])

    @property
    def pixels(self) -> int:
        return int(self.count.sum())

    def values(self) -> dict[str, float]:
        """ECE (%), NLL (nats per pixel) and Brier score per pixel; NaN without labelled pixels."""
        n = self.pixels
        if n == 0:
            return {ECE: math.nan, NLL: math.nan, BRIER: math.nan}
        gap = (self.correct.double().cpu() - self.confidence.cpu()).abs().sum()
        sums = self.sums.cpu()
        return {ECE: 100.0 * float(gap) / n, NLL: float(sums[0]) / n, BRIER: float(sums[1]) / n}

    def to_dict(self) -> dict[str, Any]:
        """The sums as a cell stores them (`bench.results.schema.CALIBRATION_KEY`)."""
        return {
            "bins": self.bins,
            "count": self.count.cpu().tolist(),
            "correct": self.correct.cpu().tolist(),
            "confidence": self.confidence.cpu().tolist(),
            "nll_sum": float(self.sums[0]),
            "brier_sum": float(self.sums[1]),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], ignore_index: int = 255) -> CalibrationCounter:
        out = cls(ignore_index, bins=int(data["bins"]))
        out.count += torch.tensor(data["count"], dtype=torch.int64)
        out.correct += torch.tensor(data["correct"], dtype=torch.int64)
        out.confidence += torch.tensor(data["confidence"], dtype=torch.float64)
        out.sums += torch.tensor([data["nll_sum"], data["brier_sum"]], dtype=torch.float64)
        return out

    def merge(self, other: CalibrationCounter) -> CalibrationCounter:
        """Add `other`'s sums (another shard's or rank's) into this counter; returns it."""
        for name in self.TENSORS:
            getattr(self, name).add_(getattr(other, name).to(getattr(self, name).device))
        return self
