"""The report page's types: what a section builder reads (`Page`: the run folder as read once) and what it hands to the
template (`Section` with its `HtmlTable`s of `Row`s of `Cell`s, and `Figure`s), the files it writes (`Outputs`), and
`Builder`, the one signature every section of `reports.sections` has."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segbench.bench.results.classes import CITYSCAPES, ClassTable
from segbench.bench.results.io import atomic_write_text
from segbench.bench.results.schema import WEIGHTS_STATUSES
from segbench.reports import figures
from segbench.reports import tables as T

REPORT_DIR = "report"
"""The folder beside index.html that holds the report's figures and table files."""

OWN_SUFFIXES = (".png", ".csv", ".md")
"""The files the report writes under `REPORT_DIR` (others there are left alone)."""

FOLD_ROWS = 12
"""Tables longer than this are folded under a summary line (their total row stays in view)."""


# --------------------------------------------------------------------------------------------------------------------
# Small records handed to the template
# --------------------------------------------------------------------------------------------------------------------


UNKNOWN_WEIGHTS = "unknown"
"""A model's weights status when env.json records none (`WEIGHTS_STATUSES`): a run folder written before the run
recorded it, or a model env.json does not describe. The report then marks nothing: it cannot tell."""


@dataclass
class ModelInfo:
    """A model as the report names it, with its weights' provenance."""

    name: str
    source: str = ""
    sha256: str = ""
    path: str = ""
    status: str = UNKNOWN_WEIGHTS
    """What its weights are, as env.json records it: one of `WEIGHTS_STATUSES`, else `UNKNOWN_WEIGHTS`."""
    model_source: str = "registry"
    """Where the model itself came from: "registry", or `<kind>: <target>` (hf, py, entry-point, torchscript, onnx,
    module), with the FLOP counters that apply to it when they differ from the registry's."""

    @property
    def random(self) -> bool:
        """Random (untrained) weights: never marked best."""
        return self.status == "random"

    @property
    def synthetic(self) -> bool:
        """The demo's weights, trained on synthetic scenes only."""
        return self.status == "synthetic-demo"

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


def model_infos(env: dict, models: Sequence[str]) -> dict[str, ModelInfo]:
    """Weights provenance per model from env.json (`weights` {model: {...}} and/or `weights_sha256` {model: hash}).

    Whether weights are trained, random or the synthetic demo's is the `status` the run wrote per model, and nothing
    else (`UNKNOWN_WEIGHTS` without one): never guessed from a fingerprint or a source text.
    """
    weights = env.get("weights") if isinstance(env.get("weights"), dict) else {}
    hashes = env.get("weights_sha256") if isinstance(env.get("weights_sha256"), dict) else {}
    out = {}
    for name in dict.fromkeys([*models, *weights, *hashes]):
        w = weights.get(name, {})
        w = {"sha256": w} if isinstance(w, str) else w if isinstance(w, dict) else {}
        status = w.get("status")
        origin = w.get("model_source") if isinstance(w.get("model_source"), dict) else {}
        kind = str(origin.get("kind") or "registry")
        described = kind if kind == "registry" else f"{kind}: {origin.get('target', '')}"
        if kind != "registry":
            counters = origin.get("flop_conventions") or ()
            described += f" (FLOPs: {', '.join(counters)} only)" if counters else " (FLOPs not counted: no counter)"
        out[name] = ModelInfo(
            name=name,
            model_source=described,
            source=str(w.get("source") or ""),
            sha256=str(w.get("sha256") or hashes.get(name) or ""),
            path=str(w.get("path") or ""),
            status=status if status in WEIGHTS_STATUSES else UNKNOWN_WEIGHTS,
        )
    return out


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


def sig(value: object) -> str:
    """Efficiency numbers: about three significant digits."""
    if isinstance(value, float | np.floating) and not math.isnan(value):
        a = abs(value)
        return f"{value:.1f}" if a >= 100 else f"{value:.2f}" if a >= 1 else f"{value:.3g}"
    return T.format_number(value)


