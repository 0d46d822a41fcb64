"""The dataclasses a suite is made of. `suites/` instantiates and registers them; `bench/` executes them.

A suite is data: which conditions, which inference protocol, which efficiency probe, which data. It computes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from segbench.bench.measure.flops import DEFAULT_CONVENTIONS
from segbench.bench.measure.peak import GEMM_SIZE
from segbench.bench.results.axes import CATEGORIES, CORRUPTIONS, DATASETS, SEVERITIES, Condition, dataset_key
from segbench.bench.results.schema import DEPLOY_BACKENDS, DEPLOY_PRECISIONS
from segbench.bench.run.config import InferenceSpec

NOISE = CATEGORIES["noise"]
DATA_KINDS = ("real", "synthetic", "none")
"""Where a suite's data comes from: the dataset's real files (roots from `--data` or environment variables), the
dataset's synthetic writer (scenes in the exact layout, written once into the cache), or no data (efficiency only).
"cityscapes", the spelling of suites written before datasets were named, reads as "real"."""


@dataclass(frozen=True)
class SyntheticData:
    """Synthetic scenes in the Cityscapes layout, written on first use into a cache folder; for a suite with real-world
    conditions also in the ACDC, Dark Zurich and Foggy Cityscapes layouts (`bench.data.realworld` writers).

    `real_images` are the images per ACDC condition and of Dark Zurich, at `real_size` (H, W); Foggy Cityscapes fogs
    every synthetic Cityscapes image.
    """

    num_images: int = 8
    size: tuple[int, int] = (128, 256)
    seed: int = 0
    real_images: int = 2
    real_size: tuple[int, int] = (108, 192)


@dataclass(frozen=True)
class EfficiencySpec:
    """The cost probe: parameters and FLOPs at each resolution, latency per resolution x batch size x precision.

    `resolutions` are (H, W); `conventions` name the FLOP counters ("fvcore": fvcore with attention counted;
    "paper": mmcv's rules plus the SegFormer authors' hand-counted attention).

    `end_to_end` adds the latency of the whole path, PNG on disk to labels on the host, per stage (decode,
    preprocess, model, postprocess; `bench.measure.end_to_end`), on the first image of the run's split at its own size,
    whole image and (when the model's eval crop is smaller) sliding window, at the run's precision: model-only latency
    against end-to-end. A run that reads no Cityscapes images has none to time, and no such rows.

    `curve` adds resolutions timed at batch 1 only (latency against resolution, beside the main grid); `saturation`
    times `batch_sizes` in increasing order only until throughput gains less than that fraction, or a batch runs out
    of memory (`bench.measure.efficiency.efficiency_sweep`).
    """

    resolutions: tuple[tuple[int, int], ...] = ((1024, 2048),)
    batch_sizes: tuple[int, ...] = (1,)
    precisions: tuple[str, ...] = ("fp32",)
    conventions: tuple[str, ...] = DEFAULT_CONVENTIONS
    latency: bool = True
    warmup: int = 5
    iters: int = 20
    cv_threshold: float = 0.1
    max_retries: int = 2
    calibrated: bool = False  # also time the model against a calibration workload (regression tracking)
    end_to_end: bool = False  # also time decode + preprocess + model + postprocess on the first image of the split
    curve: tuple[tuple[int, int], ...] = ()  # more resolutions timed at batch 1: a latency-vs-resolution curve
    saturation: float | None = None  # stop at the batch size that gains less than this in throughput (see below)


@dataclass(frozen=True)
class DeploySpec:
    """The deployment grid (`bench.deploy.grid`): every model at each backend x precision, each checked against eager
    fp32 and then measured as a model of its own (accuracy on the suite's conditions, the cost probe).

    `calibration_images` calibrate int8; `agreement_images` are where logits are compared with eager fp32 (both the
    suite's first clean images). `--backends` and `--precisions` narrow the grid; eager fp32 is always in it.

    `gemm_size`: the side of the square matrices whose product measures the device's GEMM peak, once per run and
    precision (`bench.run.deployment.gemm_peak_cell`), the ceiling each variant's GMAC/s is compared with.
    """

    backends: tuple[str, ...] = DEPLOY_BACKENDS
    precisions: tuple[str, ...] = DEPLOY_PRECISIONS
    calibration_images: int = 8
    agreement_images: int = 2
    gemm_size: int = GEMM_SIZE


@dataclass(frozen=True)
class SuiteSpec:
    """A named, versioned benchmark. Bump `version` whenever a change alters its numbers.

    Attributes:
        name, version, description: identity; every result row and the run's provenance carry name and version.
        dataset: the dataset of the clean and corrupted conditions (`bench.results.axes.DATASETS`); real-world
            conditions read their own.
        data: "real" (the dataset's root from --data or its environment variable), "synthetic" (the dataset's
            synthetic writer) or "none" (efficiency only); see `DATA_KINDS`.
        conditions: clean, corrupted and real-world conditions evaluated for accuracy (empty: no accuracy cells).
        inference: the prediction protocol (whole image or sliding window, crop, stride, flip).
        efficiency: the cost probe, or None.
        default_models: models run when the user names none.
        max_images: evaluate the first N images only (None: all).
        synthetic: scene parameters when `data == "synthetic"`.
        reference_model: the model mCE is relative to, when it is part of the run.
        gallery: save one image under every condition with each model's prediction, for the report.
        weights: checkpoints the suite ships for its models (the demo's synthetic-data weights), by model name.
        deploy: the deployment grid (each model at each backend x precision), or None.
    """

    name: str
    version: str
    description: str
    dataset: str = "cityscapes"
    data: str = "real"
    conditions: tuple[Condition, ...] = ()
    inference: InferenceSpec = InferenceSpec()
    efficiency: EfficiencySpec | None = None
    default_models: tuple[str, ...] = ()
    max_images: int | None = None
    synthetic: SyntheticData | None = None
    reference_model: str | None = None
    gallery: bool = True
    weights: dict[str, str] = field(default_factory=dict)
    deploy: DeploySpec | None = None

    def __post_init__(self) -> None:
        if self.data == "cityscapes":
            object.__setattr__(self, "data", "real")
        if dataset_key(self.dataset) not in DATASETS:
            raise ValueError(f"suite {self.name}: dataset {self.dataset!r} unknown; choose one of {tuple(DATASETS)}")
        object.__setattr__(self, "dataset", dataset_key(self.dataset))
        if self.data not in DATA_KINDS:
            raise ValueError(f"suite {self.name}: data {self.data!r} unknown; choose one of {DATA_KINDS}")
        if self.data == "synthetic" and self.synthetic is None:
            object.__setattr__(self, "synthetic", SyntheticData())

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets the suite's conditions read: its `dataset` (clean and corrupted), then the real-world ones."""
        return datasets_of(self.conditions, self.dataset)

    def with_conditions(self, conditions: tuple[Condition, ...]) -> SuiteSpec:
        return dataclasses.replace(self, conditions=tuple(conditions))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["conditions"] = [c.name for c in self.conditions]
        return d


def paper_conditions(
    corruptions: tuple[str, ...] = CORRUPTIONS,
    severities: tuple[int, ...] = SEVERITIES,
    noise_severities: tuple[int, ...] = (1, 2, 3),
) -> tuple[Condition, ...]:
    """Clean, then each corruption at its severities: the SegFormer paper's Cityscapes-C protocol (Appendix D)
    evaluates the four noise corruptions at severities 1-3 only and the other twelve at 1-5."""
    out = [Condition()]
    for c in corruptions:
        for s in severities:
            if c in NOISE and s not in noise_severities:
                continue
            out.append(Condition(c, s))
    return tuple(out)


def datasets_of(conditions: tuple[Condition, ...] | list[Condition], base: str = "cityscapes") -> tuple[str, ...]:
    """The datasets `conditions` read, in order: `base` (the suite's dataset) when any is clean or corrupted, then each
    real-world dataset (`bench.results.REAL_WORLD` names)."""
    out = [base] if any(not c.is_real for c in conditions) else []
    return tuple(dict.fromkeys([*out, *(c.dataset for c in conditions if c.is_real)]))
