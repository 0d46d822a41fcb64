"""Efficiency cells: a suite's cost probe (parameters, FLOPs, latency, memory) run once per model, on rank 0.

The probe measures on the rank's own device (the one its models are loaded on) and leaves every model where it found
it, so that the accuracy cells after it find their model on their device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from segbench.bench.config import RunConfig
from segbench.bench.run.plan import Cell

EfficiencyFn = Callable[[nn.Module, str], list[dict[str, Any]]]
"""`efficiency(model, model_name) -> tidy rows` (e.g. a partial of `bench.efficiency.efficiency_sweep`)."""


def efficiency_probe(
    spec: Any, device: str | torch.device = "cpu", suite: str = "", channels_last: bool = False, compile: bool = False
) -> EfficiencyFn:
    """An `EfficiencyFn` for a suite's `bench.spec.EfficiencySpec`: `bench.efficiency.efficiency_sweep`, plus
    `bench.latency.calibrated_latency` rows at each resolution when `spec.calibrated` (regression tracking).

    Args:
        spec: the suite's efficiency spec.
        device: where latency is measured: the rank's device, the one the run's models are on.
        suite: suite name for the rows.
        channels_last, compile: the run's settings, passed to the sweep's timer.
    """
    from segbench.bench.efficiency import efficiency_sweep
    from segbench.bench.latency import calibrated_latency, restored

    def probe(model: nn.Module, name: str) -> list[dict[str, Any]]:
        with restored(model):
            rows = sweep(model, name)
            if spec.calibrated:
                for size in spec.resolutions:
                    rows += calibrated_latency(model, size, device, spec.warmup, spec.iters, name, suite)
        deployed = getattr(model, "deployment", None)  # a deployment variant runs its own precision and backend
        if deployed is not None:
            rows = [{**r, "backend": deployed.backend, "precision": deployed.precision if r.get("precision") else None}
                    for r in rows]  # fmt: skip
        return rows

    def sweep(model: nn.Module, name: str) -> list[dict[str, Any]]:
        return efficiency_sweep(
            model,
            spec.resolutions,
            spec.batch_sizes,
            device,
            spec.precisions,
            model_name=name,
            suite=suite,
            conventions=spec.conventions,
            latency=spec.latency,
            warmup=spec.warmup,
            iters=spec.iters,
            cv_threshold=spec.cv_threshold,
            max_retries=spec.max_retries,
            channels_last=channels_last,
            compile=compile,
        )

    return probe


def efficiency_cell(cell: Cell, model: nn.Module, config: RunConfig, efficiency: EfficiencyFn) -> dict[str, Any]:
    """The stored record of an efficiency cell: the probe's rows, each with the cell's model, suite and condition."""
    start = time.perf_counter()
    rows = efficiency(model, cell.model)
    fixed = {"model": cell.model, "suite": config.suite, "condition": "efficiency"}
    rows = [{"corruption": None, "category": None, "severity": None, **r, **fixed} for r in rows]
    for r in rows:
        if not {"metric", "value", "unit"} <= set(r):
            raise ValueError(f"efficiency row {r} lacks metric/value/unit")
    return {
        "cell": cell.id,
        "kind": "efficiency",
        "model": cell.model,
        "condition": "efficiency",
        "timing": {"total": time.perf_counter() - start},
        "rows": rows,
    }
