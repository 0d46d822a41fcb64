"""The report's deployment grid: each model per backend x precision, one row per *variant* (a model of its own named
`<model>@<backend>-<precision>`, `bench.results.variant_name`), pandas only (no torch).

A variant's row gathers what the run stored about it: its `deploy` cell (status, the one-line reason it could not be
built, build time and cache hit, artifact size, logit and argmax agreement with eager fp32 and the tolerance they were
held to), its efficiency rows (latency distribution, throughput, peak memory; energy per image and mean power where
NVML measured them) and its accuracy (clean mIoU from results.csv; mPC, `delta_miou` and `delta_mPC` from summary.csv,
written by the contract) and its speed-up over eager fp32 at the model's timing setting (summary.csv's `speedup`,
written only for a variant that agrees with eager fp32). Beside its latency, how close it runs to the hardware:
summary.csv's `achieved_gmacs` (the architecture's GMACs under a named convention over the median latency at batch 1)
and `peak_share` (its share of the run's measured GEMM peak in the variant's precision; `gemm_peak_table` lists the
peaks). Like `reports.tables` this module computes no score.

Beside the grid, three views of the variants' other efficiency rows, each left out (an empty frame) when the run has
none of its rows (a deploy run of suite version 1 timed batch 1 at one resolution only):

* `batch_sweep`: throughput against batch size at the model's timing resolution, up to where the sweep stopped (an
  ``oom`` row marks a batch that ran out of memory);
* `latency_curve`: median latency at batch 1 against resolution (models timed at two resolutions or more);
* `end_to_end`: a PNG on disk to labels on the host (`bench.measure.end_to_end`), per stage, whole image and sliding
  window, beside the model-only latency of the sweep at the same resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from segbench.bench.results.schema import (
    ACHIEVED_GMACS,
    DEPLOY_BACKENDS,
    DEPLOY_PRECISIONS,
    DEPLOY_REFERENCE,
    E2E_STAGES,
    GEMM_PEAK,
    LATENCY_E2E_MEDIAN,
    LATENCY_E2E_P90,
    LATENCY_E2E_P99,
    LATENCY_STAGE,
    PEAK_SHARE,
    SPEEDUP,
    THROUGHPUT_E2E,
    deploy_variant,
)
from segbench.bench.results.summaries import SPEEDUP_SETTING
from segbench.reports.tables import best_group

DEPLOY_SUITE = "deploy"
"""The suite that measures the grid (named in the report when a run has none)."""

NOT_BUILT = ("unavailable", "failed")
"""Statuses of a variant that could not be built on the run's machine: it has no timing and no accuracy."""

UNCHECKED = "unchecked"
"""The status of a variant with rows but no `deploy` cell: whether it agrees with eager fp32 is unknown."""

TIMING = {
    "latency_median": "latency_median_ms",
    "latency_p90": "latency_p90_ms",
    "latency_p99": "latency_p99_ms",
    "latency_iqr": "latency_iqr_ms",
    "latency_cv": "latency_cv",
    "throughput": "throughput_img_s",
    "peak_memory": "peak_memory_MiB",
    "energy_per_image": "energy_per_image_J",
    "power_mean": "power_mean_W",
}
"""Efficiency metrics of a variant -> the grid's columns (with their units). Energy and power are GPU-only (NVML): the
columns stay empty on other machines."""

ENERGY = ("energy_per_image_J", "power_mean_W")
"""The grid's energy columns (shown only when a variant has a value)."""

DEPLOY = {
    "build_time": "build_time_s",
    "artifact_size": "artifact_size_MiB",
    "agreement_max_abs": "agreement_max_abs",
    "agreement_max_rel": "agreement_max_rel",
    "argmax_agreement": "argmax_agreement_pct",
}
"""Metrics of a `deploy` cell -> the grid's columns."""

PEAK = ["gmacs", "convention", "gmacs_per_s", "peak_share_pct", "peak_gflops"]
"""The grid's closeness-to-the-hardware columns: the architecture's GMACs per image and their convention, GMAC/s at
the timing setting (batch 1), the share (%) of the GEMM peak of the variant's precision and that peak (GFLOP/s)."""

