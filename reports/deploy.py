"""The report's deployment grid: each model per backend x precision, one row per *variant* (a model of its own named
`<model>@<backend>-<precision>`, `bench.results.variant_name`), pandas only (no torch).

A variant's row gathers what the run stored about it: its `deploy` cell (status, the one-line reason it could not be
built, build time and cache hit, artifact size, logit and argmax agreement with eager fp32 and the tolerance they were
held to), its efficiency rows (latency distribution, throughput, peak memory) and its accuracy (clean mIoU from
results.csv; mPC, `delta_miou` and `delta_mPC` from summary.csv, written by the contract). Like `reports.tables` this
module computes no score; the one number it forms is the speed-up, eager fp32's median latency over the variant's at
the same timing setting, and a variant that disagrees with eager fp32 gets none (it is not the same model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from segbench.bench.results import DEPLOY_BACKENDS, DEPLOY_PRECISIONS, DEPLOY_REFERENCE, deploy_variant, variant_name
from segbench.reports.tables import best_group

DEPLOY_SUITE = "deploy"
"""The suite that measures the grid (named in the report when a run has none)."""

NOT_BUILT = ("unavailable", "failed")
"""Statuses of a variant that could not be built on the run's machine: it has no timing and no accuracy."""

UNCHECKED = "unchecked"
"""The status of a variant with rows but no `deploy` cell: whether it agrees with eager fp32 is unknown."""

TIMING_KEYS = ("resolution", "batch_size", "device")
"""The timing setting a model's variants are compared at (precision belongs to the variant, not the setting)."""

TIMING = {
    "latency_median": "latency_median_ms",
    "latency_p90": "latency_p90_ms",
    "latency_p99": "latency_p99_ms",
    "latency_iqr": "latency_iqr_ms",
    "latency_cv": "latency_cv",
    "throughput": "throughput_img_s",
    "peak_memory": "peak_memory_MiB",
}
"""Efficiency metrics of a variant -> the grid's columns (with their units)."""

DEPLOY = {
    "build_time": "build_time_s",
    "artifact_size": "artifact_size_MiB",
    "agreement_max_abs": "agreement_max_abs",
    "agreement_max_rel": "agreement_max_rel",
    "argmax_agreement": "argmax_agreement_pct",
}
"""Metrics of a `deploy` cell -> the grid's columns."""

COLUMNS = [
    "variant", "model", "backend", "precision", "status", "reason", "device", "resolution", "batch_size",
    *TIMING.values(), "noisy", "memory_kind", "speedup_vs_eager_fp32", "build_time_s", "cache_hit",
    "artifact_build_s", "artifact_size_MiB", "agreement_max_abs", "agreement_max_rel", "argmax_agreement_pct",
    "tolerance_rel", "tolerance_argmax_pct", "agreement_images", "clean_miou", "delta_miou_pp", "mPC",
    "delta_mPC_pp",
]  # fmt: skip
"""The grid's columns (its CSV form), one row per variant."""


@dataclass
class DeployGrid:
    """The deployment grid of a run.

    Attributes:
        table: one row per variant (`COLUMNS`), per model: eager fp32 first, then backends and precisions in the
            contract's order (`DEPLOY_BACKENDS`, `DEPLOY_PRECISIONS`).
        settings: per model, the timing setting its variants are compared at: resolution, batch_size, device,
            device_name, threads (text; '' when unknown).
        other_settings: the models with timing rows at other settings too (shown in the efficiency table only).
    """

    table: pd.DataFrame
    settings: dict[str, dict[str, str]] = field(default_factory=dict)
    other_settings: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.table["model"]))

    def status(self, status: str) -> pd.DataFrame:
        """The variants of one status."""
        return self.table[self.table["status"] == status]

    def not_built(self) -> list[tuple[str, str, list[str]]]:
        """What could not be built here: (status, reason, ["backend precision" or the variant name, ...]), one entry per
        distinct reason. The reason loses its `<backend> [<precision>]:` prefix (the labels say it); a label names the
        variant in full when the grid has several models and not all of them miss it."""
        rows = self.table[self.table["status"].isin(NOT_BUILT)]
        out = []
        for (status, reason), group in rows.groupby(["status", rows["reason"].map(short_reason)], sort=False):
            labels = []
            for (backend, precision), same in group.groupby(["backend", "precision"], sort=False):
                every = set(same["model"]) == set(self.models)
                labels += [f"{backend} {precision}"] if every else list(same["variant"])
            out.append((status, reason, labels))
        return out


