"""The shape of a result row: its columns, the `Row` type and its one builder (`make_row`), every metric name with its
unit and direction (`METRICS`), the deployment variant names and the schema version."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("model", "suite", "dataset", "condition", "corruption", "category", "severity", "metric", "value", "unit")


REQUIRED_COLUMNS = ("model", "metric", "value")
"""The columns a results table must have to be read (the others are filled in empty)."""


SCHEMA_VERSION = 1


TIMING_UNITS = ("s", "img/s")


# --------------------------------------------------------------------------------------------------------------------
# Metric names: every metric a run writes, named once
# --------------------------------------------------------------------------------------------------------------------

# Accuracy cells (`bench.measure.metrics.accuracy_rows`), plus `class_metric_name` and `time_metric_name`.
MIOU = "miou"
PIXEL_ACC = "pixel_acc"
MEAN_ACC = "mean_acc"
NUM_IMAGES = "num_images"
THROUGHPUT = "throughput"
"""Images per second: of an accuracy cell (over its wall time) and of a latency configuration (batch / median)."""

# Calibration of accuracy cells (`bench.measure.calibration`): softmax of the scored logits, labelled pixels only.
ECE = "ece"
"""Expected calibration error (%): 15 equal-width bins of the top-label confidence (`CALIBRATION_BINS`), the
pixel-weighted mean |accuracy - confidence| over the bins."""
NLL = "nll"
"""Negative log-likelihood of the label's class, nats per labelled pixel."""
BRIER = "brier"
"""Brier score: sum over classes of (p_k - onehot_k)^2, per labelled pixel (0 to 2)."""
CALIBRATION_METRICS = (ECE, NLL, BRIER)
"""The calibration metrics of an accuracy cell, in table order."""
CALIBRATION_BINS = 15
CALIBRATION_KEY = "calibration"
"""The cell record's key holding its calibration sums (`bench.measure.calibration.CalibrationCounter.to_dict`): per bin
the pixel count, confidence sum and correct count, and the NLL and Brier sums, so reliability diagrams are drawn later
and shards add up exactly."""

# Attack cells (`bench.run.adversarial`): the cost of the attack, beside the accuracy rows of the attacked images.
ATTACK_STEP_TIME = "attack_step_ms"
"""Milliseconds of one attack step for one image (forward, backward and projection; the sliding window's crops
included): the attack's time over steps x images."""
ATTACK_MEMORY = "attack_peak_memory"
"""Peak device memory (MiB) allocated while the attack ran, on a GPU (torch's caching allocator; no row on a CPU)."""
ADV_MIOU = "adv_miou"
"""Summary: a model's mIoU under the worst case of the run's attacks at one budget (the `worst-<budget>` condition,
or the one attack when the run has one)."""
ADV_AREA = "adv_area"
"""Summary: the robustness area, the mean mIoU over the budget grid from 0 (clean) to the largest budget by the
trapezoid rule, per attack (and worst case) and norm: 100 for a model no attack moves, 0 for one every budget breaks."""

CLASS_METRIC_PREFIX = "iou_"
"""Per-class IoU: `iou_<class>` (`class_metric_name`)."""

TIME_METRIC_PREFIX = "time_"
"""Seconds of an accuracy cell per phase: `time_total`, `time_model`, `time_data`, `time_metric`."""

# Summaries (`bench.results.summaries`).
MIOU_AVG = "miou_avg"
MPC = "mPC"
RPC = "rPC"
CE = "CE"
MCE = "mCE"
REL_MCE = "rel_mCE"
MCE_CORRUPTIONS = "mCE_corruptions"
DROP = "drop"
DELTA_MIOU = "delta_miou"
DELTA_MPC = "delta_mPC"
SPEEDUP = "speedup"
"""Summary metric of a deployment variant (unit "x"): eager fp32's median latency over the variant's at the same timing
setting (`bench.results.summaries.SPEEDUP_SETTING`), written only for a variant that agrees with eager fp32 (eager
fp32's own is 1)."""

