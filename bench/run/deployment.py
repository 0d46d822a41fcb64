"""The deployment grid as a stage of the run: built and checked on each rank, inside the distributed context.

Each rank builds every variant on its own device (`bench.deploy.grid.prepare_grid`), because each rank runs every
variant's accuracy cells on its share of the images; the artifact cache makes the other ranks' builds of an exported
graph cache hits. A variant is kept only when every rank built it, so that the ranks run the same cells; rank 0's
`deploy` records are the ones the run stores. The variants then replace the run's models: the runner measures each
like any other model.

The grid's ceiling (`gemm_peak_cell`): the device's GEMM throughput in each precision of the grid it runs natively,
measured once per run folder on rank 0 after the efficiency cells, stored as the `machine` cell. The run's summary
compares each variant's GMAC/s with it (`bench.results.summaries.peak_share`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from segbench.bench.data.datasets import get_dataset
from segbench.bench.data.loading import SegmentationDataset
from segbench.bench.deploy.grid import grid_cells, prepare_grid
from segbench.bench.measure.inference import normalize
from segbench.bench.results.schema import GEMM_PEAK, MACHINE, MACHINE_CELL, deploy_variant, make_row, variant_name
from segbench.bench.run import distributed
from segbench.bench.run.config import RunConfig
from segbench.bench.spec import DeploySpec


def deploy_models(
    spec: DeploySpec, config: RunConfig, build: Callable[[str], nn.Module], ctx: distributed.DistContext
) -> tuple[RunConfig, Callable[..., nn.Module], list[dict[str, Any]]]:
    """Build and check the grid of `config.models` on this rank's device, on the split's first clean images.

    Args:
        spec: the plan's grid (backends and precisions already narrowed by the user's).
        config: the planned config (its models are the grid's base models).
        build: builds one base model as the runner does (`ModelSlot.build`: seeded, weights loaded, the
            random-weights policy applied).
        ctx: this rank's distributed context; the variants run on `ctx.device`.

    Returns:
        The config with the kept variants as its models (their weights those of their base model, no reference
        model), a factory giving each variant, and the grid's `deploy` cell records (to store on rank 0).
    """
    count = max(spec.calibration_images, spec.agreement_images)
    root = config.root_of(config.dataset)
    dataset = SegmentationDataset(get_dataset(config.dataset, root), root, split=config.split, max_images=count)
    raw = [dataset[i]["image"].unsqueeze(0) for i in range(len(dataset))]

    def images(model: nn.Module) -> list[torch.Tensor]:
        return [normalize(x, model.meta.mean, model.meta.std).to(ctx.device) for x in raw]

    grid = prepare_grid(
        config.models,
        build,
        images,
        spec.backends,
        spec.precisions,
        device=ctx.device,
        calibration=spec.calibration_images,
        agreement=spec.agreement_images,
        suite=config.suite,
        quiet=config.quiet or not ctx.is_main,
    )
    names = [variant_name(*cell) for cell in grid_cells(config.models, spec.backends, spec.precisions)]
    kept = [v for v in names if not distributed.any_failed(v not in grid.variants, ctx)]  # same calls on every rank
    weights = {v: config.weights[deploy_variant(v)[0]] for v in kept if deploy_variant(v)[0] in config.weights}
    config = dataclasses.replace(config, models=tuple(kept), weights=weights, reference_model=None)

    def variant(name: str, **_: object) -> nn.Module:
        return grid.variants[name]

    return config, variant, grid.records


def peak_precisions(precisions: Sequence[str], device: str | torch.device) -> list[str]:
    """The precisions of `precisions` whose GEMM peak is measured on `device`: fp32 always (eager fp32 is in every
    grid); bf16 on a GPU that supports it or a CPU with native bf16 (`cpu_has_native_bf16`: emulated bf16 has no
    ceiling worth stating); fp16 on a GPU. int8 never: its kernels (oneDNN VNNI/AMX, TensorRT, ONNX Runtime's QLinear
    ops) are not a torch matrix product."""
    from segbench.bench.deploy.backends import cpu_has_native_bf16

    device = torch.device(device)
    gpu = device.type == "cuda" and torch.cuda.is_available()
    out = ["fp32"]
    if "bf16" in precisions:
        if gpu:
            with torch.cuda.device(device):  # `is_bf16_supported` asks about the current device
                native = torch.cuda.is_bf16_supported()
        else:
            native = device.type == "cpu" and cpu_has_native_bf16()
        out += ["bf16"] if native else []
    out += ["fp16"] if "fp16" in precisions and gpu else []
    return out


def gemm_peak_cell(spec: DeploySpec, device: str | torch.device, suite: str = "") -> dict[str, Any]:
    """The `machine` cell of a deployment run: one `GEMM_PEAK` row (GFLOP/s) per precision of `peak_precisions`
    (`bench.measure.peak.measure_gemm_peak` at `spec.gemm_size`, the best of 3), each with its precision, device,
    device name, matrix size, threads, repeats and best time (ms)."""
    from segbench.bench.measure.latency import device_name
    from segbench.bench.measure.peak import measure_gemm_peak

    start = time.perf_counter()
    rows = []
    for precision in peak_precisions(spec.precisions, device):
        peak = measure_gemm_peak(precision, device, size=spec.gemm_size)
        rows.append(
            make_row(
                GEMM_PEAK,
                peak.gflops,
                model=MACHINE,
                suite=suite,
                condition=MACHINE,
                precision=precision,
                device=peak.device,
                device_name=device_name(peak.device),
                size=peak.size,
                threads=peak.threads,
                repeats=peak.repeats,
                best_ms=peak.best_ms,
            )
        )
    return {
        "cell": MACHINE_CELL,
        "kind": MACHINE,
        "model": MACHINE,
        "condition": MACHINE,
        "timing": {"total": time.perf_counter() - start},
        "rows": rows,
    }
