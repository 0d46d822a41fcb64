"""The deployment grid of a run: every model x backend x precision, built and checked before the run, then measured
by the runner like any other model.

Each cell of the grid becomes a *variant*, a model of its own named `<model>@<backend>-<precision>`
(`bench.results.variant_name`), so the runner measures it with the same clock, memory accounting, resume, torchrun
and regression check as the rest: its accuracy cells re-measure clean mIoU and mPC on the suite's subset, its
efficiency cell times it (latency distribution, throughput, peak memory; parameters and FLOPs are the architecture's,
not the backend's). The contract's summary adds each variant's `delta_miou` and `delta_mPC` against the model's eager
fp32 variant, which every grid includes.

Before the run, `prepare_grid` builds each variant (`bench.deploy.check_deployment`: export, quantisation, engine, with
the artifact cache) and compares it with eager fp32 on the suite's first images. What it found is stored as one
`deploy` cell per variant (`deploy_record`): its build time, file size and agreement, or the one line that says why it
could not be built here (a missing package or device: `unavailable`; an export that failed: `failed`). Those variants
are left out of the run; the others go on.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segbench.bench.deploy.agreement import reference_logits
from segbench.bench.deploy.backends import DeploymentCheck, check_deployment
from segbench.bench.deploy.cache import ArtifactCache
from segbench.bench.results.schema import (
    AGREEMENT_MAX_ABS,
    AGREEMENT_MAX_REL,
    AGREES,
    ARGMAX_AGREEMENT,
    ARTIFACT_SIZE,
    BUILD_TIME,
    DEPLOY_REFERENCE,
    deploy_variant,
    make_row,
    variant_name,
)


class DeployedModel(nn.Module):
    """A variant: the built module (taking a normalised NCHW batch) with the original model's metadata and weights
    provenance, and `architecture()` = the original network (its parameters and FLOPs are the variant's).

    A backend with static shapes (ONNX Runtime, TensorRT, ``torch.compile`` here) is built for the suite's image. Called
    on another shape (a batch size of the throughput sweep, a resolution of the latency curve, the crop of a sliding
    window), the variant builds itself again for that shape, with the same backend, precision, device and cache (int8:
    calibrated on the same images, resized to the new height and width, and repeated to fill a larger batch; MinMax
    ranges do not change when an image is repeated). The first call at a new shape pays that build (a latency timer's
    warm-up holds it); the build is kept until another shape is asked for, and every one is listed in `rebuilds`.
    Only the suite's shape is compared with eager fp32 (`deployment.agreement`): the others are the same export at
    another size.
    """

    def __init__(
        self,
        check: DeploymentCheck,
        original: nn.Module,
        *,
        cache: ArtifactCache | None = None,
        calibration: Sequence[torch.Tensor] | None = None,
        name: str | None = None,
    ):
        super().__init__()
        self.deployment = check
        self.built = check.built.module
        self.meta = original.meta
        self.weights_info = getattr(original, "weights_info", None)
        self._original = [original]  # not a submodule: the variant's own state is the built module's
        self._cache, self._calibration, self._name = cache, list(calibration or ()), name
        self._other: tuple[tuple[int, ...], nn.Module] | None = None  # the last other shape built, and its module
        self.rebuilds: list[dict[str, Any]] = []

    def architecture(self) -> nn.Module:
        return self._original[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        built = self.deployment.built
        shape = tuple(x.shape)
        if built.dynamic or shape == tuple(built.input_shape):
            return self.built(x)
        if self._other is None or self._other[0] != shape:
            self._other = None  # the previous shape's session or engine is let go before the next one is built
            self._other = (shape, self._build(shape))
        return self._other[1](x)

    def _build(self, shape: tuple[int, ...]) -> nn.Module:
        from segbench.bench.deploy.backends import get_backend

        check = self.deployment
        calibration = _calibration_for(self._calibration, shape) if check.precision == "int8" else None
        # The call that asks for a new shape may run under inference mode or a dispatch mode (a timer's probe of the
        # SDPA kernel); an export traces the model, which neither may intercept.
        with _outside_modes(), torch.inference_mode(False):
            built = get_backend(check.backend).build(
                self._original[0],
                shape,
                check.precision,
                self._cache,
                device=check.device,
                calibration=calibration,
                name=self._name,
            )
        self.rebuilds.append({"shape": list(shape), "build_s": built.build_s, "cache_hit": built.cache_hit})
        return built.module


def _outside_modes() -> contextlib.AbstractContextManager:
    """Python dispatch modes (TorchDispatchMode) switched off for the block, where torch offers that."""
    try:
        from torch.utils._python_dispatch import _disable_current_modes
    except ImportError:  # pragma: no cover - a torch without it
        return contextlib.nullcontext()
    return _disable_current_modes()


def _calibration_for(images: Sequence[torch.Tensor], shape: tuple[int, ...]) -> list[torch.Tensor]:
    """int8 calibration images for a graph of `shape` (N, C, H, W): the suite's images resized to H, W (bilinear),
    repeated until they fill at least one batch of N."""
    if not images:
        raise ValueError("int8 at a new shape needs the calibration images the variant was built with")
    size = tuple(shape[-2:])
    resized = [
        img if tuple(img.shape[-2:]) == size else F.interpolate(img, size=size, mode="bilinear", align_corners=False)
        for img in images
    ]
    count = sum(int(img.shape[0]) for img in resized)
    repeats = -(-int(shape[0]) // count)  # ceil
    return resized * repeats


@dataclass(frozen=True)
class Grid:
    """What `prepare_grid` made: the variants to run (name -> module), in grid order, and the `deploy` cell records
    of every grid cell (the run stores them)."""

    variants: dict[str, DeployedModel]
    records: list[dict[str, Any]]


def grid_cells(models: Sequence[str], backends: Sequence[str], precisions: Sequence[str]) -> list[tuple[str, str, str]]:
    """(model, backend, precision) of the grid, per model: eager fp32 (the reference) first, then each backend at
    each precision it offers at all (eager int8 is no such thing; what this machine lacks stays in, to be reported)."""
    from segbench.bench.deploy.backends import get_backend

    pairs = [DEPLOY_REFERENCE] + [
        (b, p)
        for b in backends
        for p in precisions
        if (b, p) != DEPLOY_REFERENCE and p not in get_backend(b).unsupported
    ]
    return [(m, b, p) for m in models for b, p in pairs]


def prepare_grid(
    models: Sequence[str],
    build: Callable[[str], nn.Module],
    images: Callable[[nn.Module], list[torch.Tensor]],
    backends: Sequence[str],
    precisions: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    calibration: int = 8,
    agreement: int = 2,
    suite: str = "",
    cache: ArtifactCache | None = None,
    quiet: bool = False,
) -> Grid:
    """Build and check every grid cell (see the module docstring).

    Args:
        models: the run's model names; build: builds one as the runner does (`bench.run.residency.ModelSlot.build`:
            seeded, its weights loaded, the random-weights policy applied).
        images: `images(model)` -> normalised NCHW batches (one image each) of the suite's data, for that model.
        backends, precisions: the grid (eager fp32 is always added: it is what every variant is compared with).
        calibration: images that calibrate int8; agreement: images the agreement is measured on.
        device: where the variants run.
    """
    cache = cache or ArtifactCache()
    variants: dict[str, DeployedModel] = {}
    records = []
    for name in models:
        model = build(name).to(device)
        batches = images(model)
        shown = batches[:agreement]
        references = reference_logits(model, shown, device)  # eager fp32, once for every cell of the model
        for _, backend, precision in grid_cells([name], backends, precisions):
            variant = variant_name(name, backend, precision)
            start = time.perf_counter()
            check = check_deployment(
                backend,
                model,
                shown,
                precision,
                cache,
                device=device,
                references=references,
                calibration=batches[:calibration] if precision == "int8" else None,
                name=name,
            )
            records.append(deploy_record(variant, check, suite, time.perf_counter() - start))
            if check.built is not None:
                variants[variant] = DeployedModel(
                    check,
                    model,
                    cache=cache,
                    calibration=batches[:calibration] if precision == "int8" else None,
                    name=name,
                )
            elif not quiet:
                print(f"deploy: {variant} {check.status}: {check.reason}", file=sys.stderr)
    return Grid(variants, records)


def deploy_record(variant: str, check: DeploymentCheck, suite: str, seconds: float) -> dict[str, Any]:
    """The stored `deploy` cell of one grid cell: rows `build_time` (s), `artifact_size` (MiB), `agreement_max_abs`,
    `agreement_max_rel`, `argmax_agreement` (%) and `agrees` (flag), each with the cell's backend, precision, device,
    status and reason; an unavailable or failed cell has one `unavailable` / `failed` row (flag) with its reason."""
    _, backend, precision = deploy_variant(variant)
    keys = {
        "model": variant,
        "suite": suite,
        "condition": "deploy",
        "backend": backend,
        "precision": precision,
        "device": check.device,
        "status": check.status,
        "reason": check.reason or None,
    }
    built, agreement = check.built, check.agreement
    if built is None:
        rows = [make_row(check.status, 1.0, **keys)]
    else:
        timing = {"cache_hit": built.cache_hit, "artifact_build_s": built.artifact_build_s}
        rows = [make_row(BUILD_TIME, built.build_s, **keys, **timing)]
        if built.artifact_bytes is not None:
            rows.append(make_row(ARTIFACT_SIZE, built.artifact_bytes / 2**20, **keys))
    if agreement is not None:
        tol = agreement.tolerance
        keys |= {"images": agreement.images, "tolerance_rel": tol.max_rel, "tolerance_argmax": tol.min_argmax}
        rows += [
            make_row(AGREEMENT_MAX_ABS, agreement.max_abs, **keys),
            make_row(AGREEMENT_MAX_REL, agreement.max_rel, **keys),
            make_row(ARGMAX_AGREEMENT, agreement.argmax_agreement, **keys),
            make_row(AGREES, agreement.agrees, **keys),
        ]
    return {
        "cell": f"{variant}__deploy",
        "kind": "deploy",
        "model": variant,
        "condition": "deploy",
        "status": check.status,
        "reason": check.reason,
        "detail": dict(built.detail) if built is not None else {},
        "timing": {"total": seconds},
        "rows": rows,
    }
