"""The results store: one atomic JSON file per finished cell, the tidy `results.csv`, `summary.csv` and `env.json`.

Layout of a run folder::

    runs/<run-id>/
        run.json        what the run is (suite and version, seed, weight hashes, inference protocol): checked on resume
        env.json        provenance: command line, git commit, library versions, hardware, seed, weight hashes
        cells/<cell>.json   one finished cell: its rows, and for accuracy cells the confusion matrix
        results.csv     all cells' rows, tidy (one value per row)
        summary.csv     robustness scores derived from the rows (per-corruption/category averages, mPC, rPC, mCE)

Every row has the columns of `COLUMNS` (`model, suite, condition, corruption, category, severity, metric, value,
unit`); efficiency rows may carry extra columns (resolution, batch size, ...), which follow the nine in the CSV.
IoU-type metrics are in percent (unit "%"), as in the published tables.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from segbench.bench import robustness

COLUMNS = ("model", "suite", "condition", "corruption", "category", "severity", "metric", "value", "unit")
SCHEMA_VERSION = 1
TEMP_SUFFIX = ".tmp"
TIMING_UNITS = ("s", "img/s")


# --------------------------------------------------------------------------------------------------------------------
# The axes: corruptions, severities, conditions, classes
# --------------------------------------------------------------------------------------------------------------------

CATEGORIES: dict[str, tuple[str, ...]] = {
    "blur": ("motion_blur", "defocus_blur", "glass_blur", "gaussian_blur"),
    "noise": ("gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"),
    "digital": ("brightness", "contrast", "saturate", "jpeg_compression"),
    "weather": ("snow", "spatter", "fog", "frost"),
}
"""The four Cityscapes-C corruption categories, in the order of the issue and the paper's tables."""

CORRUPTIONS: tuple[str, ...] = tuple(name for names in CATEGORIES.values() for name in names)
"""The 16 Cityscapes-C corruptions, grouped by category."""

EXTRA_CORRUPTIONS: tuple[str, ...] = ("zoom_blur", "elastic_transform", "pixelate")
"""The module's other corruptions: available by name, not part of Cityscapes-C."""

EXTRA_CATEGORIES: dict[str, str] = {"zoom_blur": "blur", "elastic_transform": "digital", "pixelate": "digital"}

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


def _check_corruption(name: object) -> str:
    if not isinstance(name, str) or name not in CORRUPTIONS + EXTRA_CORRUPTIONS:
        raise ValueError(
            f"unknown corruption {name!r}; valid corruptions: {', '.join(CORRUPTIONS)} "
            f"(extra, not in Cityscapes-C: {', '.join(EXTRA_CORRUPTIONS)})"
        )
    return name


def _check_severity(severity: object) -> int:
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral) or not 1 <= severity <= 5:
        raise ValueError(f"severity {severity!r} is outside 1-5; valid severities: 1, 2, 3, 4, 5")
    return int(severity)


def category_of(name: str) -> str:
    """Returns the category (blur, noise, digital, weather) of a corruption name; "clean" for "clean"."""
    if name == "clean":
        return "clean"
    _check_corruption(name)
    for category, names in CATEGORIES.items():
        if name in names:
            return category
    return EXTRA_CATEGORIES[name]


REAL_WORLD: dict[str, tuple[str, ...]] = {
    "acdc": ("fog", "night", "rain", "snow"),
    "dark_zurich": ("night",),
    "foggy_cityscapes": ("beta_0.005", "beta_0.01", "beta_0.02"),
}
"""The real adverse-condition datasets and their conditions ("domains"), all labelled in Cityscapes' 19 classes:
ACDC (Sakaridis et al., ICCV 2021), Dark Zurich (Sakaridis et al., ICCV 2019) and Foggy Cityscapes-DBF (Sakaridis
et al., IJCV 2018 / ECCV 2018), whose domains are the fog densities beta (attenuation coefficient, 1/m)."""

REAL_WORLD_NAMES: dict[str, str] = {
    "acdc": "ACDC",
    "dark_zurich": "Dark Zurich",
    "foggy_cityscapes": "Foggy Cityscapes",
}
REAL_WORLD_CATEGORY = "real-world"
"""The `category` of a real-world condition's rows."""

FOGGY_BETAS: tuple[float, ...] = (0.005, 0.01, 0.02)

INVALID_REGION_NOTE = (
    "pixels marked invalid in the dataset's invIds masks are ignored (set to 255) in addition to the void classes"
)
"""How ACDC's and Dark Zurich's invalid-region masks (`_gt_invIds.png`) are used: `bench.realworld` applies them, the
report states it in these words."""


