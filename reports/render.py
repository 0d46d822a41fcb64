"""Render a run folder into one offline HTML report: `run_dir/index.html` plus `run_dir/report/` (figures as PNG,
every table also as CSV and Markdown).

The reporter reads the run's files only (`results.csv` or, failing that, the rows of `cells/*.json`; `env.json`;
`cells/*.json` for warnings; `gallery/index.json`; `history.jsonl`) into one `reports.page.Page`, and fills each
section of `reports.sections.PAGE` from it, in that order. Each section degrades to a one-line "not measured in this
run" note when its inputs are absent; a damaged file is left out and named under the run summary (or the cell
warnings); a run that is not whole (killed or interrupted) says so at the top of the page. Templates render with
autoescape on, so names from the results (model names, warning texts, commands) can never inject markup.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from segbench.bench.results.classes import CITYSCAPES
from segbench.bench.results.io import atomic_write_text
from segbench.bench.results.store import RunFolder
from segbench.reports import tables as T
from segbench.reports.page import Outputs, Page, model_infos
from segbench.reports.sections import PAGE

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment() -> Environment:
    """The reporter's one jinja2 environment: its templates, autoescaped, undefined names an error."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def read_page(run_dir: Path, reference_model: str | None = None) -> Page:
    """Read a run folder once for the report (summary.csv is rewritten first if another reference is asked for)."""
    folder = RunFolder(run_dir)
    cells = folder.cells()
    raw, source = folder.rows()
    frame = T.normalize_results(raw, source)
    env = folder.env
    summary = folder.summary(reference_model)
    calibration = folder.calibration()
    return Page(
        run_dir=run_dir,
        frame=frame,
        source=source,
        summary=summary,
        env=env,
        cells=cells,
        problems=folder.problems,
        infos=model_infos(env or {}, T.model_order(frame)),
        out=Outputs(run_dir),
        classes=folder.classes or CITYSCAPES,
        partial=folder.partial() or "",
        calibration=calibration,
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
    page = read_page(run_dir, reference_model)
    sections = [build(page) for build in PAGE]
    out = page.out
    markdown = "\n".join(out.markdown)
    banner = f"> {page.partial}\n\n" if page.partial else ""
    all_md = atomic_write_text(out.path("report.md"), f"# segbench report: {run_dir.name}\n\n{banner}{markdown}")
    template = environment().get_template("report.html.j2")
    suite = (page.env or {}).get("suite")
    title = f"segbench report — {suite.get('name') if isinstance(suite, dict) else suite or run_dir.name}"
    html = template.render(
        title=title,
        run_name=run_dir.name,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sections=sections,
        models=page.infos,
        partial=page.partial,
        all_markdown=out.rel(all_md),
    )
    index = atomic_write_text(run_dir / "index.html", html)
    out.remove_stale()
    return index
