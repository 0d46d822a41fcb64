"""Adversarial robustness, as tables and figures: the run's mIoU under each attack condition against the budget, the
worst case and robustness area per model from summary.csv, what the attacks cost, and the published figures of
`reports/reference/adversarial_published.csv` with the settings they were measured under.

Every number is one the run wrote: an attack's mIoU and cost are rows of results.csv (`MIOU`, `ATTACK_STEP_TIME`,
`ATTACK_MEMORY`), the worst case per budget and the robustness area rows of summary.csv (`ADV_MIOU`, `ADV_AREA`). The
one product formed here, seconds per image for the whole attack (ms per step x steps), is labelled as derived.
Conditions are read with the contract's parser (`Condition.parse`), never by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import NullLocator

from segbench.bench.results.adversarial import AREA_PREFIX
from segbench.bench.results.axes import (
    ADVERSARIAL_CATEGORY,
    ATTACK_TITLES,
    ATTACKS,
    NORM_TITLES,
    WORST,
    AttackSpec,
    Condition,
    is_attack_name,
    parse_eps,
)
from segbench.bench.results.schema import ADV_AREA, ADV_MIOU, ATTACK_MEMORY, ATTACK_STEP_TIME, MIOU
from segbench.reports import figures
from segbench.reports.anchors import dataset_name
from segbench.reports.tables import read_reference

PUBLISHED_FILE = "adversarial_published.csv"

ATTACK_ORDER = (*ATTACKS, WORST)
"""Attacks in table and legend order; the worst case last."""

POINT_COLUMNS = [
    "model",
    "condition",
    "attack",
    "norm",
    "eps",
    "steps",
    "alpha",
    "step_size",
    "random_start",
    "group",
    "miou",
]
"""`attack_points`: one row per model and attack condition."""

COST_COLUMNS = [
    "model",
    "condition",
    "attack",
    "norm",
    "eps",
    "steps",
    "step_ms",
    "seconds_per_image",
    "peak_memory_mib",
    "device",
    "precision",
    "inference",
]
"""`cost_table`: one row per model and attack condition that has a cost row."""

MARKERS = {"pgd": "o", "segpgd": "s", "cospgd": "^", WORST: "X"}

SOURCES = {
    "cospgd_paper_table3": "CosPGD paper (Agnihotri et al., ICML 2024; arXiv 2302.02213), Table 3",
    "sea_table1": "SEA paper (Croce et al., 2023; arXiv 2306.12941), Table 1",
}
"""How the report cites the published file's sources (others by their own name)."""

PUBLISHED_ATTACKS = {"sea": "SEA (per-image worst case of its APGD-based attack ensemble)"}
"""Published attacks that are not this run's (others by `ATTACK_TITLES`)."""


# --------------------------------------------------------------------------------------------------------------------
# The run's attack rows
# --------------------------------------------------------------------------------------------------------------------


def group_of(spec: AttackSpec) -> str:
    """The settings group of an attack condition: its budget name without the budget, `<norm>[-<settings>]`
    ("linf", "linf-20steps-step0.01"); the curves of one group share an axis."""
    parts = spec.budget_name().split("-")
    return "-".join([parts[0], *parts[2:]])


def group_label(spec: AttackSpec) -> str:
    """A settings group as a person reads it: "L-inf, 2 steps, step 2.5·ε/steps, random start"."""
    step = f"step {spec.step_size:.6g}" if spec.step_size is not None else "step 2.5\u00b7\u03b5/steps"
    start = "random start" if spec.random_start else "no random start"
    return f"{NORM_TITLES[spec.norm]}, {spec.steps} steps, {step}, {start}"


def parse_attack(name: object) -> AttackSpec | None:
    """The attack of a condition name (None when it names none or does not parse)."""
    if not isinstance(name, str) or not is_attack_name(name):
        return None
    try:
        return Condition.parse(name).attack
    except ValueError:
        return None


def _spec_columns(spec: AttackSpec) -> dict:
    return {
        "attack": spec.name,
        "norm": spec.norm,
        "eps": spec.eps,
        "steps": spec.steps,
        "alpha": spec.alpha,
        "step_size": spec.step_size,
        "random_start": spec.random_start,
        "group": group_of(spec),
    }


