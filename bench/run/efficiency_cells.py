"""Efficiency cells: a suite's cost probe (parameters, FLOPs, latency, memory) run once per model, on rank 0."""

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
    """An `EfficiencyFn` running `bench.efficiency.efficiency_sweep` with a suite's `bench.spec.EfficiencySpec`."""
    from segbench.bench.efficiency import efficiency_sweep

    def probe(model: nn.Module, name: str) -> list[dict[str, Any]]:
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
