"""Efficiency cells: a suite's cost probe (parameters, FLOPs, latency, memory, end to end) run once per model, on
rank 0.

The probe measures on the rank's own device (the one its models are loaded on) and leaves every model where it found
it, so that the accuracy cells after it find their model on their device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbench.bench.run.cells import Cell
from segbench.bench.run.config import RunConfig

EfficiencyFn = Callable[[nn.Module, str], list[dict[str, Any]]]
"""`efficiency(model, model_name) -> tidy rows` (e.g. a partial of `bench.measure.efficiency.efficiency_sweep`)."""


def efficiency_probe(
    spec: Any,
    device: str | torch.device = "cpu",
    suite: str = "",
    channels_last: bool = False,
    compile: bool = False,
    *,
    precision: str = "fp32",
    sample: Path | None = None,
) -> EfficiencyFn:
    """An `EfficiencyFn` for a suite's `bench.spec.EfficiencySpec`: `bench.measure.efficiency.efficiency_sweep`, plus
    `bench.measure.latency.calibrated_latency` rows at each resolution when `spec.calibrated` (regression tracking),
    plus `bench.measure.end_to_end.end_to_end_rows` on `sample` when `spec.end_to_end` (and `spec.latency`) and a sample
    is given.

    A deployment variant (a model with a `deployment`) runs its own backend and precision: every row that has a
    precision says the variant's, and every row names its backend; its FLOPs are the architecture's only.

    Args:
        spec: the suite's efficiency spec.
        device: where latency is measured: the rank's device, the one the run's models are on.
        suite: suite name for the rows.
        channels_last, compile: the run's settings, passed to the sweep's timer (end-to-end: channels_last only; the
            model is called as the probe gets it, not compiled).
        precision: the run's precision, which end-to-end latency runs at (as the accuracy cells predict).
        sample: the image end-to-end latency is timed on (`sample_image`); None: no end-to-end rows.
    """
    from segbench.bench.measure.efficiency import efficiency_sweep
    from segbench.bench.measure.end_to_end import end_to_end_rows
    from segbench.bench.measure.latency import calibrated_latency, restored

    def probe(model: nn.Module, name: str) -> list[dict[str, Any]]:
        with restored(model):
            rows = sweep(model, name)
            if spec.calibrated:
                for size in spec.resolutions:
                    rows += calibrated_latency(model, size, device, spec.warmup, spec.iters, name, suite)
            if getattr(spec, "end_to_end", False) and spec.latency and sample is not None:
                rows += end_to_end_rows(
                    model,
                    sample,
                    model_name=name,
                    suite=suite,
                    device=device,
                    precision=precision,
                    channels_last=channels_last,
                    warmup=spec.warmup,
                    iters=spec.iters,
                )
        deployed = getattr(model, "deployment", None)  # a deployment variant runs its own precision and backend
        if deployed is not None:
            rows = [
                {**r, "backend": deployed.backend, "precision": deployed.precision if r.get("precision") else None}
                for r in rows
            ]
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
            curve=getattr(spec, "curve", ()),
            saturation=getattr(spec, "saturation", None),
            executed=getattr(model, "deployment", None) is None,  # no counter sees into an exported graph
        )

    return probe


def sample_image(spec: Any, config: RunConfig) -> Path | None:
    """The image a probe times end to end: the first image of the run's dataset and split (its reader's order), when
    `spec` asks for end-to-end latency and the run has a root of its dataset (a synthetic suite's too). None
    otherwise: an efficiency-only run given no data, a suite that reads none."""
    root = config.root_of(config.dataset)
    if spec is None or not getattr(spec, "end_to_end", False) or root is None:
        return None
    from segbench.bench.data.datasets import get_dataset

    return get_dataset(config.dataset, root).samples(root, config.split, max_images=1)[0].image


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
