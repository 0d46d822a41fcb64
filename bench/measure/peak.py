"""How far from the hardware a model runs: the machine's measured GEMM throughput, and the share of it a variant
reaches.

- **The peak** (`measure_gemm_peak`): a square matrix product (`GEMM_SIZE`, 4096 by default) in the given precision on
  the given device, with torch's threads, timed by `bench.measure.clock.Clock` after one untimed call; the best of
  `repeats` calls, in GFLOP/s (2 FLOPs per multiply-add). fp32 is IEEE fp32 (`strict_fp32`: no TF32, no bf16 in
  oneDNN); bf16 and fp16 are products of matrices stored in that type. It is what a dense matrix product achieves
  here, not the datasheet's peak: the practical ceiling for the matmul-bound part of a network.
- **A variant's share of it** (`percent_of_peak`): ``2 * GMACs / latency / peak``, with the GMACs of one image under a
  stated counting convention (`bench.measure.flops`; the SegFormer paper's for SegFormer) and the median latency of
  one image. A backend that runs fewer MACs than the convention counts (the fast path's folded decoder) can exceed
  what it would reach on the published network's MACs; the convention keeps every backend of a model on one scale.
  The formulas are the results contract's (`bench.results.summaries`): a deploy run's summary uses the same ones.

Example:
    >>> peak = measure_gemm_peak("fp32", size=256, repeats=1)  # doctest: +SKIP
    >>> percent_of_peak(gmacs=125.0, latency_ms=1700.0, peak=peak)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from segbench.bench.results.summaries import achieved_gmacs_per_s, peak_share

GEMM_SIZE = 4096
"""The side of the square matrices whose product measures the peak (4096: 137 GFLOP in fp32, large enough that every
BLAS reaches its steady state, small enough to take seconds on two CPU cores)."""

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class GemmPeak:
    """A measured GEMM throughput: `gflops` (GFLOP/s, 2 per multiply-add) of a `size`^3 product in `precision` on
    `device` with `threads` CPU threads; `best_ms` the fastest of `repeats` timed calls."""

    precision: str
    device: str
    size: int
    threads: int
    repeats: int
    best_ms: float
    gflops: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_gemm_peak(
    precision: str = "fp32", device: str | torch.device = "cpu", size: int = GEMM_SIZE, repeats: int = 3
) -> GemmPeak:
    """The GEMM throughput of this machine (see the module docstring).

    Raises:
        ValueError: an unknown precision, or a size or repeat count below 1.
    """
    from segbench.bench.measure.clock import Clock
    from segbench.bench.measure.latency import resolve_device, strict_fp32

    if precision not in _DTYPES:
        raise ValueError(f"GEMM peak: unknown precision {precision!r}; choose one of {', '.join(_DTYPES)}")
    if size < 1 or repeats < 1:
        raise ValueError(f"GEMM peak: size and repeats must be at least 1, got {size} and {repeats}")
    dev = resolve_device(device)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(dev, _DTYPES[precision]) for _ in range(2))
    clock = Clock(dev)
    with torch.inference_mode(), strict_fp32():
        clock.synchronize()
        a @ b  # the first call allocates, packs and warms the caches
        times = [clock.time_ms(lambda: a @ b) for _ in range(repeats)]
    best = min(times)
    return GemmPeak(precision, str(dev), size, torch.get_num_threads(), repeats, best, 2 * size**3 / best / 1e6)


def percent_of_peak(gmacs: float, latency_ms: float, peak: GemmPeak | float) -> float:
    """The share (%) of the GEMM peak (a `GemmPeak` or GFLOP/s) that `gmacs` in `latency_ms` reach: 2 FLOPs per MAC
    (`bench.results.summaries.peak_share`, the formula a run's summary uses)."""
    return peak_share(gmacs, latency_ms, peak.gflops if isinstance(peak, GemmPeak) else float(peak))


__all__ = ["GEMM_SIZE", "GemmPeak", "achieved_gmacs_per_s", "measure_gemm_peak", "percent_of_peak"]
