"""The report's real-world tables: mIoU under the real adverse conditions (ACDC, Dark Zurich, Foggy Cityscapes) with
the drop from clean, per-class IoU per condition, the published SemSegBench figures beside them, and the words that
say whether Cityscapes-C ranks the models as the real conditions do (pandas only; no torch).

Like `reports.tables`, this module computes no score of its own: per-condition mIoU and per-class IoU are rows of
`results.csv`; dataset means and drops from clean are rows of `summary.csv`; the synthetic/real pairs and their
Pearson and Spearman correlations are `bench.results.prediction_table` (which uses
`bench.measure.robustness.correlation`). Published numbers are read from `reports/reference/semsegbench_*.csv`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segbench.bench.results.axes import REAL_WORLD, REAL_WORLD_NAMES, real_condition, real_conditions
from segbench.bench.results.classes import ClassTable
from segbench.reports.tables import class_columns, class_key, is_accuracy, read_reference

MASKED_DATASETS = ("acdc", "dark_zurich")
"""The real-world datasets that ship invalid-region (invIds) masks; Foggy Cityscapes has none."""

SEMSEGBENCH = "SemSegBench, Agnihotri et al., arXiv 2505.18015"
SEMSEGBENCH_SOURCE = f"published: {SEMSEGBENCH}"
"""The `source` of published rows in the CSV tables."""

REAL_WORLD_SUITES = ("acdc", "dark-zurich", "foggy-cityscapes", "robustness")
"""The suites that measure real-world conditions (named in the report when a run has none)."""


# --------------------------------------------------------------------------------------------------------------------
# Published numbers
# --------------------------------------------------------------------------------------------------------------------


def reference_semsegbench() -> pd.DataFrame:
    """SemSegBench's Cityscapes table (clean mIoU, 15 corruptions at severity 3, ACDC all conditions), index: model
    (`segformer-b5-mmseg`, ...)."""
    return read_reference("semsegbench_cityscapes.csv", "model")


def reference_semsegbench_conditions() -> pd.DataFrame:
    """SemSegBench's per-condition ACDC mIoU where published (SegFormer-B5 only): `model, condition, miou`."""
    return read_reference("semsegbench_acdc_conditions.csv")


def semsegbench_match(model: str, published: Sequence[str]) -> str | None:
    """The published model a run model is held against: the same name, else `<name>-mmseg` (mmseg's re-implemented
    SegFormer checkpoints: our `segformer-b5` against its `segformer-b5-mmseg`); None when neither is published."""
    for name in (model, f"{model}-mmseg"):
        if name in published:
            return name
    return None


# --------------------------------------------------------------------------------------------------------------------
# Real-world conditions: mIoU and drop per model
# --------------------------------------------------------------------------------------------------------------------


