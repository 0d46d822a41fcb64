"""The report's "Adversarial robustness" section: the figure per settings group, the per-model table (attack mIoU from
results.csv, worst case and area from summary.csv), the cost table, the published figures of the run's dataset and the
attacked gallery.

One real run (segformer-tiny, random weights, two 64x128 synthetic images, two attacks at two L-inf budgets with the
worst case, two steps) and its gallery (`write_gallery`) are made once for the module; the rest are small hand-made
frames or run folders written through the results contract.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import _parse
from test_report_realworld import _Tables, section_text

from segbench.bench.results.axes import Condition
from segbench.bench.results.schema import ADV_AREA, ADV_MIOU, ATTACK_MEMORY, ATTACK_STEP_TIME, MIOU, make_row
from segbench.bench.results.store import RunStore
from segbench.reports import SECTION_IDS, render_report
from segbench.reports import adversarial as A

MODEL = "segformer-tiny"
BUDGETS = ("1/255", "4/255")
CONDITIONS = ["clean"] + [f"{a}-linf-{b}-2steps" for b in BUDGETS for a in ("pgd", "cospgd", "worst")]
GALLERY_ATTACKS = ("pgd-linf-4/255-2steps", "cospgd-linf-4/255-2steps")


@pytest.fixture(scope="module")
def adv_run(tmp_path_factory):
    from segbench import models
    from segbench.bench.data.synthetic import write_synthetic_cityscapes
    from segbench.bench.run.config import InferenceSpec, RunConfig
    from segbench.bench.run.gallery import write_gallery
    from segbench.bench.run.runner import run

    tmp = tmp_path_factory.mktemp("adv")
    root = write_synthetic_cityscapes(tmp / "cs", num_images=2, size=(64, 128), seed=3)
    config = RunConfig(
        suite="t",
        suite_version="1",
        models=(MODEL,),
        data_root=str(root),
        out_dir=str(tmp / "runs"),
        allow_random_weights=True,
        batch_size=2,
        quiet=True,
        run_id="a",
    )
    run_dir = run(config, CONDITIONS, InferenceSpec(mode="whole")).run_dir
    shown = [Condition.parse(c) for c in ("clean", *GALLERY_ATTACKS)]
    write_gallery(run_dir, root, shown, [MODEL], lambda name: models.create_model(name), InferenceSpec(mode="whole"))
    return run_dir, render_report(run_dir)


def rows_of(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / name, keep_default_na=False, na_values=[""])


def value(frame: pd.DataFrame, condition: str, metric: str, corruption: str | None = None) -> float:
    sel = frame[(frame["condition"] == condition) & (frame["metric"] == metric) & (frame["model"] == MODEL)]
    sel = sel if corruption is None else sel[sel["corruption"] == corruption]
    assert len(sel) == 1, (condition, metric, corruption)
    return float(sel["value"].iloc[0])


def section_rows(index: Path) -> list[tuple[str, list[str]]]:
    parser = _Tables()
    parser.feed(index.read_text(encoding="utf-8"))
    return [(head, cells) for s, head, cells in parser.rows if s == "adversarial"]


def test_section_renders_with_its_figure_and_files(adv_run):
    run_dir, index = adv_run
    _, page = _parse(index)
    assert "adversarial" in page.ids and "adversarial" not in page.missing
    figures = [src for s, src in page.imgs if s == "adversarial" and src.startswith("report/")]
    assert figures == ["report/adversarial_linf-2steps.png"]
    assert (run_dir / figures[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("adversarial", "adversarial_cost"):
        assert (run_dir / "report" / f"{name}.csv").is_file() and (run_dir / "report" / f"{name}.md").is_file()
    order = list(SECTION_IDS)
    assert order.index("prediction") < order.index("adversarial") < order.index("per-class-iou")
    text = section_text(index, "adversarial")
    assert "SEA" in text and "[0, 1] pixel space" in text and "fp32" in text and "seed (0)" in text


def test_table_values_are_the_runs_own_rows(adv_run):
    run_dir, index = adv_run
    results, summary = rows_of(run_dir, "results.csv"), rows_of(run_dir, "summary.csv")
    expected = [value(results, "clean", MIOU)]
    for budget in BUDGETS:
        expected += [value(results, f"{a}-linf-{budget}-2steps", MIOU) for a in ("pgd", "cospgd")]
        worst = value(summary, f"linf-{budget}-2steps", ADV_MIOU, "worst")
        assert worst == pytest.approx(value(results, f"worst-linf-{budget}-2steps", MIOU))
        expected.append(worst)
    expected += [value(summary, "area-linf-4/255-2steps", ADV_AREA, a) for a in ("pgd", "cospgd", "worst")]
    table = [cells for head, cells in section_rows(index) if head.startswith(MODEL) and len(cells) == len(expected)]
    assert table == [[f"{v:.2f}" for v in expected]]
    stored = pd.read_csv(run_dir / "report" / "adversarial.csv")
    pgd = stored[(stored["attack"] == "pgd") & (stored["metric"] == MIOU) & (stored["budget"] == "4/255")]
    assert pgd["value"].iloc[0] == pytest.approx(value(results, "pgd-linf-4/255-2steps", MIOU), rel=1e-5)


def test_cost_table_shows_the_runs_step_time_and_no_memory_on_cpu(adv_run):
    run_dir, index = adv_run
    results = rows_of(run_dir, "results.csv")
    rows = {cells[0]: cells for head, cells in section_rows(index) if head.startswith(MODEL) and len(cells) == 8}
    assert set(rows) == {f"{a} L-inf {b} (2 steps)" for a in ("PGD", "CosPGD") for b in BUDGETS}
    for title, attack in (("PGD", "pgd"), ("CosPGD", "cospgd")):
        condition = f"{attack}-linf-4/255-2steps"
        ms = value(results, condition, ATTACK_STEP_TIME)
        cells = rows[f"{title} L-inf 4/255 (2 steps)"]
        assert cells[1:4] == [f"{ms:.1f}", "2", f"{ms * 2 / 1000:.2f}"]
        memory = results[(results["condition"] == condition) & (results["metric"] == ATTACK_MEMORY)]
        assert cells[4] == (f"{memory['value'].iloc[0]:.0f}" if len(memory) else "not measured on CPU")
        assert cells[6] == "fp32" and cells[7] == "whole"
    assert not (results["metric"] == ATTACK_STEP_TIME)[results["corruption"] == "worst"].any()


def test_gallery_shows_clean_against_attacked_from_inside_the_run(adv_run):
    run_dir, index = adv_run
    _, page = _parse(index)
    images = [src for s, src in page.imgs if s == "adversarial" and not src.startswith("report/adversarial_")]
    data = json.loads((run_dir / "gallery" / "index.json").read_text())
    assert [a["condition"] for a in data["attacks"]] == list(GALLERY_ATTACKS)
    for item in data["attacks"]:
        assert item["inputs"][MODEL] in images and item["predictions"][MODEL] in images
    clean = next(c for c in data["conditions"] if c["condition"] == "clean")
    assert clean["input"] in images and clean["predictions"][MODEL] in images and data["ground_truth"] in images
    for src in images:
        path = (run_dir / src).resolve()
        assert path.is_file() and path.is_relative_to(run_dir.resolve()), src
    text = section_text(index, "adversarial")
    assert "http" not in text and "PGD L-inf 4/255 (2 steps)" in text and "CosPGD L-inf 4/255 (2 steps)" in text
    assert not [link for link in page.links if link.startswith(("http", "/", ".."))]


def test_cityscapes_run_names_what_the_published_file_covers(adv_run):
    text = section_text(adv_run[1], "adversarial")
    assert "holds none for Cityscapes" in text
    assert "CosPGD paper" in text and "SEA paper" in text and "ADE20K" in text and "Pascal VOC" in text
    assert 'class="published"' not in text


def test_an_ade20k_run_shows_the_published_rows_labelled(adv_run, tmp_path):
    run_dir = shutil.copytree(adv_run[0], tmp_path / "ade")
    manifest = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**manifest, "dataset": "ade20k"}))
    index = render_report(run_dir)
    published = [(h, c) for h, c in section_rows(index) if h.endswith("(published)")]
    assert len(published) == 9 and {h for h, _ in published} == {"segformer-b0 (published)"}
    assert published[0][1] == [
        "CosPGD paper (Agnihotri et al., ICML 2024; arXiv 2302.02213), Table 3",
        "PGD, L-inf \u03b5 = 8/255, step size \u03b1 0.01, 20 iterations",
        "0.46",
        "no: this run has no segformer-b0 under pgd at L-inf 8/255",
    ]
    text = section_text(index, "adversarial")
    assert 'class="published"' in text and "not measured in this run" in text
    assert (run_dir / "report" / "adversarial_published.csv").is_file()


def test_published_rows_are_the_datasets_and_matched_by_settings():
    ade = A.published_rows("ade20k")
    assert len(ade) == 9 and set(ade["source"]) == {"cospgd_paper_table3"}
    assert set(A.published_rows("voc")["source"]) == {"sea_table1"}
    assert A.published_rows("cityscapes").empty
    row = ade[(ade["attack"] == "cospgd") & (ade["eps"] == "8/255") & (ade["iterations"] == 20)].iloc[0].to_dict()
    assert A.published_settings(row) == "CosPGD, L-inf \u03b5 = 8/255, step size \u03b1 0.01, 20 iterations"
    same = A.attack_points(frame_of([("segformer-b0", "cospgd-linf-8/255-20steps-step0.01", MIOU, 1.0)]))[0]
    assert A.published_match(row, same, {}).startswith("yes: cospgd-linf-8/255-20steps-step0.01")
    assert A.published_match(row, same, {"segformer-b0": "random weights (untrained)"}).startswith("no: this run's")
    fewer = A.attack_points(frame_of([("segformer-b0", "cospgd-linf-8/255-3steps", MIOU, 1.0)]))[0]
    assert A.published_match(row, fewer, {}) == "no: this run's cospgd-linf-8/255-3steps took 3 steps of 0.0261"
    sea = A.published_settings(A.published_rows("voc").iloc[0].to_dict())
    assert "SEA (per-image worst case" in sea and "step size not given" in sea


def frame_of(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """Tidy rows of attack cells (category adversarial), as `tables.normalize_results` leaves them."""
    out = []
    for model, condition, metric, v in rows:
        if condition == "clean":
            out.append({"model": model, "condition": "clean", "category": "clean", "metric": metric, "value": v})
            continue
        attack = Condition.parse(condition).attack
        out.append(
            {
                "model": model,
                "condition": condition,
                "corruption": attack.name,
                "category": "adversarial",
                "metric": metric,
                "value": v,
            }
        )
    return pd.DataFrame(out)


def test_settings_groups_and_a_figure_for_each(tmp_path):
    budgets = ("0.25/255", "1/255", "8/255")
    rows = [("m", f"pgd-linf-{b}", MIOU, 50.0 - i) for i, b in enumerate(budgets)]
    rows += [("m", f"worst-linf-{b}", MIOU, 40.0 - i) for i, b in enumerate(budgets)]
    rows += [("m", "pgd-linf-8/255-20steps-step0.01", MIOU, 5.0), ("m", "pgd-l2-0.5", MIOU, 30.0)]
    points, bad = A.attack_points(frame_of([*rows, ("m", "clean", MIOU, 60.0)]))
    assert bad == [] and len(points) == 8
    assert [g for g, _ in A.groups(points)] == ["linf", "linf-20steps-step0.01", "l2"]
    assert [A.group_label(s) for _, s in A.groups(points)][1] == "L-inf, 20 steps, step 0.01, random start"
    assert A.attacks_of(points[points["group"] == "linf"]) == ["pgd", "worst"]
    linf = points[points["group"] == "linf"].sort_values("eps")
    np.testing.assert_allclose(linf["eps"].unique() * 255, [0.25, 1, 8])
    clean = pd.Series({"m": 60.0})
    path = A.attack_curves(linf, clean, ["m"], {"m": "m"}, "L-inf", tmp_path / A.figure_name("linf"))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert A.figure_name("linf-20steps-step0.01") == "adversarial_linf-20steps-step0.01.png"
    assert A.attack_curves(points.iloc[0:0], clean, ["m"], {}, "", tmp_path / "none.png") is None


def test_cost_table_keeps_gpu_memory_and_derives_seconds():
    frame = frame_of(
        [
            ("m", "pgd-linf-4/255-20steps", ATTACK_STEP_TIME, 50.0),
            ("m", "pgd-linf-4/255-20steps", ATTACK_MEMORY, 2048.0),
            ("m", "pgd-linf-1/255-20steps", ATTACK_STEP_TIME, 40.0),
        ]
    )
    cells = [
        {
            "model": "m",
            "condition": "pgd-linf-4/255-20steps",
            "device": "cuda",
            "inference": {"mode": "slide", "crop": [512, 512], "precision": "fp16"},
        }
    ]
    cost = A.cost_table(frame, cells).set_index("condition")
    gpu = cost.loc["pgd-linf-4/255-20steps"]
    assert gpu["seconds_per_image"] == pytest.approx(1.0) and gpu["steps"] == 20
    assert (gpu["device"], gpu["precision"], gpu["inference"]) == ("cuda", "fp16", "slide 512x512")
    assert A.memory_text(gpu["peak_memory_mib"], gpu["device"]) == "2048"
    other = cost.loc["pgd-linf-1/255-20steps"]
    assert A.memory_text(other["peak_memory_mib"], "cpu") == "not measured on CPU"
    assert A.memory_text(other["peak_memory_mib"], "cuda") == "not recorded"


def test_a_run_without_attacks_shows_the_missing_line(tmp_path):
    store = RunStore(tmp_path / "plain")
    order = []
    for condition in ("clean", "fog-1"):
        c = Condition.parse(condition)
        keys = {
            "model": "m",
            "suite": "t",
            "condition": c.name,
            "corruption": c.corruption,
            "category": c.category,
            "severity": c.severity,
        }
        rows = [make_row(MIOU, 50.0, **keys), make_row("num_images", 2, **keys)]
        store.write_cell(
            {"cell": f"m|{condition}", "kind": "accuracy", "model": "m", "condition": condition, "rows": rows}
        )
        order.append(f"m|{condition}")
    store.gather(order, suite="t")
    index = render_report(tmp_path / "plain")
    _, page = _parse(index)
    assert "adversarial" in page.missing
    assert "no attack conditions" in section_text(index, "adversarial")
    assert not list((tmp_path / "plain" / "report").glob("adversarial*"))
