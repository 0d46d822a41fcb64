"""Robustness scores on hand-worked examples."""

from __future__ import annotations

import pytest

from segbench.bench.measure.robustness import (
    corruption_errors,
    mean_corruption_error,
    mean_pc,
    per_category,
    per_corruption,
    relative_corruption_errors,
    relative_mce,
    relative_pc,
    summary,
)

# model: clean 90; errors (100 - mIoU) fog 20, 40 / snow 50, 70 / gaussian_noise 60, 80
MODEL = {("fog", 1): 80.0, ("fog", 2): 60.0, ("snow", 1): 50.0, ("snow", 2): 30.0}
MODEL |= {("gaussian_noise", 1): 40.0, ("gaussian_noise", 2): 20.0}
# reference: clean 85; errors fog 30, 50 / snow 60, 80 / gaussian_noise 70, 90
REF = {("fog", 1): 70.0, ("fog", 2): 50.0, ("snow", 1): 40.0, ("snow", 2): 20.0}
REF |= {("gaussian_noise", 1): 30.0, ("gaussian_noise", 2): 10.0, ("frost", 1): 5.0}


def test_averages():
    assert per_corruption(MODEL) == {"fog": 70.0, "snow": 40.0, "gaussian_noise": 30.0}
    assert per_category(MODEL) == {"noise": 30.0, "weather": 55.0}  # weather = (70 + 40) / 2
    assert mean_pc(MODEL) == pytest.approx(140 / 3)
    assert relative_pc(MODEL, clean=90.0) == pytest.approx(140 / 3 / 90)


def test_mpc_averages_severities_within_a_corruption_first():
    scores = {("fog", 1): 60.0, ("fog", 2): 40.0, ("snow", 1): 20.0}  # fog 50, snow 20
    assert mean_pc(scores) == pytest.approx(35.0)


def test_corruption_errors():
    ce = corruption_errors(MODEL, REF)
    assert ce == pytest.approx({"fog": 60 / 80, "snow": 120 / 140, "gaussian_noise": 140 / 160})
    assert mean_corruption_error(MODEL, REF) == pytest.approx((0.75 + 6 / 7 + 0.875) / 3)
    assert mean_corruption_error(REF, REF) == pytest.approx(1.0)


def test_relative_corruption_errors():
    # degradation sums: model fog (90-80)+(90-60)=40, ref (85-70)+(85-50)=50; snow 100 vs 110; noise 120 vs 130
    rel = relative_corruption_errors(MODEL, 90.0, REF, 85.0)
    assert rel == pytest.approx({"fog": 0.8, "snow": 100 / 110, "gaussian_noise": 120 / 130})
    assert relative_mce(MODEL, 90.0, REF, 85.0) == pytest.approx((0.8 + 100 / 110 + 120 / 130) / 3)


def test_summary_keys_follow_inputs():
    assert set(summary(MODEL)) == {
        "mPC",
        "corruption/fog",
        "corruption/snow",
        "corruption/gaussian_noise",
        "category/noise",
        "category/weather",
    }
    full = summary(MODEL, clean=90.0, reference=REF, reference_clean=85.0)
    assert full["mCE"] == pytest.approx(mean_corruption_error(MODEL, REF))
    assert full["rel_mCE"] == pytest.approx(relative_mce(MODEL, 90.0, REF, 85.0))
    assert full["rPC"] == pytest.approx(140 / 3 / 90) and full["CE/fog"] == pytest.approx(0.75)


def test_bad_input():
    with pytest.raises(ValueError, match="lacks conditions"):
        corruption_errors(REF, MODEL)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        mean_pc({("fog", 1): 120.0})
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        mean_pc({("fog", 1): float("nan")})
    with pytest.raises(ValueError, match="no corrupted"):
        mean_pc({})
    with pytest.raises(ValueError, match="no category"):
        per_category({("mystery", 1): 3.0})
    with pytest.raises(ValueError, match="undefined"):
        relative_pc(MODEL, clean=0.0)
    with pytest.raises(ValueError, match="does not degrade"):
        relative_corruption_errors(MODEL, 90.0, {k: 85.0 for k in MODEL}, 85.0)
