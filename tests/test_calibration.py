"""Calibration sums: ECE, NLL and Brier equal a direct float64 computation on both paths (the compiled CPU band and
plain tensors), the labels stay those of `resize_argmax`, shards add up to the single run, and a confidence of 1.0
lands in the last bin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segbench.bench.measure.calibration import CalibrationCounter
from segbench.bench.measure.inference import resize_argmax


def _case(size: tuple[int, int], seed: int = 0, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, 8, 12, generator=g) * 3
    labels = torch.randint(0, classes, (2, *size), generator=g).to(torch.uint8)
    labels[:, :3] = 255  # ignored rows
    labels[0, -1, :5] = 255
    return logits, labels


def _direct(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """The three figures by plain float64 numpy from the resized logits, per pixel."""
    up = F.interpolate(logits, size=tuple(labels.shape[-2:]), mode="bilinear", align_corners=False).double().numpy()
    y = labels.numpy().astype(np.int64)
    p = np.exp(up - up.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    keep = y != 255
    prob = np.moveaxis(p, 1, -1)[keep]  # (N, C)
    target = y[keep]
    conf, pred = prob.max(1), prob.argmax(1)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    gap = sum(abs((pred[which == b] == target[which == b]).sum() - conf[which == b].sum()) for b in range(bins))
    onehot = np.eye(prob.shape[1])[target]
    return {
        "ece": 100 * gap / len(target),
        "nll": float(-np.log(prob[np.arange(len(target)), target]).mean()),
        "brier": float(((prob - onehot) ** 2).sum(1).mean()),
    }


@pytest.mark.parametrize("size", [(32, 48), (30, 45)], ids=["compiled-band", "plain"])
def test_figures_equal_a_direct_float64_computation(size):
    logits, labels = _case(size)
    counter = CalibrationCounter()
    pred = resize_argmax(logits, size, calibration=counter, labels=labels)
    assert torch.equal(pred, resize_argmax(logits, size))
    got, want = counter.values(), _direct(logits, labels)
    for name in ("ece", "nll", "brier"):
        assert got[name] == pytest.approx(want[name], rel=1e-6, abs=1e-9), name  # float32 exponentials
    assert counter.pixels == int((labels != 255).sum())


def test_two_shards_add_up_to_the_single_run():
    logits, labels = _case((32, 48), seed=3)
    whole = CalibrationCounter()
    resize_argmax(logits, (32, 48), calibration=whole, labels=labels)
    a, b = CalibrationCounter(), CalibrationCounter()
    resize_argmax(logits[:1], (32, 48), calibration=a, labels=labels[:1])
    resize_argmax(logits[1:], (32, 48), calibration=b, labels=labels[1:])
    merged = CalibrationCounter.from_dict(a.to_dict()).merge(CalibrationCounter.from_dict(b.to_dict()))
    got, want = merged.to_dict(), whole.to_dict()
    assert got["count"] == want["count"] and got["correct"] == want["correct"]
    assert got["confidence"] == pytest.approx(want["confidence"], rel=1e-12)
    assert merged.values() == pytest.approx(whole.values(), rel=1e-12)


def test_a_certain_pixel_is_in_the_last_bin_and_no_label_gives_nan():
    logits = torch.full((1, 3, 4, 4), -1e4)
    logits[:, 1] = 1e4  # softmax confidence exactly 1.0
    labels = torch.ones(1, 4, 4, dtype=torch.uint8)
    counter = CalibrationCounter()
    resize_argmax(logits, (4, 4), calibration=counter, labels=labels)
    assert counter.count.tolist()[-1] == 16 and counter.values() == {"ece": 0.0, "nll": 0.0, "brier": 0.0}
    empty = CalibrationCounter()
    resize_argmax(logits, (4, 4), calibration=empty, labels=torch.full((1, 4, 4), 255, dtype=torch.uint8))
    assert all(np.isnan(v) for v in empty.values().values())
