"""The efficiency sections: the table (params, GMACs, latency, throughput, memory per model and setting) and the
curves (clean mIoU against GMACs and against latency, with published points beside the run's)."""

from __future__ import annotations

from segbench.bench.results.schema import deploy_variant
from segbench.reports import deploy as D
from segbench.reports import figures
from segbench.reports import tables as T
from segbench.reports.page import Cell, HtmlTable, Page, Row, Section, builds, sig

EFFICIENCY_NAMES = {
    "model": "Model",
    "resolution": "Resolution",
    "batch_size": "Batch",
    "precision": "Precision",
    "device": "Device",
    "params_M": "Params (M)",
    "latency_median_ms": "Latency median (ms)",
    "latency_p90_ms": "Latency p90 (ms)",
    "throughput_img_s": "Throughput (img/s)",
    "peak_memory_MiB": "Peak memory (MiB)",
}


MEMORY_KINDS = {
    "cuda_max_allocated_model": "CUDA memory the model's inference allocated at its peak (weights, input, "
    "activations; other tensors on the device left out)",
    "cuda_max_allocated": "torch.cuda.max_memory_allocated, including every other tensor on the device",
    "cpu_process_peak_rss": "the process's peak resident memory on the CPU (a high-water mark that includes "
    "everything the process ran before, other models too)",
}


VARIANT_NOTE = (
    "Deployment variants, named <model>@<backend>-<precision>, are models of their own here, each at its own "
    "precision; the Deployment section compares them with their eager fp32 variant."
)

DISAGREE_MARK = " (disagrees)"
"""Beside a variant whose logits disagree with eager fp32, wherever it appears as a model of its own."""


def _notes(eff, table, disagree: list[str]) -> list[str]:
    """What the efficiency table's columns mean, and which rows are deployment variants."""
    notes = []
    if any(deploy_variant(m) for m in table["model"]):
        notes.append(VARIANT_NOTE)
    if any(m in disagree for m in table["model"]):
        notes.append(
            "Rows in red: deployment variants whose logits disagree with eager fp32 beyond their precision's "
            "tolerance. They are not the same model as eager fp32: their speed is for information only."
        )
    notes += ["FLOP conventions — " + n for n in T.convention_notes(eff)]
    if "memory_kind" in eff.columns:
        kinds = [str(k) for k in dict.fromkeys(eff.loc[eff["metric"] == "peak_memory", "memory_kind"]) if k]
        if kinds:
            notes.append("Peak memory: " + "; ".join(MEMORY_KINDS.get(k, k) for k in kinds) + ".")
    notes.append(
        "GMACs are per image (batch 1); latency is per batch, measured after warm-up; ⚠ marks a timing "
        "the runner flagged as noisy."
    )
    if (eff["metric"] == "gmacs_executed").any():
        notes.append(
            "GMACs and params count the architecture as published (comparable with papers); GMACs executed count "
            "the graph that was run and timed (SegFormer's fast path folds the decoder: same outputs, fewer MACs)."
        )
    return notes


@builds("efficiency-table", "Efficiency")
def efficiency_table(page: Page, sec: Section) -> Section:
    eff = page.eff
    disagree = D.disagreeing(page.frame)
    table = T.efficiency_table(eff, page.models)
    if table.empty:
        sec.missing = "Not measured in this run: no efficiency rows (params, GMACs, latency)."
        return sec
    columns = [c for c in table.columns if c not in ("model", "noisy")]
    rows = []
    for _, row in table.iterrows():
        cells = []
        for c in columns:
            text = sig(row[c]) if c not in ("resolution", "batch_size", "precision", "device") else row[c] or "–"
            noisy = row.get("noisy", False) and c.startswith("latency")
            cells.append(
                Cell(
                    text + (" ⚠" if noisy else ""),
                    "noisy" if noisy else "",
                    "timing was noisy (high coefficient of variation)" if noisy else "",
                )
            )
        rows.append(Row(cells, model=row["model"], cls="disagrees" if row["model"] in disagree else ""))
    sec.tables.append(HtmlTable(["Model", *[EFFICIENCY_NAMES.get(c, c) for c in columns]], rows))
    sec.notes += _notes(eff, table, disagree)
    sec.files = page.out.table(table, "efficiency", "Efficiency", digits=3)
    return sec


@builds("efficiency-curves", "Efficiency curves")
def efficiency_curves(page: Page, sec: Section) -> Section:
    eff, clean, models = page.eff, page.clean, page.models
    disagree = D.disagreeing(page.frame)
    if clean.empty or eff.empty:
        sec.missing = "Not measured in this run: the curves need both a clean mIoU and efficiency rows per model."
        return sec
    curves = T.efficiency_curves(eff, clean, page.classes.name)
    colors = figures.model_colors(models)
    labels = {m: page.infos[m].figure_label + (DISAGREE_MARK if m in disagree else "") for m in models}
    for i, curve in enumerate(curves):
        if curve.missing:
            sec.notes.append(curve.missing)
            continue
        kind = "gmacs" if i == 0 and curve.x_label.startswith("GMACs") else "latency"
        fig = page.out.figure(
            figures.efficiency_curve,
            f"efficiency_{kind}.png",
            f"clean mIoU against {curve.x_label}",
            curve,
            colors,
            labels,
        )
        if fig is not None:
            sec.figures.append(fig)
        if not curve.published.empty:
            legend = f"'{curve.published_label}', " if curve.published_label else ""
            sec.notes.append(
                f"Published points ({legend}{curve.published['note'].iloc[0]}) are drawn beside this run's for: "
                + ", ".join(curve.published["label"])
                + ". They are published numbers, not measured here; "
                "a different resolution or device moves them, compare with care."
            )
    if not sec.figures:
        missing = next((c.missing for c in curves if c.missing), "")
        sec.missing = missing or "Not measured in this run: no model has both a clean mIoU and GMACs or latency rows."
        return sec
    sec.notes.insert(
        0,
        "One bubble per model, area proportional to its parameter count; x axes are logarithmic "
        "when the values span more than a factor of 20. The SegFormer paper's 'GFLOPs' are GMACs.",
    )
    if any(deploy_variant(m) for c in curves for m in c.points["model"]):
        sec.notes.append(
            VARIANT_NOTE + " A variant marked '(disagrees)' computes another function than eager fp32: its point is "
            "its own accuracy, not the model's."
        )
    return sec