def short_reason(reason: object) -> str:
    """`tensorrt fp16: needs a CUDA GPU (...)` -> `needs a CUDA GPU (...)`; a reason without such a prefix as is."""
    text = "" if reason is None or pd.isna(reason) else str(reason).strip()
    head, sep, rest = text.partition(": ")
    words = head.split()
    if sep and rest and words and words[0] in DEPLOY_BACKENDS and all(w in DEPLOY_PRECISIONS for w in words[1:]):
        return rest
    return text or "no reason recorded"


def is_true(value: object) -> bool:
    """A flag as results.csv may hold it: True, "True", "true", 1, 1.0."""
    return str(value).strip().lower() in ("true", "1", "1.0")


def _first(rows: pd.DataFrame, column: str) -> object:
    """The first non-missing value of a column (None when the column is absent or empty)."""
    if column not in rows.columns:
        return None
    values = rows[column].dropna()
    values = values[values.astype(str) != ""]
    return values.iloc[0] if len(values) else None


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _order(variant: tuple[str, str, str]) -> tuple:
    _, backend, precision = variant
    return (
        (backend, precision) != DEPLOY_REFERENCE,
        DEPLOY_BACKENDS.index(backend) if backend in DEPLOY_BACKENDS else len(DEPLOY_BACKENDS),
        backend,
        DEPLOY_PRECISIONS.index(precision),
    )


def deploy_grid(frame: pd.DataFrame, eff: pd.DataFrame, summary: pd.DataFrame, clean: pd.Series) -> DeployGrid | None:
    """The grid of a run (None when it has no `deploy` rows).

    Args:
        frame: the run's tidy rows (`tables.normalize_results`).
        eff: its efficiency rows (`tables.efficiency_rows`: key columns as text).
        summary: summary.csv (mPC, delta_miou, delta_mPC per variant).
        clean: clean mIoU (%) per model name.
    """
    deploy = frame[frame["condition"] == "deploy"]
    variants = {m: deploy_variant(m) for m in dict.fromkeys(frame["model"])}
    variants = {m: v for m, v in variants.items() if v is not None}
    deployed = [m for m in dict.fromkeys(deploy["model"]) if m in variants]
    if not deployed:
        return None
    bases = list(dict.fromkeys(variants[m][0] for m in deployed))
    names = sorted(
        (m for m, v in variants.items() if v[0] in bases),
        key=lambda m: (bases.index(variants[m][0]), _order(variants[m])),
    )
    scores = _summary(summary)
    settings, others, timing = {}, [], {}
    for base in bases:
        mine = eff[eff["model"].isin([m for m in names if variants[m][0] == base])]
        setting, many = _setting(mine)
        if setting:
            settings[base] = setting
        if many:
            others.append(base)
        timing[base] = mine
    rows = []
    for name in names:
        base, backend, precision = variants[name]
        row = {"variant": name, "model": base, "backend": backend, "precision": precision}
        row |= _timing(timing[base], name, settings.get(base, {}))
        row |= _deploy_cell(deploy[deploy["model"] == name])
        row["device"] = row.get("device") or settings.get(base, {}).get("device")
        row["clean_miou"] = float(clean.get(name, np.nan))
        for column in ("delta_miou_pp", "mPC", "delta_mPC_pp"):
            row[column] = scores.get((name, column), np.nan)
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["speedup_vs_eager_fp32"] = _speedups(table)
    return DeployGrid(table, settings, others)


