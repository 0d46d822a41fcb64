"""The run's own records: where the evaluation time went (data, models, metric per condition), the warnings the cells
recorded, and the regression history."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from segbench.bench.results.io import read_history
from segbench.bench.results.store import RunFolder
from segbench.reports import figures
from segbench.reports import tables as T
from segbench.reports.page import FOLD_ROWS, Cell, Figure, HtmlTable, Page, Row, Section, builds, sig


def _timing_records(cells: list[dict]) -> pd.DataFrame:
    """The accuracy cells' timing as a frame for `T.evaluation_time` (records without a usable timing are left out)."""
    records = []
    for cell in cells:
        timing = cell.get("timing")
        if cell.get("kind") != "accuracy" or not isinstance(timing, dict):
            continue
        try:
            seconds = {f"{k}_s": float(timing[k]) for k in ("total", *T.TIME_PHASES)}
            images, ranks = int(cell["num_images"]), int(cell.get("world_size") or 1)
        except (KeyError, TypeError, ValueError):
            continue
        if not all(math.isfinite(v) and v >= 0 for v in seconds.values()) or images < 0 or ranks < 1:
            continue
        shared = cell.get("shared_with")
        records.append(
            {
                "cell": str(cell.get("cell", cell["_file"])),
                "model": str(cell.get("model", "")),
                "condition": str(cell.get("condition", "")),
                "num_images": images,
                "world_size": ranks,
                "shared": [str(c) for c in shared] if isinstance(shared, list) else [],
                **seconds,
            }
        )
    return pd.DataFrame(records)


TIME_NAMES = {
    "condition": "Condition",
    "models": "Models",
    "images": "Images",
    "wall_s": "Wall (s)",
    "data_s": "Data (s)",
    "data_pct": "Data (% of wall)",
    "model_s": "Models (s)",
    "model_pct": "Models (% of wall)",
    "metric_s": "Metric (s)",
    "metric_pct": "Metric (% of wall)",
    "img_s": "Images / s",
}


def _evaluation(cells: list[dict]) -> tuple[pd.DataFrame, dict[str, float], float, bool] | None:
    """Per-condition times, their total, the models' busy share and whether the pipeline limited the run (None when
    no cell has timing): what the report section and the console line both say."""
    per_condition = T.evaluation_time(_timing_records(cells))
    if per_condition.empty:
        return None
    total = T.evaluation_total(per_condition)
    busy = T.busy_share(total)
    return per_condition, total, busy, busy < 1 - T.IDLE_SHARE


@builds("evaluation-time", "Where the evaluation time went")
def evaluation_time(page: Page, sec: Section) -> Section:
    evaluation = _evaluation(page.cells)
    if evaluation is None:
        sec.missing = "No accuracy cell records with timing in this run folder."
        return sec
    per_condition, total, busy, limited = evaluation
    frame = pd.concat([per_condition, pd.DataFrame([total])], ignore_index=True)
    columns = [c for c in frame.columns if c != "condition"]
    rows = []
    for i, row in frame.iterrows():
        last = i == len(frame) - 1
        cells_ = [
            Cell(f"{row[c]:.0f}%" if c.endswith("_pct") and not math.isnan(row[c]) else sig(row[c])) for c in columns
        ]
        rows.append(Row(cells_, label=row["condition"], cls="total" if last else ""))
    header = [TIME_NAMES[c] for c in frame.columns]
    if len(per_condition) > FOLD_ROWS:  # a full Cityscapes-C run has 73 conditions: the total first, the rest folded
        sec.tables.append(HtmlTable(header, rows[-1:]))
        sec.tables.append(HtmlTable(header, rows[:-1], collapsed=f"Per condition ({len(per_condition)} rows)"))
    else:
        sec.tables.append(HtmlTable(header, rows))
    sec.files = page.out.table(frame.rename(columns=TIME_NAMES), "evaluation_time", "Where the evaluation time went", 2)
    sec.notes.append(
        f"{total['images']} images in {total['wall_s']:.1f} s of wall time over {len(per_condition)} condition(s): "
        f"the models were busy for {100 * busy:.0f}% of it (inference {total['model_pct']:.0f}%, metric "
        f"{total['metric_pct']:.0f}%); the loop waited for images for {total['data_pct']:.0f}%."
    )
    if limited:
        sec.notes.append(_limited_note(page.env, per_condition, busy))
    sec.notes.append(
        "Data is the loop's wait for the next batch (reading and decoding PNGs, corrupting on the fly unless "
        "--corrupted-data was given); Models is inference (normalisation, forward pass, resize to the labels, "
        "argmax) of every listed model; Metric is the confusion matrix. On a GPU, Models and Metric are device time "
        "(CUDA events) and the wait for images overlaps them. Seconds are per rank; the rest of the wall time is "
        "setup (dataset, DataLoader workers) and reductions. Models that shared a condition share one row, as each "
        "batch went through all of them."
    )
    return sec


