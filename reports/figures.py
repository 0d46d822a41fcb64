"""The report's figures: small matplotlib PNGs drawn on the Agg canvas (no pyplot, no global backend switch).

Every function takes ready-made tables from `reports.tables`, writes one PNG atomically and returns its path.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from segbench.bench.results.io import atomic_write
from segbench.bench.results.schema import DEPLOY_REFERENCE
from segbench.reports.realworld import pair_names
from segbench.reports.tables import CurvePoints, column_groups

DPI = 80
DISAGREE = "#b00020"
"""The colour of a deployment variant that disagrees with eager fp32 (the report's red)."""
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def plain(text: str) -> str:
    """Text safe for matplotlib labels: `$` would start mathtext, a leading `_` hides a legend entry."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """One colour per model, stable across all figures of a report."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write the figure as PNG atomically (`bench.results.atomic_write`)."""
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None}))


def severity_curves(
    conditions: pd.DataFrame, models: Sequence[str], labels: Mapping[str, str], path: str | Path
) -> Path | None:
    """Small multiples, one panel per measured corruption (paper order): mIoU against severity, one line per model;
    severity 0 is the clean image. Returns None when no corrupted condition was measured."""
    corrupted = conditions[conditions["corruption"] != "clean"]
    if corrupted.empty:
        return None
    categories = dict(zip(corrupted["corruption"], corrupted["category"]))
    order = [(cat, c) for cat, names in column_groups(categories, categories) for c in names if c in categories]
    fig, axes = _severity_grid(len(order), 2.0)
    colors = model_colors(models)
    clean = conditions[conditions["corruption"] == "clean"].set_index("model")["miou"]
    top = int(corrupted["severity"].max())
    for ax, (category, corruption) in zip(axes.flat, order):
        for model in models:
            sel = corrupted[(corrupted["model"] == model) & (corrupted["corruption"] == corruption)]
            if sel.empty:
                continue
            sel = sel.sort_values("severity")
            xs, ys = list(sel["severity"]), list(sel["miou"])
            if model in clean.index:
                xs, ys = [0, *xs], [float(clean[model]), *ys]
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color=colors[model], label=labels[model])
        _severity_axes(ax, f"{corruption} ({category})", top)
    _finish_severity_grid(fig, axes, len(order), "mIoU (%)")
    return save(fig, path)


def _severity_grid(panels: int, panel_height: float) -> tuple[Figure, np.ndarray]:
    """A figure of `panels` small multiples, four per row, sharing the y axis."""
    cols = min(4, panels)
    rows = math.ceil(panels / cols)
    fig = new_figure(2.7 * cols + 0.3, panel_height * rows + 0.6)
    return fig, fig.subplots(rows, cols, squeeze=False, sharey=True)


def _severity_axes(ax, title: str, top: int) -> None:
    """One panel's title and its severity axis: clean (0), then 1 to `top`."""
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(0, top + 1))
    ax.set_xticklabels(["clean", *map(str, range(1, top + 1))], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3)


def _finish_severity_grid(fig: Figure, axes: np.ndarray, used: int, ylabel: str) -> None:
    """Hide the unused panels, label the y axes and put the models' legend under the grid."""
    for ax in axes.flat[used:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(4, max(1, len(names))), fontsize=8, frameon=False)


