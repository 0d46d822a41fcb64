"""Calibration under shift: ECE (%) against severity per corruption category, clean ECE / NLL / Brier beside the mean
corrupted ECE per model, reliability diagrams (clean against the worst corruption, and the worst attack where the run
has attack conditions), and calibration under the real-world conditions. The numbers are the run's ece / nll / brier
rows; the diagrams are drawn from the binned sums its accuracy cells stored (`RunFolder.calibration`)."""

from __future__ import annotations

import pandas as pd

from segbench.bench.results.schema import CALIBRATION_BINS
from segbench.reports import calibration as C
from segbench.reports import figures
from segbench.reports import tables as T
from segbench.reports.page import Cell, HtmlTable, Page, Row, Section, builds

SUMMARY_COLUMNS = {
    "clean_ece": "Clean ECE (%)",
    "clean_nll": "Clean NLL",
    "clean_brier": "Clean Brier",
    "corrupted_ece": "Mean corrupted ECE (%)",
}
"""The per-model table's columns (lower is better in each) and their heads."""

DIGITS = {"ece": 2, "nll": 3, "brier": 3}


def _digits(column: str) -> int:
    return DIGITS[column.rpartition("_")[2]] if "_" in column else DIGITS[column]


def _summary_rows(page: Page, table: pd.DataFrame, columns: list[str]) -> list[Row]:
    """One row per model; the lowest value of each column among the trained models is bold."""
    trained = table[table["model"].isin(page.trained(list(table["model"])))]
    best = {c: trained[c].min() for c in columns} if len(table) > 1 else {}
    rows = []
    for r in table.to_dict("records"):
        cells = []
        for c in columns:
            value = r[c]
            mark = "best" if r["model"] in set(trained["model"]) and not pd.isna(value) and value == best.get(c) else ""
            title = f"over {r['corruptions']} corruption(s)" if c == "corrupted_ece" and r["corruptions"] else ""
            cells.append(Cell(T.format_number(value, _digits(c)), mark, title))
        rows.append(Row(cells, model=r["model"]))
    return rows


@builds("calibration", "Calibration under shift")
def calibration(page: Page, sec: Section) -> Section:
    cal = C.calibration_frame(page.frame)
    if cal.empty:
        sec.missing = (
            "Not measured in this run: no calibration rows (ece, nll, brier); runs made before accuracy cells "
            "measured calibration have none."
        )
        return sec
    models = [m for m in page.models if m in set(cal["model"])]
    table = C.summary_table(cal, models)
    columns = [c for c in SUMMARY_COLUMNS if table[c].notna().any()]
    sec.notes.append(
        f"Calibration of the softmax whose argmax is scored, over labelled pixels: ECE (%) over {CALIBRATION_BINS} "
        "equal-width bins of the top-label confidence (the pixel-weighted mean |accuracy \u2212 confidence|), NLL in "
        "nats per pixel, Brier score per pixel (0 to 2); lower is better in every column. Mean corrupted ECE: the "
        "mean over corruptions of the ECE averaged over the severities measured. " + page.best_note(models)
    )
    sec.tables.append(HtmlTable(["Model", *(SUMMARY_COLUMNS[c] for c in columns)], _summary_rows(page, table, columns)))
    sec.files = page.out.table(
        table, "calibration", "Calibration: clean ECE (%), NLL, Brier and mean corrupted ECE (%)"
    )
    _curves(page, sec, cal, models)
    _diagrams(page, sec, cal, models)
    _real_world(sec, page, cal)
    sec.files += page.out.table(
        cal, "calibration_per_condition", "Calibration per condition: ECE (%), NLL (nats), Brier", 3
    )
    return sec


def _curves(page: Page, sec: Section, cal: pd.DataFrame, models: list[str]) -> None:
    """ECE against severity per corruption category (nothing without corrupted conditions)."""
    curves = C.severity_curves(cal)
    fig = page.out.figure(
        figures.calibration_curves,
        "calibration_severity.png",
        "ECE (%) against severity per corruption category",
        curves,
        models,
        page.figure_labels(models),
    )
    if fig is None:
        return
    sec.figures.append(fig)
    sec.notes.append(
        "ECE against severity: one panel per corruption category, one line per model; each point is the mean ECE "
        "over the category's corruptions measured at that severity, and the first point is the clean image."
    )


def _diagrams(page: Page, sec: Section, cal: pd.DataFrame, models: list[str]) -> None:
    """Reliability diagrams of clean, the worst corruption and the worst attack per model, from the cells' bins."""
    panels = C.diagram_panels(cal, page.calibration, models)
    attacked = any(role == "worst attack" for _, role, *_ in panels)
    fig = page.out.figure(
        figures.reliability_diagrams,
        "calibration_reliability.png",
        "reliability diagrams: clean against the worst corruption (highest ECE)"
        + (" and the worst attack" if attacked else ""),
        panels,
        page.figure_labels(models),
    )
    if fig is None:
        sec.notes.append(
            "No reliability diagram: the accuracy cells hold no calibration bins (cells/*.json without a "
            "'calibration' key)."
        )
        return
    sec.figures.append(fig)
    sec.notes.append(
        "Reliability diagrams from the bins the cells stored: per bin of confidence with pixels, the bar is its "
        "accuracy (correct / pixels) and the point sits at its mean confidence; bins without pixels are left out. "
        "On the dashed diagonal a model is perfectly calibrated; below it, overconfident. Shown per model: clean "
        "and its worst corruption (highest ECE)"
        + (", and its worst attack (highest ECE of the adversarial conditions)." if attacked else ".")
    )
    frames = [p.assign(model=m, role=role, condition=c) for m, role, c, _, p in panels]
    points = pd.concat(frames, ignore_index=True)[["model", "role", "condition", *C.RELIABILITY_COLUMNS]]
    sec.files += page.out.table(points, "calibration_reliability", "Reliability diagram points", 4)


def _real_world(sec: Section, page: Page, cal: pd.DataFrame) -> None:
    """ECE, NLL and Brier under each real-world condition (nothing without such rows)."""
    real = C.real_world_table(cal)
    if real.empty:
        return
    rows = [
        Row([Cell(str(r["condition"]))] + [Cell(T.format_number(r[m], DIGITS[m])) for m in C.METRICS], model=r["model"])
        for r in real.to_dict("records")
    ]
    sec.tables.append(HtmlTable(["Model", "Real-world condition", "ECE (%)", "NLL", "Brier"], rows))
    sec.notes.append(
        "Calibration under the real-world conditions (ACDC, Dark Zurich, Foggy Cityscapes) in the last table."
    )
    sec.files += page.out.table(real, "calibration_real_world", "Calibration under real-world conditions", 3)
