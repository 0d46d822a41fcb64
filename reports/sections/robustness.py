"""The robustness sections: the Cityscapes-C table in the layout of SegFormer's Table 5, the summary scores (mPC, rPC,
mCE), mIoU per severity and per-class IoU on the clean images. Every score is a row of the run's summary.csv."""

from __future__ import annotations

from functools import partial

import pandas as pd

from segbench.bench.results.classes import CITYSCAPES
from segbench.reports import anchors as A
from segbench.reports import class_view as CV
from segbench.reports import figures
from segbench.reports import tables as T
from segbench.reports.page import Cell, HtmlTable, Page, Row, Section, builds

SHORT_NAMES = {
    "motion_blur": "motion", "defocus_blur": "defocus", "glass_blur": "glass", "gaussian_blur": "gauss",
    "gaussian_noise": "gauss", "impulse_noise": "impulse", "shot_noise": "shot", "speckle_noise": "speckle",
    "brightness": "bright", "contrast": "contrast", "saturate": "saturate", "jpeg_compression": "jpeg",
}  # fmt: skip
"""Column heads of the Cityscapes-C table under their category (the full name is the tooltip), as in the paper."""


@builds("cityscapes-c", "Cityscapes-C (layout of SegFormer Table 5)")
def table5(page: Page, sec: Section) -> Section:
    conditions = page.conditions
    measured = [m for m in page.models if m in set(conditions["model"])]
    if conditions.empty:
        sec.missing = "Not measured in this run: no mIoU rows (clean or corrupted)."
        return sec
    cityscapes = page.classes.name == CITYSCAPES.name
    if not cityscapes:  # Table 5's published rows are Cityscapes': the dataset's own anchors follow the table
        sec.title = f"Clean and corrupted mIoU on {A.dataset_name(page.classes.name)} (layout of SegFormer Table 5)"
    published = None if cityscapes else T.reference_table5().iloc[0:0]
    tab = T.table5(conditions, measured, page.summary, published, eligible=page.trained(measured))
    sec.notes.append(
        "mIoU (%) per corruption, averaged over severities; "
        + page.best_note(measured)
        + " "
        + T.describe_severities(tab.severities)
        + (
            " The paper's protocol (Appendix D) uses the noise corruptions at severities 1-3 and the other twelve at "
            "1-5; where this run measured other severities its averages are not directly comparable."
            if cityscapes
            else ""
        )
    )
    if cityscapes:
        sec.notes.append(T.PUBLISHED_TABLE5)
    groups = [("", 1), ("", 1)] + [(cat.capitalize(), len(names)) for cat, names in tab.groups]
    corruptions = [c for _, names in tab.groups for c in names]
    columns = ["Method", "Clean"] + [SHORT_NAMES.get(c, c.replace("_", " ")) for c in corruptions]
    subheader = ["severities", ""] + [T._span(tab.severities.get(c, [])) or "–" for c in tab.columns[1:]]
    rows = []
    for model in measured:
        cells = [
            Cell(T.format_number(tab.values.loc[model, c]), "best" if (model, c) in tab.best else "")
            for c in tab.columns
        ]
        rows.append(Row(cells, model=model))
    for i, (method, values) in enumerate(tab.published.iterrows()):
        divider = "Published numbers (SegFormer paper, Table 5): not measured in this run" if i == 0 else ""
        cells = [Cell(T.format_number(values[c])) for c in tab.columns]
        rows.append(Row(cells, label=str(method), cls="published", divider=divider))
    titles = ["", "clean images"] + [c.replace("_", " ") for c in corruptions]
    sec.tables.append(HtmlTable(columns, rows, groups, subheader, titles))
    sec.files = page.out.table(tab.to_frame(), "cityscapes_c", "Cityscapes-C mIoU (%), averaged over severities")
    _anchors(page, sec)
    return sec


