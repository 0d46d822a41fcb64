"""A leaderboard across run folders (`segbench leaderboard RUN_DIR... --out FILE.html`): one self-contained, offline
HTML page (no CDN, one inlined script; sortable and filterable), with the same table as CSV, Markdown and LaTeX beside.

One row per run x model. The figures are each run's own (`reports.console.results_table`: clean mIoU, mPC, rPC, mCE
against its named reference, real-world means, worst-attack mIoU and attack area, params, GMACs and latency whose
headers name their counter, resolution, device and precision), next to the settings that change a number: dataset,
suite and version, device, precision and inference protocol. Rows whose settings differ are never merged: the table
is grouped by setting (a header row per group, and a warning when there is more than one), and columns whose headers
differ (another latency device, another mCE reference) stay apart.

The Pareto front of clean mIoU against each latency column (per device and precision, as its header says) marks the
rows no other row beats on both (higher mIoU and lower latency); a figure per latency column is inlined as PNG.
"""

from __future__ import annotations

import base64
import glob
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from segbench.bench.results.io import atomic_write_text
from segbench.bench.results.schema import FAILED, UNAVAILABLE, deploy_variant
from segbench.bench.results.store import RunFolder
from segbench.bench.results.targets import check_target
from segbench.reports.console import results_table

GENERATOR = "segbench leaderboard"
"""The page's `<meta name="generator">`: a file with it is a leaderboard segbench may replace."""
SETTINGS = ("Dataset", "Suite", "Device", "Precision", "Protocol")
"""The settings columns: what makes two rows' numbers comparable."""
CLEAN = "Clean mIoU"


def run_dirs(patterns: Sequence[str]) -> list[Path]:
    """Run folders from folders and globs, in order, each once; a pattern matching nothing, or a folder that holds no
    run (no run.json), is a `ValueError` naming it."""
    out: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not matches:
            raise ValueError(f"{pattern}: matches no folder; give run folders or a glob such as 'runs/*'")
        for match in matches:
            path = Path(match)
            if not (path / "run.json").is_file():
                raise ValueError(f"{path}: no run.json here; give run folders that segbench wrote")
            if path.resolve() not in {p.resolve() for p in out}:
                out.append(path)
    return out


def _protocol(protocol: object) -> str:
    if not isinstance(protocol, dict):
        return "?"
    mode = str(protocol.get("mode", "?"))
    crop = protocol.get("crop")
    return f"{mode} {crop[0]}x{crop[1]}" if mode == "slide" and isinstance(crop, list | tuple) else mode


def _weights(digest: object, info: dict) -> str:
    """A model's weights as the table shows them: the hash's first 12 digits, marked when random or the demo's."""
    mark = " [random]" if info.get("random") else " [synthetic demo]" if info.get("status") == "synthetic-demo" else ""
    return f"{str(digest or 'none')[:12]}{mark}"


def run_rows(run_dir: Path) -> pd.DataFrame:
    """One run's rows: its `results_table`, with the run, the settings and each model's weights beside."""
    folder = RunFolder(run_dir)
    manifest = folder.manifest
    table = results_table(run_dir).reset_index()
    cells = list(folder.cells())
    unbuilt = {c.get("model") for c in cells if c.get("kind") == "deploy" and c.get("status") in (UNAVAILABLE, FAILED)}
    table = table[~table["Model"].isin(unbuilt)].reset_index(drop=True)  # grid cells this machine could not build
    devices = {c.get("model"): str(c.get("device", "?")) for c in cells if c.get("kind") == "accuracy"}
    protocols = manifest.get("protocols") or {}
    weights = manifest.get("weights") or {}
    table.insert(1, "Run", run_dir.name)
    table["Dataset"] = manifest.get("dataset") or "cityscapes"
    table["Suite"] = f"{manifest.get('suite', '?')} v{manifest.get('suite_version', '?')}"
    table["Device"] = [devices.get(m, "?") for m in table["Model"]]
    precision = str((manifest.get("settings") or {}).get("precision") or "fp32")
    table["Precision"] = [(deploy_variant(m) or (None, None, precision))[2] for m in table["Model"]]  # a variant's own
    table["Protocol"] = [_protocol(protocols.get(m)) for m in table["Model"]]
    status = (folder.env or {}).get("weights") or {}
    table["Weights (sha256)"] = [_weights(weights.get(m), status.get(m) or {}) for m in table["Model"]]
    return table


def pareto_front(accuracy: pd.Series, latency: pd.Series) -> pd.Series:
    """Whether each row is on the front: no other row has at least its accuracy and at most its latency, and is
    better in one. Rows without both numbers are not on it."""
    known = accuracy.notna() & latency.notna()
    front = pd.Series(False, index=accuracy.index)
    for i in accuracy.index[known]:
        others = known & (accuracy >= accuracy[i]) & (latency <= latency[i])
        others &= (accuracy > accuracy[i]) | (latency < latency[i])
        front[i] = not others.any()
    return front


PUBLISHED_RUN = "published"
"""The `Run` of a published row: never a run folder's name, so such rows are told apart."""