# Efficiency cells (`bench.measure.efficiency.efficiency_sweep`).
PARAMS = "params"
PARAMS_BACKBONE = "params_backbone"
PARAMS_HEAD = "params_head"
GMACS = "gmacs"
GFLOPS = "gflops"
GMACS_EXECUTED = "gmacs_executed"
GFLOPS_EXECUTED = "gflops_executed"
GMACS_SLIDING = "gmacs_sliding"
LATENCY_MEDIAN = "latency_median"
LATENCY_P90 = "latency_p90"
LATENCY_P99 = "latency_p99"
LATENCY_IQR = "latency_iqr"
LATENCY_CV = "latency_cv"
PEAK_MEMORY = "peak_memory"
OOM = "oom"
ENERGY_PER_IMAGE = "energy_per_image"
POWER_MEAN = "power_mean"

# Calibrated speed (`bench.measure.latency.calibrated_latency`, gated by `bench.track.regression`).
LATENCY_CALIBRATED = "latency_calibrated"
LATENCY_RAW_MEDIAN = "latency_raw_median"
CALIBRATION_MEDIAN = "calibration_median"

# End-to-end latency (`bench.measure.end_to_end`).
LATENCY_E2E_MEDIAN = "latency_e2e_median"
LATENCY_E2E_P90 = "latency_e2e_p90"
LATENCY_E2E_P99 = "latency_e2e_p99"
THROUGHPUT_E2E = "throughput_e2e"
LATENCY_STAGE = "latency_stage"
"""Metric of the per-stage rows: the stage's median time (ms), the stage named in the row's ``stage`` key."""
E2E_STAGES: tuple[str, ...] = ("decode", "preprocess", "model", "postprocess")
"""The stages of one end-to-end call (`bench.measure.end_to_end`), in order; together they are the whole call."""

# Deployment cells (`bench.deploy.grid.deploy_record`).
BUILD_TIME = "build_time"
ARTIFACT_SIZE = "artifact_size"
AGREEMENT_MAX_ABS = "agreement_max_abs"
AGREEMENT_MAX_REL = "agreement_max_rel"
ARGMAX_AGREEMENT = "argmax_agreement"
AGREES = "agrees"
UNAVAILABLE = "unavailable"
"""A deployment cell this machine cannot run: its status, and the metric of its one row (a flag)."""
FAILED = "failed"
"""A deployment cell whose export, quantisation or build failed: its status, and the metric of its one row."""

# The machine's ceiling (`bench.run.deployment.gemm_peak_cell`, `bench.measure.peak`) and each model's share of it.
GEMM_PEAK = "gemm_peak"
"""The run device's measured GEMM throughput in one precision (GFLOP/s, 2 FLOPs per multiply-add;
`bench.measure.peak.measure_gemm_peak`): one row per precision in the run's `MACHINE` cell, with ``precision``,
``device``, ``device_name``, ``size`` (the side of the square matrices), ``threads``, ``repeats`` and ``best_ms``."""
ACHIEVED_GMACS = "achieved_gmacs"
"""Summary: the multiply-adds one image takes under a stated FLOP convention (``convention``) over its median latency
at batch 1, in GMAC/s (`bench.results.summaries.achieved_gmacs_per_s`)."""
PEAK_SHARE = "peak_share"
"""Summary: the share (%) of the GEMM peak of the model's precision on its device that `ACHIEVED_GMACS` reaches, 2
FLOPs per MAC (`bench.results.summaries.peak_share`); no row where that precision has no measured peak (int8)."""
MACHINE = "machine"
"""The model and condition of the rows that describe the run's machine rather than a model (`GEMM_PEAK`); its cell
is `MACHINE_CELL`."""
MACHINE_CELL = "machine__gemm_peak"


HIGHER = "higher"
LOWER = "lower"