COLUMNS = [
    "variant", "model", "backend", "precision", "status", "reason", "device", "resolution", "batch_size",
    *TIMING.values(), *PEAK, "energy_source", "noisy", "memory_kind", "speedup_vs_eager_fp32", "build_time_s",
    "cache_hit",
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
        peaks: the run's GEMM peaks (`gemm_peak_table`; empty when it measured none).
    """

    table: pd.DataFrame
    settings: dict[str, dict[str, str]] = field(default_factory=dict)
    other_settings: list[str] = field(default_factory=list)
    peaks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PEAK_TABLE))

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.table["model"]))

    @property
    def has_peak(self) -> bool:
        """Whether the grid shows closeness to the hardware: a variant has GMAC/s, or the run measured a GEMM peak."""
        return bool(self.table["gmacs_per_s"].notna().any()) or not self.peaks.empty

    @property
    def conventions(self) -> list[str]:
        """The FLOP conventions of the grid's GMAC/s, in order of first appearance."""
        return [c for c in dict.fromkeys(self.table["convention"].dropna()) if isinstance(c, str) and c]

    @property
    def has_energy(self) -> bool:
        """Whether any variant has an energy or power value at its model's timing setting."""
        return bool(self.table[list(ENERGY)].notna().any().any())

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
        summary: summary.csv (mPC, delta_miou, delta_mPC per variant; speedup per variant and timing setting).
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
    scores, speedups, closeness = _summary(summary), _speedups(summary), _closeness(summary)
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
        setting = settings.get(base, {})
        key = (name, *(setting.get(k, "") for k in SPEEDUP_SETTING))
        row["speedup_vs_eager_fp32"] = speedups.get(key, np.nan)
        row |= closeness.get(key, {})
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return DeployGrid(table, settings, others, gemm_peak_table(frame))


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
    key = best_group(timed, list(SPEEDUP_SETTING), {"batch_size": ("1",)})
    if key is None:
        return {}, False
    named = dict(zip(SPEEDUP_SETTING, key))
    rows = _at(timed, named)
    named["device_name"] = _text(_first(rows, "device_name"))
    named["threads"] = _text(_first(rows, "threads"))
    many = len(timed.drop_duplicates(list(SPEEDUP_SETTING))) > 1
    return named, many


def _at(eff: pd.DataFrame, setting: dict[str, str]) -> pd.DataFrame:
    mask = np.logical_and.reduce([eff[k] == setting[k] for k in SPEEDUP_SETTING], initial=True)
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
    out["energy_source"] = _first(rows[rows["metric"].isin(("energy_per_image", "power_mean"))], "energy_source")
    return out


def _speedups(summary: pd.DataFrame) -> dict[tuple[str, ...], float]:
    """(variant, resolution, batch_size, device) -> summary.csv's speed-up over eager fp32 (keys as text)."""
    if summary.empty or not set(SPEEDUP_SETTING) <= set(summary.columns):
        return {}
    rows = summary[summary["metric"] == SPEEDUP]
    keys = [rows["model"].astype(str), *(_key_text(rows, k) for k in SPEEDUP_SETTING)]
    return {tuple(key): float(value) for *key, value in zip(*keys, rows["value"])}


def _closeness(summary: pd.DataFrame) -> dict[tuple[str, ...], dict[str, object]]:
    """(variant, resolution, batch_size, device) -> its `PEAK` columns, from summary.csv's `achieved_gmacs` and
    `peak_share` rows (keys as text); a variant without a peak in its precision has no `peak_share_pct`."""
    if summary.empty or not set(SPEEDUP_SETTING) <= set(summary.columns):
        return {}
    out: dict[tuple[str, ...], dict[str, object]] = {}
    for metric, column in ((ACHIEVED_GMACS, "gmacs_per_s"), (PEAK_SHARE, "peak_share_pct")):
        rows = summary[summary["metric"] == metric]
        keys = zip(rows["model"].astype(str), *(_key_text(rows, k) for k in SPEEDUP_SETTING))
        for key, (_, r) in zip(keys, rows.iterrows()):
            entry = out.setdefault(key, {"gmacs": r.get("gmacs"), "convention": r.get("convention")})
            entry[column] = float(r["value"])
            if metric == PEAK_SHARE:
                entry["peak_gflops"] = r.get("peak_gflops")
    return out


PEAK_TABLE = ["precision", "device", "device_name", "gflops", "size", "threads", "repeats", "best_ms"]
"""`gemm_peak_table`'s columns."""


def gemm_peak_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The run's measured GEMM peaks (`GEMM_PEAK` rows of its machine cell): one row per precision and device, in
    `DEPLOY_PRECISIONS` order (`PEAK_TABLE`; GFLOP/s, the matrices' side, threads, the best of `repeats` in ms)."""
    rows = frame[(frame["metric"] == GEMM_PEAK) & frame["value"].notna()]
    table = rows.rename(columns={"value": "gflops"}).reindex(columns=PEAK_TABLE)
    table = table.drop_duplicates(["precision", "device"], keep="last")
    for column in ("size", "threads", "repeats"):  # counts, as results.csv's floats read them back
        counts = pd.to_numeric(table[column], errors="coerce")
        if counts.notna().all() and (counts == counts.round()).all():
            table[column] = counts.astype(int)
    order = table["precision"].map(lambda p: DEPLOY_PRECISIONS.index(p) if p in DEPLOY_PRECISIONS else 99)
    return table.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


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


def peak_points(grid: DeployGrid) -> pd.DataFrame:
    """The share-of-peak figure's bars: per built variant with a GMAC/s, in the grid's order (`peak_share_pct` NaN
    where its precision has no measured GEMM peak)."""
    table = grid.table[~grid.table["status"].isin(NOT_BUILT)]
    columns = ["variant", "model", "backend", "precision", "status", "gmacs_per_s", "peak_share_pct"]
    return table.dropna(subset=["gmacs_per_s"])[columns]


# --------------------------------------------------------------------------------------------------------------------
# Beside the grid: throughput against batch size, latency against resolution, model only against end to end
# --------------------------------------------------------------------------------------------------------------------

OOM = "oom"
"""The metric of a batch that ran out of memory (value 1, unit "flag"; `bench.measure.efficiency.efficiency_sweep`)."""

VARIANT_KEYS = ["variant", "model", "backend", "precision", "status", "device", "device_name", "threads"]
"""The first columns of every view: the variant and the machine its rows were measured on."""

SWEEP_COLUMNS = [*VARIANT_KEYS, "resolution", "batch_size", "throughput_img_s", "latency_median_ms", "oom", "noisy",
                 "best"]  # fmt: skip
"""`batch_sweep`'s columns: one row per variant and batch size; ``best`` marks the variant's highest throughput."""

CURVE_COLUMNS = [*VARIANT_KEYS, "resolution", "megapixels", "latency_median_ms", "noisy"]
"""`latency_curve`'s columns: one row per variant and resolution, at batch 1."""


def _built(grid: DeployGrid) -> pd.DataFrame:
    """The variants that were built (they have rows), in the grid's order."""
    table = grid.table[~grid.table["status"].isin(NOT_BUILT)]
    return table[["variant", "model", "backend", "precision", "status"]]


def _key_text(rows: pd.DataFrame, column: str) -> pd.Series:
    """A key column as text ('' when absent or missing), integral floats without their '.0'."""
    if column not in rows.columns:
        return pd.Series("", index=rows.index, dtype=object)
    return rows[column].map(_text)


def _machine(variant: pd.Series, rows: pd.DataFrame) -> dict[str, object]:
    """A view row's first columns: the variant, and the device (name, threads) its rows were measured on."""
    keys = {k: variant[k] for k in ("variant", "model", "backend", "precision", "status")}
    keys["device"] = _text(_first(rows, "device"))
    keys["device_name"] = _text(_first(rows, "device_name"))
    keys["threads"] = _text(_first(rows, "threads"))
    return keys


def _model_rows(eff: pd.DataFrame, grid: DeployGrid, model: str, metrics: tuple[str, ...]) -> pd.DataFrame:
    """A model's built variants' rows of `metrics`, on the device of its timing setting (when it has one)."""
    built = _built(grid)
    names = built.loc[built["model"] == model, "variant"]
    rows = eff[eff["model"].isin(names) & eff["metric"].isin(metrics)]
    setting = grid.settings.get(model)
    return rows[rows["device"] == setting["device"]] if setting else rows


def batch_sweep(eff: pd.DataFrame, grid: DeployGrid) -> pd.DataFrame:
    """Throughput (img/s) and median latency (ms per batch) per batch size of each built variant (`SWEEP_COLUMNS`).

    A model is in it when its variants were timed at a batch size other than 1, or ran out of memory (an ``oom`` row),
    at one resolution: its timing setting's (`DeployGrid.settings`), else the one with most such rows. Each variant
    lists the batches its sweep timed (it stops at a batch that gains too little or runs out of memory, so variants
    may differ); an ``oom`` batch has no numbers. Empty when no model has such rows (a deploy run of suite version 1).
    """
    out = []
    built = _built(grid)
    for model in grid.models:
        rows = _model_rows(eff, grid, model, ("throughput", "latency_median", OOM))
        rows = rows[rows["batch_size"].str.fullmatch(r"\d+")]
        swept = rows[(rows["batch_size"] != "1") | (rows["metric"] == OOM)]
        if swept.empty:
            continue
        setting = grid.settings.get(model, {})
        counts = swept["resolution"].value_counts()
        resolution = setting.get("resolution") if setting.get("resolution") in counts.index else counts.idxmax()
        rows = rows[rows["resolution"] == resolution]
        for _, variant in built[built["model"] == model].iterrows():
            mine = rows[rows["model"] == variant["variant"]]
            for batch, group in sorted(mine.groupby("batch_size"), key=lambda item: int(item[0])):
                values = group.groupby("metric")["value"].first()
                oom = OOM in values.index
                out.append(
                    {
                        **_machine(variant, group),
                        "resolution": resolution,
                        "batch_size": int(batch),
                        "throughput_img_s": np.nan if oom else values.get("throughput", np.nan),
                        "latency_median_ms": np.nan if oom else values.get("latency_median", np.nan),
                        "oom": oom,
                        "noisy": any(is_true(v) for v in group.get("noisy", ())),
                    }
                )
    table = pd.DataFrame(out, columns=SWEEP_COLUMNS)
    table["best"] = False
    peaks = table.dropna(subset=["throughput_img_s"]).groupby("variant", sort=False)["throughput_img_s"].idxmax()
    table.loc[peaks.to_numpy(), "best"] = True
    return table


def _pixels(resolution: str) -> tuple[int, int] | None:
    height, sep, width = str(resolution).partition("x")
    return (int(height), int(width)) if sep and height.isdigit() and width.isdigit() else None


def latency_curve(eff: pd.DataFrame, grid: DeployGrid) -> pd.DataFrame:
    """Median latency at batch 1 (ms) per resolution of each built variant (`CURVE_COLUMNS`), for the models timed at
    two resolutions or more (at batch 1, on their timing setting's device); empty when there are none."""
    out = []
    built = _built(grid)
    for model in grid.models:
        rows = _model_rows(eff, grid, model, ("latency_median",))
        rows = rows[(rows["batch_size"] == "1") & rows["resolution"].map(lambda r: _pixels(r) is not None)]
        if rows["resolution"].nunique() < 2:
            continue
        for _, variant in built[built["model"] == model].iterrows():
            mine = rows[rows["model"] == variant["variant"]]
            for resolution, group in sorted(mine.groupby("resolution"), key=lambda item: math.prod(_pixels(item[0]))):
                out.append(
                    {
                        **_machine(variant, group),
                        "resolution": resolution,
                        "megapixels": math.prod(_pixels(resolution)) / 1e6,
                        "latency_median_ms": float(group["value"].iloc[0]),
                        "noisy": any(is_true(v) for v in group.get("noisy", ())),
                    }
                )
    return pd.DataFrame(out, columns=CURVE_COLUMNS)


def end_to_end(eff: pd.DataFrame, grid: DeployGrid) -> pd.DataFrame:
    """A PNG on disk to labels on the host, per built variant and inference mode (whole image first, then sliding
    window), from the rows of `bench.measure.end_to_end`; empty when the run has none.

    Columns: `VARIANT_KEYS`, ``resolution`` (the image's), ``inference``, ``crop``, ``stride``, ``num_crops`` (sliding
    window only), ``latency_e2e_median_ms``, ``latency_e2e_p90_ms``, ``latency_e2e_p99_ms``, ``throughput_e2e_img_s``,
    ``<stage>_ms`` and ``<stage>_pct`` for each of `bench.results.E2E_STAGES` (a stage's median, and its share of the
    stages' sum), ``stages_sum_ms``, ``not_model_pct`` (the share of that sum outside the model stage), and
    ``model_only_ms``: the variant's model-only median latency at batch 1 at the same resolution and device (the
    sweep's, a random tensor already on the device; whole image only).
    """
    totals = {
        LATENCY_E2E_MEDIAN: "latency_e2e_median_ms",
        LATENCY_E2E_P90: "latency_e2e_p90_ms",
        LATENCY_E2E_P99: "latency_e2e_p99_ms",
        THROUGHPUT_E2E: "throughput_e2e_img_s",
    }
    columns = [*VARIANT_KEYS, "resolution", "inference", "crop", "stride", "num_crops", *totals.values()]
    columns += [f"{s}_{unit}" for s in E2E_STAGES for unit in ("ms", "pct")]
    columns += ["stages_sum_ms", "not_model_pct", "model_only_ms"]
    rows = eff[eff["metric"].isin((*totals, LATENCY_STAGE))]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows.assign(inference=_key_text(rows, "inference"), stage=_key_text(rows, "stage"))
    model_only = eff[(eff["metric"] == "latency_median") & (eff["batch_size"] == "1")]
    order = {"whole": 0, "slide": 1}
    out = []
    for _, variant in _built(grid).iterrows():
        mine = rows[rows["model"] == variant["variant"]]
        groups = mine.groupby(["resolution", "inference", "device"], sort=False)
        for (resolution, inference, device), group in sorted(groups, key=lambda g: order.get(g[0][1], 2)):
            values = group[group["metric"] != LATENCY_STAGE].groupby("metric")["value"].first()
            stages = group[group["metric"] == LATENCY_STAGE].groupby("stage")["value"].first()
            row = {**_machine(variant, group), "resolution": resolution, "inference": inference}
            slide = group[group["metric"] == LATENCY_E2E_MEDIAN] if inference == "slide" else group.iloc[0:0]
            row |= {k: _text(_first(slide, k)) for k in ("crop", "stride", "num_crops")}
            row |= {column: values.get(metric, np.nan) for metric, column in totals.items()}
            total = float(stages.reindex(E2E_STAGES).sum(min_count=len(E2E_STAGES)))
            for stage in E2E_STAGES:
                row[f"{stage}_ms"] = stages.get(stage, np.nan)
                row[f"{stage}_pct"] = 100.0 * row[f"{stage}_ms"] / total if total > 0 else np.nan
            row["stages_sum_ms"] = total
            row["not_model_pct"] = 100.0 - row["model_pct"]
            alone = model_only[
                (model_only["model"] == variant["variant"])
                & (model_only["resolution"] == resolution)
                & (model_only["device"] == device)
            ]
            row["model_only_ms"] = float(alone["value"].iloc[0]) if inference == "whole" and len(alone) else np.nan
            out.append(row)
    return pd.DataFrame(out, columns=columns)


def e2e_stages(table: pd.DataFrame) -> list[str]:
    """The stages of an `end_to_end` table, in call order (its ``<stage>_pct`` columns)."""
    return [c.removesuffix("_pct") for c in table.columns if c.endswith("_pct") and c != "not_model_pct"]
