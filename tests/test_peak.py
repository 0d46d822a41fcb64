"""The GEMM peak and a variant's share of it (`bench.measure.peak`)."""

from __future__ import annotations

import pytest

from segbench.bench.measure.peak import GemmPeak, achieved_gmacs_per_s, measure_gemm_peak, percent_of_peak


def test_the_peak_is_a_timed_product_of_the_asked_size() -> None:
    peak = measure_gemm_peak("fp32", size=128, repeats=2)
    assert (peak.precision, peak.device, peak.size, peak.repeats) == ("fp32", "cpu", 128, 2)
    assert peak.best_ms > 0
    assert peak.gflops == pytest.approx(2 * 128**3 / peak.best_ms / 1e6)
    assert peak.as_dict()["gflops"] == peak.gflops


def test_a_share_of_the_peak_counts_two_flops_per_mac() -> None:
    peak = GemmPeak("fp32", "cpu", 4096, 2, 3, 1000.0, 200.0)
    assert achieved_gmacs_per_s(125.0, 1250.0) == pytest.approx(100.0)
    assert percent_of_peak(125.0, 1250.0, peak) == pytest.approx(100.0)  # 100 GMAC/s = 200 GFLOP/s = the peak
    assert percent_of_peak(50.0, 1000.0, 400.0) == pytest.approx(25.0)


@pytest.mark.parametrize(("precision", "size", "repeats"), [("int4", 8, 1), ("fp32", 0, 1), ("fp32", 8, 0)])
def test_bad_peak_requests_are_refused(precision: str, size: int, repeats: int) -> None:
    with pytest.raises(ValueError, match="GEMM peak"):
        measure_gemm_peak(precision, size=size, repeats=repeats)
