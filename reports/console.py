"""The results table printed at the end of a run (as lm-evaluation-harness prints its table), from the run folder.

One row per model: clean mIoU, mPC, rPC, mCE, each real-world dataset's mean mIoU and, for attacks, the worst-case
mIoU at the largest budget and the robustness area (from summary.csv, as the report shows them), parameters, GMACs
and latency (from results.csv). The efficiency columns name their resolution, batch size, counter and device in the
header, since a number without them says little.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segbench.bench.results.adversarial import AREA_PREFIX
from segbench.bench.results.axes import REAL_WORLD, REAL_WORLD_NAMES, WORST
from segbench.bench.results.schema import ADV_AREA, ADV_MIOU
from segbench.bench.results.store import RunFolder
from segbench.reports import tables as T

LATENCY_METRICS = ("latency_median", "latency_raw_median")
"""Latency rows the table takes, in order of preference (the plain timing; the calibrated probe's raw median)."""


def _largest_resolution(rows: pd.DataFrame) -> str | None:
    sizes = [r for r in rows["resolution"].dropna().unique() if isinstance(r, str) and "x" in r]
    return max(sizes, key=lambda r: int(r.split("x")[0]) * int(r.split("x")[1]), default=None)


def _efficiency_columns(eff: pd.DataFrame, models: list[str]) -> dict[str, pd.Series]:
    """Params (M), GMACs and latency (ms) per model, at the largest resolution timed, batch 1; latency in one column
    per device and precision."""
    out: dict[str, pd.Series] = {}
    params = eff[eff["metric"] == "params"].groupby("model", sort=False)["value"].last()
    if len(params):
        out["Params (M)"] = params.reindex(models)
    latency = eff[eff["metric"].isin(LATENCY_METRICS) & (pd.to_numeric(eff["batch_size"], errors="coerce") == 1)]
    size = _largest_resolution(latency) or _largest_resolution(eff[eff["metric"] == "gmacs"])
    gmacs = eff[(eff["metric"] == "gmacs") & (eff["resolution"] == size)]
    if len(gmacs):
        preferred = gmacs[gmacs["convention"] == "fvcore"] if (gmacs["convention"] == "fvcore").any() else gmacs
        convention = preferred["convention"].iloc[0] or "?"
        out[f"GMACs [{convention}, {size}]"] = preferred.groupby("model", sort=False)["value"].first().reindex(models)
    latency = latency[latency["resolution"] == size]
    for metric in LATENCY_METRICS:
        rows = latency[latency["metric"] == metric]
        if len(rows):  # one column per device and precision (a deploy grid's variants run their own precisions)
            keys = [rows[k].astype(object).where(rows[k].notna(), "?") for k in ("device", "precision")]
            for (device, precision), group in rows.groupby(keys, sort=False):
                label = f"Latency ms [{device}, {precision}, {size}, batch 1]"
                out[label] = group.groupby("model", sort=False)["value"].first().reindex(models)
            break
    return out


def _adversarial_columns(summary: pd.DataFrame) -> dict[str, pd.Series]:
    """The worst-case mIoU at the largest budget and the worst case's robustness area, per norm (summary.csv)."""
    out: dict[str, pd.Series] = {}
    area = summary[(summary["metric"] == ADV_AREA) & (summary["corruption"] == WORST)]
    for condition, rows in area.groupby("condition", sort=False):
        budget = str(condition).removeprefix(AREA_PREFIX)
        worst = summary[(summary["metric"] == ADV_MIOU) & (summary["condition"] == budget)]
        out[f"Worst-attack mIoU [{budget}]"] = worst.groupby("model", sort=False)["value"].last()
        out[f"Attack area [0 to {budget}]"] = rows.groupby("model", sort=False)["value"].last()
    return out


def results_table(run_dir: str | Path) -> pd.DataFrame:
    """Per model: clean mIoU, mPC, rPC, mCE (reference named), params, GMACs and latency; empty columns dropped."""
    folder = RunFolder(run_dir)
    raw, source = folder.rows()
    frame = T.normalize_results(raw, source)
    models = T.model_order(frame)
    table = pd.DataFrame(index=pd.Index(models, name="Model"))
    conditions = T.miou_conditions(frame)
    clean = conditions[conditions["corruption"] == "clean"].groupby("model", sort=False)["miou"].mean()
    table["Clean mIoU"] = clean.reindex(models)
    summary = folder.summary()
    if not summary.empty:
        overall = summary[summary["condition"] == "corrupted"]
        wide = overall.pivot_table(index="model", columns="metric", values="value", aggfunc="last", sort=False)
        reference = summary["reference"].dropna()
        labels = {"mPC": "mPC", "rPC": "rPC (%)", "mCE": f"mCE (%, vs {reference.iloc[0]})" if len(reference) else ""}
        for metric, label in labels.items():
            if metric in wide.columns and label:
                table[label] = wide[metric].reindex(models)
        means = summary[(summary["metric"] == "miou_avg") & summary["condition"].isin(list(REAL_WORLD))]
        for dataset, rows in means.groupby("condition", sort=False):
            values = rows.groupby("model", sort=False)["value"].last()
            table[f"{REAL_WORLD_NAMES[dataset]} mIoU"] = values.reindex(models)
        for label, values in _adversarial_columns(summary).items():
            table[label] = values.reindex(models)
    for label, values in _efficiency_columns(T.efficiency_rows(frame), models).items():
        table[label] = values
    return table.dropna(axis=1, how="all")


def _cell(value: object) -> str:
    """Two decimals, or three significant digits for a small non-zero number (a 0.0007 M model is not 0.00)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value == value and 0 < abs(value) < 0.1:
        return f"{value:.3g}"
    return T.format_number(value, 2)


def console_table(run_dir: str | Path) -> str | None:
    """`results_table` as aligned plain-text columns (pipes between them), or None when there is nothing to show."""
    table = results_table(run_dir)
    if table.empty or not len(table.columns):
        return None
    table = table.reset_index()
    cells = [[str(c) for c in table.columns]]
    cells += [[_cell(v) for v in row] for row in table.itertuples(False)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
