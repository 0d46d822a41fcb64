"""The report's "Adversarial robustness" section: mIoU against the budget per attack (a figure per norm and settings
group), the per-model table of clean mIoU, each attack's mIoU per budget, the worst case and the robustness area, what
the attacks cost, the published figures of the run's dataset with their settings, and one image clean against
attacked (`gallery/index.json`'s `attacks`). Every figure is one the run wrote (`reports.adversarial`)."""

from __future__ import annotations

import pandas as pd

from segbench.bench.results.axes import ATTACK_TITLES, WORST, attack_label, eps_text
from segbench.bench.results.files import GALLERY
from segbench.bench.results.schema import ADV_AREA, ADV_MIOU, MIOU
from segbench.bench.results.store import RunFolder
from segbench.reports import adversarial as A
from segbench.reports import tables as T
from segbench.reports.anchors import dataset_name
from segbench.reports.page import FOLD_ROWS, Cell, HtmlTable, Page, Row, Section, builds
from segbench.reports.sections.gallery import gallery_image, palette_legend

WORST_TITLE = (
    "summary.csv adv_miou: the per-image worst case over the attacks at this budget (its worst-<budget> condition), "
    "or the one attack's mIoU where the run has one attack"
)


@builds("adversarial", "Adversarial robustness")
def adversarial(page: Page, sec: Section) -> Section:
    points, unparsed = A.attack_points(page.frame)
    if points.empty:
        sec.missing = (
            "Not measured in this run: no attack conditions (results rows of category 'adversarial'); "
            "`segbench run --attacks pgd,segpgd,cospgd --eps 1/255,4/255` measures them."
        )
        return sec
    models = [m for m in page.models if m in set(points["model"])]
    folder = RunFolder(page.run_dir)
    sec.notes += _reading_notes(page, points, folder.manifest)
    _budget_tables(page, sec, points, models)
    _curves(page, sec, points, models)
    _cost(page, sec)
    _published(page, sec, points, folder.dataset)
    _gallery(page, sec, folder, models)
    if unparsed:
        sec.notes.append(f"Left out, their condition names do not parse as attacks: {', '.join(unparsed)}.")
    return sec


def _reading_notes(page: Page, points: pd.DataFrame, manifest: dict) -> list[str]:
    """How to read the section: what an attack and its budget are, how it ran, the worst case and the area."""
    attacked = set(points["condition"])
    cells = [c for c in page.cells if c.get("condition") in attacked]
    inference = [c["inference"] for c in cells if isinstance(c.get("inference"), dict)]
    modes = ", ".join(dict.fromkeys(str(i.get("mode")) for i in inference if i.get("mode"))) or "as evaluated"
    modes += "; a sliding window's crops stitched as evaluation stitches them" if "slide" in modes else ""
    settings = manifest.get("settings") if isinstance(manifest.get("settings"), dict) else {}
    precisions = list(dict.fromkeys(str(i["precision"]) for i in inference if i.get("precision")))
    precisions = precisions or [str(settings.get("precision") or "fp32")]
    starts = set(points["random_start"])
    start = []
    if True in starts:
        start.append(
            f"the random start is drawn per image from the run's seed ({manifest.get('seed', '?')}), the image's id "
            "and the condition name, so an image gets the same start in any batch"
        )
    if False in starts:
        start.append("conditions named 'nostart' begin at the clean image")
    notes = [
        "mIoU (%) under untargeted white-box attacks on the clean images, per model and attack, against the budget "
        "\u03b5; \u03b5 = 0 is the model's clean mIoU (its clean row). The attacks run in [0, 1] pixel space before "
        "the model's normalisation: an L-inf budget of n/255 moves each pixel and channel by at most n grey levels; "
        "an L2 budget is the radius of the whole image's perturbation (all pixels and channels, [0, 1] units). The "
        f"gradient is taken through the same inference as evaluation ({modes}), at {' / '.join(precisions)} "
        "precision; " + "; ".join(start) + ". Step size "
        "\u03b1: the condition's, else 2.5\u00b7\u03b5/steps.",
        "Worst case (as SEA, Croce et al. 2023, reports it): per image, the attacked version with the lowest pixel "
        "accuracy over the attacks at that budget, scored as a condition of its own. It is chosen by pixel "
        "accuracy, so its mIoU can sit slightly above an attack's. Robustness area: the mean mIoU over budgets 0 "
        "(clean) to the largest, trapezoid rule, per attack; 100 = no attack moves the model.",
        "Attack mIoU and cost are the run's results.csv rows; the worst case (adv_miou) and the robustness area "
        "(adv_area) are its summary.csv rows. Nothing here is recomputed but the whole attack's seconds per image, "
        "marked derived.",
    ]
    if any(p != "fp32" for p in precisions):
        notes.append(
            "Attack gradients were taken under fp16/bf16 autocast, where small gradients can vanish and the attacks "
            "weaken: these mIoU can overstate robustness; published figures use fp32."
        )
    return notes