def beta_name(beta: float | str) -> str:
    """A fog density as Foggy Cityscapes writes it in file names: 0.005 -> "0.005", 0.01 -> "0.01"."""
    return f"{float(beta):g}"


def dataset_key(name: str) -> str:
    """A dataset name as the contract spells it: `dark-zurich` and `Dark_Zurich` -> `dark_zurich`."""
    return str(name).strip().lower().replace("-", "_")


DEPLOY_BACKENDS: tuple[str, ...] = ("eager", "fast", "compile", "cudagraphs", "onnxruntime", "tensorrt")
"""Deployment backends (`bench.deploy.backends` registers one of each): the model as written, SegFormer's fast path,
`torch.compile`, the model captured as one CUDA graph, ONNX Runtime (CPU, CUDA and TensorRT execution providers) and
TensorRT."""

DEPLOY_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
"""Deployment precisions: autocast's (fp32, bf16, fp16) plus int8 (static quantisation of an exported graph)."""

DEPLOY_REFERENCE = ("eager", "fp32")
"""The (backend, precision) every deployment variant is compared with: the model as written, in IEEE fp32."""


E2E_STAGES: tuple[str, ...] = ("decode", "preprocess", "model", "postprocess")
"""The stages of one end-to-end call (`bench.end_to_end`), in order; together they are the whole call."""

LATENCY_E2E_MEDIAN = "latency_e2e_median"
LATENCY_E2E_P90 = "latency_e2e_p90"
LATENCY_E2E_P99 = "latency_e2e_p99"
THROUGHPUT_E2E = "throughput_e2e"
LATENCY_STAGE = "latency_stage"
"""Metric of the per-stage rows: the stage's median time (ms), the stage named in the row's ``stage`` key."""

E2E_METRICS = (LATENCY_E2E_MEDIAN, LATENCY_E2E_P90, LATENCY_E2E_P99, THROUGHPUT_E2E, LATENCY_STAGE)
"""Every metric of end-to-end latency rows (model-only latency is ``latency_median`` and its kin)."""


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


def split_condition(text: str) -> tuple[str | None, int | None]:
    """`fog-3` -> (`fog`, 3); `clean`, `efficiency` or anything without a trailing severity -> (None, None).

    Lenient (any name): the reader of results files uses it; `Condition.parse` adds the checks.
    """
    corruption, sep, severity = str(text).strip().rpartition("-")
    if not sep or not corruption or not severity.isdigit():
        return None, None
    return corruption, int(severity)


