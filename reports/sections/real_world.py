"""The real-world sections: mIoU under real adverse conditions (ACDC, Dark Zurich, Foggy Cityscapes) with the drop from
clean as summary.csv holds it, and whether Cityscapes-C predicts them (correlations across the run's models)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import pandas as pd

from segbench.bench.results.axes import INVALID_REGION_NOTE, REAL_WORLD_NAMES
from segbench.bench.results.summaries import prediction_table
from segbench.reports import class_view as CV
from segbench.reports import figures
from segbench.reports import realworld as RW
from segbench.reports import tables as T
from segbench.reports.page import FOLD_ROWS, Cell, HtmlTable, Page, Row, Section, builds


def _table_rows(tab: RW.RealWorldTable, shown: list[str], trained: pd.DataFrame) -> list[Row]:
    """The table's rows: the run's models (best of the trained ones bold), then the published numbers."""
    best = {c: trained[c].max() for c in tab.columns} if len(shown) > 1 else {}
    rows = []
    for model in shown:
        cells = []
        for c in tab.columns:
            value = tab.values.loc[model, c]
            drop = tab.drops.loc[model, c] if c != "clean" else float("nan")
            text = T.format_number(value) + (f" ({RW.format_drop(drop)})" if not pd.isna(drop) else "")
            mark = "best" if model in trained.index and not pd.isna(value) and value == best.get(c) else ""
            cells.append(Cell(text, mark))
        rows.append(Row(cells, model=model))
    for i, (match, values) in enumerate(tab.published.iterrows()):
        divider = f"Published numbers ({RW.SEMSEGBENCH}): not measured in this run" if i == 0 else ""
        cells = [Cell(T.format_number(values[c])) for c in tab.columns]
        rows.append(Row(cells, label=f"{match} (SemSegBench)", cls="published", divider=divider))
    return rows


@builds("real-world", "Real-world conditions")
def real_world(page: Page, sec: Section) -> Section:
    models, infos = page.models, page.infos
    real_weights = [m for m in models if not (m in infos and infos[m].flag)]  # published figures: trained models only
    tab = RW.real_world_table(page.frame, page.summary, models, page.clean, compare=real_weights)
    if tab is None:
        sec.missing = (
            "Not measured in this run: no real-world rows (ACDC, Dark Zurich, Foggy Cityscapes); the suites "
            + ", ".join(RW.REAL_WORLD_SUITES)
            + " measure them."
        )
        return sec
    shown = list(tab.values.index)
    trained = tab.values.loc[page.trained(shown)]
    sec.notes.append(
        "mIoU (%) under each real adverse condition, and in brackets its change from the model's clean mIoU in "
        "percentage points (pp; \u2212 = lower than clean), as the run's summary.csv holds it. A dataset's mean "
        "averages the conditions measured for that model. " + (page.best_note(shown) if len(shown) > 1 else "")
    )
    no_clean = [m for m in shown if pd.isna(tab.values.loc[m, "clean"])]
    if no_clean:
        sec.notes.append(
            f"No clean mIoU in this run for {', '.join(no_clean)}: no drop from clean can be shown (the dark-zurich "
            "suite has no clean condition; the acdc, foggy-cityscapes and robustness suites have)."
        )
    masked = [RW.REAL_WORLD_NAMES[d] for d, _ in tab.groups if d in RW.MASKED_DATASETS]
    if masked:
        sec.notes.append(f"Invalid regions ({' and '.join(masked)}): {INVALID_REGION_NOTE}.")
    sec.notes += RW.published_notes(tab)
    groups = [("", 1), ("", 1)] + [(REAL_WORLD_NAMES[d], len(names)) for d, names in tab.groups]
    columns = ["Model", "Clean"] + [RW.short_label(c) for c in tab.columns[1:]]
    titles = ["", "clean Cityscapes images"] + [RW.long_label(c) for c in tab.columns[1:]]
    subheader = ["images"] + [tab.images.get(c, "") for c in tab.columns]
    sec.tables.append(HtmlTable(columns, _table_rows(tab, shown, trained), groups, subheader, titles))
    sec.files = page.out.table(tab.to_frame(), "real_world", "Real-world conditions: mIoU (%) and drop from clean (pp)")
    _class_iou(page, sec)
    return sec


def _class_iou(page: Page, sec: Section) -> None:
    """The per-class IoU under each real condition: a heatmap and its table files (nothing without such rows). With
    many classes the heatmap shows the worst and best ones (`reports.class_view`); the files hold all of them."""
    matrix = RW.real_class_iou(page.frame, page.models, page.classes)
    if matrix.empty:
        return
    selection = _real_selection(page, matrix)
    names = [f"{page.infos[m].figure_label} \u00b7 {RW.long_label(c)}" for m, c in matrix.index]
    heat = CV.shown_columns(matrix, selection).set_axis(names, axis=0)
    heatmap = figures.class_heatmap
    alt = "per-class IoU heatmap under each real condition"
    if selection is not None:
        heatmap = partial(figures.class_heatmap, split=selection.worst, title=selection.label)
        alt += f": {selection.label}"
    fig = page.out.figure(heatmap, "real_world_class_iou.png", alt, heat, {n: n for n in names})
    sec.figures.append(fig)
    files = page.out.table(
        matrix.reset_index(), "real_world_class_iou", "Per-class IoU (%) under each real-world condition"
    )
    sec.notes.append(
        "Per-class IoU (%) under each real condition in the heatmap (one row per model and condition); the "
        "exact values are in the real_world_class_iou table files below."
        + (f" The heatmap shows {selection.label}; {files[0]} holds all of them." if selection else "")
    )
    sec.files += files


def _real_selection(page: Page, matrix: pd.DataFrame) -> CV.ClassSelection | None:
    """The classes the real-world heatmap shows: those of the per-class section (ranked by clean IoU), else, in a run
    without clean per-class rows, ranked by the first model's IoU under its first real condition."""
    clean = T.class_iou(page.frame, page.models, page.classes)
    if not clean.empty:
        return CV.select_classes(clean, CV.ranking_model(clean, page.reference))
    model, condition = matrix.index[0]
    selection = CV.select_classes(matrix.iloc[[0]].set_axis([model], axis=0), model)
    return None if selection is None else replace(selection, basis=f"IoU under {RW.long_label(condition)}")