def real_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The accuracy rows of real-world conditions (`acdc:fog`, ...), with a `real` column (the `Condition`)."""
    conditions = frame["condition"].map(real_condition)
    rows = frame[is_accuracy(frame) & conditions.notna() & frame["value"].notna()]
    return rows.assign(real=conditions[rows.index])


def short_label(name: str) -> str:
    """A column head under its dataset: `acdc:fog` -> "fog", `foggy_cityscapes:beta_0.01` -> "beta 0.01",
    `acdc` -> "mean"."""
    condition = real_condition(name)
    return "mean" if condition is None else str(condition.domain).replace("_", " ")


def long_label(name: str) -> str:
    """`acdc:fog` -> "ACDC fog", `acdc` -> "ACDC (mean over conditions)"."""
    condition = real_condition(name)
    return condition.label if condition is not None else f"{REAL_WORLD_NAMES[name]} (mean over conditions)"


@dataclass
class RealWorldTable:
    """mIoU per model under each measured real condition, beside clean.

    Attributes:
        groups: (dataset, column names) in `REAL_WORLD` order: its measured conditions (`acdc:fog`, ...) and, for a
            dataset of several conditions, the dataset (`acdc`: the mean over the model's measured conditions).
        columns: "clean", then every group's columns.
        values: models x columns, mIoU (%); conditions from results.csv, dataset means from summary.csv.
        drops: models x columns (but clean), the drop from clean in pp as summary.csv holds it (NaN: none).
        images: per condition column, the number of images (text: "500", or "480-500" when models differ).
        published: published rows (index: label), columns as `values`, NaN where nothing was published.
        matches: run model -> published model it is held against.
    """

    groups: list[tuple[str, list[str]]]
    columns: list[str]
    values: pd.DataFrame
    drops: pd.DataFrame
    images: dict[str, str]
    published: pd.DataFrame = field(default_factory=pd.DataFrame)
    matches: dict[str, str] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Run rows then published rows: `model, source, clean, <column>, <column>_drop_pp, ...` (CSV form)."""
        run = pd.DataFrame({"model": self.values.index, "source": "this run"})
        pub = pd.DataFrame({"model": self.published.index, "source": SEMSEGBENCH_SOURCE})
        for column in self.columns:
            run[column] = self.values[column].to_numpy()
            pub[column] = self.published[column].to_numpy() if len(pub) else []
            if column != "clean":
                run[f"{column}_drop_pp"] = self.drops[column].to_numpy()
                pub[f"{column}_drop_pp"] = np.nan
        return pd.concat([run, pub], ignore_index=True) if len(pub) else run


def real_world_table(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    models: Sequence[str],
    clean: pd.Series,
    compare: Sequence[str] | None = None,
) -> RealWorldTable | None:
    """The real-world table of a run (None when it has no real-world mIoU rows).

    Args:
        frame: the run's normalised rows (`tables.normalize_results`).
        summary: summary.csv (its real-world `miou_avg` and `drop` rows).
        models: row order.
        clean: clean mIoU per model.
        compare: the models held against published figures (None: all); the report leaves out models with random
            or synthetic-demo weights, whose numbers say nothing about the published checkpoints.
    """
    rows = real_rows(frame)
    miou = rows[rows["metric"] == "miou"]
    if miou.empty:
        return None
    measured = set(miou["condition"])
    groups = []
    for dataset in REAL_WORLD:
        names = [c.name for c in real_conditions((dataset,)) if c.name in measured]
        if names:
            groups.append((dataset, names + ([dataset] if len(REAL_WORLD[dataset]) > 1 else [])))
    columns = ["clean"] + [c for _, names in groups for c in names]
    shown = [m for m in models if m in set(miou["model"])]
    # a condition stored twice keeps its last value, as the contract's summary rows do
    values = miou.pivot_table(index="model", columns="condition", values="value", aggfunc="last", sort=False)
    real_summary = summary[summary["category"] == "real-world"] if not summary.empty else summary
    if not real_summary.empty:
        means = real_summary[real_summary["metric"] == "miou_avg"]
        means = means.pivot_table(index="model", columns="condition", values="value", aggfunc="last", sort=False)
        values = values.join(means[[c for c in means.columns if c in REAL_WORLD]], how="outer")
        drops = real_summary[real_summary["metric"] == "drop"]
        drops = drops.pivot_table(index="model", columns="condition", values="value", aggfunc="last", sort=False)
    else:
        drops = pd.DataFrame()
    values = values.reindex(index=shown, columns=columns).astype(float)
    values["clean"] = clean.reindex(shown).astype(float)
    drops = drops.reindex(index=shown, columns=columns[1:]).astype(float)
    counted = frame[(frame["metric"] == "num_images") & frame["condition"].isin([*measured, "clean"])]
    counted = counted[counted["model"].isin(shown) & counted["value"].notna()].groupby("condition")["value"]
    images = {}
    for name, low in counted.min().items():
        high = counted.max()[name]
        images[name] = f"{low:.0f}" if low == high else f"{low:.0f}-{high:.0f}"
    table = RealWorldTable(groups, columns, values, drops, images)
    _add_published(table, table.values.index if compare is None else [m for m in compare if m in table.values.index])
    return table


def _add_published(table: RealWorldTable, models: Sequence[str]) -> None:
    """SemSegBench rows for the run's models that match one: its clean and ACDC figures, and per-condition ACDC
    figures where published. A published row is kept only when one of its real-world figures has a column here."""
    published = reference_semsegbench()
    per_condition = reference_semsegbench_conditions()
    rows = {}
    for model in models:
        match = semsegbench_match(model, list(published.index))
        if match is None or match in rows:
            continue
        row = pd.Series(np.nan, index=table.columns, dtype=float)
        row["clean"] = published.loc[match, "clean_miou"]
        if "acdc" in table.columns:
            row["acdc"] = published.loc[match, "acdc_miou"]
        for r in per_condition[per_condition["model"] == match].itertuples():
            if r.condition in table.columns:
                row[r.condition] = r.miou
        if row.drop("clean").notna().any():
            rows[match] = row
            table.matches[model] = match
    table.published = pd.DataFrame(rows.values(), index=list(rows), columns=table.columns)


def published_notes(table: RealWorldTable) -> list[str]:
    """What the published rows are, with the source's caveats (empty when none is shown)."""
    if table.published.empty:
        return []
    pairs = ", ".join(f"{model} against {match}" for model, match in table.matches.items())
    notes = [
        f"Published numbers, not measured in this run ({SEMSEGBENCH}): {pairs}. They were evaluated with autocast "
        "on Cityscapes-trained mmseg checkpoints. A '-mmseg' model is mmseg's re-implemented SegFormer checkpoint "
        "(its decoder is 256 wide with a conv + BN + ReLU per branch), not the weights this run evaluated."
    ]
    if "acdc" in table.columns and table.published["acdc"].notna().any():
        text = (
            "The published ACDC figure covers all four conditions (which split is not stated); this run's ACDC "
            "'mean' averages the conditions it measured."
        )
        per_condition = reference_semsegbench_conditions()
        for model, group in per_condition.groupby("model", sort=False):
            if model in table.published.index and len(group) == len(REAL_WORLD["acdc"]):
                text += (
                    f" For {model} the published per-condition figures average {group['miou'].mean():.2f}, not "
                    f"its published {table.published.loc[model, 'acdc']:.2f}: the all-conditions figure is not "
                    "their mean."
                )
        notes.append(text)
    return notes


def format_drop(drop: float) -> str:
    """A drop from clean (pp, positive: worse) as the change it is: 21.0 -> "−21.0", -1.5 -> "+1.5"."""
    if drop is None or (isinstance(drop, float) and math.isnan(drop)):
        return ""
    return f"\u2212{drop:.1f}" if drop > 0 else f"+{-drop:.1f}" if drop < 0 else "\u00b10.0"


# --------------------------------------------------------------------------------------------------------------------
# Per-class IoU under each real condition
# --------------------------------------------------------------------------------------------------------------------


def real_class_iou(frame: pd.DataFrame, models: Sequence[str], classes: ClassTable) -> pd.DataFrame:
    """Per-class IoU (%) under each real condition: rows `model, condition` (models in order, conditions in
    `REAL_WORLD` order) x classes (the run's class order). Empty when the run has no real-world `iou_<class>` rows."""
    rows = real_rows(frame)
    rows = rows[rows["metric"].str.startswith("iou_")]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(cls=[class_key(m[len("iou_") :]) for m in rows["metric"]])
    matrix = rows.pivot_table(index=["model", "condition"], columns="cls", values="value", aggfunc="last")
    order = [c.name for c in real_conditions()]
    index = [(m, c) for m in models for c in order if (m, c) in matrix.index]
    return class_columns(matrix.reindex(index=pd.MultiIndex.from_tuples(index, names=["model", "condition"])), classes)


# --------------------------------------------------------------------------------------------------------------------
# Does Cityscapes-C predict the real world?
# --------------------------------------------------------------------------------------------------------------------


def pair_names(entry: Mapping[str, Any]) -> tuple[str, str]:
    """The two sides of a `prediction_table` entry in words: ("fog", "ACDC fog"), ("mPC", "ACDC (mean)")."""
    real = real_condition(entry["real"])
    where = real.label if real is not None else f"{REAL_WORLD_NAMES[entry['real']]} (mean)"
    return " + ".join(entry["synthetic"]), where


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ranks(values: Sequence[float]) -> list[int]:
    """Rank 1 = highest mIoU; ties share the better rank."""
    return [int(r) for r in pd.Series(values, dtype=float).rank(ascending=False, method="min")]


def rank_agreement(entry: Mapping[str, Any], most: int = 3) -> str:
    """One sentence on whether the synthetic and the real score order the models alike: "ranks agree" when they do,
    else the model(s) whose rank moves most ("segformer-b0 is 1st on fog but 3rd on ACDC fog")."""
    synthetic, real = pair_names(entry)
    label = f"{synthetic} \u2192 {real}"
    models = list(entry["models"])
    if len(models) < 2:
        return f"{label}: one model only, no ranking to compare."
    rx, ry = ranks(entry["x"]), ranks(entry["y"])
    if rx == ry:
        order = sorted(range(len(models)), key=lambda i: (rx[i], i))
        return f"{label}: ranks agree ({' > '.join(models[i] for i in order)})."
    shifts = [abs(a - b) for a, b in zip(rx, ry)]
    top = max(shifts)
    moved = [i for i, s in enumerate(shifts) if s == top][:most]
    parts = [f"{models[i]} is {ordinal(rx[i])} on {synthetic} but {ordinal(ry[i])} on {real}" for i in moved]
    return f"{label}: ranks differ; " + "; ".join(parts) + "."


PREDICTION_COLUMNS = ("pearson", "spearman", "pearson_rel", "spearman_rel")


def prediction_summary(pairs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per pair: `pair, synthetic, real, n` and the four correlations (NaN where none can be read)."""
    rows = []
    for entry in pairs:
        synthetic, real = pair_names(entry)
        row = {"pair": entry["label"], "synthetic": synthetic, "real": real, "n": int(entry["n"])}
        row |= {c: np.nan if entry.get(c) is None else float(entry[c]) for c in PREDICTION_COLUMNS}
        rows.append(row)
    return pd.DataFrame(rows, columns=["pair", "synthetic", "real", "n", *PREDICTION_COLUMNS])


def prediction_points(pairs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per pair and model: synthetic and real mIoU (%) and, where the model has a clean mIoU, both as a
    fraction of it."""
    rows = []
    for entry in pairs:
        relative = len(entry["x_rel"]) == len(entry["models"])
        for i, model in enumerate(entry["models"]):
            rows.append(
                {
                    "pair": entry["label"],
                    "model": model,
                    "synthetic_miou": entry["x"][i],
                    "real_miou": entry["y"][i],
                    "synthetic_rel": entry["x_rel"][i] if relative else np.nan,
                    "real_rel": entry["y_rel"][i] if relative else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=["pair", "model", "synthetic_miou", "real_miou", "synthetic_rel", "real_rel"])