def _anchors(page: Page, sec: Section) -> None:
    """The published anchors of the run's dataset (ADE20K, VOC) under the table, beside the run's own figures, for
    the models with trained weights that match one by name (nothing for other datasets)."""
    dataset = page.classes.name
    if dataset not in A.ANCHORED:
        return
    compared = [m for m in page.models if not (m in page.infos and page.infos[m].flag)]  # not random or demo weights
    anchors = A.dataset_anchors(dataset, compared, page.conditions, page.summary)
    if anchors is None:
        sec.notes.append(
            f"No published anchor for {A.dataset_name(dataset)} matches this run's models with trained weights "
            "(SegFormer Table 1 and SemSegBench are matched by registry name: segformer-b0 ... segformer-b5)."
        )
        return
    rows = []
    for r in anchors.rows.to_dict("records"):
        own = r["source"] == A.THIS_RUN
        cells = [Cell(r["source"] if own else f"{r['source']}: {r['protocol']}", "reason")]
        cells += [Cell(T.format_number(r[c])) for c in A.COLUMNS]
        rows.append(
            Row(cells, model=r["model"]) if own else Row(cells, label=f"{r['model']} (published)", cls="published")
        )
    sec.notes += A.anchor_notes(anchors)
    sec.tables.append(HtmlTable(["Model", "Source and protocol", *A.COLUMNS.values()], rows))
    title = f"Published anchors for {A.dataset_name(dataset)} beside this run's figures"
    sec.files += page.out.table(anchors.rows, "anchors", title)


