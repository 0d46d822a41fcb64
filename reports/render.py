"""Render a run folder into one offline HTML report: `run_dir/index.html` plus `run_dir/report/` (figures as PNG,
every table also as CSV and Markdown).

The reporter reads the run's files only (`results.csv` or, failing that, the rows of `cells/*.json`; `env.json`;
`cells/*.json` for warnings; `gallery/index.json`; `history.jsonl`). Each section degrades to a one-line
"not measured in this run" note when its inputs are absent. Templates render with autoescape on, so names from the
results (model names, warning texts, commands) can never inject markup.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from segbench.bench.results.axes import INVALID_REGION_NOTE, REAL_WORLD_NAMES
from segbench.bench.results.classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from segbench.bench.results.io import atomic_write, atomic_write_text, read_history
from segbench.bench.results.schema import deploy_variant, variant_name
from segbench.bench.results.store import RunFolder
from segbench.bench.results.summaries import prediction_table
from segbench.reports import deploy as D
from segbench.reports import figures
from segbench.reports import realworld as RW
from segbench.reports import tables as T

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT_DIR = "report"
SECTION_IDS = (
    "run-summary",
    "models",
    "cityscapes-c",
    "robustness-scores",
    "severity-curves",
    "real-world",
    "prediction",
    "per-class-iou",
    "efficiency-table",
    "efficiency-curves",
    "deployment",
    "evaluation-time",
    "gallery",
    "warnings",
    "history",
)
"""HTML ids of the report's sections, in page order (stable: tests and links rely on them)."""

OWN_SUFFIXES = (".png", ".csv", ".md")


# --------------------------------------------------------------------------------------------------------------------
# Small records handed to the template
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ModelInfo:
    """A model as the report names it, with its weights' provenance."""

    name: str
    source: str = ""
    sha256: str = ""
    path: str = ""
    random: bool = False
    synthetic: bool = False
    model_source: str = "registry"
    """Where the model itself came from: "registry", or `<kind>: <target>` (hf, py, entry-point, torchscript, onnx,
    module), with the FLOP counters that apply to it when they differ from the registry's."""

    @property
    def flag(self) -> str:
        """Why the model's numbers are not those of trained weights ('' when they are)."""
        if self.random:
            return "random weights (untrained)"
        if self.synthetic:
            return "synthetic-data demo weights"
        return ""

    @property
    def badge(self) -> str:
        """The short form of `flag` shown beside the name in tables."""
        return "random weights" if self.random else "synthetic demo" if self.synthetic else ""

    @property
    def figure_label(self) -> str:
        suffix = " [random]" if self.random else " [synthetic]" if self.synthetic else ""
        return figures.plain(self.name + suffix)


@dataclass
class Cell:
    text: str
    cls: str = ""
    title: str = ""
    span: int = 1  # columns the cell covers


@dataclass
class Row:
    cells: list[Cell]
    model: str | None = None  # the first column is this model (with its weights flag) ...
    label: str = ""  # ... or this plain label
    cls: str = ""
    divider: str = ""  # a full-width label row drawn above this row


@dataclass
class HtmlTable:
    columns: list[str]
    rows: list[Row]
    groups: list[tuple[str, int]] = field(default_factory=list)  # a header row above `columns`: (label, span)
    subheader: list[str] = field(default_factory=list)  # a header row below `columns`
    titles: list[str] = field(default_factory=list)  # tooltips of `columns`
    cls: str = ""
    collapsed: str = ""  # when set, the table is folded under this summary line


@dataclass
class Figure:
    src: str
    alt: str


@dataclass
class Section:
    id: str
    title: str
    missing: str = ""  # why the section is empty ('' when it has content)
    notes: list[str] = field(default_factory=list)
    tables: list[HtmlTable] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # CSV/Markdown files of its tables (relative to index.html)
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------------
# Reading the run folder
# --------------------------------------------------------------------------------------------------------------------


def model_infos(env: dict, models: Sequence[str]) -> dict[str, ModelInfo]:
    """Weights provenance per model from env.json (`weights` {model: {...}} and/or `weights_sha256` {model: hash})."""
    weights = env.get("weights") if isinstance(env.get("weights"), dict) else {}
    hashes = env.get("weights_sha256") if isinstance(env.get("weights_sha256"), dict) else {}
    out = {}
    for name in dict.fromkeys([*models, *weights, *hashes]):
        w = weights.get(name, {})
        w = {"sha256": w} if isinstance(w, str) else w if isinstance(w, dict) else {}
        fingerprint = str(w.get("sha256") or hashes.get(name) or "")
        source = str(w.get("source") or "")
        if not source and fingerprint.startswith(("random-init", "unhashed:")):  # bench's non-hash fingerprints
            source = fingerprint.split("/")[0].removeprefix("unhashed:")
        origin = w.get("model_source") if isinstance(w.get("model_source"), dict) else {}
        kind = str(origin.get("kind") or "registry")
        described = kind if kind == "registry" else f"{kind}: {origin.get('target', '')}"
        if kind != "registry":
            counters = origin.get("flop_conventions") or ()
            described += f" (FLOPs: {', '.join(counters)} only)" if counters else " (FLOPs not counted: no counter)"
        out[name] = ModelInfo(
            name=name,
            model_source=described,
            source=source,
            sha256=fingerprint,
            path=str(w.get("path") or ""),
            random=bool(w.get("random")) or source.lower() in ("random", "random-init"),
            synthetic="synthetic" in source.lower(),
        )
    return out


# --------------------------------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------------------------------


