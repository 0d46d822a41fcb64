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

On the CPU the labels and the sums come from one compiled pass over the resized band (`_calibration_rows_kernel`,
beside `bench.measure.inference.resize_argmax`'s), so calibration costs a second loop over the classes and never
materialises the probabilities; elsewhere (CUDA) plain tensor operations that stay on the device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from segbench.bench.results.schema import CALIBRATION_BINS


def _calibration_rows_kernel(
    scores: np.ndarray,
    row0: int,
    labels: np.ndarray,
    ignore: int,
    out: np.ndarray,
    count: np.ndarray,
    confidence: np.ndarray,
    correct: np.ndarray,
    sums: np.ndarray,
) -> None:
    """Argmax of `scores[i, :, row0 + r, x]` into `out[i, r, x]` (the rule of `_argmax_rows_kernel`), and for every
    labelled pixel (`labels[i, r, x]` a class) its top-label confidence binned into `count`, `confidence`, `correct`,
    and its NLL and Brier terms added to `sums[0]`, `sums[1]`. Plain Python here; compiled with numba."""
    b, c, _, w = scores.shape
    bins = count.shape[0]
    best = np.empty(w, dtype=np.float64)
    s1 = np.empty(w, dtype=np.float64)
    s2 = np.empty(w, dtype=np.float64)
    for i in range(b):
        for r in range(out.shape[1]):
            arg = out[i, r]
            arg[:] = 0
            for x in range(w):
                best[x] = scores[i, 0, row0 + r, x]
            for k in range(1, c):
                for x in range(w):
                    v = scores[i, k, row0 + r, x]
                    if v > best[x] or (v != v and best[x] == best[x]):
                        best[x] = v
                        arg[x] = k
            s1[:] = 0.0
            s2[:] = 0.0
            for k in range(c):
                for x in range(w):
                    e = math.exp(scores[i, k, row0 + r, x] - best[x])
                    s1[x] += e
                    s2[x] += e * e
            for x in range(w):
                y = labels[i, r, x]
                if y == ignore or y < 0 or y >= c:
                    continue
                conf = 1.0 / s1[x]
                k = min(int(conf * bins), bins - 1)
                count[k] += 1
                confidence[k] += conf
                if arg[x] == y:
                    correct[k] += 1
                logp = scores[i, y, row0 + r, x] - best[x] - math.log(s1[x])
                sums[0] -= logp
                sums[1] += s2[x] / (s1[x] * s1[x]) - 2.0 * math.exp(logp) + 1.0


class CalibrationCounter:
    """Binned calibration sums of one cell (see the module docstring); `add` per batch, `all_reduce` across ranks."""

    def __init__(self, ignore_index: int = 255, device: torch.device | str = "cpu", bins: int = CALIBRATION_BINS):
        self.ignore_index, self.bins = int(ignore_index), int(bins)
        device = torch.device(device)
        self.count = torch.zeros(bins, dtype=torch.int64, device=device)
        self.correct = torch.zeros(bins, dtype=torch.int64, device=device)
        self.confidence = torch.zeros(bins, dtype=torch.float64, device=device)
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # NLL, Brier

    def add_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Add `(B, C, H, W)` logits at the labels' size against `(B, H, W)` labels; returns the argmax labels. Plain
        tensor operations (any device, no host sync)."""
        logp = logits.double().log_softmax(1)  # float64, as the compiled path: the sums then agree to rounding
        top, pred = logp.max(1)
        valid = (labels != self.ignore_index) & (labels >= 0) & (labels < logits.shape[1])
        y = torch.where(valid, labels, torch.zeros_like(labels)).long()
        conf = top.exp()[valid]
        k = (conf * self.bins).long().clamp_(max=self.bins - 1)
        self.count += torch.bincount(k, minlength=self.bins)
        self.confidence += torch.bincount(k, weights=conf, minlength=self.bins)
        self.correct += torch.bincount(k[(pred == y)[valid]], minlength=self.bins)
        logp_y = logp.gather(1, y.unsqueeze(1)).squeeze(1)[valid]
        brier = (logp.exp() ** 2).sum(1)[valid] - 2.0 * logp_y.exp() + 1.0
        self.sums += torch.stack([-logp_y.sum(), brier.sum()])
        return pred

    def add_band(self, band: torch.Tensor, row0: int, labels: torch.Tensor, out: torch.Tensor) -> None:
        """The CPU path: argmax of the float32 `band`'s rows from `row0` into `out` (int64) and the sums of `labels`
        (the same rows), in one compiled pass."""
        from segbench.bench.measure._numba import compiled

        count, correct = self.count.numpy(), self.correct.numpy()
        confidence, sums = self.confidence.numpy(), self.sums.numpy()
        kernel = compiled(_calibration_rows_kernel)
        kernel(band.numpy(), row0, labels.numpy(), self.ignore_index, out.numpy(), count, confidence, correct, sums)

    @property
    def pixels(self) -> int:
        return int(self.count.sum())

    def values(self) -> dict[str, float]:
        """ECE (%), NLL (nats per pixel) and Brier score per pixel; NaN without labelled pixels."""
        n = self.pixels
        if n == 0:
            return {"ece": math.nan, "nll": math.nan, "brier": math.nan}
        gap = (self.correct.double().cpu() - self.confidence.cpu()).abs().sum()
        sums = self.sums.cpu()
        return {"ece": 100.0 * float(gap) / n, "nll": float(sums[0]) / n, "brier": float(sums[1]) / n}

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
        for name in ("count", "correct", "confidence", "sums"):
            getattr(self, name).add_(getattr(other, name).to(getattr(self, name).device))
        return self