@dataclass(frozen=True)
class MetricSpec:
    """What a metric's number means.

    Attributes:
        unit: the unit every row of the metric carries.
        better: `HIGHER` or `LOWER` is better; None for a count, a flag or a figure that is neither.
    """

    unit: str
    better: str | None


METRICS: Mapping[str, MetricSpec] = {
    MIOU: MetricSpec("%", HIGHER),
    PIXEL_ACC: MetricSpec("%", HIGHER),
    MEAN_ACC: MetricSpec("%", HIGHER),
    NUM_IMAGES: MetricSpec("count", None),
    THROUGHPUT: MetricSpec("img/s", HIGHER),
    ECE: MetricSpec("%", LOWER),
    ATTACK_STEP_TIME: MetricSpec("ms", LOWER),
    ATTACK_MEMORY: MetricSpec("MiB", LOWER),
    ADV_MIOU: MetricSpec("%", HIGHER),
    ADV_AREA: MetricSpec("%", HIGHER),
    NLL: MetricSpec("nats", LOWER),
    BRIER: MetricSpec("score", LOWER),
    MIOU_AVG: MetricSpec("%", HIGHER),
    MPC: MetricSpec("%", HIGHER),
    RPC: MetricSpec("%", HIGHER),
    CE: MetricSpec("%", LOWER),
    MCE: MetricSpec("%", LOWER),
    REL_MCE: MetricSpec("%", LOWER),
    MCE_CORRUPTIONS: MetricSpec("count", None),
    DROP: MetricSpec("pp", LOWER),
    DELTA_MIOU: MetricSpec("pp", HIGHER),
    DELTA_MPC: MetricSpec("pp", HIGHER),
    SPEEDUP: MetricSpec("x", HIGHER),
    PARAMS: MetricSpec("M", LOWER),
    PARAMS_BACKBONE: MetricSpec("M", LOWER),
    PARAMS_HEAD: MetricSpec("M", LOWER),
    GMACS: MetricSpec("GMAC", LOWER),
    GFLOPS: MetricSpec("GFLOP", LOWER),
    GMACS_EXECUTED: MetricSpec("GMAC", LOWER),
    GFLOPS_EXECUTED: MetricSpec("GFLOP", LOWER),
    GMACS_SLIDING: MetricSpec("GMAC", LOWER),
    LATENCY_MEDIAN: MetricSpec("ms", LOWER),
    LATENCY_P90: MetricSpec("ms", LOWER),
    LATENCY_P99: MetricSpec("ms", LOWER),
    LATENCY_IQR: MetricSpec("ms", LOWER),
    LATENCY_CV: MetricSpec("ratio", LOWER),
    PEAK_MEMORY: MetricSpec("MiB", LOWER),
    OOM: MetricSpec("flag", None),
    ENERGY_PER_IMAGE: MetricSpec("J", LOWER),
    POWER_MEAN: MetricSpec("W", None),
    LATENCY_CALIBRATED: MetricSpec("x calibration", LOWER),
    LATENCY_RAW_MEDIAN: MetricSpec("ms", LOWER),
    CALIBRATION_MEDIAN: MetricSpec("ms", None),
    LATENCY_E2E_MEDIAN: MetricSpec("ms", LOWER),
    LATENCY_E2E_P90: MetricSpec("ms", LOWER),
    LATENCY_E2E_P99: MetricSpec("ms", LOWER),
    THROUGHPUT_E2E: MetricSpec("img/s", HIGHER),
    LATENCY_STAGE: MetricSpec("ms", LOWER),
    BUILD_TIME: MetricSpec("s", LOWER),
    ARTIFACT_SIZE: MetricSpec("MiB", LOWER),
    AGREEMENT_MAX_ABS: MetricSpec("logit", LOWER),
    AGREEMENT_MAX_REL: MetricSpec("ratio", LOWER),
    ARGMAX_AGREEMENT: MetricSpec("%", HIGHER),
    AGREES: MetricSpec("flag", HIGHER),
    UNAVAILABLE: MetricSpec("flag", None),
    FAILED: MetricSpec("flag", None),
    GEMM_PEAK: MetricSpec("GFLOP/s", None),
    ACHIEVED_GMACS: MetricSpec("GMAC/s", HIGHER),
    PEAK_SHARE: MetricSpec("%", HIGHER),
}
"""Unit and direction of every metric a run writes (the per-class and per-phase families in `_FAMILIES`)."""

