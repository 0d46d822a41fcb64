"""Calibration under shift, as tables: the run's ece / nll / brier rows per condition, ECE against severity per
corruption category, the per-model summary, the worst corrupted (and attacked) condition, and the reliability
diagram's points from a cell's binned sums (`bench.results.store.RunFolder.calibration`).

Every function reads what the run wrote (the tidy rows of `tables.normalize_results`, the cells' calibration sums)
and computes nothing the run did not: ECE, NLL and Brier are the run's own numbers, averaged where a table says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from segbench.bench.results.axes import ADVERSARIAL_CATEGORY as ADVERSARIAL
from segbench.bench.results.axes import REAL_WORLD_CATEGORY
from segbench.bench.results.schema import CALIBRATION_METRICS as METRICS
from segbench.bench.results.schema import ECE

CATEGORY_ORDER = ("blur", "noise", "digital", "weather", "other")

RELIABILITY_COLUMNS = ["bin", "lower", "upper", "count", "accuracy", "confidence"]
"""A reliability diagram's points, one row per bin with pixels (`reliability`)."""

KEYS = ["model", "condition", "category", "corruption", "severity"]


def calibration_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, condition) with its ece (%), nll and brier from the run's rows; columns `KEYS` + `METRICS`.

    Clean rows have category "clean" and severity 0; a corrupted row without a known category is "other"; real-world
    rows keep "real-world". A condition stored twice is averaged. Empty (with the columns) when the run has no ece
    rows.
    """
    rows = frame[frame["metric"].isin(METRICS) & (frame["condition"] != "efficiency") & frame["value"].notna()]
    if not (rows["metric"] == ECE).any():
        return pd.DataFrame(columns=[*KEYS, *METRICS])
    rows = rows.assign(
        category=rows["category"].fillna("other"),
        corruption=rows["corruption"].where(rows["condition"] != "clean", "clean").fillna(""),
        severity=pd.to_numeric(rows["severity"], errors="coerce").fillna(-1).astype(int),
    )
    wide = rows.pivot_table(index=KEYS, columns="metric", values="value", aggfunc="mean", sort=False)
    wide = wide.reindex(columns=list(METRICS)).reset_index()
    wide["severity"] = wide["severity"].where(wide["severity"] >= 0, np.nan)
    wide.columns.name = None
    return wide


def corrupted(cal: pd.DataFrame) -> pd.DataFrame:
    """The rows of corruptions (not clean, real-world or attacks) with a severity."""
    other = cal["category"].isin(("clean", REAL_WORLD_CATEGORY, ADVERSARIAL))
    return cal[~other & cal["severity"].notna()]


def severity_curves(cal: pd.DataFrame) -> pd.DataFrame:
    """ECE (%) against severity per model and corruption category: the mean over the category's corruptions measured
    at that severity, with the model's clean ECE at severity 0. Columns model, category, severity, ece, corruptions
    (how many were averaged); categories in paper order."""
    shifted = corrupted(cal)
    if shifted.empty:
        return pd.DataFrame(columns=["model", "category", "severity", ECE, "corruptions"])
    curves = shifted.groupby(["model", "category", "severity"], sort=False, as_index=False).agg(
        ece=(ECE, "mean"), corruptions=("corruption", "nunique")
    )
    clean = cal[cal["category"] == "clean"].groupby("model", sort=False)[ECE].mean()
    starts = [
        {"model": m, "category": c, "severity": 0, ECE: clean[m], "corruptions": 0}
        for m, c in curves[["model", "category"]].drop_duplicates().itertuples(index=False)
        if m in clean.index
    ]
    curves = pd.concat([pd.DataFrame(starts, columns=curves.columns), curves], ignore_index=True)
    rank = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    curves["_rank"] = [rank.get(c, len(rank)) for c in curves["category"]]
    curves = curves.sort_values(["_rank", "category", "model", "severity"], kind="stable").drop(columns="_rank")
    curves["severity"] = curves["severity"].astype(int)
    return curves.reset_index(drop=True)


def summary_table(cal: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Per model: clean ECE (%), NLL and Brier, and the mean corrupted ECE (%): the mean over corruptions of the ECE
    averaged over the severities measured (as mPC averages mIoU), with the number of corruptions. Models without a
    calibration row are left out."""
    clean = cal[cal["category"] == "clean"].groupby("model", sort=False)[list(METRICS)].mean()
    shifted = corrupted(cal)
    per_corruption = shifted.groupby(["model", "corruption"], sort=False)[ECE].mean()
    mean = per_corruption.groupby(level="model", sort=False).mean()
    count = per_corruption.groupby(level="model", sort=False).size()
    shown = [m for m in models if m in set(cal["model"])]
    table = pd.DataFrame(index=pd.Index(shown, name="model"))
    for metric in METRICS:
        table[f"clean_{metric}"] = clean[metric].reindex(shown) if len(clean) else np.nan
    table[f"corrupted_{ECE}"] = mean.reindex(shown) if len(mean) else np.nan
    table["corruptions"] = count.reindex(shown).fillna(0).astype(int) if len(count) else 0
    return table.reset_index()


def worst(cal: pd.DataFrame, model: str, attacks: bool = False) -> pd.Series | None:
    """The model's condition with the highest ECE among the corruptions (or, with `attacks`, among the attack
    conditions), as its calibration row; None when it has none. Ties: the first in the run's order."""
    pool = cal[cal["category"] == ADVERSARIAL] if attacks else corrupted(cal)
    pool = pool[(pool["model"] == model) & pool[ECE].notna()]
    return None if pool.empty else pool.loc[pool[ECE].idxmax()]


def real_world_table(cal: pd.DataFrame) -> pd.DataFrame:
    """The real-world conditions' ECE (%), NLL and Brier per model and condition (empty without such rows)."""
    real = cal[cal["category"] == REAL_WORLD_CATEGORY]
    return real[["model", "condition", *METRICS]].reset_index(drop=True)


def reliability(sums: Mapping) -> pd.DataFrame:
    """A reliability diagram's points from a cell's calibration sums: per bin with pixels, its edges, pixel count,
    accuracy (correct / count) and mean confidence (confidence / count). Empty bins are left out."""
    bins = int(sums["bins"])
    count = np.asarray(sums["count"], dtype=np.int64)
    correct = np.asarray(sums["correct"], dtype=np.int64)
    confidence = np.asarray(sums["confidence"], dtype=np.float64)
    kept = count > 0
    index = np.arange(bins)[kept]
    return pd.DataFrame(
        {
            "bin": index,
            "lower": index / bins,
            "upper": (index + 1) / bins,
            "count": count[kept],
            "accuracy": correct[kept] / count[kept],
            "confidence": confidence[kept] / count[kept],
        }
    )


def diagram_panels(
    cal: pd.DataFrame, sums: Mapping[tuple[str, str], Mapping], models: Sequence[str]
) -> list[tuple[str, str, str, float, pd.DataFrame]]:
    """The reliability panels to draw: per model, clean, its worst corruption and its worst attack (those measured and
    whose cell holds calibration sums), as (model, role, condition, ECE %, `reliability` points)."""
    panels = []
    for model in models:
        clean = cal[(cal["model"] == model) & (cal["category"] == "clean")]
        chosen = [("clean", clean.iloc[0] if len(clean) else None)]
        chosen += [("worst corruption", worst(cal, model)), ("worst attack", worst(cal, model, attacks=True))]
        for role, row in chosen:
            if row is None or (model, row["condition"]) not in sums:
                continue
            points = reliability(sums[(model, row["condition"])])
            panels.append((model, role, str(row["condition"]), float(row[ECE]), points))
    return panels