def published_rows(datasets: Sequence[str]) -> pd.DataFrame:
    """Published figures as marked rows, for the datasets the runs read: the SegFormer paper's Table 1 (single-scale
    mIoU; its GFLOPs are mmcv's multiply-adds plus hand-counted attention, at 1024x2048 for Cityscapes, 512x512 for
    ADE20K) and SemSegBench's Cityscapes table (mmseg checkpoints: clean, ACDC). Each is a setting of its own."""
    from segbench.reports import tables as T

    frames = []
    table1 = T.read_reference("segformer_table1.csv")
    for dataset, size in (("cityscapes", "1024x2048"), ("ade20k", "512x512")):
        if dataset in datasets:
            frames.append(
                pd.DataFrame(
                    {
                        "Model": table1["variant"],
                        CLEAN: table1[f"{dataset}_miou_ss"],
                        f"GMACs [paper: mmcv + attention, {size}]": table1[f"{dataset}_gflops"],
                        "Suite": "SegFormer paper, Table 1 (single scale)",
                        "Dataset": dataset,
                    }
                )
            )
    if "cityscapes" in datasets:
        bench = T.read_reference("semsegbench_cityscapes.csv")
        frames.append(
            pd.DataFrame(
                {
                    "Model": bench["model"],
                    CLEAN: bench["clean_miou"],
                    "ACDC mIoU": bench["acdc_miou"],
                    "Params (M)": bench["params"] / 1e6,
                    "Suite": "SemSegBench (arXiv 2505.18015), mmseg checkpoints",
                    "Dataset": "cityscapes",
                }
            )
        )
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["Run"], out["Device"], out["Precision"], out["Protocol"] = PUBLISHED_RUN, *["as published"] * 3
    out["Weights (sha256)"] = "the authors'"
    return out


def leaderboard(run_dirs: Sequence[Path], published: bool = False) -> pd.DataFrame:
    """Every run's rows, grouped by setting (`SETTINGS`), best clean mIoU first within a group; a "Pareto" column per
    latency column. `published`: the published rows of the runs' datasets too (`published_rows`), as groups of their
    own."""
    table = pd.concat([run_rows(d) for d in run_dirs], ignore_index=True)
    if published:
        table = pd.concat([table, published_rows(list(dict.fromkeys(table["Dataset"])))], ignore_index=True)
    table.insert(0, "Setting", table[list(SETTINGS)].astype(str).agg("; ".join, axis=1))
    for column in [c for c in table.columns if c.startswith("Latency") and CLEAN in table.columns]:
        front = pd.Series(False, index=table.index)
        for _, rows in table.groupby("Setting", sort=False):
            front[rows.index] = pareto_front(rows[CLEAN], rows[column])
        where = column.removeprefix("Latency ms [").removesuffix("]")
        table[f"Pareto front [{where}]"] = front.map({True: "yes", False: ""})
    first = ["Setting", "Model", "Run", *SETTINGS, "Weights (sha256)"]
    table = table[first + [c for c in table.columns if c not in first]]
    order = table.groupby("Setting", sort=False).ngroup()
    key = table[CLEAN] if CLEAN in table.columns else pd.Series(0.0, index=table.index)
    return table.assign(_g=order, _k=-key.fillna(-1e9)).sort_values(["_g", "_k"]).drop(columns=["_g", "_k"])


def _figure(table: pd.DataFrame, column: str) -> str:
    """A scatter of clean mIoU against a latency column, the front joined, as a data: URI (PNG)."""
    from segbench.reports.figures import new_figure

    fig = new_figure(6.0, 3.8)
    ax = fig.add_subplot()
    for setting, rows in table.groupby("Setting", sort=False):
        rows = rows.dropna(subset=[CLEAN, column])
        if rows.empty:
            continue
        ax.scatter(rows[column], rows[CLEAN], label=setting)
        for _, r in rows.iterrows():
            ax.annotate(r["Model"], (r[column], r[CLEAN]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = rows[pareto_front(rows[CLEAN], rows[column])].sort_values(column)
        ax.plot(front[column], front[CLEAN], linestyle="--", linewidth=1)
    ax.set_xlabel(column)
    ax.set_ylabel("clean mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_leaderboard(patterns: Sequence[str], out: str | Path, published: bool = False) -> Path:
    """Write the leaderboard page `out` (.html) and its .csv, .md and .tex beside; returns the page's path.

    Raises:
        ValueError: a pattern without runs, a folder without run.json, or an `out` that is not a leaderboard
            segbench wrote (`TargetError`: it is left as it is).
    """
    from segbench.reports import tables as T
    from segbench.reports.leaderboard_page import render_page

    out = Path(out)
    if out.suffix.lower() != ".html":
        raise ValueError(f"--out {out}: give an .html file (the .csv, .md and .tex are written beside it)")
    check_target(out, "--out", "a segbench leaderboard", "give a new .html file", _is_leaderboard)
    table = leaderboard(run_dirs(patterns), published)
    figures = {c: _figure(table, c) for c in table.columns if c.startswith("Latency")}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".csv"), table.to_csv(index=False))
    atomic_write_text(out.with_suffix(".md"), T.to_markdown(table, 2))
    atomic_write_text(out.with_suffix(".tex"), table.to_latex(index=False, float_format="%.2f", na_rep=""))
    return atomic_write_text(out, render_page(table, figures, GENERATOR, out.stem))


def _is_leaderboard(path: Path) -> bool:
    return path.is_file() and f'content="{GENERATOR}"' in path.read_text(errors="replace")[:2000]