# --------------------------------------------------------------------------------------------------------------------
# Output files
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


# --------------------------------------------------------------------------------------------------------------------
# What a section builder reads, and its signature
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Page:
    """The run folder as the report read it once; every section builder reads this and nothing else.

    Attributes:
        run_dir: the run folder.
        frame: its tidy rows (`tables.normalize_results`).
        source: where the rows were read from (results.csv, or the cells of a running run).
        summary: summary.csv (against the report's reference model).
        env: env.json (None when missing or unreadable).
        cells: the cell records (cells/*.json).
        problems: what could not be read (files, lines), in reading order.
        infos: each model's weights provenance (`model_infos`).
        out: the files this render writes.
        classes: the class table the run scored with (run.json; Cityscapes' for a folder without run.json).
        partial: one line when the run is not whole (`RunFolder.partial`: how far it got, how to resume), else "".
        calibration: the accuracy cells' calibration sums by (model, condition) (`RunFolder.calibration`).
    """

    run_dir: Path
    frame: pd.DataFrame
    source: str
    summary: pd.DataFrame
    env: dict | None
    cells: list[dict]
    problems: list[str]
    infos: dict[str, ModelInfo]
    out: Outputs
    classes: ClassTable = CITYSCAPES
    partial: str = ""
    calibration: dict[tuple[str, str], dict] = field(default_factory=dict)

    @cached_property
    def models(self) -> list[str]:
        """The run's models in result order."""
        return T.model_order(self.frame)

    @cached_property
    def conditions(self) -> pd.DataFrame:
        """mIoU per model and accuracy condition (`tables.miou_conditions`)."""
        return T.miou_conditions(self.frame)

    @cached_property
    def clean(self) -> pd.Series:
        """Clean mIoU (%) per model."""
        conditions = self.conditions
        return conditions[conditions["corruption"] == "clean"].groupby("model", sort=False)["miou"].mean()

    @cached_property
    def eff(self) -> pd.DataFrame:
        """The efficiency rows (`tables.efficiency_rows`: key columns as text)."""
        return T.efficiency_rows(self.frame)

    @property
    def reference(self) -> str | None:
        """The reference model of mCE that summary.csv was computed against (None: none)."""
        used = self.summary["reference"].dropna() if "reference" in self.summary.columns else self.summary.iloc[0:0]
        return used.iloc[0] if len(used) else None

    def trained(self, models: Sequence[str]) -> list[str]:
        """The models that may be marked best: all but those with random (untrained) weights."""
        return [m for m in models if not (m in self.infos and self.infos[m].random)]

    def best_note(self, models: Sequence[str]) -> str:
        """What a bold value means among `models`."""
        untrained = [m for m in models if m not in self.trained(models)]
        if not untrained:
            return "bold = best of this run's models in the column."
        if len(untrained) == len(models):
            return "No value is bold: every model here has random weights."
        return "bold = best of this run's models with trained weights (random-weight models are never marked)."

    def figure_labels(self, models: Sequence[str]) -> dict[str, str]:
        """Each model's name as the figures print it (with its weights flag)."""
        return {m: self.infos[m].figure_label for m in models}


@dataclass(frozen=True)
class Builder:
    """A section of the page: its HTML id and title, and the function that fills it from the page.

    Calling a builder, `builder(page)`, gives its `Section`; `reports.sections.PAGE` lists them in page order.
    """

    id: str
    title: str
    fill: Callable[[Page, Section], Section]

    def __call__(self, page: Page) -> Section:
        return self.fill(page, Section(self.id, self.title))


def builds(section_id: str, title: str) -> Callable[[Callable[[Page, Section], Section]], Builder]:
    """Declare a section builder: `fill(page, section)` fills the empty `Section(section_id, title)` and returns it."""
    return lambda fill: Builder(section_id, title, fill)