def _budget_tables(page: Page, sec: Section, points: pd.DataFrame, models: list[str]) -> None:
    """One table per settings group: clean, each attack and the worst case per budget, the area per attack."""
    table = A.budget_table(points, page.summary, page.clean, models)
    for group, spec in A.groups(points):
        budgets = A.table_columns(table, group)
        areas = table[(table["group"] == group) & (table["metric"] == ADV_AREA)]
        area_attacks = [a for a in A.ATTACK_ORDER if a in set(areas["attack"])]
        columns, titles = ["Model", "Clean mIoU (%)"], ["", "the clean condition's miou row (results.csv)"]
        heads = [(A.group_label(spec), 2)]
        for eps, attacks in budgets:
            heads.append((f"\u03b5 = {eps_text(eps, spec.norm)}: mIoU (%)", len(attacks)))
            columns += [ATTACK_TITLES.get(a, a) for a in attacks]
            titles += [WORST_TITLE if a == WORST else f"{a} (results.csv miou)" for a in attacks]
        top = A.area_budget(table, group)
        if area_attacks and top is not None:
            heads.append((f"Robustness area (%), \u03b5 0 to {eps_text(top, spec.norm)}", len(area_attacks)))
            columns += [ATTACK_TITLES.get(a, a) for a in area_attacks]
            titles += ["summary.csv adv_area"] * len(area_attacks)
        rows = []
        for model in models:
            cells = [Cell(T.format_number(page.clean.get(model, float("nan")), 2))]
            for eps, attacks in budgets:
                for a in attacks:
                    metric = ADV_MIOU if a == WORST else MIOU
                    cells.append(Cell(T.format_number(A.table_value(table, model, group, a, metric, eps), 2)))
            for a in area_attacks if top is not None else []:
                cells.append(Cell(T.format_number(A.table_value(table, model, group, a, ADV_AREA, None), 2)))
            rows.append(Row(cells, model=model))
        sec.tables.append(HtmlTable(columns, rows, heads, titles=titles))
    frame = table.assign(
        budget=["" if pd.isna(e) else eps_text(e, g.split("-")[0]) for e, g in zip(table["eps"], table["group"])]
    )[["model", "group", "budget", "attack", "metric", "value", "file"]]
    sec.files += page.out.table(frame, "adversarial", "Adversarial robustness: mIoU (%) per budget and area (%)", 2)


def _curves(page: Page, sec: Section, points: pd.DataFrame, models: list[str]) -> None:
    """A figure per settings group: mIoU against the budget."""
    labels = page.figure_labels(models)
    for group, spec in A.groups(points):
        title = f"mIoU (%) against the budget: {A.group_label(spec)}"
        fig = page.out.figure(
            A.attack_curves,
            A.figure_name(group),
            title,
            points[points["group"] == group],
            page.clean,
            models,
            labels,
            A.group_label(spec),
        )
        if fig is not None:
            sec.figures.append(fig)
    sec.notes.append(
        "Figures: one per norm and settings group; one line per model (colour) and attack (marker), the worst case "
        "a thick dashed line with black crosses. L-inf budgets are drawn in grey levels (n/255); where the budgets "
        "span more than a factor of 8 the ε axis is logarithmic above the smallest (linear from 0 to it)."
    )


def _device(page: Page, device: str) -> str:
    env = page.env or {}
    name = env.get("device_name") if env.get("device") == device else None
    return f"{device} ({name})" if device and name else device or "\u2013"


def _cost(page: Page, sec: Section) -> None:
    """What each attack cost per model: ms per step and image, steps, the whole attack per image, peak memory."""
    cost = A.cost_table(page.frame, page.cells)
    if cost.empty:
        sec.notes.append("No attack cost rows (attack_step_ms) in this run.")
        return
    rows = []
    for r in cost.to_dict("records"):
        cells = [
            Cell(attack_label(A.parse_attack(r["condition"])), title=r["condition"]),
            Cell(T.format_number(r["step_ms"], 1)),
            Cell(str(r["steps"])),
            Cell(T.format_number(r["seconds_per_image"], 2), title="derived: ms per step x steps / 1000"),
            Cell(A.memory_text(r["peak_memory_mib"], r["device"])),
            Cell(_device(page, r["device"])),
            Cell(r["precision"] or "\u2013"),
            Cell(r["inference"] or "\u2013"),
        ]
        rows.append(Row(cells, model=r["model"]))
    columns = [
        "Model",
        "Attack",
        "ms per step per image",
        "Steps",
        "s per image, whole attack (derived)",
        "Peak memory (MiB)",
        "Device",
        "Precision",
        "Inference",
    ]
    folded = f"Attack cost: {len(rows)} attack conditions" if len(rows) > FOLD_ROWS else ""
    sec.tables.append(HtmlTable(columns, rows, collapsed=folded))
    sec.notes.append(
        "Cost: attack_step_ms is the milliseconds of one attack step for one image (forward, backward and projection, "
        "a sliding window's crops included), as the run timed it; the whole attack per image is that times the "
        "steps (derived here). Peak memory is the device memory the caching allocator held while attacking, "
        "measured on a GPU only. The worst case has no cost row of its own: it scores, per image, the images its "
        "budget's attacks made."
    )
    cost = cost.assign(eps=[eps_text(e, n) for e, n in zip(cost["eps"], cost["norm"])])
    sec.files += page.out.table(cost, "adversarial_cost", "Attack cost: ms per step per image, s per image, MiB", 3)