_FAMILIES = {CLASS_METRIC_PREFIX: MetricSpec("%", HIGHER), TIME_METRIC_PREFIX: MetricSpec("s", LOWER)}


def class_metric_name(class_name: str) -> str:
    """`traffic light` -> `iou_traffic_light`."""
    return CLASS_METRIC_PREFIX + re.sub(r"\W+", "_", class_name).strip("_")


def time_metric_name(phase: str) -> str:
    """`total` -> `time_total` (seconds of an accuracy cell's phase)."""
    return TIME_METRIC_PREFIX + phase


def metric_spec(metric: str) -> MetricSpec | None:
    """The unit and direction of `metric` (`METRICS`, or its family: `iou_<class>`, `time_<phase>`); None when no
    segbench code writes it (a user's efficiency function may)."""
    spec = METRICS.get(metric)
    if spec is None:
        spec = next((s for prefix, s in _FAMILIES.items() if metric.startswith(prefix)), None)
    return spec


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is the better one (False for metrics with no direction, or unknown)."""
    spec = metric_spec(metric)
    return spec is not None and spec.better == LOWER


# --------------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Row:
    """One result: one value of one metric, where it was measured (the ten `COLUMNS`), plus the keys that say what
    the number is (resolution, batch size, precision, ...; `extra`, after the columns). Stored as `to_dict()` in cell
    JSON and the CSV files.

    Attributes:
        model, suite, condition: the model (or deployment variant), the suite, the condition ("clean",
            "fog-3", "efficiency", "deploy", a summary's "corrupted" or corruption or category, ...).
        dataset: the dataset the number was measured on ("cityscapes", "ade20k", "acdc", ...; `stamp_dataset` fills
            it when a run stores its rows). Empty in results written before datasets were named: Cityscapes.
        corruption, category, severity: the condition's axes (None where they do not apply).
        metric, value, unit: the number (`METRICS` gives the unit).
        extra: more keys (none of them a column).
    """

    model: str
    suite: str
    dataset: str | None = None
    condition: str
    corruption: str | None = None
    category: str | None = None
    severity: int | None = None
    metric: str
    value: float
    unit: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = [k for k in self.extra if k in COLUMNS]
        if clash:
            raise ValueError(f"extra keys {clash} of a {self.metric} row are result columns; set them as fields")

    def to_dict(self) -> dict[str, Any]:
        """The row as stored: the ten columns in order, then the extra keys in theirs."""
        return {**{c: getattr(self, c) for c in COLUMNS}, **self.extra}


_PLACE = COLUMNS[:7]


def row_dataset(row: Mapping[str, Any], base: str) -> str:
    """The dataset of a stored row: its own `dataset`, else the real-world dataset its condition names
    ("acdc:fog" -> "acdc"), else `base` (the run's dataset; "cityscapes" for results written before datasets were
    named)."""
    named = row.get("dataset")
    if isinstance(named, str) and named:
        return named
    condition = row.get("condition")
    if isinstance(condition, str) and ":" in condition:
        return condition.split(":", 1)[0]
    return base


def stamp_dataset(rows: Sequence[Mapping[str, Any]], base: str) -> list[dict[str, Any]]:
    """`rows` with the `dataset` column filled (`row_dataset`), in column order."""
    out = []
    for row in rows:
        placed = {c: row.get(c) for c in COLUMNS}
        placed["dataset"] = row_dataset(row, base)
        out.append({**placed, **{k: v for k, v in row.items() if k not in placed}})
    return out


def make_row(metric: str, value: float, **keys: Any) -> dict[str, Any]:
    """The one builder of result rows: `value` of `metric`, with the metric's unit (`metric_spec`), as the dict cells
    and CSV files store (`Row.to_dict`).

    Args:
        metric: a metric of `METRICS` or of a family (`class_metric_name`, `time_metric_name`).
        value: the number (stored as a float).
        keys: `model`, `suite`, `condition` and, where they apply, `corruption`, `category`, `severity`; every other
            key is an extra column, kept in the order given.

    Raises:
        ValueError: `metric` is not a known metric name.
    """
    spec = metric_spec(metric)
    if spec is None:
        raise ValueError(f"unknown metric {metric!r}: name it in bench.results.schema.METRICS with its unit")
    place = {k: keys.pop(k) for k in _PLACE if k in keys}
    return Row(**place, metric=metric, value=float(value), unit=spec.unit, extra=keys).to_dict()


E2E_METRICS = (LATENCY_E2E_MEDIAN, LATENCY_E2E_P90, LATENCY_E2E_P99, THROUGHPUT_E2E, LATENCY_STAGE)
"""Every metric of end-to-end latency rows (model-only latency is ``latency_median`` and its kin)."""


SUMMARY_METRICS = (
    MIOU_AVG, MPC, RPC, CE, MCE, REL_MCE, MCE_CORRUPTIONS, DROP, DELTA_MIOU, DELTA_MPC, SPEEDUP,
    ACHIEVED_GMACS, PEAK_SHARE,
)  # fmt: skip


REFERENCE_METRICS = (CE, MCE, REL_MCE, MCE_CORRUPTIONS)
"""Summary metrics measured against a reference model (their rows name it in the `reference` column)."""


JSON_COLUMNS = ("samples",)
"""Row columns that hold a list (a speed cell's per-run samples): stored as JSON text in the CSV, decoded on read."""


# --------------------------------------------------------------------------------------------------------------------
# Deployment variants
# --------------------------------------------------------------------------------------------------------------------


DEPLOY_BACKENDS: tuple[str, ...] = ("eager", "fast", "compile", "cudagraphs", "onnxruntime", "openvino", "tensorrt")
"""Deployment backends (`bench.deploy.backends` registers one of each), in the order reports list them: the model as
written, SegFormer's fast path, `torch.compile`, the model captured as one CUDA graph, ONNX Runtime (CPU, CUDA and
TensorRT execution providers), OpenVINO (its CPU plugin; int8 by NNCF) and TensorRT."""


DEPLOY_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
"""Deployment precisions: autocast's (fp32, bf16, fp16) plus int8 (static quantisation of an exported graph)."""


DEPLOY_REFERENCE = ("eager", "fp32")
"""The (backend, precision) every deployment variant is compared with: the model as written, in IEEE fp32."""


def variant_name(model: str, backend: str, precision: str) -> str:
    """The name a deployment variant carries in every row: `segformer-b0@onnxruntime-int8`."""
    return f"{model}@{backend}-{precision}"


def deploy_variant(name: object) -> tuple[str, str, str] | None:
    """`segformer-b0@onnxruntime-int8` -> ("segformer-b0", "onnxruntime", "int8"); None for a plain model name."""
    if not isinstance(name, str) or "@" not in name:
        return None
    model, _, rest = name.rpartition("@")
    backend, sep, precision = rest.rpartition("-")
    if not model or not sep or not backend or precision not in DEPLOY_PRECISIONS:
        return None
    return model, backend, precision


WEIGHTS_STATUSES = ("trained", "random", "synthetic-demo")
"""What a model's weights are, as env.json's `weights[<model>]["status"]` records it: trained weights, random
initialisation (any part of the model left at random init), or the demo suite's weights trained on synthetic scenes
only (`scripts/train_demo.py` labels them "synthetic-demo")."""