@dataclass(frozen=True)
class Condition:
    """An evaluation condition: clean Cityscapes, one Cityscapes-C corruption at one severity, or one condition of a
    real adverse-condition dataset.

    Attributes:
        corruption: corruption name, or None (clean or real-world).
        severity: 1-5 for a corruption, 0 otherwise.
        dataset: a `REAL_WORLD` dataset ("acdc", "dark_zurich", "foggy_cityscapes"), or None.
        domain: the dataset's condition ("fog", "night", "beta_0.01", ...) when `dataset` is set.

    Names: "clean", "<corruption>-<severity>" (e.g. "fog-3") and "<dataset>:<domain>" (e.g. "acdc:night").
    """

    corruption: str | None = None
    severity: int = 0
    dataset: str | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.dataset is not None:
            if self.corruption is not None or self.severity != 0:
                raise ValueError("a real-world condition has no corruption and severity 0")
            dataset = dataset_key(self.dataset)
            if dataset not in REAL_WORLD:
                raise ValueError(
                    f"unknown real-world dataset {self.dataset!r}; valid datasets: {', '.join(REAL_WORLD)}"
                )
            domain = self.domain
            if dataset == "foggy_cityscapes" and domain is not None and not str(domain).startswith("beta_"):
                domain = f"beta_{beta_name(domain)}" if _is_number(domain) else domain
            if domain not in REAL_WORLD[dataset]:
                raise ValueError(
                    f"{REAL_WORLD_NAMES[dataset]} has no condition {self.domain!r}; valid: "
                    f"{', '.join(REAL_WORLD[dataset])}"
                )
            object.__setattr__(self, "dataset", dataset)
            object.__setattr__(self, "domain", domain)
            return
        if self.domain is not None:
            raise ValueError(f"domain {self.domain!r} given without a real-world dataset")
        if self.corruption is None:
            if self.severity != 0:
                raise ValueError(f"a clean condition has severity 0, got {self.severity!r}")
            return
        _check_corruption(self.corruption)
        object.__setattr__(self, "severity", _check_severity(self.severity))

    @classmethod
    def real(cls, dataset: str, domain: str) -> Condition:
        """A real-world condition, e.g. `Condition.real("acdc", "fog")`."""
        return cls(dataset=dataset, domain=domain)

    @property
    def is_clean(self) -> bool:
        """Clean Cityscapes (neither corrupted nor from a real-world dataset)."""
        return self.corruption is None and self.dataset is None

    @property
    def is_real(self) -> bool:
        """A condition of a real adverse-condition dataset (ACDC, Dark Zurich, Foggy Cityscapes)."""
        return self.dataset is not None

    @property
    def name(self) -> str:
        """ "clean", "<corruption>-<severity>" (e.g. "gaussian_noise-3") or "<dataset>:<domain>" (e.g. "acdc:fog")."""
        if self.dataset is not None:
            return f"{self.dataset}:{self.domain}"
        return "clean" if self.corruption is None else f"{self.corruption}-{self.severity}"

    @property
    def category(self) -> str:
        """ "clean", the corruption's category, or "real-world"."""
        if self.dataset is not None:
            return REAL_WORLD_CATEGORY
        return "clean" if self.corruption is None else category_of(self.corruption)

    @property
    def label(self) -> str:
        """How a person reads the condition: "clean", "fog-3", "ACDC fog", "Foggy Cityscapes beta 0.01"."""
        if self.dataset is None:
            return self.name
        return f"{REAL_WORLD_NAMES[self.dataset]} {str(self.domain).replace('_', ' ')}"

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Parses "clean", "<corruption>-<severity>" (e.g. "fog-2") or "<dataset>:<domain>" (e.g. "acdc:night")."""
        text = text.strip()
        if text == "clean":
            return cls()
        if ":" in text:
            dataset, _, domain = text.partition(":")
            return cls(dataset=dataset.strip(), domain=domain.strip())
        corruption, severity = split_condition(text)
        if corruption is None:
            raise ValueError(
                f"cannot parse condition {text!r}: expected 'clean', '<corruption>-<severity>' (e.g. 'fog-2') or "
                "'<dataset>:<condition>' (e.g. 'acdc:night')"
            )
        return cls(corruption, severity)

    def __str__(self) -> str:
        return self.name


def _is_number(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def real_condition(name: object) -> Condition | None:
    """The real-world `Condition` a row's condition name stands for, or None (clean, corrupted, a summary name)."""
    if not isinstance(name, str) or ":" not in name:
        return None
    try:
        return Condition.parse(name)
    except ValueError:
        return None


def real_conditions(datasets: Sequence[str] = tuple(REAL_WORLD)) -> tuple[Condition, ...]:
    """Every condition of the given real-world datasets, in `REAL_WORLD` order."""
    keys = [dataset_key(d) for d in datasets]
    unknown = [d for d, k in zip(datasets, keys) if k not in REAL_WORLD]
    if unknown:
        raise ValueError(f"unknown real-world dataset {unknown[0]!r}; valid datasets: {', '.join(REAL_WORLD)}")
    return tuple(Condition.real(d, domain) for d in REAL_WORLD if d in keys for domain in REAL_WORLD[d])


CLEAN = Condition()
"""The clean condition."""


def conditions(
    corruptions: tuple[str, ...] = CORRUPTIONS, severities: tuple[int, ...] = SEVERITIES, clean: bool = True
) -> tuple[Condition, ...]:
    """Returns the conditions of a benchmark: clean first (if asked), then each corruption at each severity."""
    out = [Condition()] if clean else []
    out += [Condition(c, s) for c in corruptions for s in severities]
    return tuple(out)


# Cityscapes train-id class names, in train-id order (cityscapesscripts.helpers.labels).
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
"""Colours of the 19 train ids, in train-id order (cityscapesscripts' label table); 255 (ignored) is drawn black."""


class RunMismatchError(ValueError):
    """A resume was asked against a run folder made with other settings."""


