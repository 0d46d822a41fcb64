"""The report's numbers: a run folder's tidy rows turned into tables (pandas only; no torch).

The reporter computes no score of its own. The corruption axes, class names and palette come from the results
contract (`segbench.bench.results`), and every robustness score it shows (per-corruption and per-category mIoU
averages, mPC, rPC, CE, mCE, relative mCE) is a row of the run's `summary.csv`, written by the contract from the
formulas in `bench.measure.robustness`. All IoU-type numbers are in percent. Published reference numbers are read from
`reports/reference/*.csv` (copies of the SegFormer paper's Table 1 and Table 5, of the mmseg model zoo's
Cityscapes rows and of SemSegBench's Cityscapes table). Real-world conditions (ACDC, Dark Zurich, Foggy
Cityscapes) have their own tables in `reports.realworld`; the tables here leave them out (they are neither clean nor
a corruption).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from segbench.bench.results.axes import CATEGORIES, real_conditions, split_condition
from segbench.bench.results.axes import category_of as _contract_category
from segbench.bench.results.classes import ClassTable
from segbench.bench.results.io import not_a_number
from segbench.bench.results.schema import COLUMNS, MACHINE, REQUIRED_COLUMNS, deploy_variant

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

ACCURACY_METRICS = ("miou", "pixel_acc", "mean_acc")
FRACTION_UNITS = ("fraction", "ratio", "1")
LATENCY_METRICS = ("latency_median", "latency_p90", "throughput", "peak_memory")

CONVENTION_NOTES = {
    "fvcore": "fvcore FlopCountAnalysis on a traced forward; one fused multiply-add = 1 MAC (GFLOPs = 2 x GMACs)",
    "paper": "the SegFormer paper's rules (mmcv get_model_complexity_info module rules plus the attention matmuls "
    "added by hand); one multiply-add = 1 MAC, so the paper's 'GFLOPs' column is in GMACs",
    "torch": "PyTorch's torch.utils.flop_counter.FlopCounterMode on a real forward (matmul, conv and attention "
    "kernels); its FLOPs halved into MACs. Counted for models from hf:/py: sources and in-memory modules",
}

PUBLISHED_TABLE5 = "Xie et al., SegFormer (NeurIPS 2021), Table 5; rows other than SegFormer-B5 quoted there from "
PUBLISHED_TABLE5 += "Kamann & Rother (CVPR 2020). Published numbers, not measured in this run."


# --------------------------------------------------------------------------------------------------------------------
# Loading and normalising the tidy rows
# --------------------------------------------------------------------------------------------------------------------


def class_key(name: str) -> str:
    """`traffic light`, `traffic_light`, `Traffic-Light` -> `traffic_light` (the key that matches IoU columns)."""
    return re.sub(r"\W+", "_", str(name).strip().lower()).strip("_")


def category_of(corruption: str) -> str | None:
    """The contract's category of a corruption; None for a name the contract does not know."""
    try:
        return _contract_category(corruption)
    except ValueError:
        return None