class Outputs:
    """Files written under `run_dir/report/` during one render (so that stale ones can be removed afterwards)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.dir = run_dir / REPORT_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.written: set[Path] = set()
        self.markdown: list[str] = []

    def path(self, name: str) -> Path:
        path = self.dir / name
        self.written.add(path)
        return path

    def rel(self, path: Path) -> str:
        return path.relative_to(self.run_dir).as_posix()

    def table(
        self, frame: pd.DataFrame, stem: str, title: str, digits: int = 1, markdown: pd.DataFrame | None = None
    ) -> list[str]:
        """Write `stem.csv` and `stem.md` (from `markdown` when given: the page's texts); returns their paths relative
        to index.html."""
        csv = atomic_write_text(self.path(f"{stem}.csv"), frame.to_csv(index=False, float_format="%.6g"))
        md_text = T.to_markdown(frame if markdown is None else markdown, digits, title)
        md = atomic_write_text(self.path(f"{stem}.md"), md_text)
        self.markdown.append(md_text)
        return [self.rel(csv), self.rel(md)]

    def figure(self, draw, name: str, alt: str, *args) -> Figure | None:
        path = draw(*args, self.path(name))
        return Figure(self.rel(path), alt) if path is not None else None

    def remove_stale(self) -> None:
        for sub in (self.dir, self.dir / "gallery"):
            if sub.is_dir():
                for path in sub.iterdir():
                    if path.is_file() and path.suffix in OWN_SUFFIXES and path not in self.written:
                        path.unlink(missing_ok=True)


def _sig(value: object) -> str:
    """Efficiency numbers: about three significant digits."""
    if isinstance(value, float | np.floating) and not math.isnan(value):
        a = abs(value)
        return f"{value:.1f}" if a >= 100 else f"{value:.2f}" if a >= 1 else f"{value:.3g}"
    return T.format_number(value)


# --------------------------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------------------------


def _provenance(env: dict | None, run_dir: Path, frame: pd.DataFrame, source: str, problems: list[str]) -> Section:
    sec = Section("run-summary", "Run summary and provenance")
    models = T.model_order(frame)
    acc = frame[T.is_accuracy(frame)]
    summary = [
        ("Run folder", str(run_dir)),
        ("Results read from", source),
        ("Rows", str(len(frame))),
        ("Models", ", ".join(models) or "none"),
        ("Conditions", str(acc["condition"].nunique())),
        ("Efficiency rows", str(int((frame["condition"] == "efficiency").sum()))),
    ]
    if env is None:
        sec.notes.append("env.json not found or unreadable: the run's provenance is unknown.")
        env = {}
    suite = env.get("suite")
    if isinstance(suite, dict):
        summary.insert(0, ("Suite", f"{suite.get('name', '?')} (version {suite.get('version', '?')})"))
    elif suite:
        summary.insert(0, ("Suite", str(suite)))
    git = env.get("git") if isinstance(env.get("git"), dict) else {"commit": env.get("git_commit") or env.get("commit")}
    command = env.get("command")
    provenance = [
        ("Created", env.get("created_at")),
        ("Command", " ".join(map(str, command)) if isinstance(command, list) else command),
        ("Git commit", (git.get("commit") or "") + (" (uncommitted changes)" if git.get("dirty") else "")),
        ("Device", " / ".join(str(v) for v in (env.get("device"), env.get("device_name")) if v)),
        ("CUDA / cuDNN", " / ".join(str(v) for v in (env.get("cuda"), env.get("cudnn")) if v)),
        ("CPU threads", env.get("threads")),
        ("World size", env.get("world_size")),
        ("Seed", " ".join(str(v) for v in (env.get("seed"), env.get("seed_protocol")) if v is not None)),
        ("Python", env.get("python")),
        ("Inference", json.dumps(env["inference"], sort_keys=True) if isinstance(env.get("inference"), dict) else None),
        ("Earlier sessions (resumed)", len(env["sessions"]) if isinstance(env.get("sessions"), list) else None),
    ]
    hardware = env.get("hardware") if isinstance(env.get("hardware"), dict) else {}
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    details = [(f"hardware: {k}", v) for k, v in hardware.items()] + [(k, v) for k, v in versions.items() if v]
    rows = [Row([Cell(str(v))], label=k) for k, v in summary]
    rows += [Row([Cell(str(v))], label=k) for k, v in provenance if v not in (None, "")]
    sec.tables.append(HtmlTable(["Item", "Value"], rows, cls="kv"))
    if details:
        rows = [Row([Cell(str(v))], label=k) for k, v in details]
        sec.tables.append(HtmlTable(["Item", "Value"], rows, cls="kv", collapsed="Library versions and hardware"))
    if problems:
        sec.notes += [f"Skipped: {p}" for p in problems]
    return sec


def _models(
    infos: dict[str, ModelInfo], models: Sequence[str], out: Outputs, not_built: dict[str, tuple[str, str]]
) -> Section:
    sec = Section("models", "Models and weights")
    if not infos:
        sec.missing = "No models in this run."
        return sec
    flagged = [i.name for i in infos.values() if i.flag]
    if flagged:
        sec.notes.append(
            "Models marked in red were not evaluated with trained Cityscapes weights (random initialisation or "
            "demo weights trained on synthetic scenes): their numbers show that the pipeline runs, not how good "
            "the architecture is."
        )
    rows = [
        Row(
            [
                Cell(i.model_source),
                Cell(i.source or "–"),
                Cell(i.sha256[:16] + ("…" if len(i.sha256) > 16 else "") or "–", title=i.sha256),
                Cell(i.path or "–"),
                _model_status(i, not_built.get(i.name)),
            ],
            model=i.name,
            cls="not-built" if i.name in not_built else "",
        )
        for i in infos.values()
    ]
    if not_built:
        sec.notes.append(
            f"{len(not_built)} deployment variant(s) could not be built on this machine (greyed): they have no "
            "weights and no results; the Deployment section says why."
        )
    frame = pd.DataFrame(
        [
            {
                "model": i.name,
                "model_source": i.model_source,
                "source": i.source,
                "sha256": i.sha256,
                "path": i.path,
                "random": i.random,
                "synthetic": i.synthetic,
                "status": _model_status(i, not_built.get(i.name)).text,
            }
            for i in infos.values()
        ]
    )
    sec.files = out.table(frame, "models", "Models and weights")
    sec.tables.append(
        HtmlTable(["Model", "Model source", "Weights source", "sha256", "Path", "Status"], rows, cls="kv")
    )
    return sec


def _model_status(info: ModelInfo, not_built: tuple[str, str] | None) -> Cell:
    if not_built is not None:
        status, reason = not_built
        return Cell(f"not built here ({status})", "", reason)
    return Cell(info.flag or "trained", "flag" if info.flag else "")


SHORT_NAMES = {
    "motion_blur": "motion", "defocus_blur": "defocus", "glass_blur": "glass", "gaussian_blur": "gauss",
    "gaussian_noise": "gauss", "impulse_noise": "impulse", "shot_noise": "shot", "speckle_noise": "speckle",
    "brightness": "bright", "contrast": "contrast", "saturate": "saturate", "jpeg_compression": "jpeg",
}  # fmt: skip
"""Column heads of the Cityscapes-C table under their category (the full name is the tooltip), as in the paper."""


def _trained(infos: dict[str, ModelInfo], models: Sequence[str]) -> list[str]:
    """The models that may be marked best: all but those with random (untrained) weights."""
    return [m for m in models if not (m in infos and infos[m].random)]


def _best_note(infos: dict[str, ModelInfo], models: Sequence[str]) -> str:
    untrained = [m for m in models if m not in _trained(infos, models)]
    if not untrained:
        return "bold = best of this run's models in the column."
    if len(untrained) == len(models):
        return "No value is bold: every model here has random weights."
    return "bold = best of this run's models with trained weights (random-weight models are never marked)."


def _table5(
    conditions: pd.DataFrame, summary: pd.DataFrame, models: Sequence[str], infos: dict[str, ModelInfo], out: Outputs
) -> tuple[Section, T.Table5 | None]:
    sec = Section("cityscapes-c", "Cityscapes-C (layout of SegFormer Table 5)")
    measured = [m for m in models if m in set(conditions["model"])]
    if conditions.empty:
        sec.missing = "Not measured in this run: no mIoU rows (clean or corrupted)."
        return sec, None
    tab = T.table5(conditions, measured, summary, eligible=_trained(infos, measured))
    sec.notes.append(
        "mIoU (%) per corruption, averaged over severities; "
        + _best_note(infos, measured)
        + " "
        + T.describe_severities(tab.severities)
        + " The paper's protocol (Appendix D) uses the noise corruptions at severities 1-3 and the other twelve at "
        "1-5; where this run measured other severities its averages are not directly comparable."
    )
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
    sec.files = out.table(tab.to_frame(), "cityscapes_c", "Cityscapes-C mIoU (%), averaged over severities")
    return sec, tab


def _scores(
    conditions: pd.DataFrame,
    summary: pd.DataFrame,
    models: Sequence[str],
    reference: str | None,
    infos: dict[str, ModelInfo],
    out: Outputs,
) -> Section:
    sec = Section("robustness-scores", "Summary scores")
    corrupted = conditions[conditions["corruption"] != "clean"]
    if corrupted.empty or summary.empty:
        sec.missing = "Not measured in this run: no corrupted conditions, so no mPC, rPC or mCE."
        return sec
    corrupted_rows = summary[summary["condition"] == "corrupted"]
    measured = [m for m in models if m in set(corrupted_rows["model"])]  # not the models with real-world rows only
    scores = corrupted_rows.pivot_table(index="model", columns="metric", values="value", aggfunc="last", sort=False)
    categories_wide = T.summary_wide(summary[summary["corruption"].isna()], "miou_avg")
    categories = [c for c in ("blur", "noise", "digital", "weather", "other") if c in categories_wide.columns]
    clean = conditions[conditions["corruption"] == "clean"].groupby("model", sort=False)["miou"].mean()
    scores = scores.reindex(index=measured, columns=["mPC", "rPC", "mCE", "rel_mCE", "mCE_corruptions"])
    scores.insert(0, "clean", clean.reindex(measured))
    for c in categories:
        scores[c] = categories_wide[c].reindex(measured)
    n_corruptions = summary[(summary["metric"] == "miou_avg") & summary["corruption"].notna()].groupby("model").size()
    if reference is None:
        sec.notes.append("No reference model has corrupted conditions: mCE cannot be computed.")
    sec.notes.append(
        f"Reference model for mCE: {reference} (its mCE and relative mCE are 100 by definition). "
        "mPC = mean over corruptions of the mIoU averaged over severities; rPC = mPC / clean mIoU "
        "(Michaelis et al. 2019). CE_c = Σ_s (100 − mIoU_c,s) / Σ_s (100 − mIoU^ref_c,s), mCE = mean over "
        "corruptions; relative CE_c = Σ_s (mIoU_clean − mIoU_c,s) / Σ_s (mIoU^ref_clean − mIoU^ref_c,s) "
        "(Hendrycks & Dietterich, ICLR 2019, with error = 100 − mIoU). Lower mCE is better. "
        "Read from the run's summary.csv (the same numbers, to the last digit). " + _best_note(infos, measured)
    )
    columns = ["clean", "mPC", "rPC", "mCE", "rel_mCE", *categories]
    names = ["Model", "Clean mIoU", "mPC", "rPC (%)", "mCE (%)", "rel. mCE (%)"] + [c.capitalize() for c in categories]
    trained = scores.loc[[m for m in _trained(infos, measured) if m in scores.index]]
    best = {c: (trained[c].min() if c in ("mCE", "rel_mCE") else trained[c].max()) for c in columns}
    rows = []
    for model, row in scores.iterrows():
        cells = []
        eligible = model in trained.index
        kept, total = row["mCE_corruptions"], n_corruptions.get(model, 0)
        for c in columns:
            v = row[c]
            mark = "best" if eligible and not pd.isna(v) and len(scores) > 1 and v == best[c] else ""
            title = f"over {kept:.0f} of {total} corruptions" if c == "mCE" and not pd.isna(kept) else ""
            cells.append(Cell(T.format_number(v), mark, title))
        rows.append(Row(cells, model=model))
        if not pd.isna(kept) and kept < total:
            sec.notes.append(
                f"{model}: mCE over {kept:.0f} of its {total} corruptions (the reference lacks the others)."
            )
    sec.tables.append(HtmlTable(names, rows))
    frame = scores.reset_index().rename(columns={"index": "model"}).assign(reference=reference)
    sec.files = out.table(frame, "robustness_scores", "Robustness summary scores")
    return sec


def _severity(conditions: pd.DataFrame, models: Sequence[str], infos, out: Outputs) -> Section:
    sec = Section("severity-curves", "mIoU per severity, per corruption")
    labels = {m: infos[m].figure_label for m in models}
    fig = out.figure(
        figures.severity_curves,
        "severity_curves.png",
        "mIoU against severity per corruption",
        conditions,
        models,
        labels,
    )
    if fig is None:
        sec.missing = "Not measured in this run: no corrupted conditions."
        return sec
    sec.figures.append(fig)
    sec.notes.append("One panel per corruption, one line per model; the first point of each line is the clean image.")
    wide = conditions.assign(
        condition=[c if c == "clean" else f"{c}-{s}" for c, s in zip(conditions["corruption"], conditions["severity"])]
    )
    sec.files = out.table(
        wide[["model", "condition", "category", "corruption", "severity", "miou"]],
        "miou_per_condition",
        "mIoU (%) per condition",
    )
    return sec


def _real_world(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    conditions: pd.DataFrame,
    models: Sequence[str],
    infos: dict[str, ModelInfo],
    out: Outputs,
) -> Section:
    sec = Section("real-world", "Real-world conditions")
    clean = conditions[conditions["corruption"] == "clean"].groupby("model", sort=False)["miou"].mean()
    real_weights = [m for m in models if not (m in infos and infos[m].flag)]  # published figures: trained models only
    tab = RW.real_world_table(frame, summary, models, clean, compare=real_weights)
    if tab is None:
        sec.missing = (
            "Not measured in this run: no real-world rows (ACDC, Dark Zurich, Foggy Cityscapes); the suites "
            + ", ".join(RW.REAL_WORLD_SUITES)
            + " measure them."
        )
        return sec
    shown = list(tab.values.index)
    trained = tab.values.loc[_trained(infos, shown)]
    best = {c: trained[c].max() for c in tab.columns} if len(shown) > 1 else {}
    sec.notes.append(
        "mIoU (%) under each real adverse condition, and in brackets its change from the model's clean mIoU in "
        "percentage points (pp; \u2212 = lower than clean), as the run's summary.csv holds it. A dataset's mean "
        "averages the conditions measured for that model. " + (_best_note(infos, shown) if best else "")
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
    sec.tables.append(HtmlTable(columns, rows, groups, subheader, titles))
    sec.files = out.table(tab.to_frame(), "real_world", "Real-world conditions: mIoU (%) and drop from clean (pp)")
    matrix = RW.real_class_iou(frame, models)
    if not matrix.empty:
        names = [f"{infos[m].figure_label} \u00b7 {RW.long_label(c)}" for m, c in matrix.index]
        heat = matrix.set_axis(names, axis=0)
        fig = out.figure(
            figures.class_heatmap,
            "real_world_class_iou.png",
            "per-class IoU heatmap under each real condition",
            heat,
            {n: n for n in names},
        )
        sec.figures.append(fig)
        sec.notes.append(
            "Per-class IoU (%) under each real condition in the heatmap (one row per model and condition); the "
            "exact values are in the real_world_class_iou table files below."
        )
        sec.files += out.table(
            matrix.reset_index(), "real_world_class_iou", "Per-class IoU (%) under each real-world condition"
        )
    return sec


def _corr(value: float) -> Cell:
    if pd.isna(value):
        return Cell("\u2014", title="no correlation: fewer than three models, or a side without spread")
    return Cell(f"{value:.3f}")


def _prediction(frame: pd.DataFrame, models: Sequence[str], infos: dict[str, ModelInfo], out: Outputs) -> Section:
    sec = Section("prediction", "Does Cityscapes-C predict the real world?")
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
        Row(
            [Cell(str(r.n))] + [_corr(getattr(r, c)) for c in RW.PREDICTION_COLUMNS],
            label=r.pair,
        )
        for r in summary.itertuples()
    ]
    header = ["Pair", "n (models)", "Pearson r", "Spearman \u03c1", "Pearson r (rel.)", "Spearman \u03c1 (rel.)"]
    sec.tables.append(HtmlTable(header, rows))
    point_rows = []
    for pair, group in points.groupby("pair", sort=False):
        for i, r in enumerate(group.itertuples()):
            cells = [Cell(T.format_number(r.synthetic_miou)), Cell(T.format_number(r.real_miou))]
            cells += [Cell(T.format_number(r.synthetic_rel, 3)), Cell(T.format_number(r.real_rel, 3))]
            point_rows.append(Row(cells, model=r.model, divider=pair if i == 0 else ""))
    point_header = ["Model", "Synthetic mIoU (%)", "Real mIoU (%)", "Synthetic / clean", "Real / clean"]
    folded = f"The values behind each panel ({len(points)} rows)" if len(points) > FOLD_ROWS else ""
    sec.tables.append(HtmlTable(point_header, point_rows, collapsed=folded))
    labels = {m: infos[m].figure_label for m in models if m in infos}
    fig = out.figure(
        figures.prediction_scatter,
        "prediction.png",
        "synthetic (Cityscapes-C) mIoU against real-world mIoU, one panel per pair",
        pairs,
        figures.model_colors(models),
        labels,
    )
    if fig is not None:
        sec.figures.append(fig)
    sec.files = out.table(summary, "prediction", "Does Cityscapes-C predict the real world? (correlations)", 3)
    sec.files += out.table(points, "prediction_points", "Synthetic and real mIoU (%) per pair and model", 3)
    return sec


def _class_iou(frame: pd.DataFrame, models: Sequence[str], infos, out: Outputs) -> Section:
    sec = Section("per-class-iou", "Per-class IoU (clean)")
    matrix = T.class_iou(frame, models)
    if matrix.empty:
        sec.missing = "Not measured in this run: no clean iou_<class> rows."
        return sec
    labels = {m: infos[m].figure_label for m in models}
    sec.figures.append(out.figure(figures.class_heatmap, "class_iou.png", "per-class IoU heatmap", matrix, labels))
    sec.notes.append("IoU (%) per class on the clean images; the exact values are in the table files below.")
    sec.files = out.table(matrix.reset_index(names="model"), "per_class_iou", "Per-class IoU (%) on clean images")
    return sec


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


def _efficiency(eff: pd.DataFrame, models: Sequence[str], out: Outputs, disagree: Sequence[str] = ()) -> Section:
    sec = Section("efficiency-table", "Efficiency")
    table = T.efficiency_table(eff, models)
    if table.empty:
        sec.missing = "Not measured in this run: no efficiency rows (params, GMACs, latency)."
        return sec
    columns = [c for c in table.columns if c not in ("model", "noisy")]
    rows = []
    for _, row in table.iterrows():
        cells = []
        for c in columns:
            text = _sig(row[c]) if c not in ("resolution", "batch_size", "precision", "device") else row[c] or "–"
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
    if any(deploy_variant(m) for m in table["model"]):
        sec.notes.append(VARIANT_NOTE)
    if any(m in disagree for m in table["model"]):
        sec.notes.append(
            "Rows in red: deployment variants whose logits disagree with eager fp32 beyond their precision's "
            "tolerance. They are not the same model as eager fp32: their speed is for information only."
        )
    sec.notes += ["FLOP conventions — " + n for n in T.convention_notes(eff)]
    if "memory_kind" in eff.columns:
        kinds = [str(k) for k in dict.fromkeys(eff.loc[eff["metric"] == "peak_memory", "memory_kind"]) if k]
        if kinds:
            sec.notes.append("Peak memory: " + "; ".join(MEMORY_KINDS.get(k, k) for k in kinds) + ".")
    sec.notes.append(
        "GMACs are per image (batch 1); latency is per batch, measured after warm-up; ⚠ marks a timing "
        "the runner flagged as noisy."
    )
    if (eff["metric"] == "gmacs_executed").any():
        sec.notes.append(
            "GMACs and params count the architecture as published (comparable with papers); GMACs executed count "
            "the graph that was run and timed (SegFormer's fast path folds the decoder: same outputs, fewer MACs)."
        )
    sec.files = out.table(table, "efficiency", "Efficiency", digits=3)
    return sec


def _curves(
    eff: pd.DataFrame,
    conditions: pd.DataFrame,
    models: Sequence[str],
    infos,
    out: Outputs,
    disagree: Sequence[str] = (),
) -> Section:
    sec = Section("efficiency-curves", "Efficiency curves")
    clean = conditions[conditions["corruption"] == "clean"].groupby("model")["miou"].mean()
    if clean.empty or eff.empty:
        sec.missing = "Not measured in this run: the curves need both a clean mIoU and efficiency rows per model."
        return sec
    curves = T.efficiency_curves(eff, clean)
    colors = figures.model_colors(models)
    labels = {m: infos[m].figure_label + (DISAGREE_MARK if m in disagree else "") for m in models}
    for i, curve in enumerate(curves):
        kind = "gmacs" if i == 0 and curve.x_label.startswith("GMACs") else "latency"
        fig = out.figure(
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
            sec.notes.append(
                f"Published points ({curve.published['note'].iloc[0]}) are drawn beside this run's for: "
                + ", ".join(curve.published["label"])
                + ". They are published numbers, not measured here; "
                "a different resolution or device moves them, compare with care."
            )
    if not sec.figures:
        sec.missing = "Not measured in this run: no model has both a clean mIoU and GMACs or latency rows."
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


DEPLOY_COLUMNS = [
    ("Precision", ""),
    ("Status", "agrees / DISAGREES with eager fp32 (logits on the first images), or why it was not built here"),
    ("p50", "median latency per batch (ms)"),
    ("p90", "90th percentile latency per batch (ms)"),
    ("p99", "99th percentile latency per batch (ms)"),
    ("IQR", "jitter: interquartile range of the latency, p75 - p25 (ms)"),
    ("Throughput (img/s)", "images per second at the batch size"),
    ("Peak memory (MiB)", ""),
    ("Speed-up vs eager fp32", "eager fp32's median latency / this variant's, same setting; none for a variant that "
     "disagrees"),
    ("Build (s)", "export, quantisation, engine build or compilation, session creation; 'cached': the artifact came "
     "from the cache"),
    ("File (MiB)", "the exported artifact (ONNX file, TensorRT engine); eager, fast and compile have none"),
    ("Max rel. diff", "max |logit - eager fp32 logit| / max |eager fp32 logit| over the checked images"),
    ("Argmax agree (%)", "pixels whose predicted class equals eager fp32's"),
    ("Clean mIoU (%)", "the variant's own clean mIoU on this run's images"),
    ("\u0394 clean (pp)", "clean mIoU minus eager fp32's (summary.csv delta_miou)"),
    ("mPC (%)", "mean mIoU over the run's corruptions (summary.csv)"),
    ("\u0394 mPC (pp)", "mPC minus eager fp32's, over the conditions both measured (summary.csv delta_mPC)"),
]  # fmt: skip
"""The grid table's columns after the row label (Backend): head and tooltip."""

ENERGY_COLUMNS = [
    ("Energy (J/image)", "GPU energy per image over the timed calls at the setting above (NVML; the whole board's)"),
    ("Power (W)", "mean GPU power over the timed calls at the setting above (NVML)"),
]
"""Beside peak memory in the grid table, when a variant has energy or power rows (GPU with NVML only)."""


def _grid_columns(energy: bool) -> list[tuple[str, str]]:
    """`DEPLOY_COLUMNS`, with `ENERGY_COLUMNS` after peak memory when `energy`."""
    at = [c for c, _ in DEPLOY_COLUMNS].index("Peak memory (MiB)") + 1
    return [*DEPLOY_COLUMNS[:at], *ENERGY_COLUMNS, *DEPLOY_COLUMNS[at:]] if energy else DEPLOY_COLUMNS


DISAGREES_TITLE = (
    "its logits differ from eager fp32 beyond the {precision} tolerance: it is not the same model; its speed is "
    "shown for information only"
)


def _signed(value: float, digits: int = 2) -> str:
    """A difference in pp with its sign: +0.03, \u22120.06, 0.00."""
    if pd.isna(value):
        return "\u2013"
    text = f"{abs(value):.{digits}f}"
    return text if float(text) == 0 else ("+" if value > 0 else "\u2212") + text


def _rel(value: float) -> str:
    return "\u2013" if pd.isna(value) else "0" if value == 0 else f"{value:.1e}"


def _deploy_cells(row: pd.Series, energy: bool = False) -> list[Cell]:
    """A grid row's cells after the row label (the texts the Markdown file holds too); with `energy`, the energy and
    power cells after peak memory."""
    status = str(row["status"])
    reference = (row["backend"], row["precision"]) == D.DEPLOY_REFERENCE
    if status in D.NOT_BUILT:
        reason = D.short_reason(row["reason"])
        return [
            Cell(row["precision"]),
            Cell(status, "status", str(row["reason"]) if not pd.isna(row["reason"]) else ""),
            Cell(reason, "reason", span=len(_grid_columns(energy)) - 2),
        ]
    disagrees = status == "disagrees"
    tolerance = (
        f"tolerance ({row['precision']}): max rel. diff \u2264 {row['tolerance_rel']:g}, argmax \u2265 "
        f"{row['tolerance_argmax_pct']:g}% over {T.format_number(row['agreement_images'], 0)} image(s); max abs. "
        f"diff {row['agreement_max_abs']:.3g} (logit)"
        if not pd.isna(row["tolerance_rel"])
        else ""
    )
    noisy = bool(row["noisy"]) if not pd.isna(row["noisy"]) else False
    timing = [
        Cell(_sig(row[c]) + (" \u26a0" if noisy else ""), "noisy" if noisy else "",
             "timing was noisy (high coefficient of variation)" if noisy else "")
        for c in ("latency_median_ms", "latency_p90_ms", "latency_p99_ms")
    ]  # fmt: skip
    cv = row["latency_cv"]
    timing.append(
        Cell(_sig(row["latency_iqr_ms"]), title=f"coefficient of variation {cv:.3f}" if not pd.isna(cv) else "")
    )
    if reference:
        speedup = Cell("1 (reference)")
    elif disagrees:
        speedup = Cell("\u2014 (disagrees)", "disagrees", DISAGREES_TITLE.format(precision=row["precision"]))
    else:
        speedup = Cell(
            "\u2013" if pd.isna(row["speedup_vs_eager_fp32"]) else f"{row['speedup_vs_eager_fp32']:.2f}\u00d7"
        )
    build = _sig(row["build_time_s"])
    build_title = ""
    if D.is_true(row["cache_hit"]):
        build += " (cached)"
        if not pd.isna(row["artifact_build_s"]):
            build_title = f"loaded from the artifact cache; building it took {row['artifact_build_s']:.3g} s"
    status_cell = (
        Cell("DISAGREES \u26a0", "status disagrees", DISAGREES_TITLE.format(precision=row["precision"]))
        if disagrees
        else Cell(status, "status", tolerance or D.short_reason(row["reason"]))
    )
    delta = "ref." if reference else None
    source = row["energy_source"] if isinstance(row["energy_source"], str) and row["energy_source"] else "unknown"
    power = [Cell(_sig(row[c]), title=f"read from {source}") for c in D.ENERGY] if energy else []
    return [
        Cell(row["precision"]),
        status_cell,
        *timing,
        Cell(_sig(row["throughput_img_s"])),
        Cell(_sig(row["peak_memory_MiB"])),
        *power,
        speedup,
        Cell(build, title=build_title),
        Cell(_sig(row["artifact_size_MiB"])),
        Cell(_rel(row["agreement_max_rel"]), title=tolerance),
        Cell(T.format_number(row["argmax_agreement_pct"], 1), title=tolerance),
        Cell(T.format_number(row["clean_miou"], 2)),
        Cell(delta or _signed(row["delta_miou_pp"])),
        Cell(T.format_number(row["mPC"], 2)),
        Cell(delta or _signed(row["delta_mPC_pp"])),
    ]


def _machine(setting: dict[str, str]) -> str:
    """`cpu, AMD EPYC, 2 threads`: where a setting was timed."""
    parts = [setting.get("device", ""), setting.get("device_name", "")]
    parts.append(f"{setting['threads']} threads" if setting.get("threads") else "")
    return ", ".join(p for p in parts if p)


def _setting_text(setting: dict[str, str]) -> str:
    if not setting:
        return "no timing rows"
    device = setting["device"] + (f" ({setting['device_name']})" if setting.get("device_name") else "")
    threads = f", {setting['threads']} threads" if setting.get("threads") else ""
    return f"timed at {setting['resolution'] or '?'}, batch {setting['batch_size'] or '?'}, on {device}{threads}"


def _deployment(
    frame: pd.DataFrame,
    eff: pd.DataFrame,
    summary: pd.DataFrame,
    conditions: pd.DataFrame,
    infos: dict[str, ModelInfo],
    out: Outputs,
) -> Section:
    sec = Section("deployment", "Deployment: backends and precisions")
    clean = conditions[conditions["corruption"] == "clean"].groupby("model", sort=False)["miou"].mean()
    grid = D.deploy_grid(frame, eff, summary, clean)
    if grid is None:
        sec.missing = (
            f"Not measured in this run: no deployment rows; the `{D.DEPLOY_SUITE}` suite measures each model per "
            "backend \u00d7 precision (eager, fast, compile, onnxruntime, tensorrt at fp32, bf16, fp16, int8)."
        )
        return sec
    sec.notes = _deploy_notes(grid)
    energy = grid.has_energy
    columns = _grid_columns(energy)
    header = ["Backend", *[c for c, _ in columns]]
    titles = ["", *[t for _, t in columns]]
    groups = [("", 3), ("Latency per batch (ms)", 4), ("", 3 + len(columns) - len(DEPLOY_COLUMNS)), ("Build", 2),
              ("Agreement", 2), ("Accuracy", 4)]  # fmt: skip
    markdown = []
    for model in grid.models:
        info = infos.get(variant_name(model, *D.DEPLOY_REFERENCE))
        flag = f" [{info.badge}]" if info is not None and info.badge else ""
        divider = f"{model}{flag}: {_setting_text(grid.settings.get(model, {}))}"
        rows = []
        for i, (_, row) in enumerate(grid.table[grid.table["model"] == model].iterrows()):
            cells = _deploy_cells(row, energy)
            status = str(row["status"])
            cls = "disagrees" if status == "disagrees" else "not-built" if status in D.NOT_BUILT else ""
            rows.append(Row(cells, label=row["backend"], cls=cls, divider=divider if i == 0 else ""))
            texts = [c.text for c in cells] if cls != "not-built" else [row["precision"], f"{status}: {cells[-1].text}"]
            markdown.append({"model": model, "backend": row["backend"], **dict(zip(header[1:], texts))})
        sec.tables.append(HtmlTable(header, rows, groups, titles=titles, cls="deploy"))
    fig = out.figure(
        figures.deploy_trade_off,
        "deployment.png",
        "median latency against \u0394 clean mIoU from eager fp32, one point per backend \u00d7 precision",
        D.trade_off_points(grid),
        figures.model_colors(grid.models),
    )
    if fig is not None:
        sec.figures.append(fig)
        sec.notes.append(
            "Figure: each built variant's median latency (ms, at the setting above) against its \u0394 clean mIoU "
            "(pp) from eager fp32 (drawn at 0); a red cross marks a variant that disagrees with eager fp32."
        )
    title = "Deployment: backends and precisions (latency in ms, \u0394 in pp)"
    sec.files = out.table(grid.table, "deployment", title, digits=3, markdown=pd.DataFrame(markdown))
    parts = (
        _deploy_batches(D.batch_sweep(eff, grid), out),
        _deploy_curves(D.latency_curve(eff, grid), out),
        _deploy_end_to_end(D.end_to_end(eff, grid), out),
    )
    sec.extra["parts"] = [p for p in parts if p is not None]
    sec.files += [f for p in sec.extra["parts"] for f in p.files]
    return sec


def _deploy_notes(grid: D.DeployGrid) -> list[str]:
    """What the grid table shows and how it was measured; which variants disagree; what this machine could not run."""
    table = grid.table
    notes = [
        "One row per backend \u00d7 precision of each model: a variant, named <model>@<backend>-<precision> in the "
        "other sections, where it is a model of its own. Each built variant was compared with the model's eager fp32 "
        "on the suite's first images: it agrees when its largest logit difference relative to the largest eager "
        "logit (max rel. diff) and the share of pixels with the same predicted class (argmax agree) stay within its "
        "precision's tolerance (hover a status for the numbers). Only a variant that agrees gets a speed-up."
    ]
    bad = grid.status("disagrees")
    if not bad.empty:
        notes.append(
            "\u26a0 DISAGREES (rows in red): "
            + ", ".join(bad["variant"])
            + ": its logits differ from eager fp32 beyond its precision's tolerance, so it is not the same model. Its "
            "speed is shown for information only and no speed-up is claimed; its own clean mIoU and mPC, and their "
            "\u0394 from eager fp32, say what the difference costs on this run's images."
        )
    missing = grid.not_built()
    if missing:
        machines = [_machine(s) for s in grid.settings.values()] or [str(d) for d in table["device"].dropna()]
        devices = "; ".join(dict.fromkeys(machines)) or "device unknown"
        parts = [f"{', '.join(labels)}: {status}, {reason}" for status, reason, labels in missing]
        count = int(table["status"].isin(D.NOT_BUILT).sum())
        notes.append(
            f"Not measured on this machine ({devices}), {count} of {len(table)} grid cells, greyed below: "
            + "; ".join(parts)
            + "."
        )
    unchecked = grid.status(D.UNCHECKED)
    if not unchecked.empty:
        notes.append(
            f"No deploy cell for {', '.join(unchecked['variant'])}: whether it agrees with eager fp32 is unknown, so "
            "it gets no speed-up."
        )
    notes.append(
        "Latency measured with segbench's clock on the model call only (normalised input in, logits out), after "
        "warm-up, per batch: p50 (median), p90 and p99 in ms; jitter is the interquartile range (IQR = p75 \u2212 "
        "p25, ms; the coefficient of variation is its tooltip). Throughput in images per second at that batch. "
        "Speed-up = eager fp32's median latency / the variant's (ratio of medians, same setting)."
    )
    kinds = [k for k in dict.fromkeys(table["memory_kind"].dropna()) if k]
    if kinds:
        notes.append("Peak memory: " + "; ".join(MEMORY_KINDS.get(k, k) for k in kinds) + ".")
    notes.append(
        "Build time in s (export, quantisation, engine build or compilation; 'cached' when the artifact came from "
        "the cache, its tooltip says what building it took); file size of the exported artifact in MiB. FLOPs are "
        "not counted per backend: the architecture's parameters and GMACs are in the Efficiency section."
    )
    notes.append(
        "Clean mIoU and mPC (%) are each variant's own measurement on this run's images; \u0394 (pp) is the "
        "difference from the model's eager fp32 as the run's summary.csv holds it (delta_miou, delta_mPC)."
    )
    if grid.has_energy:
        sources = ", ".join(str(s) for s in dict.fromkeys(table["energy_source"].dropna()) if s) or "source unknown"
        notes.append(
            f"Energy per image (J) and mean power (W): the GPU board's, over the timed calls at the setting above, "
            f"read through NVML ({sources}); a dash where a variant has none."
        )
    if grid.other_settings:
        others = ", ".join(grid.other_settings)
        notes.append(
            f"{others}: timed at other settings too (batch sizes, resolutions): below, and in the Efficiency table."
        )
    return notes


def _where(row: pd.Series) -> str:
    """`cpu (AMD EPYC), 2 threads`: the machine a view's row was measured on."""
    where = str(row["device"] or "device unknown") + (f" ({row['device_name']})" if row["device_name"] else "")
    return where + (f", {row['threads']} threads" if row["threads"] else "")


def _deploy_batches(sweep: pd.DataFrame, out: Outputs) -> Section | None:
    """Throughput against batch size (`D.batch_sweep`): per model, variant x batch size -> img/s, OOM marked, and the
    best throughput with its batch. None without a sweep."""
    if sweep.empty:
        return None
    sec = Section("deployment-batch", "Throughput against batch size")
    markdown = []
    for model, rows in sweep.groupby("model", sort=False):
        batches = sorted(set(rows["batch_size"]))
        first = rows.iloc[0]
        divider = f"{model}: images per second at {first['resolution']}, on {_where(first)}"
        table = []
        for i, (_, mine) in enumerate(rows.groupby("variant", sort=False)):
            head, last = mine.iloc[0], int(mine["batch_size"].max())
            by = mine.set_index("batch_size")
            cells = [Cell(head["precision"])]
            for batch in batches:
                if batch not in by.index:
                    cells.append(Cell("\u2013", title=f"not timed: this variant's sweep stopped at batch {last}"))
                elif by.loc[batch, "oom"]:
                    where = f"{head['resolution']}, {head['precision']}, {head['device']}"
                    cells.append(Cell("OOM", "flag", f"out of memory at batch {batch} ({where}): larger not tried"))
                else:
                    r = by.loc[batch]
                    cls = " ".join(c for c, on in (("best", r["best"]), ("noisy", r["noisy"])) if on)
                    title = f"median latency {_sig(r['latency_median_ms'])} ms per batch of {batch}"
                    title += "; timing was noisy" if r["noisy"] else ""
                    cells.append(Cell(_sig(r["throughput_img_s"]) + (" \u26a0" if r["noisy"] else ""), cls, title))
            best = mine[mine["best"]]
            if len(best):
                cells += [Cell(_sig(best["throughput_img_s"].iloc[0])), Cell(str(best["batch_size"].iloc[0]))]
            else:
                cells += [Cell("\u2013"), Cell("\u2013")]
            cls = "disagrees" if head["status"] == "disagrees" else ""
            table.append(Row(cells, label=head["backend"], cls=cls, divider=divider if i == 0 else ""))
            texts = dict(zip(["precision", *[f"batch {b}" for b in batches], "best (img/s)", "at batch"],
                             [c.text for c in cells]))  # fmt: skip
            markdown.append({"model": model, "resolution": head["resolution"], "on": _where(head),
                             "backend": head["backend"], **texts})  # fmt: skip
        header = ["Backend", "Precision", *map(str, batches), "Best (img/s)", "At batch"]
        groups = [("", 2), ("Throughput (img/s) at batch size", len(batches)), ("", 2)]
        sec.tables.append(HtmlTable(header, table, groups, cls="deploy-batch"))
    sec.notes.append(
        "Images per second at each batch size, model call only, each variant at its own precision (the row's). A "
        "variant's sweep times batch 1, 2, 4, \u2026 in turn and stops after the first batch that gains too little "
        "throughput or runs out of memory, so variants list different batches: OOM marks a batch that ran out of "
        "memory (larger ones were not tried), a dash one that was not timed. Bold: the variant's best throughput, "
        "also in the last two columns; each cell's tooltip holds the median latency per batch (ms)."
    )
    if (sweep["status"] == "disagrees").any():
        sec.notes.append("Rows in red disagree with eager fp32: their throughput is for information only.")
    title = "Throughput (img/s) against batch size"
    sec.files = out.table(sweep, "deployment_batch", title, digits=3, markdown=pd.DataFrame(markdown))
    return sec


def _deploy_curves(curve: pd.DataFrame, out: Outputs) -> Section | None:
    """Latency against resolution (`D.latency_curve`): per model a figure (one line per variant) and the numbers.
    None without a model timed at two resolutions."""
    if curve.empty:
        return None
    sec = Section("deployment-resolution", "Latency against resolution")
    markdown = []
    for i, (model, rows) in enumerate(curve.groupby("model", sort=False)):
        first = rows.iloc[0]
        setting = f"batch 1, {_where(first)}, each variant at its own precision"
        alt = f"{model}: median latency at batch 1 against image size, one line per backend \u00d7 precision"
        fig = out.figure(figures.deploy_latency_curve, f"deployment_resolution_{i + 1}.png", alt, rows,
                         f"{model}: {setting}")  # fmt: skip
        if fig is not None:
            sec.figures.append(fig)
        sizes = rows.drop_duplicates("resolution").sort_values("megapixels")
        resolutions = list(sizes["resolution"])
        table = []
        for j, (_, mine) in enumerate(rows.groupby("variant", sort=False)):
            head = mine.iloc[0]
            by = mine.set_index("resolution")
            cells = [Cell(head["precision"])]
            for r in resolutions:
                noisy = r in by.index and by.loc[r, "noisy"]
                text = _sig(by.loc[r, "latency_median_ms"]) if r in by.index else "\u2013"
                cells.append(Cell(text + (" \u26a0" if noisy else ""), "noisy" if noisy else ""))
            cls = "disagrees" if head["status"] == "disagrees" else ""
            table.append(Row(cells, label=head["backend"], cls=cls, divider=f"{model}: {setting}" if j == 0 else ""))
            markdown.append({"model": model, "on": _where(head), "backend": head["backend"],
                             "precision": head["precision"],
                             **{f"{r} (ms)": c.text for r, c in zip(resolutions, cells[1:])}})  # fmt: skip
        header = ["Backend", "Precision", *resolutions]
        subheader = ["", "megapixels", *[f"{mp:.3g}" for mp in sizes["megapixels"]]]
        groups = [("", 2), ("Median latency at batch 1 (ms)", len(resolutions))]
        sec.tables.append(HtmlTable(header, table, groups, subheader, cls="deploy-resolution"))
    sec.notes.append(
        "Median latency per image (ms) at batch 1 against the image size (H\u00d7W), model call only, on the machine "
        "named above each table, each variant at its own precision (backend and precision name the line and the "
        "row). The y axis is logarithmic when the latencies span more than a factor of 10; \u26a0 marks a noisy "
        "timing."
    )
    sec.files = out.table(curve, "deployment_resolution", "Median latency at batch 1 (ms) against resolution", 3,
                          markdown=pd.DataFrame(markdown))  # fmt: skip
    return sec


def _deploy_end_to_end(e2e: pd.DataFrame, out: Outputs) -> Section | None:
    """Model only vs end to end (`D.end_to_end`): per model, each variant's model-only latency beside its end-to-end
    latency, whole image and sliding window, with the stage split. None without end-to-end rows."""
    if e2e.empty:
        return None
    sec = Section("deployment-e2e", "Model only vs end to end")
    stages = D.e2e_stages(e2e)
    header = ["Backend", "Precision", "Inference", "Model only p50", "p50", "p90", "p99", *stages, "Not the model",
              "End to end (img/s)"]  # fmt: skip
    titles = ["", "", "", "the model call alone at batch 1, same resolution (the grid's timing: random input already "
              "on the device)", "median end-to-end time per call", "90th percentile", "99th percentile",
              *[STAGE_TITLES.get(s, s) for s in stages], "the share of the stages' sum outside the model stage",
              "images per second, one image per call"]  # fmt: skip
    groups = [("", 3), ("Latency per image (ms)", 4), ("Stage medians: ms (% of their sum)", len(stages)), ("", 2)]
    names = ["precision", "inference", "model only p50 (ms)", "p50 (ms)", "p90 (ms)", "p99 (ms)",
             *[f"{s} stage (ms, %)" for s in stages], "not the model", "end to end (img/s)"]  # fmt: skip
    markdown = []
    for model, rows in e2e.groupby("model", sort=False):
        resolution = ", ".join(dict.fromkeys(rows["resolution"]))
        divider = f"{model}: one {resolution} PNG per call (batch 1), on {_where(rows.iloc[0])}"
        table = []
        for i, (_, r) in enumerate(rows.iterrows()):
            slide = r["inference"] == "slide"
            if slide:
                crops = f"{r['num_crops']} crops" if r["num_crops"] else "crops"
                mode = f"sliding window: {crops} of {r['crop'] or '?'}, stride {r['stride'] or '?'}"
            else:
                mode = "whole image" if r["inference"] == "whole" else r["inference"] or "?"
            alone = ""
            if pd.isna(r["model_only_ms"]):
                alone = "the grid times the whole image only" if slide else "no model-only timing at this resolution"
            cells = [
                Cell(r["precision"]),
                Cell(mode, "mode"),
                Cell(_sig(r["model_only_ms"]), title=alone),
                *[Cell(_sig(r[c])) for c in ("latency_e2e_median_ms", "latency_e2e_p90_ms", "latency_e2e_p99_ms")],
                *[Cell(_stage(r[f"{s}_ms"], r[f"{s}_pct"])) for s in stages],
                Cell("\u2013" if pd.isna(r["not_model_pct"]) else f"{r['not_model_pct']:.0f}%"),
                Cell(_sig(r["throughput_e2e_img_s"])),
            ]
            cls = "disagrees" if r["status"] == "disagrees" else ""
            table.append(Row(cells, label=r["backend"], cls=cls, divider=divider if i == 0 else ""))
            texts = dict(zip(names, [c.text for c in cells]))
            markdown.append({"model": model, "resolution": r["resolution"], "on": _where(r), "backend": r["backend"],
                             **texts})  # fmt: skip
        sec.tables.append(HtmlTable(header, table, groups, titles=titles, cls="deploy-e2e"))
    sec.notes.append(
        "End to end: one image per call, from the PNG on disk to the label map on the host, each variant at its own "
        "precision, stage by stage: "
        + "; ".join(f"{s}: {STAGE_TITLES.get(s, s)}" for s in stages)
        + ". p50, p90 and p99 are of the per-call totals (ms); a stage's time is its median over the calls, its "
        "share is of the stages' sum (which can differ slightly from p50). Model only: the model call alone at batch "
        "1 and the same resolution, from the grid's timing (a random tensor already on the device). Not the model: "
        "the share of the stages' sum spent outside the model stage."
    )
    sec.files = out.table(e2e, "deployment_end_to_end", "Model only vs end to end (ms)", 3,
                          markdown=pd.DataFrame(markdown))  # fmt: skip
    return sec


def _stage(ms: float, pct: float) -> str:
    """A stage cell: `3.72 (71%)`."""
    return "\u2013" if pd.isna(ms) else _sig(ms) + ("" if pd.isna(pct) else f" ({pct:.0f}%)")


STAGE_TITLES = {
    "decode": "the PNG read from disk and decoded",
    "preprocess": "to a tensor on the device, normalised",
    "model": "the forward pass (whole image, or every crop of the sliding window, stitched)",
    "postprocess": "logits resized to the labels, argmax, copied to the host",
}
"""What each end-to-end stage covers (`bench.measure.end_to_end`; a stage not listed here is named as is)."""


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


FOLD_ROWS = 12
"""Tables longer than this are folded under a summary line (their total row stays in view)."""

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


def _evaluation_time(cells: list[dict], env: dict | None, out: Outputs) -> Section:
    sec = Section("evaluation-time", "Where the evaluation time went")
    evaluation = _evaluation(cells)
    if evaluation is None:
        sec.missing = "No accuracy cell records with timing in this run folder."
        return sec
    per_condition, total, busy, limited = evaluation
    frame = pd.concat([per_condition, pd.DataFrame([total])], ignore_index=True)
    columns = [c for c in frame.columns if c != "condition"]
    rows = []
    for i, row in frame.iterrows():
        last = i == len(frame) - 1
        cells_ = [Cell(f"{row[c]:.0f}%" if c.endswith("_pct") and not math.isnan(row[c]) else _sig(row[c]))
                  for c in columns]  # fmt: skip
        rows.append(Row(cells_, label=row["condition"], cls="total" if last else ""))
    header = [TIME_NAMES[c] for c in frame.columns]
    if len(per_condition) > FOLD_ROWS:  # a full Cityscapes-C run has 73 conditions: the total first, the rest folded
        sec.tables.append(HtmlTable(header, rows[-1:]))
        sec.tables.append(HtmlTable(header, rows[:-1], collapsed=f"Per condition ({len(per_condition)} rows)"))
    else:
        sec.tables.append(HtmlTable(header, rows))
    sec.files = out.table(frame.rename(columns=TIME_NAMES), "evaluation_time", "Where the evaluation time went", 2)
    config = env.get("config") if isinstance(env, dict) and isinstance(env.get("config"), dict) else {}
    sec.notes.append(
        f"{total['images']} images in {total['wall_s']:.1f} s of wall time over {len(per_condition)} condition(s): "
        f"the models were busy for {100 * busy:.0f}% of it (inference {total['model_pct']:.0f}%, metric "
        f"{total['metric_pct']:.0f}%); the loop waited for images for {total['data_pct']:.0f}%."
    )
    if limited:
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
        sec.notes.append(
            f"The pipeline, not the models, limited this run: the models were idle for {100 * (1 - busy):.0f}% of "
            "the wall time."
            + (" To hide it, " + "; or ".join(remedies) + "." if remedies else "")
            + ("" if cuda else " On a CPU the models already use every core, so DataLoader workers cannot hide it.")
        )
    sec.notes.append(
        "Data is the loop's wait for the next batch (reading and decoding PNGs, corrupting on the fly unless "
        "--corrupted-data was given); Models is inference (normalisation, forward pass, resize to the labels, "
        "argmax) of every listed model; Metric is the confusion matrix. On a GPU, Models and Metric are device time "
        "(CUDA events) and the wait for images overlaps them. Seconds are per rank; the rest of the wall time is "
        "setup (dataset, DataLoader workers) and reductions. Models that shared a condition share one row, as each "
        "batch went through all of them."
    )
    return sec


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


def _palette_legend() -> list[tuple[str, str]]:
    return [(name, "#{:02x}{:02x}{:02x}".format(*rgb)) for name, rgb in zip(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE)]


def _gallery_image(run_dir: Path, rel: object, out: Outputs, problems: list[str], colorize: bool) -> str | None:
    """A gallery image's path relative to index.html; single-channel label maps are drawn in the Cityscapes palette."""
    if not isinstance(rel, str) or not rel:
        return None
    path = (run_dir / rel).resolve()
    if not path.is_relative_to(run_dir.resolve()) or not path.is_file():
        problems.append(f"gallery image {rel!r} is missing or outside the run folder")
        return None
    rel = path.relative_to(run_dir.resolve()).as_posix()
    if not colorize:
        return rel
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("L", "I", "I;16"):
            return rel
        ids = np.asarray(image, dtype=np.int64)
    lut = np.zeros((max(256, int(ids.max()) + 1), 3), dtype=np.uint8)
    lut[: len(CITYSCAPES_PALETTE)] = CITYSCAPES_PALETTE
    target = out.path(f"gallery/{hashlib.sha1(rel.encode()).hexdigest()[:16]}.png")
    atomic_write(target, lambda f: Image.fromarray(lut[ids]).save(f, format="PNG"))
    return out.rel(target)


def _gallery(run_dir: Path, models: Sequence[str], out: Outputs) -> Section:
    sec = Section("gallery", "Corruption gallery")
    index = run_dir / "gallery" / "index.json"
    if not index.is_file():
        sec.missing = "Not made in this run: no gallery/index.json."
        return sec
    folder = RunFolder(run_dir)
    data = folder.read_json("gallery/index.json")
    problems = folder.problems
    if not isinstance(data, dict) or not isinstance(data.get("conditions"), list):
        sec.missing = f"gallery/index.json is not in the expected form ({'; '.join(problems) or 'no conditions list'})."
        return sec
    entries: dict[tuple[str, int], dict] = {}
    for item in data["conditions"]:
        if not isinstance(item, dict):
            continue
        name = str(item.get("condition", ""))
        corruption, severity = ("clean", 0) if name == "clean" else T.split_condition(name)
        if corruption is None:
            problems.append(f"gallery condition {name!r} is neither 'clean' nor '<corruption>-<severity>'")
            continue
        preds = item.get("predictions") if isinstance(item.get("predictions"), dict) else {}
        entries[corruption, severity] = {
            "input": _gallery_image(run_dir, item.get("input"), out, problems, colorize=False),
            "predictions": [
                (m, _gallery_image(run_dir, preds.get(m), out, problems, True))
                for m in [*[m for m in models if m in preds], *[m for m in preds if m not in models]]
            ],
        }
    corruptions = [c for _, names in T.column_groups([c for c, _ in entries]) for c in names]
    severities = sorted({s for c, s in entries if c != "clean"})
    grid = [
        (corruption, [entries.get((corruption, s)) for s in severities])
        for corruption in corruptions
        if any((corruption, s) in entries for s in severities)
    ]
    clean = entries.get(("clean", 0))
    if not grid and clean is None:
        sec.missing = "gallery/index.json lists no usable condition."
        return sec
    gt = _gallery_image(run_dir, data.get("ground_truth"), out, problems, True)
    sec.extra.update(
        image_id=str(data.get("image_id", "")),
        clean=clean,
        grid=grid,
        severities=severities,
        ground_truth=gt,
        palette=_palette_legend(),
    )
    sec.notes.append(
        "First the clean image, every model's prediction and the ground truth; then one row per corruption and one "
        "column per severity, each cell the corrupted input with every model's prediction under it. Predictions "
        "and ground truth are drawn in the Cityscapes palette (legend below)."
    )
    sec.notes += problems
    return sec


def _warnings(cells: list[dict], problems: list[str], out: Outputs) -> Section:
    sec = Section("warnings", "Per-cell warnings")
    records = []
    for cell in cells:
        rows = cell.get("rows") if isinstance(cell.get("rows"), list) else []
        models = {str(r.get("model")) for r in rows if isinstance(r, dict) and r.get("model") is not None}
        conditions = {str(r.get("condition")) for r in rows if isinstance(r, dict) and r.get("condition") is not None}
        model = cell.get("model") or (models.pop() if len(models) == 1 else "")
        condition = cell.get("condition") or (conditions.pop() if len(conditions) == 1 else "")
        if isinstance(condition, dict):
            condition = condition.get("name", "")
        warnings = cell.get("warnings") or []
        for w in warnings if isinstance(warnings, list) else [warnings]:
            text = w.get("message") or json.dumps(w) if isinstance(w, dict) else str(w)
            records.append(
                {
                    "cell": str(cell.get("cell", cell["_file"])),
                    "model": str(model),
                    "condition": str(condition),
                    "warning": text,
                }
            )
        for r in rows:
            if isinstance(r, dict) and r.get("metric") == "latency_median" and str(r.get("noisy")).lower() == "true":
                setting = ", ".join(
                    f"{label}{r[k]}"
                    for k, label in (("resolution", ""), ("batch_size", "batch "), ("precision", ""))
                    if r.get(k) not in (None, "")
                )
                records.append(
                    {
                        "cell": str(cell.get("cell", cell["_file"])),
                        "model": str(model),
                        "condition": str(condition),
                        "warning": f"latency timing was noisy ({setting})",
                    }
                )
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
        sec.files = out.table(frame, "warnings", "Per-cell warnings")
    else:
        sec.notes.append("No cell recorded a warning.")
    return sec


def _history(run_dir: Path, out: Outputs) -> Section:
    sec = Section("history", "Regression history")
    path, entries, bad = read_history(run_dir)  # the run's own, else runs/history.jsonl (written by compare)
    if path is None:
        sec.missing = "No history.jsonl in this run folder or beside it (written by regression tracking)."
        return sec
    rows = []
    for i, entry in enumerate(entries):
        label = str(entry.get("commit") or "")[:8] or str(entry.get("timestamp") or i)
        for name, value in entry["metrics"].items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                rows.append({"index": i, "label": label, "timestamp": entry.get("timestamp"), "metric": str(name),
                             "value": float(value)})  # fmt: skip
    history = pd.DataFrame(rows)
    if bad:
        sec.notes.append(f"{bad} line(s) of history.jsonl could not be read and were skipped.")
    if history.empty:
        sec.missing = "history.jsonl holds no numeric metrics."
        return sec
    png, left_out = figures.history_trends(history, out.path("history.png"))
    sec.figures.append(Figure(out.rel(png), "metric trends over the history entries"))
    sec.notes.append(f"{history['index'].nunique()} entries; x axis: entries in file order, labelled by commit.")
    if left_out:
        sec.notes.append(f"Not drawn ({len(left_out)} more metrics): " + ", ".join(left_out) + "; see history.csv.")
    sec.files = out.table(history.drop(columns="index"), "history", "Regression history", digits=4)
    return sec


# --------------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------------


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(run_dir: str | Path, reference_model: str | None = None) -> Path:
    """Render `run_dir/index.html` and `run_dir/report/` (figures as PNG; tables as CSV and Markdown).

    Args:
        run_dir: a run folder with `results.csv` (or `cells/*.json`) and optionally `env.json`,
            `gallery/index.json` and `history.jsonl`.
        reference_model: the model mCE and relative mCE are measured against (default: the first model with
            mIoU rows).

    Returns:
        The path of index.html.

    Raises:
        FileNotFoundError: `run_dir` is not a folder or holds no results.
        ValueError: `reference_model` has no mIoU rows in the run, or results.csv is malformed.
    """
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    cells = folder.cells()
    raw, source = folder.rows()
    frame = T.normalize_results(raw, source)
    env = folder.env
    summary = folder.summary(reference_model)  # rewritten first if another reference is asked for
    problems = folder.problems
    models = T.model_order(frame)
    infos = model_infos(env or {}, models)
    conditions = T.miou_conditions(frame)
    used = summary["reference"].dropna() if "reference" in summary.columns else summary.iloc[0:0]
    reference = used.iloc[0] if len(used) else None
    eff = T.efficiency_rows(frame)
    disagree = D.disagreeing(frame)

    out = Outputs(run_dir)
    table5_section, _ = _table5(conditions, summary, models, infos, out)
    sections = [
        _provenance(env, run_dir, frame, source, [p for p in problems if not p.startswith("cells/")]),
        _models(infos, models, out, D.not_built(frame)),
        table5_section,
        _scores(conditions, summary, models, reference, infos, out),
        _severity(conditions, models, infos, out),
        _real_world(frame, summary, conditions, models, infos, out),
        _prediction(frame, models, infos, out),
        _class_iou(frame, models, infos, out),
        _efficiency(eff, models, out, disagree),
        _curves(eff, conditions, models, infos, out, disagree),
        _deployment(frame, eff, summary, conditions, infos, out),
        _evaluation_time(cells, env, out),
        _gallery(run_dir, models, out),
        _warnings(cells, [p for p in problems if p.startswith("cells/")], out),
        _history(run_dir, out),
    ]
    assert tuple(s.id for s in sections) == SECTION_IDS
    markdown = "\n".join(out.markdown)
    all_md = atomic_write_text(out.path("report.md"), f"# segbench report: {run_dir.name}\n\n{markdown}")
    template = _environment().get_template("report.html.j2")
    suite = (env or {}).get("suite")
    title = f"segbench report — {suite.get('name') if isinstance(suite, dict) else suite or run_dir.name}"
    page = template.render(
        title=title,
        run_name=run_dir.name,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sections=sections,
        models=infos,
        all_markdown=out.rel(all_md),
    )
    index = atomic_write_text(run_dir / "index.html", page)
    out.remove_stale()
    return index