def attack_points(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The run's mIoU (%) per model and attack condition (`POINT_COLUMNS`; the worst case included), in the run's
    order, and the attack conditions whose names do not parse (left out). A condition stored twice is averaged."""
    rows = frame[(frame["category"] == ADVERSARIAL_CATEGORY) & (frame["metric"] == MIOU) & frame["value"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=POINT_COLUMNS), []
    mean = rows.groupby(["model", "condition"], sort=False, as_index=False)["value"].mean()
    out, bad = [], []
    for r in mean.to_dict("records"):
        spec = parse_attack(r["condition"])
        if spec is None:
            bad.append(str(r["condition"]))
            continue
        out.append({"model": r["model"], "condition": r["condition"], **_spec_columns(spec), "miou": r["value"]})
    return pd.DataFrame(out, columns=POINT_COLUMNS), list(dict.fromkeys(bad))


def groups(points: pd.DataFrame) -> list[tuple[str, AttackSpec]]:
    """The settings groups of the run, in its order, each with one of its specs (for its labels)."""
    seen: dict[str, AttackSpec] = {}
    for condition, group in zip(points["condition"], points["group"]):
        seen.setdefault(group, parse_attack(condition))
    return list(seen.items())


def attacks_of(points: pd.DataFrame) -> list[str]:
    """The group's attacks in `ATTACK_ORDER` (the worst case last)."""
    present = set(points["attack"])
    return [a for a in ATTACK_ORDER if a in present]


# --------------------------------------------------------------------------------------------------------------------
# The per-model table: mIoU per budget and attack, the worst case and the area from summary.csv
# --------------------------------------------------------------------------------------------------------------------


def summary_values(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """summary.csv's adversarial rows of `metric` (`ADV_MIOU` or `ADV_AREA`) with their budget parsed: model, attack,
    group, eps (the budget; for the area the largest budget it spans) and value."""
    columns = ["model", "attack", "group", "eps", "value"]
    if summary.empty or "metric" not in summary.columns:
        return pd.DataFrame(columns=columns)
    rows = summary[(summary["metric"] == metric) & summary["value"].notna()]
    rows = rows[rows["category"] == ADVERSARIAL_CATEGORY] if "category" in rows.columns else rows
    out = []
    for r in rows.to_dict("records"):
        budget = str(r["condition"])
        budget = budget[len(AREA_PREFIX) :] if metric == ADV_AREA and budget.startswith(AREA_PREFIX) else budget
        attack = r["corruption"] if isinstance(r["corruption"], str) and r["corruption"] else WORST
        spec = parse_attack(f"{attack}-{budget}")
        if spec is not None:
            out.append(
                {
                    "model": r["model"],
                    "attack": spec.name,
                    "group": group_of(spec),
                    "eps": spec.eps,
                    "value": float(r["value"]),
                }
            )
    return pd.DataFrame(out, columns=columns)


def budget_table(points: pd.DataFrame, summary: pd.DataFrame, clean: pd.Series, models: Sequence[str]) -> pd.DataFrame:
    """The long table behind the per-model table and its CSV: per model, its clean mIoU, each attack's mIoU at each
    budget (results.csv), the worst case per budget (summary.csv `adv_miou`) and the robustness area per attack
    (summary.csv `adv_area`). Columns model, group, eps (NaN for clean; for an area the largest budget it spans),
    attack, metric, value, file."""
    out = []
    for model in models:
        if model in clean.index:
            out.append((model, "", np.nan, "clean", MIOU, float(clean[model]), "results.csv (clean)"))
    attacked = points[points["attack"] != WORST]
    for r in attacked.to_dict("records"):
        out.append((r["model"], r["group"], r["eps"], r["attack"], MIOU, r["miou"], "results.csv"))
    for metric in (ADV_MIOU, ADV_AREA):
        for r in summary_values(summary, metric).to_dict("records"):
            out.append((r["model"], r["group"], r["eps"], r["attack"], metric, r["value"], "summary.csv"))
    table = pd.DataFrame(out, columns=["model", "group", "eps", "attack", "metric", "value", "file"])
    return table[table["model"].isin(list(models))].reset_index(drop=True)


def table_columns(table: pd.DataFrame, group: str) -> list[tuple[float, list[str]]]:
    """The group's budgets in increasing order, each with the attacks measured there (the worst case last)."""
    sel = table[(table["group"] == group) & (table["metric"] != ADV_AREA) & table["eps"].notna()]
    out = []
    for eps in sorted(set(sel["eps"])):
        present = set(sel.loc[sel["eps"] == eps, "attack"])
        out.append((eps, [a for a in ATTACK_ORDER if a in present]))
    return out


def table_value(table: pd.DataFrame, model: str, group: str, attack: str, metric: str, eps: float | None) -> float:
    """One value of the long table (NaN when absent)."""
    sel = table[(table["model"] == model) & (table["attack"] == attack) & (table["metric"] == metric)]
    sel = sel[sel["group"] == group] if group else sel
    sel = sel[np.isclose(sel["eps"].astype(float), eps)] if eps is not None else sel
    return float(sel["value"].iloc[-1]) if len(sel) else math.nan


def area_budget(table: pd.DataFrame, group: str) -> float | None:
    """The largest budget the group's robustness areas span (None without area rows)."""
    area = table[(table["group"] == group) & (table["metric"] == ADV_AREA)]
    return float(area["eps"].max()) if len(area) else None


# --------------------------------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------------------------------


def _cell_settings(cells: Sequence[Mapping]) -> dict[tuple[str, str], dict]:
    """Device, precision and inference mode of each cell, by (model, condition), as the cell records them."""
    out = {}
    for cell in cells:
        inference = cell.get("inference") if isinstance(cell.get("inference"), Mapping) else {}
        mode = str(inference.get("mode") or "")
        if mode == "slide" and inference.get("crop"):
            mode += " " + "x".join(str(v) for v in inference["crop"])
        out[(cell.get("model"), cell.get("condition"))] = {
            "device": str(cell.get("device") or inference.get("device") or ""),
            "precision": str(inference.get("precision") or ""),
            "inference": mode,
        }
    return out


def cost_table(frame: pd.DataFrame, cells: Sequence[Mapping]) -> pd.DataFrame:
    """Per model and attack condition with an `ATTACK_STEP_TIME` row: ms per step and image, steps, the derived
    seconds per image for the whole attack (ms x steps / 1000), the peak memory (MiB; NaN where the run wrote none)
    and the device, precision and inference mode the cell records (`COST_COLUMNS`)."""
    rows = frame[frame["metric"].isin((ATTACK_STEP_TIME, ATTACK_MEMORY)) & frame["value"].notna()]
    rows = rows[rows["category"] == ADVERSARIAL_CATEGORY]
    if rows.empty or not (rows["metric"] == ATTACK_STEP_TIME).any():
        return pd.DataFrame(columns=COST_COLUMNS)
    wide = rows.pivot_table(index=["model", "condition"], columns="metric", values="value", aggfunc="mean", sort=False)
    wide = wide.reindex(columns=[ATTACK_STEP_TIME, ATTACK_MEMORY]).reset_index()
    settings = _cell_settings(cells)
    out = []
    for r in wide.to_dict("records"):
        spec = parse_attack(r["condition"])
        if spec is None or pd.isna(r[ATTACK_STEP_TIME]):
            continue
        step_ms = float(r[ATTACK_STEP_TIME])
        where = settings.get((r["model"], r["condition"]), {"device": "", "precision": "", "inference": ""})
        out.append(
            {
                "model": r["model"],
                "condition": r["condition"],
                "attack": spec.name,
                "norm": spec.norm,
                "eps": spec.eps,
                "steps": spec.steps,
                "step_ms": step_ms,
                "seconds_per_image": step_ms * spec.steps / 1000.0,
                "peak_memory_mib": r[ATTACK_MEMORY],
                **where,
            }
        )
    return pd.DataFrame(out, columns=COST_COLUMNS)


def memory_text(value: float, device: str) -> str:
    """Peak memory as the cost table shows it: MiB, else why there is none."""
    if not pd.isna(value):
        return f"{value:.0f}"
    return "not measured on CPU" if device == "cpu" else "not recorded"


# --------------------------------------------------------------------------------------------------------------------
# Published figures
# --------------------------------------------------------------------------------------------------------------------


def read_published() -> pd.DataFrame:
    """`reference/adversarial_published.csv` as shipped: source, dataset, model, norm, eps (text), alpha, attack,
    iterations, miou (%)."""
    return read_reference(PUBLISHED_FILE)


def published_rows(dataset: str, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """The published rows of a run's dataset (run.json's `dataset` key: "ade20k", "voc", ...), in file order."""
    published = read_published() if published is None else published
    return published[published["dataset"] == dataset].reset_index(drop=True)


def source_name(source: str) -> str:
    return SOURCES.get(source, source)


def published_settings(row: Mapping) -> str:
    """A published row's settings in words: attack, norm, budget, step size and iterations."""
    attack = PUBLISHED_ATTACKS.get(row["attack"], ATTACK_TITLES.get(row["attack"], str(row["attack"])))
    alpha = "step size not given" if pd.isna(row["alpha"]) else f"step size \u03b1 {row['alpha']:g}"
    norm = NORM_TITLES.get(row["norm"], str(row["norm"]))
    return f"{attack}, {norm} \u03b5 = {row['eps']}, {alpha}, {int(row['iterations'])} iterations"


def published_match(row: Mapping, points: pd.DataFrame, flagged: Mapping[str, str]) -> str:
    """Whether this run measured the published row's setting: the same model, attack, norm and budget, and then
    whether the iterations and step size agree (a run model with random or demo weights is never comparable)."""
    try:
        eps = parse_eps(row["eps"], row["norm"])
    except ValueError:
        return f"not compared: budget {row['eps']!r} does not parse"
    same = points[(points["model"] == row["model"]) & (points["attack"] == row["attack"])]
    same = same[(same["norm"] == row["norm"]) & np.isclose(same["eps"].astype(float), eps)]
    budget = f"{row['attack']} at {NORM_TITLES.get(row['norm'], row['norm'])} {row['eps']}"
    if same.empty:
        return f"no: this run has no {row['model']} under {budget}"
    if flagged.get(row["model"]):
        return f"no: this run's {row['model']} has {flagged[row['model']]}"
    for r in same.to_dict("records"):
        alpha_ok = not pd.isna(row["alpha"]) and math.isclose(r["alpha"], float(row["alpha"]), rel_tol=1e-6)
        if r["steps"] == int(row["iterations"]) and alpha_ok:
            return f"yes: {r['condition']} (the same model, attack, budget, steps and step size)"
    r = same.iloc[0]
    return f"no: this run's {r['condition']} took {r['steps']} steps of {r['alpha']:.3g}"


def coverage(published: pd.DataFrame) -> str:
    """What the published file covers, one clause per source: dataset, models, norms and budgets, iterations."""
    parts = []
    for source, rows in published.groupby("source", sort=False):
        datasets = ", ".join(dataset_name(d) for d in dict.fromkeys(rows["dataset"]))
        models = ", ".join(dict.fromkeys(rows["model"]))
        budgets = ", ".join(f"{NORM_TITLES.get(n, n)} {e}" for n, e in dict.fromkeys(zip(rows["norm"], rows["eps"])))
        steps = " and ".join(str(int(i)) for i in sorted(set(rows["iterations"])))
        parts.append(f"{source_name(source)}: {models} on {datasets}, {budgets}, {steps} iterations")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------------------------
# The figure
# --------------------------------------------------------------------------------------------------------------------


def figure_name(group: str) -> str:
    """The PNG of a settings group (file-safe)."""
    return "adversarial_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", group) + ".png"


def _budget_axis(ax, xs: Sequence[float], norm: str) -> None:
    """The eps axis: ticks at the measured budgets (0 = clean); a log-like scale when they span a factor above 8."""
    positive = [x for x in xs if x > 0]
    if positive and max(positive) / min(positive) > 8:
        ax.set_xscale("symlog", linthresh=min(positive), linscale=0.6)
    ax.set_xticks(sorted(set(xs)))
    ax.set_xticklabels([f"{x:g}" for x in sorted(set(xs))], fontsize=7.5)
    ax.xaxis.set_minor_locator(NullLocator())
    if norm == "linf":
        ax.set_xlabel("\u03b5, L-inf budget in grey levels (n/255); 0 = clean", fontsize=8.5)
    else:
        ax.set_xlabel("\u03b5, L2 radius of the whole image's perturbation ([0, 1] pixels); 0 = clean", fontsize=8.5)


def attack_curves(
    points: pd.DataFrame,
    clean: pd.Series,
    models: Sequence[str],
    labels: Mapping[str, str],
    title: str,
    path: str | Path,
) -> Path | None:
    """mIoU (%) against the budget for one settings group: one line per model x attack, the model's clean mIoU at
    eps 0; colour = model, marker = attack; the worst case is a thick dashed line with black crosses (black when the
    run has one model). L-inf budgets are drawn in grey levels (x 255). None without points."""
    if points.empty:
        return None
    norm = str(points["norm"].iloc[0])
    scale = 255.0 if norm == "linf" else 1.0
    fig = figures.new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    colors = figures.model_colors(models)
    xs = [0.0]
    for model in models:
        mine = points[points["model"] == model]
        for attack in attacks_of(mine):
            line = mine[mine["attack"] == attack].sort_values("eps")
            x, y = list(line["eps"] * scale), list(line["miou"])
            if model in clean.index:
                x, y = [0.0, *x], [float(clean[model]), *y]
            xs += x
            worst = attack == WORST
            color = "black" if worst and len(models) == 1 else colors[model]
            style = {"linestyle": "--", "linewidth": 2.2, "markeredgecolor": "black"} if worst else {"linewidth": 1.3}
            name = f"{labels.get(model, figures.plain(model))} \u00b7 {ATTACK_TITLES.get(attack, attack)}"
            ax.plot(x, y, marker=MARKERS.get(attack, "o"), markersize=5, color=color, label=name, **style)
    _budget_axis(ax, xs, norm)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("mIoU (%)", fontsize=8.5)
    ax.set_title(figures.plain(title), fontsize=9)
    ax.tick_params(axis="y", labelsize=7.5)
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(2, len(names)), fontsize=7, frameon=False)
    return figures.save(fig, path)