def _corr(value: float) -> Cell:
    if pd.isna(value):
        return Cell("\u2014", title="no correlation: fewer than three models, or a side without spread")
    return Cell(f"{value:.3f}")


def _point_table(points: pd.DataFrame) -> HtmlTable:
    """The values behind the scatter panels: per pair, each model's synthetic and real mIoU (folded when long)."""
    rows = []
    for pair, group in points.groupby("pair", sort=False):
        for i, r in enumerate(group.itertuples()):
            cells = [Cell(T.format_number(r.synthetic_miou)), Cell(T.format_number(r.real_miou))]
            cells += [Cell(T.format_number(r.synthetic_rel, 3)), Cell(T.format_number(r.real_rel, 3))]
            rows.append(Row(cells, model=r.model, divider=pair if i == 0 else ""))
    header = ["Model", "Synthetic mIoU (%)", "Real mIoU (%)", "Synthetic / clean", "Real / clean"]
    folded = f"The values behind each panel ({len(points)} rows)" if len(points) > FOLD_ROWS else ""
    return HtmlTable(header, rows, collapsed=folded)


@builds("prediction", "Does Cityscapes-C predict the real world?")
def prediction(page: Page, sec: Section) -> Section:
    frame, models = page.frame, page.models
    accuracy = frame[T.is_accuracy(frame) & (frame["metric"] == "miou") & frame["value"].notna()]
    pairs = prediction_table(accuracy.to_dict("records"))
    if not pairs:
        sec.missing = (
            "Not measured in this run: it needs Cityscapes-C corruptions and the matching real-world conditions "
            "for the same models; the robustness suite runs Cityscapes-C, ACDC and Foggy Cityscapes in one run."
        )
        return sec
    summary = RW.prediction_summary(pairs)
    points = RW.prediction_points(pairs)
    small = sorted({int(n) for n in summary["n"] if n < 3})
    if small:
        counts = " or ".join(f"n = {n} model{'s' if n != 1 else ''}" for n in small)
        where = "" if (summary["n"] < 3).all() else " (" + "; ".join(summary.loc[summary["n"] < 3, "pair"]) + ")"
        sec.notes.append(f"{counts}{where}: no correlation can be read; run three or more models.")
    sec.notes += [RW.rank_agreement(entry) for entry in pairs]
    sec.notes.append(
        "Method: each point is one model of this run. Synthetic score: the model's Cityscapes-C mIoU for the "
        "corruption, averaged over the severities measured (two corruptions: their mean; mPC: the mean over all "
        "measured corruptions); real score: its mIoU under the real condition (a dataset: the mean over its "
        "measured conditions). Correlations are computed across the run's models: Pearson's r on the values, "
        "Spearman's \u03c1 on their ranks (ties get their average rank); the sample size n is the number of "
        "models, so with few models a correlation is fragile: read it with care. 'rel.' uses each score as a "
        "fraction of the model's clean mIoU."
    )
    rows = [
        Row([Cell(str(r.n))] + [_corr(getattr(r, c)) for c in RW.PREDICTION_COLUMNS], label=r.pair)
        for r in summary.itertuples()
    ]
    header = ["Pair", "n (models)", "Pearson r", "Spearman \u03c1", "Pearson r (rel.)", "Spearman \u03c1 (rel.)"]
    sec.tables.append(HtmlTable(header, rows))
    sec.tables.append(_point_table(points))
    labels = {m: page.infos[m].figure_label for m in models if m in page.infos}
    fig = page.out.figure(
        figures.prediction_scatter,
        "prediction.png",
        "synthetic (Cityscapes-C) mIoU against real-world mIoU, one panel per pair",
        pairs,
        figures.model_colors(models),
        labels,
    )
    if fig is not None:
        sec.figures.append(fig)
    sec.files = page.out.table(summary, "prediction", "Does Cityscapes-C predict the real world? (correlations)", 3)
    sec.files += page.out.table(points, "prediction_points", "Synthetic and real mIoU (%) per pair and model", 3)
    return sec