# --------------------------------------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------------------------------------


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file so that readers see the old file or the whole new one, never a part.

    `write(f)` fills a temporary file (binary) in the same folder; it is synced and renamed over `path`. The
    temporary file is `.<name>.<random>.tmp`; it is removed if anything fails, an interruption included. This is the
    one atomic writer of the project: JSON, CSV, PNG, checkpoints and generated images all go through it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def is_temp_file(path: str | Path) -> bool:
    """Whether `path` is a temporary file of `atomic_write` (a hidden `.<name>.<random>.tmp`)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically (see `atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically (see `atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically; NaN/inf are stored as null (strict JSON)."""
    return atomic_write_text(path, json.dumps(_json_safe(data), indent=1, allow_nan=False) + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------------


def class_metric_name(class_name: str) -> str:
    """`traffic light` -> `iou_traffic_light`."""
    return "iou_" + re.sub(r"\W+", "_", class_name).strip("_")


JSON_COLUMNS = ("samples",)
"""Row columns that hold a list (a speed cell's per-run samples): stored as JSON text in the CSV, decoded on read."""

SUMMARY_METRICS = (
    "miou_avg",
    "mPC",
    "rPC",
    "CE",
    "mCE",
    "rel_mCE",
    "mCE_corruptions",
    "drop",
    "delta_miou",
    "delta_mPC",
)
REFERENCE_METRICS = ("CE", "mCE", "rel_mCE", "mCE_corruptions")
"""Summary metrics measured against a reference model (their rows name it in the `reference` column)."""


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Tidy rows -> CSV (the nine columns first, extra columns after, sorted); numbers at full precision.

    List values (`JSON_COLUMNS`) are written as JSON text, so that `read_rows` gives them back as lists.
    """
    import pandas as pd

    rows = [{k: json.dumps(v) if isinstance(v, list | tuple) else v for k, v in r.items()} for r in rows]
    extras = sorted({k for r in rows for k in r} - set(COLUMNS))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *extras])
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.17g"))


def _decode_json_columns(frame):
    for column in JSON_COLUMNS:
        if column in frame.columns:
            frame[column] = [json.loads(v) if isinstance(v, str) and v.startswith("[") else None for v in frame[column]]
    return frame


def read_rows(path: str | Path):
    """A `results.csv` or `summary.csv` (or a run folder's results.csv) -> pandas DataFrame, lists decoded."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file; give a run folder or its results.csv")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=list(COLUMNS))
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a segbench results CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("model", "metric", "value") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a segbench results CSV (no column {', '.join(missing)})")
    return _decode_json_columns(frame)


def condition_scores(rows: Iterable[Mapping[str, Any]], model: str, metric: str = "miou") -> tuple[float | None, dict]:
    """A model's clean score and `{(corruption, severity): score}` from tidy rows (the input of `bench.robustness`).

    A condition stored twice (duplicate rows) keeps its last value.
    """
    clean, scores = None, {}
    for r in rows:
        if r["model"] != model or r["metric"] != metric or _missing(r.get("value")):
            continue
        if r["condition"] == "clean":
            clean = float(r["value"])
        elif isinstance(r.get("corruption"), str) and not _missing(r.get("severity")):
            scores[(r["corruption"], int(r["severity"]))] = float(r["value"])
    return clean, scores


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def default_reference(rows: Sequence[Mapping[str, Any]], requested: str | None = None) -> str | None:
    """The reference model of CE / mCE: `requested`, else the first model with corrupted mIoU rows (None if none).

    The one rule, used by the run when it writes summary.csv and by the report when it is re-rendered.

    Raises:
        ValueError: `requested` has no mIoU rows in `rows`.
    """
    measured = list(dict.fromkeys(r["model"] for r in rows if r["metric"] == "miou"))
    if requested is not None:
        if requested not in measured:
            raise ValueError(f"reference model {requested!r} has no mIoU rows in this run; choose one of {measured}")
        return requested
    corrupted = [m for m in measured if condition_scores(rows, m)[1]]
    return corrupted[0] if corrupted else None


def summary_rows(
    rows: Sequence[Mapping[str, Any]], suite: str, reference_model: str | None = None
) -> list[dict[str, Any]]:
    """Robustness scores per model (formulas in `bench.robustness`) as tidy rows, all in percent.

    Per corruption `miou_avg` (condition = corruption name), per category `miou_avg` (condition = category), and
    for the corrupted set (condition "corrupted") `mPC` and `rPC`. Against `reference_model` (the reference's own
    rows included: 100 by definition): per-corruption `CE`, `mCE`, `rel_mCE`, and `mCE_corruptions`, the number of
    corruptions they average. CE of a corruption sums over the severities measured for both the model and the
    reference; corruptions the reference lacks are left out. A relative CE whose reference does not degrade is
    undefined and left out of relative mCE. Models without corrupted cells get no corruption scores.

    Deployment variants (`deploy_variant`): `delta_miou` (clean) and `delta_mPC` (corrupted, over the conditions
    both measured) against the model's eager fp32 variant (`DEPLOY_REFERENCE`), in percentage points.

    Real-world conditions (`REAL_WORLD`): per condition its `drop` from clean (percentage points, unit "pp"), per
    dataset the `miou_avg` over its measured conditions and that average's `drop` (`real_world_scores`).
    """
    rows = list(rows)
    models = list(dict.fromkeys(r["model"] for r in rows))
    ref_clean, ref_scores = condition_scores(rows, reference_model) if reference_model else (None, {})
    out: list[dict[str, Any]] = []
    for model in models:
        out += _real_world_summary(rows, model, suite)
        out += _deploy_summary(rows, model, suite)
        clean, scores = condition_scores(rows, model)
        if not scores:
            continue

        def row(condition, corruption, category, metric, value, unit="%", model=model):
            return {"model": model, "suite": suite, "condition": condition, "corruption": corruption,
                    "category": category, "severity": None, "metric": metric, "value": value, "unit": unit,
                    "reference": reference_model if metric in REFERENCE_METRICS else None}  # fmt: skip

        categories: dict[str, tuple[str, ...]] = {}
        for corruption, value in robustness.per_corruption(scores).items():
            out.append(row(corruption, corruption, category_of(corruption), "miou_avg", value))
            categories[category_of(corruption)] = (*categories.get(category_of(corruption), ()), corruption)
        ordered = {k: categories[k] for k in [*CATEGORIES, *categories] if k in categories}
        for category, value in robustness.per_category(scores, ordered).items():
            out.append(row(category, None, category, "miou_avg", value))
        out.append(row("corrupted", None, None, "mPC", robustness.mean_pc(scores)))
        if clean:
            out.append(row("corrupted", None, None, "rPC", 100 * robustness.relative_pc(scores, clean)))
        shared = {k: v for k, v in scores.items() if k in ref_scores}
        if not shared:
            continue
        reference = {k: ref_scores[k] for k in shared}
        ce = robustness.corruption_errors(shared, reference)
        for corruption, value in ce.items():
            out.append(row(corruption, corruption, category_of(corruption), "CE", 100 * value))
        out.append(row("corrupted", None, None, "mCE", 100 * robustness.mean_corruption_error(shared, reference)))
        out.append(row("corrupted", None, None, "mCE_corruptions", len(ce), unit="count"))
        if clean is not None and ref_clean is not None:
            rel = _relative_errors(shared, clean, reference, ref_clean)
            if rel:
                out.append(row("corrupted", None, None, "rel_mCE", 100 * sum(rel) / len(rel)))
    return out


def real_world_scores(rows: Iterable[Mapping[str, Any]], model: str) -> dict[str, float]:
    """A model's mIoU per real-world condition (`acdc:fog`, ...) and per dataset (`acdc`: the mean over its measured
    conditions), from tidy rows. A condition stored twice keeps its last value."""
    per_condition: dict[str, float] = {}
    for r in rows:
        if r["model"] == model and r["metric"] == "miou" and not _missing(r.get("value")):
            condition = real_condition(r["condition"])
            if condition is not None:
                per_condition[condition.name] = float(r["value"])
    out = dict(per_condition)
    for dataset in REAL_WORLD:
        values = [v for k, v in per_condition.items() if k.startswith(f"{dataset}:")]
        if values:
            out[dataset] = sum(values) / len(values)
    return out


def _real_world_summary(rows: Sequence[Mapping[str, Any]], model: str, suite: str) -> list[dict[str, Any]]:
    scores = real_world_scores(rows, model)
    clean, _ = condition_scores(rows, model)
    out = []
    for name, value in scores.items():
        condition = real_condition(name)
        base = {"model": model, "suite": suite, "condition": name, "corruption": None,
                "category": REAL_WORLD_CATEGORY, "severity": None, "reference": None}  # fmt: skip
        if condition is None:  # a dataset's average
            out.append({**base, "metric": "miou_avg", "value": value, "unit": "%"})
        if clean is not None:
            out.append({**base, "metric": "drop", "value": robustness.drop(clean, value), "unit": "pp"})
    return out


def _deploy_summary(rows: Sequence[Mapping[str, Any]], model: str, suite: str) -> list[dict[str, Any]]:
    variant = deploy_variant(model)
    if variant is None or variant[1:] == DEPLOY_REFERENCE:
        return []
    reference = variant_name(variant[0], *DEPLOY_REFERENCE)
    clean, scores = condition_scores(rows, model)
    ref_clean, ref_scores = condition_scores(rows, reference)
    base = {
        "model": model,
        "suite": suite,
        "corruption": None,
        "severity": None,
        "unit": "pp",
        "reference": None,
        "compared_with": reference,
    }  # fmt: skip  (`reference` names the mCE reference only)
    out = []
    if clean is not None and ref_clean is not None:
        out.append(
            {**base, "condition": "clean", "category": "clean", "metric": "delta_miou", "value": clean - ref_clean}
        )
    shared = [k for k in scores if k in ref_scores]
    if shared:
        mine, theirs = ({k: s[k] for k in shared} for s in (scores, ref_scores))
        delta = robustness.mean_pc(mine) - robustness.mean_pc(theirs)
        out.append({**base, "condition": "corrupted", "category": None, "metric": "delta_mPC", "value": delta})
    return out


@dataclass(frozen=True)
class PredictionPair:
    """A synthetic corruption score set beside the real condition it stands in for.

    Attributes:
        synthetic: Cityscapes-C corruptions whose per-corruption averages are averaged, or ("mPC",).
        real: a real-world condition name (`acdc:fog`) or a dataset (`acdc`: its mean over conditions).
    """

    synthetic: tuple[str, ...]
    real: str

    @property
    def label(self) -> str:
        real = real_condition(self.real)
        where = real.label if real is not None else f"{REAL_WORLD_NAMES[self.real]} (mean)"
        return f"{' + '.join(self.synthetic)} \u2192 {where}"


PREDICTION_PAIRS: tuple[PredictionPair, ...] = (
    PredictionPair(("fog",), "foggy_cityscapes"),
    PredictionPair(("fog",), "acdc:fog"),
    PredictionPair(("snow",), "acdc:snow"),
    PredictionPair(("brightness", "contrast"), "acdc:night"),
    PredictionPair(("brightness", "contrast"), "dark_zurich:night"),
    PredictionPair(("spatter",), "acdc:rain"),
    PredictionPair(("mPC",), "acdc"),
)
"""Which synthetic corruption is read as a predictor of which real condition (issue 18's matched pairs)."""


def prediction_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For each `PREDICTION_PAIRS` entry the run can fill: per model the synthetic score (x) and the real one (y),
    in mIoU % and relative to the model's clean mIoU, with Pearson and Spearman correlations across models
    (`bench.robustness.correlation`; None below three models).

    Returns:
        One dict per pair with `label`, `synthetic`, `real`, `models`, `x`, `y` (mIoU %), `x_rel`, `y_rel`
        (fractions of clean; empty when a model has no clean mIoU), `n`, `pearson`, `spearman`, `pearson_rel`,
        `spearman_rel`. Pairs that no model fills are left out.
    """
    rows = list(rows)
    models = list(dict.fromkeys(r["model"] for r in rows))
    per_model = {}
    for model in models:
        clean, scores = condition_scores(rows, model)
        synthetic = robustness.per_corruption(scores) if scores else {}
        if scores:
            synthetic["mPC"] = robustness.mean_pc(scores)
        per_model[model] = (clean, synthetic, real_world_scores(rows, model))
    out = []
    for pair in PREDICTION_PAIRS:
        entry: dict[str, Any] = {"label": pair.label, "synthetic": pair.synthetic, "real": pair.real,
                                 "models": [], "x": [], "y": [], "x_rel": [], "y_rel": []}  # fmt: skip
        for model, (clean, synthetic, real) in per_model.items():
            if pair.real not in real or not all(c in synthetic for c in pair.synthetic):
                continue
            x = sum(synthetic[c] for c in pair.synthetic) / len(pair.synthetic)
            entry["models"].append(model)
            entry["x"].append(x)
            entry["y"].append(real[pair.real])
            if clean:
                entry["x_rel"].append(x / clean)
                entry["y_rel"].append(real[pair.real] / clean)
        if not entry["models"]:
            continue
        entry.update(robustness.correlation(entry["x"], entry["y"]))
        complete = len(entry["x_rel"]) == len(entry["models"])
        rel = robustness.correlation(entry["x_rel"], entry["y_rel"]) if complete else {}
        entry["pearson_rel"], entry["spearman_rel"] = rel.get("pearson"), rel.get("spearman")
        if not complete:
            entry["x_rel"], entry["y_rel"] = [], []
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Run folder
# --------------------------------------------------------------------------------------------------------------------


def _relative_errors(scores: dict, clean: float, reference: dict, reference_clean: float) -> list[float]:
    """Relative CE per corruption (`bench.robustness`), leaving out the corruptions where it is undefined."""
    out = []
    for corruption in dict.fromkeys(c for c, _ in scores):
        mine = {k: v for k, v in scores.items() if k[0] == corruption}
        try:
            rel = robustness.relative_corruption_errors(mine, clean, {k: reference[k] for k in mine}, reference_clean)
        except ValueError:  # the reference does not degrade on this corruption
            continue
        out.append(rel[corruption])
    return out


def cell_filename(cell_id: str) -> str:
    """File name of a cell: the id with unsafe characters replaced, plus a short hash when anything was replaced."""
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", cell_id)
    if safe != cell_id:
        safe += "-" + hashlib.sha1(cell_id.encode()).hexdigest()[:8]
    return safe + ".json"


class RunStore:
    """A run folder: cells, manifest, provenance and the gathered tables."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.cells_dir = self.dir / "cells"

    @property
    def results_csv(self) -> Path:
        return self.dir / "results.csv"

    @property
    def summary_csv(self) -> Path:
        return self.dir / "summary.csv"

    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / cell_filename(cell_id)

    def write_cell(self, record: Mapping[str, Any]) -> Path:
        """Store a finished cell (atomically). `record` needs `cell` (its id) and `rows`."""
        return atomic_write_json(self.cell_path(record["cell"]), {"schema": SCHEMA_VERSION, **record})

    def finished(self) -> dict[str, dict]:
        """Finished cells by id. A file that does not parse (not written by this code) is reported and skipped."""
        out = {}
        if not self.cells_dir.is_dir():
            return out
        for path in sorted(self.cells_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                out[record["cell"]] = record
            except (OSError, ValueError, KeyError) as exc:
                print(f"warning: ignoring unreadable cell file {path} ({exc}); it will be recomputed", file=sys.stderr)
        return out

    def read_manifest(self) -> dict | None:
        path = self.dir / "run.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.dir / "run.json", manifest)

    def write_env(self, env: Mapping[str, Any]) -> Path:
        """Write env.json; earlier sessions of a resumed run are kept under `sessions`."""
        path = self.dir / "env.json"
        sessions = []
        if path.is_file():
            try:
                old = json.loads(path.read_text())
                sessions = old.pop("sessions", []) + [old]
            except ValueError:
                pass
        return atomic_write_json(path, {**env, "sessions": sessions})

    def gather(self, order: Sequence[str] | None = None, reference_model: str | None = None, suite: str = "") -> Path:
        """Write results.csv (and summary.csv when there are corrupted cells) from the finished cells.

        Args:
            order: cell ids in plan order (others follow, sorted); makes the CSV independent of finishing order.
            reference_model: reference of CE / mCE in summary.csv (None: `default_reference`).
            suite: suite name for the summary rows.
        """
        cells = self.finished()
        rank = {cell: i for i, cell in enumerate(order or [])}
        ids = sorted(cells, key=lambda c: (rank.get(c, len(rank)), c))
        rows = [r for c in ids for r in cells[c]["rows"]]
        write_csv(rows, self.results_csv)
        self.write_summary(rows, suite, reference_model)
        return self.results_csv

    def write_summary(self, rows: Sequence[Mapping[str, Any]], suite: str, reference_model: str | None) -> list[dict]:
        """Write summary.csv (robustness scores against `default_reference(rows, reference_model)`); returns it."""
        summary = summary_rows(rows, suite, default_reference(rows, reference_model))
        if summary:
            write_csv(summary, self.summary_csv)
        else:
            self.summary_csv.unlink(missing_ok=True)
        return summary


class RunFolder:
    """A finished (or running) run folder, read through the contract: what the report and the regression check use.

    Attributes:
        dir: the folder.
        problems: unreadable files met while reading (one line each), for the report to show.
    """

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir}: run folder not found")
        self.problems: list[str] = []
        self._cells: list[dict] | None = None

    def read_json(self, name: str) -> Any:
        """A JSON file of the folder (`name` relative to it); None when missing (noted in problems when unreadable)."""
        path = self.dir / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.problems.append(f"{name}: unreadable ({exc.__class__.__name__}: {exc})")
            return None

    @property
    def manifest(self) -> dict:
        """run.json (what the run is), or {}."""
        data = self.read_json("run.json")
        return data if isinstance(data, dict) else {}

    @property
    def env(self) -> dict | None:
        """env.json (provenance), or None when missing or unreadable."""
        data = self.read_json("env.json")
        return data if isinstance(data, dict) else None

    def cells(self) -> list[dict]:
        """The cell records of `cells/*.json`, each with its file name under `_file` (unreadable ones in problems)."""
        if self._cells is None:
            self._cells = []
            for path in sorted((self.dir / "cells").glob("*.json")):
                record = self.read_json(f"cells/{path.name}")
                if isinstance(record, dict):
                    self._cells.append({**record, "_file": path.name})
                elif record is not None:
                    self.problems.append(f"cells/{path.name}: not a JSON object")
        return self._cells

    def rows(self) -> tuple[Any, str]:
        """(DataFrame of the tidy rows, where they came from): results.csv, else the cells' rows (a running run)."""
        import pandas as pd

        csv = self.dir / "results.csv"
        if csv.is_file():
            return read_rows(csv), "results.csv"
        cells = self.cells()
        if not cells:
            raise FileNotFoundError(
                f"{self.dir}: neither results.csv nor cells/*.json found; is this a run folder (runs/<suite>-<time>)?"
            )
        rows = [r for c in cells for r in c.get("rows", []) if isinstance(r, dict)]
        frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(COLUMNS))
        return frame, "cells/*.json (results.csv not gathered yet)"

    def frame(self):
        """The tidy rows as a DataFrame (one value per row; see `COLUMNS`)."""
        return self.rows()[0]

    def summary(self, reference_model: str | None = None):
        """summary.csv as a DataFrame, against `reference_model` (None: the one the run used).

        When another reference is asked for (or the file is missing), summary.csv is rewritten first with the
        contract's own `summary_rows`, so the file always holds what a report built from it shows.
        """
        import pandas as pd

        path = self.dir / "summary.csv"
        current = read_rows(path) if path.is_file() else None
        if current is not None and "reference" in current.columns:
            used = current["reference"].dropna()
            used = used.iloc[0] if len(used) else None
            if reference_model is None or reference_model == used:
                return current
        frame, _ = self.rows()
        rows = frame.to_dict("records")
        suite = str(
            self.manifest.get("suite") or next((r["suite"] for r in rows if isinstance(r.get("suite"), str)), "")
        )
        summary = RunStore(self.dir).write_summary(rows, suite, reference_model)
        return pd.DataFrame(summary) if summary else pd.DataFrame(columns=[*COLUMNS, "reference"])


HISTORY = "history.jsonl"
"""The regression history: one JSON line per comparison, in a run folder or beside the run folders."""


def append_history(path: str | Path, entry: Mapping[str, Any]) -> Path:
    """Add one comparison to a history file (one line, appended in one write, so concurrent writers never interleave
    a line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_json_safe(entry), allow_nan=False) + "\n")
    return path


def read_history(run_dir: str | Path) -> tuple[Path | None, list[dict], int]:
    """The run's own history, else the shared one beside the run folders (`runs/history.jsonl`).

    Returns:
        (the file or None, its entries that carry a `metrics` mapping, the number of lines that did not parse).
    """
    run_dir = Path(run_dir)
    path = next((p for p in (run_dir / HISTORY, run_dir.parent / HISTORY) if p.is_file()), None)
    if path is None:
        return None, [], 0
    entries, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("metrics"), dict):
            entries.append(entry)
        else:
            bad += 1
    return path, entries, bad


def read_run(run_dir: str | Path) -> RunFolder:
    """Open a finished run folder for reading (`segbench.read_run`): `.frame()`, `.summary()`, `.env`, `.cells()`."""
    folder = RunFolder(run_dir)
    if not (folder.dir / "results.csv").is_file() and not (folder.dir / "cells").is_dir():
        raise FileNotFoundError(f"{folder.dir}: no results.csv or cells/ here; give a run folder made by segbench")
    return folder


def check_resume(old: Mapping[str, Any], new: Mapping[str, Any], run_dir: str | Path) -> None:
    """Refuse to resume when what defines the numbers differs between the stored manifest and this run.

    Compared: suite, suite version, seed, split, max_images, number of classes, every entry of `settings` (the fast
    path, precision, channels-last, compile, batch size, the conditions run, ...), and for every model present in
    both its weight hash and inference protocol (mode, crop, stride, flip, precision). Device and worker count may
    change.
    """
    problems = []
    for key in ("suite", "suite_version", "seed", "split", "max_images", "num_classes"):
        if _norm(old.get(key)) != _norm(new.get(key)):
            problems.append(f"{key} was {old.get(key)!r}, now {new.get(key)!r}")
    for model, digest in new.get("weights", {}).items():
        before = old.get("weights", {}).get(model)
        if before is not None and before != digest:
            problems.append(f"weights of {model} changed (sha256 {before[:16]}... -> {digest[:16]}...)")
    old_settings, new_settings = old.get("settings"), new.get("settings") or {}
    if isinstance(old_settings, Mapping):  # runs made before settings were recorded have none to compare
        for key in sorted(set(old_settings) | set(new_settings)):
            if _norm(old_settings.get(key)) != _norm(new_settings.get(key)):
                problems.append(f"{key} was {_short(old_settings.get(key))}, now {_short(new_settings.get(key))}")
    for model, protocol in new.get("protocols", {}).items():
        before = old.get("protocols", {}).get(model)
        if before is not None and _norm(before) != _norm(protocol):
            problems.append(f"inference protocol of {model} was {before}, now {_norm(protocol)}")
    if problems:
        raise RunMismatchError(
            f"cannot resume {run_dir}: " + "; ".join(problems) + ". Start a new run (without resume) or use the "
            "settings the run was made with."
        )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _norm(value: Any) -> str:
    return json.dumps(_json_safe(value), sort_keys=True)