def class_heatmap(
    matrix: pd.DataFrame, labels: Mapping[str, str], path: str | Path, split: int | None = None, title: str = ""
) -> Path | None:
    """Models x classes heatmap of clean IoU (%), values written in the cells.

    Args:
        split: draw a white gap before this column (the first of the best classes after the worst ones).
        title: drawn above the heatmap (e.g. which classes of how many are shown).
    """
    if matrix.empty:
        return None
    values = matrix.to_numpy(dtype=float)
    fig = new_figure(0.5 * values.shape[1] + 2.8, 0.42 * values.shape[0] + 1.6)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(values.shape[1]))
    ax.set_xticklabels([plain(c) for c in matrix.columns], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(values.shape[0]))
    ax.set_yticklabels([labels[m] for m in matrix.index], fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        text = "–" if math.isnan(v) else f"{v:.0f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color="white" if not v > 60 else "black")
    if split:
        ax.axvline(split - 0.5, color="white", linewidth=4)
    if title:
        ax.set_title(plain(title), fontsize=9)
    fig.colorbar(image, ax=ax, label="IoU (%)", shrink=0.8)
    return save(fig, path)


def prediction_scatter(
    pairs: Sequence[Mapping], colors: Mapping[str, str], labels: Mapping[str, str], path: str | Path
) -> Path | None:
    """Small multiples, one panel per synthetic/real pair (`bench.results.prediction_table`): each model's
    Cityscapes-C mIoU (x) against its mIoU under the real condition (y), points labelled by model; the title gives
    the number of models and the correlations (a dash where none can be read). Returns None without pairs."""
    if not pairs:
        return None
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig = new_figure(3.5 * cols + 0.3, 3.1 * rows + 0.3)
    axes = fig.subplots(rows, cols, squeeze=False)

    def corr(value: float | None) -> str:
        return "\u2014" if value is None else f"{value:.2f}"

    for ax, entry in zip(axes.flat, pairs):
        synthetic, real = pair_names(entry)
        for model, x, y in zip(entry["models"], entry["x"], entry["y"]):
            color = colors.get(model, PALETTE[0])
            ax.scatter(x, y, s=36, color=color, edgecolors="black", linewidths=0.5, zorder=3)
            label = labels.get(model, plain(model))
            ax.annotate(label, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        stats = f"n = {entry['n']}, r = {corr(entry['pearson'])}, \u03c1 = {corr(entry['spearman'])}"
        ax.set_title(f"{plain(entry['label'])}\n{stats}", fontsize=8.5)
        what = "mPC, mIoU" if synthetic == "mPC" else f"{synthetic} mIoU"
        ax.set_xlabel(plain(f"Cityscapes-C {what} (%)"), fontsize=8)
        ax.set_ylabel(plain(f"{real} mIoU (%)"), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.margins(0.25)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(pairs) :]:
        ax.set_visible(False)
    return save(fig, path)


def efficiency_curve(
    curve: CurvePoints, colors: Mapping[str, str], labels: Mapping[str, str], path: str | Path
) -> Path | None:
    """Clean mIoU against a cost (GMACs or latency), one bubble per model, area proportional to parameters.

    Published points for matching models are drawn as hollow diamonds with their own label.
    """
    points = curve.points.dropna(subset=["x", "miou"])
    if points.empty:
        return None
    fig = new_figure(6.2, 4.6)
    ax = fig.add_subplot()
    all_params = pd.concat([points["params"], curve.published.get("params", pd.Series(dtype=float))]).dropna()
    scale = 900.0 / max(float(all_params.max()), 1e-9) if len(all_params) else 0.0

    def size(p: float) -> float:
        return 40.0 if not p or math.isnan(p) else max(25.0, scale * p)

    for row in points.itertuples():
        ax.scatter(
            row.x,
            row.miou,
            s=size(row.params),
            color=colors[row.model],
            alpha=0.6,
            edgecolors="black",
            linewidths=0.6,
            label=labels[row.model],
            zorder=3,
        )
        ax.annotate(labels[row.model], (row.x, row.miou), fontsize=7, xytext=(5, 5), textcoords="offset points")
    if not curve.published.empty:
        for row in curve.published.itertuples():
            ax.scatter(
                row.x,
                row.miou,
                s=size(row.params),
                marker="D",
                facecolors="none",
                edgecolors="dimgray",
                linewidths=1.0,
                zorder=2,
            )
            ax.annotate(
                f"{plain(row.label)} (published)",
                (row.x, row.miou),
                fontsize=7,
                color="dimgray",
                xytext=(-6, -12),
                textcoords="offset points",
                ha="right",
            )
        note = plain(curve.published_label or "published: " + curve.published["note"].iloc[0])
        ax.scatter([], [], marker="D", facecolors="none", edgecolors="dimgray", label=note)
    xs = pd.concat([points["x"], curve.published.get("x", pd.Series(dtype=float))]).dropna()
    if len(xs) and xs.min() > 0 and xs.max() / xs.min() > 20:
        ax.set_xscale("log")
    ax.margins(0.18)
    ax.set_title(plain(curve.setting), fontsize=9)
    ax.set_xlabel(plain(curve.x_label), fontsize=9)
    ax.set_ylabel("clean mIoU (%)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    legend = fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncols=2,
        fontsize=7,
        frameon=False,
        title="bubble area ~ parameters",
        title_fontsize=7,
    )
    for handle in legend.legend_handles:
        handle.set_sizes([30.0])
    return save(fig, path)


def deploy_trade_off(points: pd.DataFrame, colors: Mapping[str, str], path: str | Path) -> Path | None:
    """Median latency (x, ms) against the change of clean mIoU from eager fp32 (y, pp), one point per built
    backend x precision of each model (`reports.deploy.trade_off_points`), labelled "backend precision".

    Eager fp32 is a square at 0; a variant that agrees is a filled circle in its model's colour; one that disagrees
    is a red cross labelled "(disagrees)": not the same model, its speed is not the model's. Returns None without
    points.
    """
    if points.empty:
        return None
    fig = new_figure(6.4, 4.6)
    ax = fig.add_subplot()
    ax.axhline(0.0, color="gray", linewidth=0.8, linestyle="--", zorder=1)
    for row in points.itertuples():
        color = colors.get(row.model, PALETTE[0])
        bad = row.status == "disagrees"
        if bad:
            style = {"s": 70, "marker": "X", "color": DISAGREE, "edgecolors": color, "linewidths": 1.0, "zorder": 4}
        else:
            marker = "s" if row.reference else "o"
            style = {"s": 45, "marker": marker, "color": color, "edgecolors": "black", "linewidths": 0.6, "zorder": 3}
        ax.scatter(row.latency_median_ms, row.delta, **style)
        label = f"{row.backend} {row.precision}" + (" (disagrees)" if bad else "")
        ax.annotate(
            plain(label),
            (row.latency_median_ms, row.delta),
            fontsize=7,
            xytext=(5, 4),
            textcoords="offset points",
            color=DISAGREE if bad else "black",
        )
    for model in dict.fromkeys(points["model"]):
        color = colors.get(model, PALETTE[0])
        ax.scatter([], [], s=45, marker="o", color=color, edgecolors="black", label=plain(model))
    ax.scatter([], [], s=45, marker="s", color="white", edgecolors="black", label="eager fp32 (the reference)")
    ax.scatter([], [], s=70, marker="X", color=DISAGREE, label="disagrees with eager fp32 (not the same model)")
    xs = points["latency_median_ms"]
    if xs.min() > 0 and xs.max() / xs.min() > 20:
        ax.set_xscale("log")
    ax.margins(0.2)
    ax.set_xlabel("median latency per batch (ms)", fontsize=9)
    ax.set_ylabel("\u0394 clean mIoU from eager fp32 (pp)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    return save(fig, path)


def deploy_latency_curve(points: pd.DataFrame, title: str, path: str | Path) -> Path | None:
    """Median latency at batch 1 (y, ms) against the image size (x, megapixels), one line per variant of one model
    (`reports.deploy.latency_curve`: variant, backend, precision, status, resolution, megapixels, latency_median_ms),
    labelled "backend precision"; each resolution is named under its tick.

    Eager fp32 (the reference) is a black line with squares; a variant that disagrees with eager fp32 a dashed red
    line labelled "(disagrees)". The y axis is logarithmic when the latencies span more than a factor of 10. Returns
    None with fewer than two resolutions.
    """
    points = points.dropna(subset=["megapixels", "latency_median_ms"])
    if points["resolution"].nunique() < 2:
        return None
    fig = new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    others = 0
    for _, line in points.groupby("variant", sort=False):
        line = line.sort_values("megapixels")
        first = line.iloc[0]
        bad = first["status"] == "disagrees"
        label = f"{first['backend']} {first['precision']}" + (" (disagrees)" if bad else "")
        if bad:
            style = {"color": DISAGREE, "linestyle": "--", "marker": "X", "markersize": 6}
        elif (first["backend"], first["precision"]) == DEPLOY_REFERENCE:
            style = {"color": "black", "marker": "s", "markersize": 5, "linewidth": 1.8}
        else:
            style = {"color": PALETTE[others % len(PALETTE)], "marker": "o", "markersize": 4}
            others += 1
        ax.plot(line["megapixels"], line["latency_median_ms"], label=plain(label), **{"linewidth": 1.3, **style})
    ticks = points.drop_duplicates("resolution").sort_values("megapixels")
    ax.set_xticks(list(ticks["megapixels"]))
    ax.set_xticklabels([f"{r}\n{mp:.3g} MP" for r, mp in zip(ticks["resolution"], ticks["megapixels"])], fontsize=7.5)
    ys = points["latency_median_ms"]
    if ys.min() > 0 and ys.max() / ys.min() > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 2, 5, 10, 20 ms: not 10^1
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.margins(0.08)
    ax.set_title(plain(title), fontsize=9)
    ax.set_xlabel("image size (H x W; megapixels)", fontsize=9)
    ax.set_ylabel("median latency at batch 1 (ms)", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(3, len(names)), fontsize=7, frameon=False)
    return save(fig, path)


def deploy_peak_share(points: pd.DataFrame, colors: Mapping[str, str], title: str, path: str | Path) -> Path | None:
    """Each variant's share (%) of the GEMM peak of its precision (x), one horizontal bar per variant
    (`reports.deploy.peak_points`: variant, model, backend, precision, status, gmacs_per_s, peak_share_pct), in its
    model's colour and labelled with its GMAC/s; a variant whose precision has no measured peak (int8) has no bar but
    the words "no <precision> peak", one that disagrees with eager fp32 a red hatched bar and red words. `title`
    states the peaks (wrapped). Returns None without points."""
    if points.empty:
        return None
    points = points.iloc[::-1]  # the grid's order from the top
    many = points["model"].nunique() > 1
    fig = new_figure(6.4, 1.4 + 0.32 * len(points))
    ax = fig.add_subplot()
    top = float(np.nanmax(points["peak_share_pct"].to_numpy(dtype=float), initial=0.0))
    for i, row in enumerate(points.itertuples()):
        bad = row.status == "disagrees"
        share = row.peak_share_pct
        words = f"{row.gmacs_per_s:.3g} GMAC/s" + ("; disagrees with eager fp32" if bad else "")
        if pd.isna(share):
            words = f"no {row.precision} peak; {words}"
        else:
            style = {"color": colors.get(row.model, PALETTE[0]), "edgecolor": "black", "linewidth": 0.5}
            if bad:
                style |= {"color": "white", "edgecolor": DISAGREE, "hatch": "///"}
            ax.barh(i, share, height=0.6, **style)
            words = f"{share:.1f}% ({words})"
        ax.text(
            0 if pd.isna(share) else share,
            i,
            plain(" " + words),
            va="center",
            fontsize=7,
            color=DISAGREE if bad else "black",
        )
    names = [(f"{r.model}: " if many else "") + f"{r.backend} {r.precision}" for r in points.itertuples()]
    ax.set_yticks(np.arange(len(points)), [plain(n) for n in names], fontsize=7.5)
    ax.set_ylim(-0.7, len(points) - 0.3)
    ax.set_xlim(0, max(top, 1.0) * 1.5)
    ax.set_title(plain(textwrap.fill(title, 100)), fontsize=7.5)
    ax.set_xlabel("% of the measured GEMM peak in the variant's precision", fontsize=8.5)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def history_trends(history: pd.DataFrame, path: str | Path, max_panels: int = 24) -> tuple[Path | None, list[str]]:
    """Small multiples of each tracked metric over the history entries (x: entry, labelled by commit).

    Args:
        history: long rows `index, label, metric, value` (one per entry and metric).
        path: PNG to write.
        max_panels: metrics beyond this count are not drawn (their names are returned).

    Returns:
        The PNG (None without data) and the metrics left out.
    """
    if history.empty:
        return None, []
    metrics = list(dict.fromkeys(history["metric"]))
    drawn, left_out = metrics[:max_panels], metrics[max_panels:]
    cols = min(3, len(drawn))
    rows = math.ceil(len(drawn) / cols)
    fig = new_figure(4.2 * cols + 0.3, 2.6 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    ticks = history.drop_duplicates("index").sort_values("index")
    for ax, metric in zip(axes.flat, drawn):
        sel = history[history["metric"] == metric].sort_values("index")
        ax.plot(sel["index"], sel["value"], marker="o", markersize=3, linewidth=1.2, color=PALETTE[0])
        ax.set_title(plain(metric), fontsize=9)
        step = max(1, len(ticks) // 6)
        ax.set_xticks(list(ticks["index"])[::step])
        ax.set_xticklabels([plain(t) for t in ticks["label"]][::step], fontsize=7.5, rotation=30, ha="right")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(drawn) :]:
        ax.set_visible(False)
    return save(fig, path), left_out


def calibration_curves(
    curves: pd.DataFrame, models: Sequence[str], labels: Mapping[str, str], path: str | Path
) -> Path | None:
    """One panel per corruption category (`reports.calibration.severity_curves`): ECE (%) against severity, one line
    per model (the mean over the category's corruptions); severity 0 is the clean image. None without curves."""
    if curves.empty:
        return None
    categories = list(dict.fromkeys(curves["category"]))
    fig, axes = _severity_grid(len(categories), 2.1)
    colors = model_colors(models)
    top = int(curves["severity"].max())
    for ax, category in zip(axes.flat, categories):
        for model in models:
            sel = curves[(curves["category"] == category) & (curves["model"] == model)]
            if not sel.empty:
                ax.plot(sel["severity"], sel["ece"], marker="o", markersize=3, linewidth=1.2, color=colors[model],
                        label=labels[model])  # fmt: skip
        _severity_axes(ax, plain(category), top)
    _finish_severity_grid(fig, axes, len(categories), "ECE (%)")
    return save(fig, path)


def reliability_diagrams(panels: Sequence[tuple], labels: Mapping[str, str], path: str | Path) -> Path | None:
    """Reliability diagrams (`reports.calibration.diagram_panels`), one row per model and one panel per condition
    shown (clean, worst corruption, worst attack): per bin with pixels, a bar over the bin's confidence range up to
    its accuracy, and a point at (mean confidence, accuracy); the diagonal is perfect calibration. None without
    panels."""
    if not panels:
        return None
    models = list(dict.fromkeys(p[0] for p in panels))
    cols = max(sum(1 for p in panels if p[0] == m) for m in models)
    fig = new_figure(2.5 * cols + 0.3, 2.5 * len(models) + 0.2)
    axes = fig.subplots(len(models), cols, squeeze=False)
    used: set[tuple[int, int]] = set()
    for model, role, condition, ece, points in panels:
        i = models.index(model)
        j = sum(1 for k in range(cols) if (i, k) in used)
        used.add((i, j))
        ax = axes[i, j]
        ax.bar(points["lower"], points["accuracy"], width=points["upper"] - points["lower"], align="edge",
               color="#9ecae1", edgecolor="#3182bd", linewidth=0.6)  # fmt: skip
        ax.plot(points["confidence"], points["accuracy"], marker="o", markersize=2.5, linewidth=0.8, color="#08519c")
        ax.plot([0, 1], [0, 1], linestyle="--", color="#7f7f7f", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        shown = role if role == condition else f"{role}: {condition}"
        ax.set_title(plain(f"{labels.get(model, model)}\n{shown} (ECE {ece:.1f}%)"), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("confidence", fontsize=7)
        ax.set_ylabel("accuracy", fontsize=7)
    for i in range(len(models)):
        for j in range(cols):
            if (i, j) not in used:
                axes[i, j].set_visible(False)
    return save(fig, path)
