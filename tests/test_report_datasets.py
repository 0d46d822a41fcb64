"""The report beyond Cityscapes: runs with many classes (ADE20K's 150) show their worst and best classes with the full
table as a file, ADE20K and VOC runs get their published anchors labelled with their protocol, and an ADE20K run gets
the SegFormer paper's mIoU-against-GMACs figure at 512x512.

Run folders are written through the results contract (`make_row`, `RunStore`, run.json's class table), without
running a model.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_report import _parse, make_fake_run
from test_report_realworld import section_text, table_rows

from segbench.bench.results.axes import Condition
from segbench.bench.results.classes import CITYSCAPES, ClassTable
from segbench.bench.results.schema import class_metric_name, make_row
from segbench.bench.results.store import RunStore
from segbench.reports import anchors as A
from segbench.reports import class_view as CV
from segbench.reports import render_report
from segbench.reports import tables as T
from segbench.reports.render import read_page
from segbench.reports.sections import efficiency, real_world, robustness

EVIL_CLASS = "<i>bed</i>"
NAMES = (EVIL_CLASS, *(f"thing {k}" for k in range(1, 150)))
MODELS = ("segformer-b0", "segformer-b2", "segformer-b1")  # b1: synthetic-demo weights, held against nothing
OFFSET = {"segformer-b0": 0.0, "segformer-b2": 10.0, "segformer-b1": 5.0}
CONDITIONS = {"clean": 0.0, "gaussian_noise-3": 12.0, "fog-3": 6.0}


def iou(model: str, k: int, drop: float = 0.0) -> float:
    """Class k's IoU: a permutation of 0, 0.5, ... 74.5 (37 is prime to 150), so the worst classes are not the first."""
    return (k * 37) % len(NAMES) * 0.5 + OFFSET[model] - drop


def make_dataset_run(
    run_dir: Path, dataset: str = "ade20k", names=NAMES, resolution: str | None = "512x512", latency: bool = True
) -> Path:
    """A run of `dataset` (run.json's class table): accuracy cells with per-class IoU, efficiency rows at
    `resolution` (none: no GMACs rows), env.json with each model's weights status."""
    store = RunStore(run_dir)
    order = []
    for model in MODELS:
        for condition, drop in CONDITIONS.items():
            corruption, _, severity = condition.rpartition("-") if condition != "clean" else (None, "", None)
            place = {"model": model, "suite": dataset, "condition": condition, "corruption": corruption}
            place |= {"category": "clean" if corruption is None else None, "severity": int(severity or 0)}
            values = [iou(model, k, drop) for k in range(len(names))]
            rows = [make_row("miou", sum(values) / len(values), **place)]
            rows += [make_row(class_metric_name(n), v, **place) for n, v in zip(names, values)]
            rows.append(make_row("num_images", 20, **place))
            cell = f"{model}|{condition}"
            store.write_cell({"cell": cell, "kind": "accuracy", "model": model, "condition": condition, "rows": rows})
            order.append(cell)
        eff = {"model": model, "suite": dataset, "condition": "efficiency"}
        rows = [make_row("params", 3.8 + OFFSET[model], **eff)]
        if resolution is not None:
            key = {"resolution": resolution, "batch_size": 1, "convention": "paper", "counter": "paper rules"}
            rows.append(make_row("gmacs", 8.0 + OFFSET[model], **eff, **key))
        if latency:
            timing = {"resolution": "512x1024", "batch_size": 1, "precision": "fp32", "device": "cpu"}
            rows.append(make_row("latency_median", 20.0 + OFFSET[model], **eff, **timing))
        cell = f"{model}|efficiency"
        store.write_cell({"cell": cell, "kind": "efficiency", "model": model, "condition": "efficiency", "rows": rows})
        order.append(cell)
    store.gather(order, suite=dataset)
    store.write_manifest({"suite": dataset, "classes": ClassTable(dataset, tuple(names)).to_dict()})
    status = {m: "synthetic-demo" if m == "segformer-b1" else "trained" for m in MODELS}
    store.write_env({"suite": dataset, "weights": {m: {"source": f"{m}.pth", "status": s} for m, s in status.items()}})
    return run_dir


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    run = make_dataset_run(tmp_path_factory.mktemp("ade") / "ade-run")
    return run, render_report(run)


def worst_and_best(model: str) -> list[str]:
    ranked = sorted(range(len(NAMES)), key=lambda k: iou(model, k))
    return [NAMES[k] for k in ranked[:10] + ranked[-10:]]