def _summary(summary: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(variant, column) -> value of summary.csv's mPC (corrupted), delta_miou (clean) and delta_mPC (corrupted)."""
    if summary.empty:
        return {}
    out = {}
    for metric, condition, column in (
        ("mPC", "corrupted", "mPC"),
        ("delta_miou", "clean", "delta_miou_pp"),
        ("delta_mPC", "corrupted", "delta_mPC_pp"),
    ):
        rows = summary[(summary["metric"] == metric) & (summary["condition"] == condition)]
        for model, value in zip(rows["model"], rows["value"]):
            out[str(model), column] = float(value)
    return out


def _deploy_cell(rows: pd.DataFrame) -> dict[str, object]:
    """A variant's `deploy` cell: status and reason, build, artifact and agreement numbers."""
    if rows.empty:
        return {"status": UNCHECKED, "reason": "no deploy cell for this variant in the run"}
    values = rows.groupby("metric", sort=False)["value"].last()
    status = _first(rows, "status")
    if status is None:  # rows written before the status column: the flag rows say it
        flagged = [s for s in NOT_BUILT if s in values.index]
        status = flagged[0] if flagged else "agrees" if is_true(values.get("agrees")) else "disagrees"
    out: dict[str, object] = {"status": str(status), "reason": _first(rows, "reason"), "device": _first(rows, "device")}
    out |= {column: values.get(metric, np.nan) for metric, column in DEPLOY.items()}
    build = rows[rows["metric"] == "build_time"]
    cache_hit = _first(build, "cache_hit")
    out["cache_hit"] = None if cache_hit is None else is_true(cache_hit)
    out["artifact_build_s"] = _first(build, "artifact_build_s")
    agreement = rows[rows["metric"] == "agreement_max_rel"]
    out["tolerance_rel"] = _first(agreement, "tolerance_rel")
    out["tolerance_argmax_pct"] = _first(agreement, "tolerance_argmax")
    out["agreement_images"] = _first(agreement, "images")
    return out


def _setting(eff: pd.DataFrame) -> tuple[dict[str, str], bool]:
    """The timing setting that covers most of a model's variants (batch 1 first, then the largest resolution), and
    whether the variants were timed at other settings too."""
    timed = eff[eff["metric"] == "latency_median"]
    key = best_group(timed, list(TIMING_KEYS), {"batch_size": ("1",)})
    if key is None:
        return {}, False
    named = dict(zip(TIMING_KEYS, key))
    rows = _at(timed, named)
    named["device_name"] = _text(_first(rows, "device_name"))
    named["threads"] = _text(_first(rows, "threads"))
    many = len(timed.drop_duplicates(list(TIMING_KEYS))) > 1
    return named, many


def _at(eff: pd.DataFrame, setting: dict[str, str]) -> pd.DataFrame:
    mask = np.logical_and.reduce([eff[k] == setting[k] for k in TIMING_KEYS], initial=True)
    return eff[mask]


def _timing(eff: pd.DataFrame, variant: str, setting: dict[str, str]) -> dict[str, object]:
    """A variant's latency, throughput and peak memory at the model's timing setting."""
    out: dict[str, object] = {column: np.nan for column in TIMING.values()}
    if not setting:
        return out
    rows = _at(eff[eff["model"] == variant], setting)
    rows = rows[rows["metric"].isin(tuple(TIMING))]
    if rows.empty:
        return out
    values = rows.groupby("metric")["value"].first()
    out |= {column: values.get(metric, np.nan) for metric, column in TIMING.items()}
    out |= {"resolution": setting["resolution"], "batch_size": setting["batch_size"]}
    out["noisy"] = any(is_true(v) for v in rows.get("noisy", ()))
    out["memory_kind"] = _first(rows[rows["metric"] == "peak_memory"], "memory_kind")
    return out


def _speedups(table: pd.DataFrame) -> pd.Series:
    """Eager fp32's median latency / the variant's, per variant (NaN for a variant that does not agree)."""
    medians = dict(zip(table["variant"], table["latency_median_ms"]))
    out = []
    for row in table.itertuples():
        reference = medians.get(variant_name(row.model, *DEPLOY_REFERENCE), np.nan)
        agrees = row.status == "agrees" or (row.backend, row.precision) == DEPLOY_REFERENCE
        out.append(reference / row.latency_median_ms if agrees and row.latency_median_ms > 0 else np.nan)
    return pd.Series(out, index=table.index, dtype=float)


def disagreeing(frame: pd.DataFrame) -> list[str]:
    """The variants whose `deploy` cell says their logits disagree with eager fp32."""
    deploy = frame[(frame["condition"] == "deploy") & frame["model"].map(lambda m: deploy_variant(m) is not None)]
    if "status" not in deploy.columns:
        flags = deploy[deploy["metric"] == "agrees"]
        return list(dict.fromkeys(flags.loc[~flags["value"].map(is_true), "model"]))
    return list(dict.fromkeys(deploy.loc[deploy["status"] == "disagrees", "model"]))


def not_built(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Variant -> (status, reason) for those that could not be built on the run's machine (no other rows)."""
    deploy = frame[(frame["condition"] == "deploy") & frame["metric"].isin(NOT_BUILT)]
    out = {}
    for model, rows in deploy.groupby("model", sort=False):
        status = _first(rows, "status") or rows["metric"].iloc[0]
        out[str(model)] = (str(status), short_reason(_first(rows, "reason")))
    return out


def trade_off_points(grid: DeployGrid) -> pd.DataFrame:
    """The figure's points: per built variant with a median latency, its Δ clean mIoU (pp; eager fp32 at 0 by
    definition); variants without a measured Δ are left out."""
    table = grid.table[~grid.table["status"].isin(NOT_BUILT)].copy()
    reference = [(b, p) == DEPLOY_REFERENCE for b, p in zip(table["backend"], table["precision"])]
    table["reference"] = reference
    table["delta"] = table["delta_miou_pp"].where(~table["reference"], 0.0)
    return table.dropna(subset=["latency_median_ms", "delta"])[
        ["variant", "model", "backend", "precision", "status", "reference", "latency_median_ms", "delta"]
    ]