def _published(page: Page, sec: Section, points: pd.DataFrame, dataset: str) -> None:
    """The published figures of the run's dataset, each labelled with its settings, or one note of what the file
    covers."""
    published = A.read_published()
    rows = A.published_rows(dataset, published)
    if rows.empty:
        sec.notes.append(
            f"Published figures: {A.PUBLISHED_FILE} holds none for {dataset_name(dataset)}. It covers "
            f"{A.coverage(published)}."
        )
        return
    flagged = {m: info.flag for m, info in page.infos.items() if info.flag}
    match = [A.published_match(r, points, flagged) for r in rows.to_dict("records")]
    out = []
    for i, (r, same) in enumerate(zip(rows.to_dict("records"), match)):
        divider = (
            "Published figures: not measured in this run; comparable only where every setting matches" if i == 0 else ""
        )
        cells = [
            Cell(A.source_name(r["source"]), "reason"),
            Cell(A.published_settings(r), "reason"),
            Cell(T.format_number(float(r["miou"]), 2)),
            Cell(same, "reason"),
        ]
        out.append(Row(cells, label=f"{r['model']} (published)", cls="published", divider=divider))
    columns = ["Model", "Source", "Settings", "mIoU (%)", "Same settings in this run?"]
    sec.tables.append(HtmlTable(columns, out))
    sec.notes.append(
        f"Published figures for {dataset_name(dataset)} (grey, italic) from {A.PUBLISHED_FILE}: numbers from the "
        "papers, not measured in this run, each labelled with its source and settings (attack, norm, budget, step "
        "size, iterations; images in [0, 1], untargeted). They differ from this run's where any setting differs "
        "(the last column says which), and always in the images and the authors' own code."
    )
    frame = rows.assign(source=[A.source_name(s) for s in rows["source"]], this_run=match)
    sec.files += page.out.table(frame, "adversarial_published", "Published mIoU (%) under attack, with settings", 2)


def _gallery(page: Page, sec: Section, folder: RunFolder, models: list[str]) -> None:
    """One image clean against attacked: the clean input with each model's prediction, then per attack condition each
    model's own attacked input and its prediction, and the ground truth (`gallery/index.json`)."""
    data = folder.read_json("gallery/index.json", GALLERY)
    attacks = (data or {}).get("attacks") or []
    if not attacks:
        why = "this run has no gallery (gallery/index.json)" if data is None else "gallery/index.json lists no attack"
        sec.notes.append(f"No attacked images: {why}.")
        sec.notes += folder.problems
        return
    run_dir, out, problems, palette = page.run_dir, page.out, folder.problems, page.classes.palette
    clean = next((c for c in data["conditions"] if c.get("condition") == "clean"), {})
    shown = [*models, *[m for item in attacks for m in item.get("predictions", {}) if m not in models]]
    shown = list(dict.fromkeys(shown))
    clean_preds = clean.get("predictions", {})
    clean_input = gallery_image(run_dir, clean.get("input"), out, problems)
    rows = [
        {
            "label": "clean",
            "cells": [(clean_input, gallery_image(run_dir, clean_preds.get(m), out, problems, palette)) for m in shown],
        }
    ]
    for item in attacks:
        spec = A.parse_attack(item["condition"])
        label = item["condition"] if spec is None else attack_label(spec)
        cells = [
            (
                gallery_image(run_dir, item.get("inputs", {}).get(m), out, problems),
                gallery_image(run_dir, item.get("predictions", {}).get(m), out, problems, palette),
            )
            for m in shown
        ]
        rows.append({"label": label, "cells": cells})
    sec.extra["gallery"] = {
        "image_id": str(data.get("image_id") or ""),
        "models": shown,
        "rows": rows,
        "ground_truth": gallery_image(run_dir, data.get("ground_truth"), out, problems, palette),
        "palette": palette_legend(page.classes),
    }
    sec.notes.append(
        "Gallery (below): the clean image and each model's prediction, then per attack (each at its largest budget) "
        "the image attacked against that model and the model's prediction of it; predictions and ground truth in "
        "the dataset's palette."
    )
    sec.notes += problems