def normalize_results(frame: pd.DataFrame, source: str = "results.csv") -> pd.DataFrame:
    """Fill missing columns, parse conditions and put every IoU-type metric in percent.

    Accuracy metrics (`miou`, `pixel_acc`, `mean_acc`, `iou_<class>`) with unit "%" are kept; with a fraction unit
    ("fraction", "ratio", "1") they are multiplied by 100. Without a usable unit, the rows are taken as fractions
    when every `miou` value is at most 1.0 (a percent mIoU of at most 1 is not a trained model's).

    Args:
        frame: rows as read from `results.csv`.
        source: file name for error messages.

    Raises:
        ValueError: a required column (model, metric, value) is missing or a value is not a number.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected at least {list(COLUMNS)}")
    frame = frame.copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame["model"] = frame["model"].astype(str)
    frame["metric"] = frame["metric"].astype(str)
    frame["condition"] = frame["condition"].where(frame["condition"].notna(), "").astype(str)
    bad = not_a_number(frame)
    if bad:
        raise ValueError(f"{source}: {bad}")
    frame["value"] = pd.to_numeric(frame["value"])

    parsed = [split_condition(c) for c in frame["condition"]]
    corruption = frame["corruption"].where(frame["corruption"].notna() & (frame["corruption"].astype(str) != ""))
    frame["corruption"] = [c if isinstance(c, str) else p[0] for c, p in zip(corruption, parsed)]
    severity = pd.to_numeric(frame["severity"], errors="coerce")
    frame["severity"] = [
        s if not math.isnan(s) else (p[1] if p[1] is not None else np.nan) for s, p in zip(severity, parsed)
    ]
    frame["severity"] = pd.to_numeric(frame["severity"], errors="coerce")
    clean = frame["condition"] == "clean"
    frame.loc[clean, "corruption"] = None
    frame.loc[clean, "severity"] = 0
    category = frame["category"].where(frame["category"].notna() & (frame["category"].astype(str) != ""))
    frame["category"] = [
        cat if isinstance(cat, str) else (category_of(cor) if isinstance(cor, str) else None)
        for cat, cor in zip(category, frame["corruption"])
    ]
    frame.loc[clean, "category"] = "clean"

    accuracy = is_accuracy(frame)
    unit = frame["unit"].where(frame["unit"].notna(), "").astype(str).str.strip().str.lower()
    fraction = accuracy & unit.isin(FRACTION_UNITS)
    unknown = accuracy & ~unit.isin(("%", "percent", *FRACTION_UNITS))
    if unknown.any():
        miou = frame.loc[frame["metric"] == "miou", "value"].dropna()
        if len(miou) and (miou <= 1.0).all():
            fraction |= unknown
    frame.loc[fraction, "value"] = frame.loc[fraction, "value"] * 100.0
    frame.loc[accuracy, "unit"] = "%"
    return frame


def is_accuracy(frame: pd.DataFrame) -> pd.Series:
    """Rows that hold an IoU-type accuracy metric of an accuracy cell (not efficiency)."""
    metric = frame["metric"]
    return (metric.isin(ACCURACY_METRICS) | metric.str.startswith("iou_")) & (frame["condition"] != "efficiency")


def model_order(frame: pd.DataFrame) -> list[str]:
    """Model names in order of first appearance (not `MACHINE`, whose rows describe the run's device)."""
    return [m for m in dict.fromkeys(frame["model"]) if m != MACHINE]


# --------------------------------------------------------------------------------------------------------------------
# Accuracy: per condition, Table 5, scores, per class
# --------------------------------------------------------------------------------------------------------------------


def miou_conditions(frame: pd.DataFrame) -> pd.DataFrame:
    """mIoU per (model, corruption, severity); clean rows have corruption "clean" and severity 0.

    Duplicate rows of one condition (a cell stored twice) are averaged.
    """
    rows = frame[(frame["metric"] == "miou") & is_accuracy(frame) & frame["value"].notna()]
    rows = rows[(rows["condition"] == "clean") | (rows["corruption"].notna() & rows["severity"].notna())]
    if rows.empty:
        return pd.DataFrame(columns=["model", "corruption", "category", "severity", "miou"])
    rows = rows.assign(corruption=rows["corruption"].where(rows["condition"] != "clean", "clean"))
    rows = rows.assign(category=rows["category"].fillna("other"), severity=rows["severity"].astype(int))
    out = rows.groupby(["model", "corruption", "category", "severity"], sort=False, as_index=False)["value"].mean()
    return out.rename(columns={"value": "miou"})


def column_groups(corruptions: Iterable[str], categories: dict[str, str] | None = None) -> list[tuple[str, list[str]]]:
    """Table-5 column groups: the 16 Cityscapes-C corruptions in the paper's order, then any other measured one under
    its category (from `categories`, else "other")."""
    groups = [(cat, list(names)) for cat, names in CATEGORIES.items()]
    known = {c for _, names in groups for c in names}
    for corruption in corruptions:
        if corruption in known or corruption == "clean":
            continue
        category = (categories or {}).get(corruption) or "other"
        for cat, names in groups:
            if cat == category:
                names.append(corruption)
                break
        else:
            groups.append((category, [corruption]))
        known.add(corruption)
    return groups


@dataclass
class Table5:
    """The Cityscapes-C table in the layout of SegFormer's Table 5.

    Attributes:
        groups: (category, corruptions) in column order after "clean".
        columns: "clean" then every corruption, in order.
        values: run models x columns, mIoU averaged over the measured severities (NaN: not measured).
        best: (model, column) pairs holding the column's best run value (ties all marked).
        severities: per column, the severities that were averaged (empty: not measured).
        published: the published rows (method x columns), NaN where the paper has no column.
    """

    groups: list[tuple[str, list[str]]]
    columns: list[str]
    values: pd.DataFrame
    best: set[tuple[str, str]]
    severities: dict[str, list[int]]
    published: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """Run rows then published rows, with a `source` column (CSV/Markdown form)."""
        run = self.values.reset_index().rename(columns={"index": "model"})
        run.insert(1, "source", "this run")
        pub = self.published.reset_index().rename(columns={"method": "model"})
        pub.insert(1, "source", "published (SegFormer Table 5)")
        return pd.concat([run, pub], ignore_index=True)[["model", "source", *self.columns]]


def summary_wide(summary: pd.DataFrame, metric: str, by: str = "condition") -> pd.DataFrame:
    """One metric of summary.csv as models x `by` (e.g. `miou_avg` per corruption, or `mPC` per "corrupted")."""
    if summary.empty:
        return pd.DataFrame()
    rows = summary[summary["metric"] == metric]
    return rows.pivot_table(index="model", columns=by, values="value", aggfunc="last", sort=False)


def table5(
    conditions: pd.DataFrame,
    models: Sequence[str],
    summary: pd.DataFrame,
    published: pd.DataFrame | None = None,
    eligible: Sequence[str] | None = None,
) -> Table5:
    """Builds the Cityscapes-C table: clean mIoU from the rows, per-corruption averages from summary.csv.

    Args:
        conditions: mIoU per (model, corruption, severity) (`miou_conditions`): the clean column and the
            severities each average covers.
        models: row order.
        summary: the run's summary.csv (its per-corruption `miou_avg` rows are the table's values).
        published: published rows (index: method), default `reference_table5()`.
        eligible: the models that may be marked best (default all); the report leaves out random-weight models.
    """
    categories = dict(zip(conditions["corruption"], conditions["category"]))
    groups = column_groups(dict.fromkeys(conditions["corruption"]), categories)
    columns = ["clean"] + [c for _, names in groups for c in names]
    averages = summary_wide(summary[summary["corruption"].notna()] if not summary.empty else summary, "miou_avg")
    clean = conditions[conditions["corruption"] == "clean"].groupby("model", sort=False)["miou"].mean()
    values = averages.reindex(index=list(models), columns=columns).astype(float)
    values["clean"] = clean.reindex(list(models)).astype(float)
    best = set()
    candidates = values if eligible is None else values.loc[[m for m in values.index if m in set(eligible)]]
    for column in columns:
        col = candidates[column].dropna()
        if len(col):
            best |= {(model, column) for model in col.index[col == col.max()]}
    severities = {
        c: sorted({int(s) for s in conditions.loc[conditions["corruption"] == c, "severity"]}) for c in columns
    }
    severities["clean"] = []
    published = reference_table5() if published is None else published
    return Table5(groups, columns, values, best, severities, published.reindex(columns=columns))


def describe_severities(severities: dict[str, list[int]]) -> str:
    """One sentence that says which severities were averaged, by category where they agree."""
    measured = {c: s for c, s in severities.items() if s}
    if not measured:
        return "No corrupted conditions were measured."
    parts = []
    for category, names in column_groups(measured):
        sets = {tuple(measured[n]) for n in names if n in measured}
        if not sets:
            continue
        if len(sets) == 1:
            parts.append(f"{category} at severities {_span(next(iter(sets)))}")
        else:
            each = ", ".join(f"{n} {_span(measured[n])}" for n in names if n in measured)
            parts.append(f"{category}: {each}")
    return "Averaged over the severities this run measured: " + "; ".join(parts) + "."


def _span(values: Sequence[int]) -> str:
    values = list(values)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(str(v) for v in values)


def class_iou(frame: pd.DataFrame, models: Sequence[str], classes: ClassTable) -> pd.DataFrame:
    """Clean per-class IoU, models x classes (the run's class order first, then other classes as met)."""
    rows = frame[is_accuracy(frame) & (frame["condition"] == "clean") & frame["metric"].str.startswith("iou_")]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(cls=[class_key(m[len("iou_") :]) for m in rows["metric"]])
    matrix = rows.groupby(["model", "cls"], sort=False)["value"].mean().unstack("cls")
    return class_columns(matrix.reindex(index=[m for m in models if m in matrix.index]), classes)


def class_columns(matrix: pd.DataFrame, classes: ClassTable) -> pd.DataFrame:
    """Class-key columns (`traffic_light`) put in the order of the run's class table (other classes after, as met)
    and renamed to the class names (`traffic light`)."""
    by_key = {class_key(c): c for c in classes.names}
    keys = [k for k in by_key if k in matrix.columns]
    keys += [k for k in matrix.columns if k not in by_key]
    return matrix.reindex(columns=keys).rename(columns=lambda k: by_key.get(k, k.replace("_", " ")))


# --------------------------------------------------------------------------------------------------------------------
# Efficiency
# --------------------------------------------------------------------------------------------------------------------

EFFICIENCY_KEYS = ("model", "resolution", "batch_size", "precision", "device")


def _text(series: pd.Series) -> pd.Series:
    def fmt(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return series.map(fmt)


def efficiency_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The efficiency rows (condition "efficiency") with the key columns present as text ('' when absent)."""
    eff = frame[frame["condition"] == "efficiency"].copy()
    for column in (*EFFICIENCY_KEYS[1:], "convention", "counter", "device_name", "noisy"):
        eff[column] = _text(eff[column]) if column in eff.columns else ""
    return eff[eff["value"].notna()]


def efficiency_table(eff: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """One row per (model, resolution, batch size, precision, device): params, GMACs per convention, latency
    median and p90, throughput, peak memory. Columns without any value are dropped."""
    if eff.empty:
        return pd.DataFrame()
    params = eff[eff["metric"] == "params"].groupby("model")["value"].first()
    labels = {"gmacs": "GMACs", "gmacs_executed": "GMACs executed", "gmacs_sliding": "GMACs sliding"}
    macs = eff[eff["metric"].isin(tuple(labels))]
    macs = macs.assign(column=[f"{labels[m]} [{c or '?'}]" for m, c in zip(macs["metric"], macs["convention"])])
    macs = macs.pivot_table(index=["model", "resolution"], columns="column", values="value", aggfunc="first")
    timing = eff[eff["metric"].isin(LATENCY_METRICS)]
    noisy = timing.groupby(list(EFFICIENCY_KEYS))["noisy"].agg(lambda s: any(v.lower() == "true" for v in s))
    timing = timing.pivot_table(index=list(EFFICIENCY_KEYS), columns="metric", values="value", aggfunc="first")
    keys = list(timing.index)
    covered = {(k[0], k[1]) for k in keys}
    keys += [(m, r, "", "", "") for (m, r) in macs.index if (m, r) not in covered]
    covered |= {(k[0], k[1]) for k in keys}
    keys += [(m, "", "", "", "") for m in params.index if not any(k[0] == m for k in covered)]
    rank = {m: i for i, m in enumerate(models)}
    keys.sort(key=lambda k: (rank.get(k[0], len(rank)), _pixels(k[1]), k[2].zfill(6), k[3], k[4]))
    rows = []
    for key in keys:
        model, res = key[0], key[1]
        row = dict(zip(["model", "resolution", "batch_size", "precision", "device"], key))
        row["params_M"] = params.get(model, np.nan)
        if (model, res) in macs.index:
            row.update(macs.loc[(model, res)].to_dict())
        for metric, column in (
            ("latency_median", "latency_median_ms"),
            ("latency_p90", "latency_p90_ms"),
            ("throughput", "throughput_img_s"),
            ("peak_memory", "peak_memory_MiB"),
        ):
            row[column] = timing.loc[key, metric] if key in timing.index and metric in timing.columns else np.nan
        row["noisy"] = bool(noisy.get(key, False))
        rows.append(row)
    out = pd.DataFrame(rows)
    keep = [c for c in out.columns if c in ("model", "noisy") or out[c].replace("", np.nan).notna().any()]
    return out[keep]


def _pixels(resolution: str) -> int:
    match = re.fullmatch(r"(\d+)x(\d+)", resolution or "")
    return int(match.group(1)) * int(match.group(2)) if match else 0


def convention_notes(eff: pd.DataFrame) -> list[str]:
    """What each FLOP convention of the run counts (the counter's own words where the rows carry them)."""
    notes = []
    for convention in dict.fromkeys(eff.loc[eff["metric"].isin(("gmacs", "gflops")), "convention"]):
        counters = [c for c in dict.fromkeys(eff.loc[eff["convention"] == convention, "counter"]) if c]
        text = "; ".join(counters) or CONVENTION_NOTES.get(convention, "convention not described by the run")
        notes.append(f"[{convention or '?'}] {text}")
    return notes


@dataclass
class CurvePoints:
    """One efficiency curve: x per model (with the setting it was measured at), clean mIoU, params."""

    x_label: str
    setting: str
    points: pd.DataFrame  # model, x, miou, params
    published: pd.DataFrame = field(default_factory=pd.DataFrame)  # label, x, miou, params, note
    published_label: str = ""  # the published points' legend entry ('' : "published: <note>")
    missing: str = ""  # why the curve is not drawn, in one line ('' : it is)


def best_group(rows: pd.DataFrame, keys: list[str], prefer: dict[str, Sequence[str]]) -> tuple | None:
    """The combination of `keys` (two or more) that covers most models, then the preferred values, then the largest
    resolution."""
    if rows.empty:
        return None
    coverage = rows.groupby(keys)["model"].nunique()

    def rank(key: tuple) -> tuple:
        named = dict(zip(keys, key))
        prefs = [-(list(p).index(named[k]) if named[k] in p else len(p)) for k, p in prefer.items()]
        return (coverage[key], *prefs, _pixels(named.get("resolution", "")))

    return max(coverage.index, key=rank)


PAPER_AXES = "512x512"
"""The resolution of the SegFormer paper's ADE20K axes (Figure 1, Table 1): mIoU against GMACs at 512x512."""


def efficiency_curves(eff: pd.DataFrame, clean: pd.Series, dataset: str = "cityscapes") -> list[CurvePoints]:
    """Points of the two efficiency curves (mIoU vs GMACs, mIoU vs median latency), one per model with a clean mIoU.

    The GMAC curve uses the convention and resolution that cover most models (the paper convention first); the
    latency curve the (resolution, batch, precision, device) that covers most models (batch 1 first). A deployment
    variant (`bench.results.deploy_variant`) is a point at its own precision: its precision names the variant, not the
    setting, so it is left out of the grouping (and of the curve's setting when every point is a variant). For a
    Cityscapes run the paper's points are added for models whose names match `segformer_table1.csv` (GMACs,
    1024x2048) or `mmseg_segformer_cityscapes.csv` (V100 latency). For an ADE20K run the GMAC curve is on the paper's
    own axes (`ade20k_curve`); other datasets get no published points.
    """
    curves = []
    params = eff[eff["metric"] == "params"].groupby("model")["value"].first()
    macs = eff[(eff["metric"] == "gmacs") & eff["model"].isin(clean.index)]
    key = best_group(macs, ["convention", "resolution"], {"convention": ("paper", "fvcore")})
    if dataset == "ade20k":
        curves.append(ade20k_curve(macs, clean, params))
    elif key is not None:
        convention, resolution = key
        sel = macs[(macs["convention"] == convention) & (macs["resolution"] == resolution)]
        points = _points(sel, clean, params)
        pub = reference_table1()
        pub = pub[pub.index.isin(points["model"]) & (dataset == "cityscapes")]
        published = pd.DataFrame(
            {
                "label": pub.index,
                "x": pub["cityscapes_gflops"],
                "miou": pub["cityscapes_miou_ss"],
                "params": pub["total_params_m_150cls"],
            }
        ).reset_index(drop=True)
        published["note"] = "paper Table 1: 1024x2048, mmcv counter (GMACs), single-scale mIoU"
        setting = f"{resolution or '?'}, batch 1, {convention or '?'} convention"
        curves.append(CurvePoints(f"GMACs per image [{convention or '?'}]", setting, points, published))
    timing = eff[(eff["metric"] == "latency_median") & eff["model"].isin(clean.index)]
    variant = timing["model"].map(lambda m: deploy_variant(m) is not None)
    timing = timing.assign(precision=timing["precision"].where(~variant, ""))
    prefer = {"batch_size": ("1",), "precision": ("fp32",)}
    key = best_group(timing, ["resolution", "batch_size", "precision", "device"], prefer)
    if key is not None:
        named = dict(zip(["resolution", "batch_size", "precision", "device"], key))
        sel = timing[np.logical_and.reduce([timing[k] == v for k, v in named.items()])]
        points = _points(sel, clean, params)
        pub = reference_mmseg()
        pub = pub[pub.index.isin(points["model"]) & (dataset == "cityscapes")]
        published = pd.DataFrame(
            {"label": pub.index, "x": pub["v100_ms_per_img"], "miou": pub["miou_ss"], "params": np.nan}
        ).reset_index(drop=True)
        published["note"] = "mmseg model zoo: V100, 1024x1024 sliding window on 1024x2048"
        setting = ", ".join(f"{k.replace('_size', '')} {v}" if k == "batch_size" else v for k, v in named.items() if v)
        curves.append(CurvePoints("median latency (ms)", setting, points, published))
    return curves


def ade20k_curve(macs: pd.DataFrame, clean: pd.Series, params: pd.Series) -> CurvePoints:
    """Clean mIoU against GMACs at 512x512, the SegFormer paper's ADE20K axes (Figure 1 / Table 1), with Table 1's
    points (`ade20k_gflops`, GMACs by the mmcv counter; `ade20k_miou_ss`) for all six variants, B0-B5, as the
    paper's Figure 1 draws its curve (the run's models are placed against it).

    The run's GMACs are its 512x512 rows of the paper convention (mmcv's rules plus the hand-counted attention, as
    the paper counted), else of fvcore or torch (both MACs too). Without a 512x512 row the curve has no points and
    `missing` says so.
    """
    x_label = f"GMACs (the paper's 'GFLOPs') at {PAPER_AXES}"
    at = macs[macs["resolution"] == PAPER_AXES]
    key = best_group(at, ["convention", "resolution"], {"convention": ("paper", "fvcore", "torch")})
    if key is None:
        empty = pd.DataFrame(columns=["model", "x", "miou", "params"])
        missing = (
            f"No {PAPER_AXES} GMACs row in this run: the clean mIoU against GMACs figure on the SegFormer paper's "
            f"ADE20K axes is not drawn (add {PAPER_AXES} to the efficiency resolutions to get it)."
        )
        return CurvePoints(x_label, "", empty, missing=missing)
    convention = key[0]
    points = _points(at[at["convention"] == convention], clean, params)
    pub = reference_table1()
    published = pd.DataFrame(
        {
            "label": pub.index,
            "x": pub["ade20k_gflops"],
            "miou": pub["ade20k_miou_ss"],
            "params": pub["total_params_m_150cls"],
        }
    ).reset_index(drop=True)
    other = [f"{v} at {r}" for v, r in pub["ade20k_input"].items() if r != PAPER_AXES]
    published["note"] = (
        "SegFormer Table 1: ADE20K single-scale mIoU, GMACs by the mmcv counter at "
        + PAPER_AXES
        + (f" ({', '.join(other)})" if other else "")
    )
    setting = f"ADE20K axes of the SegFormer paper: {PAPER_AXES}, batch 1, {convention} convention"
    return CurvePoints(f"{x_label} [{convention}]", setting, points, published, "published (SegFormer Table 1)")


def _points(sel: pd.DataFrame, clean: pd.Series, params: pd.Series) -> pd.DataFrame:
    x = sel.groupby("model", sort=False)["value"].first()
    return pd.DataFrame(
        {
            "model": x.index,
            "x": x.values,
            "miou": clean.reindex(x.index).values,
            "params": params.reindex(x.index).values,
        }
    )


# --------------------------------------------------------------------------------------------------------------------
# Published numbers
# --------------------------------------------------------------------------------------------------------------------


def read_reference(name: str, index: str | None = None) -> pd.DataFrame:
    """A published table shipped with the reporter (`REFERENCE_DIR`), indexed by `index` when given.

    Raises:
        FileNotFoundError: it is missing from the checkout.
        ValueError: it does not parse, or has no column `index` (one line naming it).
    """
    path = REFERENCE_DIR / name
    remedy = "copy it from shared/reference"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: reference table missing from the checkout ({remedy})")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable reference table ({str(exc).splitlines()[0]}); {remedy}") from None
    if index is not None and index not in frame.columns:
        raise ValueError(f"{path}: not the reference table segbench ships (no column {index}); {remedy}")
    return frame if index is None else frame.set_index(index)


def reference_table5() -> pd.DataFrame:
    """SegFormer Table 5 (Cityscapes-C mIoU per corruption), index: method."""
    return read_reference("cityscapes_c_table5.csv", "method")


def reference_table1() -> pd.DataFrame:
    """SegFormer Table 1 (params, GFLOPs = GMACs, mIoU), index: variant (`segformer-b0` ...)."""
    return read_reference("segformer_table1.csv", "variant")


def reference_mmseg() -> pd.DataFrame:
    """mmseg model zoo SegFormer Cityscapes rows (mIoU, V100 ms/image), index: variant (`segformer-b0-mmseg` ...)."""
    return read_reference("mmseg_segformer_cityscapes.csv", "variant")


# --------------------------------------------------------------------------------------------------------------------
# Where an accuracy run's time went
# --------------------------------------------------------------------------------------------------------------------

TIME_PHASES = ("data", "model", "metric")
IDLE_SHARE = 0.10
"""When the models were idle for more than this share of the wall time, the report says the pipeline limited the
run (the performance target: end-to-end at least 90% of the model's own throughput)."""


def evaluation_time(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated condition: its images, wall time and the time split, from the accuracy cell records.

    Args:
        cells: one row per accuracy cell with `cell`, `model`, `condition`, `num_images`, `world_size`, `shared`
            (the ids of the cells it shared its batches with), `total_s` (wall seconds, the slowest rank) and `data_s`,
            `model_s`, `metric_s` (seconds summed over the ranks).

    Returns:
        `condition`, `models`, `images`, `wall_s`, and per phase `<phase>_s` (per rank: summed seconds / ranks) and
        `<phase>_pct` (of the wall time), then `img_s` (images / wall). Cells that shared their batches are one row:
        they share the data and wall time, and their model and metric times add up. Clean comes first, then the
        corruptions in Table 5's order (others after them), each by severity, then the real-world conditions in
        `REAL_WORLD` order.
    """
    columns = ["condition", "models", "images", "wall_s"]
    columns += [f"{p}_{u}" for p in TIME_PHASES for u in ("s", "pct")] + ["img_s"]
    if cells.empty:
        return pd.DataFrame(columns=columns)
    group_of: dict[str, int] = {}
    for i, (cell, shared) in enumerate(zip(cells["cell"], cells["shared"])):
        members = [cell, *shared]
        group_of[cell] = next((group_of[m] for m in members if m in group_of), i)
    rows = []
    for _, group in cells.groupby(cells["cell"].map(group_of), sort=False):
        ranks = group["world_size"].max()
        wall = group["total_s"].max()
        row = {
            "condition": group["condition"].iloc[0],
            "models": ", ".join(group["model"]),
            "images": int(group["num_images"].max()),
            "wall_s": wall,
            "data_s": group["data_s"].max() / ranks,  # shared: every member holds the same data time
            "model_s": group["model_s"].sum() / ranks,
            "metric_s": group["metric_s"].sum() / ranks,
        }
        rows.append(row)
    order = [c for _, names in column_groups(()) for c in names]
    real = [c.name for c in real_conditions()]

    def rank(condition: str) -> tuple:
        if condition in real:
            return (2, real.index(condition), condition, 0)
        corruption, severity = split_condition(condition)
        known = order.index(corruption) if corruption in order else len(order)
        return (int(condition != "clean"), known, corruption or condition, severity or 0)

    frame = pd.DataFrame(sorted(rows, key=lambda r: rank(r["condition"])))
    for p in TIME_PHASES:
        frame[f"{p}_pct"] = 100 * frame[f"{p}_s"] / frame["wall_s"].where(frame["wall_s"] > 0)
    frame["img_s"] = frame["images"] / frame["wall_s"].where(frame["wall_s"] > 0)
    return frame[columns]


def busy_share(total: dict[str, float]) -> float:
    """The share of the wall time the models worked (inference and metric), from `evaluation_total`."""
    return (total["model_pct"] + total["metric_pct"]) / 100


def evaluation_total(per_condition: pd.DataFrame) -> dict[str, float]:
    """The whole run's line of `evaluation_time`: images and seconds summed, shares of the summed wall time."""
    total = {"condition": "all conditions", "models": "", "images": int(per_condition["images"].sum())}
    total |= {c: float(per_condition[c].sum()) for c in ("wall_s", *(f"{p}_s" for p in TIME_PHASES))}
    wall = total["wall_s"]
    for p in TIME_PHASES:
        total[f"{p}_pct"] = 100 * total[f"{p}_s"] / wall if wall > 0 else math.nan
    total["img_s"] = total["images"] / wall if wall > 0 else math.nan
    return total


# --------------------------------------------------------------------------------------------------------------------
# CSV and Markdown
# --------------------------------------------------------------------------------------------------------------------


def format_number(value: object, digits: int = 1) -> str:
    """Numbers with `digits` decimals, integers as such, missing values as an en dash."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, int | np.integer):
        return str(value)
    if isinstance(value, float | np.floating):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _md_cell(value: object, digits: int) -> str:
    text = format_number(value, digits)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


def to_markdown(frame: pd.DataFrame, digits: int = 1, title: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; `<`, `>`, `&` and `|` in cells are escaped."""
    lines = [f"### {_md_cell(title, digits)}", ""] if title else []
    header = [_md_cell(c, digits) for c in frame.columns]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v, digits) for v in row) + " |")
    return "\n".join(lines) + "\n"