def _score_frame(page: Page, measured: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Models x (clean, mPC, rPC, mCE, rel_mCE, mCE_corruptions, categories...) from summary.csv, and the categories."""
    summary = page.summary
    corrupted_rows = summary[summary["condition"] == "corrupted"]
    scores = corrupted_rows.pivot_table(index="model", columns="metric", values="value", aggfunc="last", sort=False)
    categories_wide = T.summary_wide(summary[summary["corruption"].isna()], "miou_avg")
    categories = [c for c in ("blur", "noise", "digital", "weather", "other") if c in categories_wide.columns]
    scores = scores.reindex(index=measured, columns=["mPC", "rPC", "mCE", "rel_mCE", "mCE_corruptions"])
    scores.insert(0, "clean", page.clean.reindex(measured))
    for c in categories:
        scores[c] = categories_wide[c].reindex(measured)
    return scores, categories


@builds("robustness-scores", "Summary scores")
def scores(page: Page, sec: Section) -> Section:
    conditions, summary, reference = page.conditions, page.summary, page.reference
    corrupted = conditions[conditions["corruption"] != "clean"]
    if corrupted.empty or summary.empty:
        sec.missing = "Not measured in this run: no corrupted conditions, so no mPC, rPC or mCE."
        return sec
    corrupted_rows = summary[summary["condition"] == "corrupted"]
    measured = [m for m in page.models if m in set(corrupted_rows["model"])]  # not the models with real-world rows only
    table, categories = _score_frame(page, measured)
    n_corruptions = summary[(summary["metric"] == "miou_avg") & summary["corruption"].notna()].groupby("model").size()
    if reference is None:
        sec.notes.append("No reference model has corrupted conditions: mCE cannot be computed.")
    sec.notes.append(
        f"Reference model for mCE: {reference} (its mCE and relative mCE are 100 by definition). "
        "mPC = mean over corruptions of the mIoU averaged over severities; rPC = mPC / clean mIoU "
        "(Michaelis et al. 2019). CE_c = Σ_s (100 − mIoU_c,s) / Σ_s (100 − mIoU^ref_c,s), mCE = mean over "
        "corruptions; relative CE_c = Σ_s (mIoU_clean − mIoU_c,s) / Σ_s (mIoU^ref_clean − mIoU^ref_c,s) "
        "(Hendrycks & Dietterich, ICLR 2019, with error = 100 − mIoU). Lower mCE is better. "
        "Read from the run's summary.csv (the same numbers, to the last digit). " + page.best_note(measured)
    )
    columns = ["clean", "mPC", "rPC", "mCE", "rel_mCE", *categories]
    names = ["Model", "Clean mIoU", "mPC", "rPC (%)", "mCE (%)", "rel. mCE (%)"] + [c.capitalize() for c in categories]
    trained = table.loc[[m for m in page.trained(measured) if m in table.index]]
    best = {c: (trained[c].min() if c in ("mCE", "rel_mCE") else trained[c].max()) for c in columns}
    rows = []
    for model, row in table.iterrows():
        cells = []
        eligible = model in trained.index
        kept, total = row["mCE_corruptions"], n_corruptions.get(model, 0)
        for c in columns:
            v = row[c]
            mark = "best" if eligible and not pd.isna(v) and len(table) > 1 and v == best[c] else ""
            title = f"over {kept:.0f} of {total} corruptions" if c == "mCE" and not pd.isna(kept) else ""
            cells.append(Cell(T.format_number(v), mark, title))
        rows.append(Row(cells, model=model))
        if not pd.isna(kept) and kept < total:
            sec.notes.append(
                f"{model}: mCE over {kept:.0f} of its {total} corruptions (the reference lacks the others)."
            )
    sec.tables.append(HtmlTable(names, rows))
    frame = table.reset_index().rename(columns={"index": "model"}).assign(reference=reference)
    sec.files = page.out.table(frame, "robustness_scores", "Robustness summary scores")
    return sec


@builds("severity-curves", "mIoU per severity, per corruption")
def severity_curves(page: Page, sec: Section) -> Section:
    conditions, models = page.conditions, page.models
    fig = page.out.figure(
        figures.severity_curves,
        "severity_curves.png",
        "mIoU against severity per corruption",
        conditions,
        models,
        page.figure_labels(models),
    )
    if fig is None:
        sec.missing = "Not measured in this run: no corrupted conditions."
        return sec
    sec.figures.append(fig)
    sec.notes.append("One panel per corruption, one line per model; the first point of each line is the clean image.")
    wide = conditions.assign(
        condition=[c if c == "clean" else f"{c}-{s}" for c, s in zip(conditions["corruption"], conditions["severity"])]
    )
    sec.files = page.out.table(
        wide[["model", "condition", "category", "corruption", "severity", "miou"]],
        "miou_per_condition",
        "mIoU (%) per condition",
    )
    return sec


@builds("per-class-iou", "Per-class IoU (clean)")
def class_iou(page: Page, sec: Section) -> Section:
    matrix = T.class_iou(page.frame, page.models, page.classes)
    if matrix.empty:
        sec.missing = "Not measured in this run: no clean iou_<class> rows."
        return sec
    labels = page.figure_labels(page.models)
    sec.files = page.out.table(matrix.reset_index(names="model"), "per_class_iou", "Per-class IoU (%) on clean images")
    selection = CV.select_classes(matrix, CV.ranking_model(matrix, page.reference))
    if selection is None:
        heatmap = figures.class_heatmap
        alt = "per-class IoU heatmap"
        sec.notes.append("IoU (%) per class on the clean images; the exact values are in the table files below.")
    else:
        heatmap = partial(figures.class_heatmap, split=selection.worst, title=selection.label)
        alt = f"per-class IoU heatmap: {selection.label}"
        sec.notes.append(
            f"IoU (%) per class on the clean images: {selection.label}. The full table of all {selection.total} "
            f"classes and {len(matrix)} model(s) is {sec.files[0]} (linked below)."
        )
        sec.tables.append(_extremes_table(CV.shown_columns(matrix, selection), selection))
    shown = CV.shown_columns(matrix, selection)
    sec.figures.append(page.out.figure(heatmap, "class_iou.png", alt, shown, labels))
    return sec


def _extremes_table(shown: pd.DataFrame, selection: CV.ClassSelection) -> HtmlTable:
    """The shown classes as rows (worst block, then best block), one column of clean IoU (%) per model."""
    rows = []
    for i, cls in enumerate(shown.columns):
        divider = ""
        if i == 0:
            divider = f"{selection.worst} worst of {selection.total} classes"
        elif i == selection.worst:
            divider = f"{selection.best} best of {selection.total} classes"
        cells = [Cell(T.format_number(shown.loc[model, cls])) for model in shown.index]
        rows.append(Row(cells, label=str(cls), divider=divider))
    return HtmlTable(["Class", *[str(m) for m in shown.index]], rows, cls="classes")