def test_many_classes_show_the_worst_and_best_and_link_the_full_csv(ade):
    run, index = ade
    text = section_text(index, "per-class-iou")
    assert "10 worst / 10 best of 150 classes, sorted by clean IoU of segformer-b0" in text  # the mCE reference
    rows = table_rows(index, "per-class-iou")
    shown = [head for head in rows if head not in ("Class", "10 worst of 150 classes", "10 best of 150 classes")]
    assert shown == worst_and_best("segformer-b0")  # worst first, each block by increasing IoU
    assert rows["thing 4"] == [f"{iou(m, 4):.1f}" for m in MODELS]  # (4 * 37) % 150 = 148: among the best
    assert 'href="report/per_class_iou.csv"' in text and "report/per_class_iou.csv (linked below)" in text
    assert 'src="report/class_iou.png"' in text and (run / "report/class_iou.png").is_file()
    full = pd.read_csv(run / "report/per_class_iou.csv").set_index("model")
    results = pd.read_csv(run / "results.csv")
    per_class = results[results["metric"].str.startswith("iou_") & (results["condition"] == "clean")]
    expected = per_class.pivot_table(index="model", columns="metric", values="value").loc[list(MODELS)]
    assert list(full.columns) == list(NAMES) and list(full.index) == list(MODELS)
    assert full.to_numpy() == pytest.approx(expected[[class_metric_name(n) for n in NAMES]].to_numpy())


def test_a_19_class_run_still_shows_every_class(tmp_path):
    run = make_fake_run(tmp_path / "cityscapes-run", gallery=False, history=False, efficiency=False)
    page = read_page(run)
    matrix = T.class_iou(page.frame, page.models, page.classes)
    assert CV.select_classes(matrix, CV.ranking_model(matrix, page.reference)) is None
    section = robustness.class_iou(page)
    assert section.tables == [] and section.figures[0].alt == "per-class IoU heatmap"  # as before: no selection
    assert section.notes == ["IoU (%) per class on the clean images; the exact values are in the table files below."]
    assert list(pd.read_csv(run / "report/per_class_iou.csv").columns[1:]) == list(CITYSCAPES.names)
    table5 = robustness.table5(page)  # a Cityscapes run keeps Table 5's published rows and title, and no anchors
    assert table5.title == "Cityscapes-C (layout of SegFormer Table 5)" and len(table5.tables) == 1
    assert any(r.cls == "published" for r in table5.tables[0].rows)


def test_ade20k_anchors_show_their_protocol_beside_the_run(ade):
    run, index = ade
    text = section_text(index, "cityscapes-c")
    assert "Clean and corrupted mIoU on ADE20K" in text
    assert "512x512 training crops, whole-image inference at short side 512, 160k iterations, single scale" in text
    assert "15 of its own (zoom, elastic and pixelate among them; not the 16 of Cityscapes-C) at severity 3" in text
    assert "Kamann" not in text  # Table 5's Cityscapes rows are not an ADE20K run's anchors
    rows = table_rows(index, "cityscapes-c")
    assert rows["segformer-b0 (published)"][1:] == ["37.4", "–", "–", "–"]  # SegFormer Table 1, single scale
    assert rows["segformer-b0-mmseg (published)"][1:] == ["37.4", "–", "30.2", "26.5"]  # SemSegBench
    assert rows["segformer-b2-mmseg (published)"][1:] == ["45.6", "–", "39.5", "39.2"]
    assert "segformer-b1 (published)" not in rows  # demo weights are held against nothing
    anchors = pd.read_csv(run / "report/anchors.csv")
    b0 = anchors[(anchors["model"] == "segformer-b0") & (anchors["source"] == "this run")].iloc[0]
    results = pd.read_csv(run / "results.csv").query("model == 'segformer-b0' and metric == 'miou'")
    assert b0["clean"] == pytest.approx(results.query("condition == 'clean'")["value"].item())
    assert b0["gaussian_noise-3"] == pytest.approx(results.query("condition == 'gaussian_noise-3'")["value"].item())
    summary = pd.read_csv(run / "summary.csv").query("model == 'segformer-b0' and metric == 'mPC'")
    assert b0["mPC"] == pytest.approx(summary["value"].item())  # summary.csv's, not recomputed


@pytest.mark.parametrize("clean", [True, False])
def test_real_world_heatmap_shows_the_same_worst_and_best(tmp_path, clean):
    store, order = RunStore(tmp_path), []
    for model in MODELS[:2]:
        for i, name in enumerate((["clean"] if clean else []) + ["acdc:fog", "acdc:night"]):
            c = Condition.parse(name)
            place = {"model": model, "suite": "acdc", "condition": c.name, "corruption": c.corruption}
            place |= {"category": c.category, "severity": None if c.is_real else c.severity}
            rows = [make_row("miou", 40.0 - i, **place)]
            rows += [make_row(class_metric_name(n), iou(model, k, 3 * i), **place) for k, n in enumerate(NAMES)]
            store.write_cell(
                {"cell": f"{model}|{name}", "kind": "accuracy", "model": model, "condition": name, "rows": rows}
            )
            order.append(f"{model}|{name}")
    store.gather(order, suite="acdc")
    store.write_manifest({"suite": "acdc", "classes": ClassTable("ade20k", NAMES).to_dict()})
    section = real_world.real_world(read_page(tmp_path))
    basis = "clean IoU" if clean else "IoU under ACDC fog"  # without clean rows: the first model's first condition
    label = f"10 worst / 10 best of 150 classes, sorted by {basis} of segformer-b0"
    assert label in section.figures[-1].alt and label in section.notes[-1]
    full = pd.read_csv(tmp_path / "report/real_world_class_iou.csv")
    assert list(full.columns[2:]) == list(NAMES) and len(full) == 4  # the file holds every class