def _limited_note(env: dict | None, per_condition: pd.DataFrame, busy: float) -> str:
    """The note of a run that the pipeline limited: how long the models were idle, and how to hide it."""
    config = env.get("config") if isinstance(env, dict) and isinstance(env.get("config"), dict) else {}
    on_the_fly = not config.get("corrupted_root") and (per_condition["condition"] != "clean").any()
    remedies = []
    if on_the_fly:
        remedies.append(
            "write the corrupted images once with 'run_bench.py generate-c --out DIR' and pass "
            "'--corrupted-data DIR' (the same bytes, read instead of computed)"
        )
    cuda = str(config.get("device", "")).startswith("cuda")
    if cuda:
        remedies.append("raise --workers so that the next images are prepared while the GPU computes")
    return (
        f"The pipeline, not the models, limited this run: the models were idle for {100 * (1 - busy):.0f}% of "
        "the wall time."
        + (" To hide it, " + "; or ".join(remedies) + "." if remedies else "")
        + ("" if cuda else " On a CPU the models already use every core, so DataLoader workers cannot hide it.")
    )


def evaluation_summary(run_dir: str | Path) -> str | None:
    """One console line on where a run's evaluation time went (None when no cell has timing)."""
    evaluation = _evaluation(RunFolder(run_dir).cells())
    if evaluation is None:
        return None
    _, total, busy, limited = evaluation
    images, wall = total["images"], total["wall_s"]
    line = f"evaluation: {images} images in {wall:.1f} s, the models busy for {100 * busy:.0f}% of it"
    if limited:
        line += "; the pipeline limited this run (the report's 'Where the evaluation time went' says what to do)"
    return line


def _warning_records(cells: list[dict]) -> list[dict[str, str]]:
    """Each cell's warnings and noisy latency timings: cell, model, condition, warning."""
    records = []
    for cell in cells:
        rows = cell.get("rows") if isinstance(cell.get("rows"), list) else []
        models = {str(r.get("model")) for r in rows if isinstance(r, dict) and r.get("model") is not None}
        conditions = {str(r.get("condition")) for r in rows if isinstance(r, dict) and r.get("condition") is not None}
        model = cell.get("model") or (models.pop() if len(models) == 1 else "")
        condition = cell.get("condition") or (conditions.pop() if len(conditions) == 1 else "")
        if isinstance(condition, dict):
            condition = condition.get("name", "")
        where = {"cell": str(cell.get("cell", cell["_file"])), "model": str(model), "condition": str(condition)}
        warnings = cell.get("warnings") or []
        for w in warnings if isinstance(warnings, list) else [warnings]:
            text = w.get("message") or json.dumps(w) if isinstance(w, dict) else str(w)
            records.append({**where, "warning": text})
        for r in rows:
            if isinstance(r, dict) and r.get("metric") == "latency_median" and str(r.get("noisy")).lower() == "true":
                setting = ", ".join(
                    f"{label}{r[k]}"
                    for k, label in (("resolution", ""), ("batch_size", "batch "), ("precision", ""))
                    if r.get(k) not in (None, "")
                )
                records.append({**where, "warning": f"latency timing was noisy ({setting})"})
    return records


@builds("warnings", "Per-cell warnings")
def cell_warnings(page: Page, sec: Section) -> Section:
    cells, problems = page.cells, [p for p in page.problems if p.startswith("cells/")]
    records = _warning_records(cells)
    records += [{"cell": "", "model": "", "condition": "", "warning": p} for p in problems]
    if not cells and not problems:
        sec.missing = "No cell records (cells/*.json) in this run folder."
        return sec
    sec.notes.append(f"{len(cells)} cell record(s) read; {len(records)} warning(s).")
    if records:
        frame = pd.DataFrame(records)
        rows = [
            Row(
                [Cell(r["cell"]), Cell(r["condition"]), Cell(r["warning"], "warning")],
                model=r["model"] or None,
                label=r["model"] or "–",
            )
            for r in records
        ]
        sec.tables.append(HtmlTable(["Model", "Cell", "Condition", "Warning"], rows, cls="kv"))
        sec.files = page.out.table(frame, "warnings", "Per-cell warnings")
    else:
        sec.notes.append("No cell recorded a warning.")
    return sec


@builds("history", "Regression history")
def regression_history(page: Page, sec: Section) -> Section:
    path, entries, bad = read_history(page.run_dir)  # the run's own, else runs/history.jsonl (written by compare)
    if path is None:
        sec.missing = "No history.jsonl in this run folder or beside it (written by regression tracking)."
        return sec
    rows = []
    for i, entry in enumerate(entries):
        label = str(entry.get("commit") or "")[:8] or str(entry.get("timestamp") or i)
        for name, value in entry["metrics"].items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                rows.append(
                    {
                        "index": i,
                        "label": label,
                        "timestamp": entry.get("timestamp"),
                        "metric": str(name),
                        "value": float(value),
                    }
                )
    trends = pd.DataFrame(rows)
    if bad:
        sec.notes.append(f"{bad} line(s) of history.jsonl could not be read and were skipped.")
    if trends.empty:
        sec.missing = "history.jsonl holds no numeric metrics."
        return sec
    out = page.out
    png, left_out = figures.history_trends(trends, out.path("history.png"))
    sec.figures.append(Figure(out.rel(png), "metric trends over the history entries"))
    sec.notes.append(f"{trends['index'].nunique()} entries; x axis: entries in file order, labelled by commit.")
    if left_out:
        sec.notes.append(f"Not drawn ({len(left_out)} more metrics): " + ", ".join(left_out) + "; see history.csv.")
    sec.files = out.table(trends.drop(columns="index"), "history", "Regression history", digits=4)
    return sec