@pytest.mark.parametrize("dataset", ["voc", "coco_stuff", "cityscapes"])
def test_anchors_follow_the_dataset(tmp_path, dataset):
    names = CITYSCAPES.names if dataset == "cityscapes" else NAMES[: 21 if dataset == "voc" else 150]
    page = read_page(make_dataset_run(tmp_path / dataset, dataset, names, resolution=None, latency=False))
    section = robustness.table5(page)
    notes = " ".join(section.notes)
    assert "SegFormer Table 1" not in " ".join(r.cells[0].text for t in section.tables for r in t.rows)
    if dataset == "voc":
        rows = {r.label: [c.text for c in r.cells] for r in section.tables[1].rows if r.label}
        assert rows["segformer-b0-mmseg (published)"][1:] == ["69.5", "–", "62.1", "61.1"]
        assert "VOC-aug-trained" in rows["segformer-b0-mmseg (published)"][0] and "Published anchors" in notes
        assert "segformer-b0 (published)" not in rows  # the paper's Table 1 has no VOC figures
    else:
        assert "Published anchors" not in notes and not (page.out.dir / "anchors.csv").exists()
    assert ("Kamann" in notes) == (dataset == "cityscapes")


def test_ade20k_efficiency_curve_on_the_papers_axes(ade):
    run, index = ade
    text, parsed = _parse(index)
    assert ("efficiency-curves", "report/efficiency_gmacs.png") in parsed.imgs
    assert "clean mIoU against GMACs (the paper&#39;s &#39;GFLOPs&#39;) at 512x512 [paper]" in text
    page = read_page(run)
    gmacs, latency = T.efficiency_curves(page.eff, page.clean, "ade20k")
    assert gmacs.published_label == "published (SegFormer Table 1)"
    published = gmacs.published.set_index("label")  # the paper's whole B0-B5 curve, as in its Figure 1
    assert published["x"].to_dict() == {
        "segformer-b0": 8.4,
        "segformer-b1": 15.9,
        "segformer-b2": 62.4,
        "segformer-b3": 79.0,
        "segformer-b4": 95.7,
        "segformer-b5": 183.3,
    }
    assert published["miou"].to_dict() == {
        "segformer-b0": 37.4,
        "segformer-b1": 42.2,
        "segformer-b2": 46.5,
        "segformer-b3": 49.4,
        "segformer-b4": 50.3,
        "segformer-b5": 51.0,
    }
    assert list(gmacs.points["x"]) == [8.0, 18.0, 13.0]  # the run's 512x512 rows
    assert latency.published.empty  # the mmseg zoo's latencies are Cityscapes'


def test_ade20k_without_a_512_row_says_so_in_one_line(tmp_path):
    page = read_page(make_dataset_run(tmp_path / "ade-1024", resolution="512x1024"))
    section = efficiency.efficiency_curves(page)
    assert [f.src for f in section.figures] == ["report/efficiency_latency.png"]  # latency still drawn
    assert sum("No 512x512 GMACs row in this run" in n for n in section.notes) == 1
    page = read_page(make_dataset_run(tmp_path / "ade-none", resolution=None, latency=False))
    section = efficiency.efficiency_curves(page)
    assert section.missing.startswith("No 512x512 GMACs row in this run") and not section.figures


def test_class_names_are_escaped_and_the_page_is_offline(ade):
    run, index = ade
    text, parsed = _parse(index)
    assert EVIL_CLASS not in text and "&lt;i&gt;bed&lt;/i&gt;" in text  # class 0 is among the worst
    assert "http://" not in text and "https://" not in text
    for _, src in parsed.imgs:
        assert (run / src).is_file(), src
    for link in parsed.links:
        assert (run / link).is_file(), link


def test_anchor_rows_are_the_reference_csvs():
    conditions = pd.DataFrame(columns=["model", "corruption", "category", "severity", "miou"])  # none measured
    ade = A.dataset_anchors("ade20k", ["segformer-b5"], conditions, pd.DataFrame())
    published = ade.rows[ade.rows["source"] != A.THIS_RUN].set_index("model")
    table1 = T.reference_table1().loc["segformer-b5"]
    assert published.loc["segformer-b5", "clean"] == table1["ade20k_miou_ss"]
    assert published.loc["segformer-b5", "protocol"].startswith("640x640 training crops")  # B5's own crop
    assert published.loc["segformer-b5-mmseg", "corruptions_sev3"] == 43.97
    assert A.dataset_anchors("cityscapes", ["segformer-b5"], pd.DataFrame(), pd.DataFrame()) is None
