"""The report's "Calibration under shift" section: ECE against severity per corruption category, the per-model table
of clean ECE / NLL / Brier and mean corrupted ECE, reliability diagrams from the cells' binned sums (clean, worst
corruption, worst attack) and the real-world table.

Run folders are written through the results contract (`make_row`, `RunStore`), cells with a "calibration" key as
`bench.measure.calibration` stores it; no model runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import _parse
from test_report_realworld import _Tables, section_text

from segbench.bench.results.axes import Condition
from segbench.bench.results.schema import CALIBRATION_BINS, CALIBRATION_KEY, make_row
from segbench.bench.results.store import RunFolder, RunStore, cell_filename
from segbench.reports import SECTION_IDS, render_report
from segbench.reports import calibration as C
from segbench.reports import tables as T

MODELS = ("segformer-b0", "fcn-r18")
CORRUPTED = ("gaussian_blur-1", "gaussian_blur-2", "motion_blur-1", "motion_blur-2", "gaussian_noise-1",
             "gaussian_noise-2", "fog-1", "fog-2")  # fmt: skip
REAL = ("acdc:fog", "acdc:night")
ATTACK = "pgd_linf_4"  # an attack condition: category "adversarial" (no corruption, no severity)
# ECE (%) per model and condition; segformer-b0's worst corruption is gaussian_noise-2, fcn-r18's fog-2
ECE = {
    "segformer-b0": dict(zip(("clean", *CORRUPTED, *REAL, ATTACK), (2.0, 3, 5, 4, 8, 9, 17, 6, 7, 12, 15, 30))),
    "fcn-r18": dict(zip(("clean", *CORRUPTED, *REAL, ATTACK), (4.0, 5, 6, 5, 7, 6, 9, 10, 21, 11, 13, 25))),
}


def nll(model: str, condition: str) -> float:
    return round(0.1 + ECE[model][condition] / 50, 4)


def brier(model: str, condition: str) -> float:
    return round(0.05 + ECE[model][condition] / 200, 4)


def sums(model: str, condition: str) -> dict:
    """A cell's calibration sums as `CalibrationCounter.to_dict` writes them; the lowest bins hold no pixels."""
    rng = np.random.default_rng(abs(hash((model, condition))) % 2**32)
    count = rng.integers(1, 500, CALIBRATION_BINS)
    count[:3] = 0
    correct = (count * rng.uniform(0.2, 1.0, CALIBRATION_BINS)).astype(int)
    centre = (np.arange(CALIBRATION_BINS) + 0.5) / CALIBRATION_BINS
    return {
        "bins": CALIBRATION_BINS,
        "count": count.tolist(),
        "correct": correct.tolist(),
        "confidence": (count * centre).tolist(),
        "nll_sum": float(count.sum() * nll(model, condition)),
        "brier_sum": float(count.sum() * brier(model, condition)),
    }


def place(model: str, condition: str) -> dict:
    if condition == ATTACK:
        return {"model": model, "suite": "cal", "condition": condition, "category": "adversarial"}
    c = Condition.parse(condition)
    severity = None if c.is_real else c.severity
    return {"model": model, "suite": "cal", "condition": c.name, "corruption": c.corruption, "category": c.category,
            "severity": severity}  # fmt: skip


def make_cal_run(run_dir: Path, calibrated=True, real=False, attack=False) -> Path:
    """A run folder with miou rows for every cell and, when `calibrated`, its ece / nll / brier rows and sums."""
    store = RunStore(run_dir)
    conditions = ("clean", *CORRUPTED, *(REAL if real else ()), *((ATTACK,) if attack else ()))
    order = []
    for model in MODELS:
        for condition in conditions:
            keys = place(model, condition)
            rows = [make_row("miou", 60.0 - ECE[model][condition], **keys), make_row("num_images", 10, **keys)]
            record = {"cell": f"{model}|{condition}", "kind": "accuracy", "model": model, "condition": condition}
            if calibrated:
                rows += [make_row("ece", ECE[model][condition], **keys), make_row("nll", nll(model, condition), **keys)]
                rows.append(make_row("brier", brier(model, condition), **keys))
                record[CALIBRATION_KEY] = sums(model, condition)
            store.write_cell({**record, "rows": rows})
            order.append(record["cell"])
    store.gather(order, suite="cal")
    weights = {m: {"source": "trained.pth", "sha256": "cd" * 32, "status": "trained"} for m in MODELS}
    store.write_env({"suite": {"name": "cal", "version": "1"}, "weights": weights})
    return run_dir


def calibration_of(run: Path) -> tuple[pd.DataFrame, RunFolder]:
    folder = RunFolder(run)
    return C.calibration_frame(T.normalize_results(folder.frame())), folder


def mean_corrupted_ece(model: str) -> float:
    per_corruption: dict[str, list[float]] = {}
    for condition in CORRUPTED:
        per_corruption.setdefault(condition.rpartition("-")[0], []).append(ECE[model][condition])
    return float(np.mean([np.mean(v) for v in per_corruption.values()]))


def section_rows(index: Path) -> list[tuple[str, list[str]]]:
    parser = _Tables()
    parser.feed(index.read_text(encoding="utf-8"))
    return [(head, cells) for s, head, cells in parser.rows if s == "calibration"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run = make_cal_run(tmp_path_factory.mktemp("cal") / "cal-run", real=True, attack=True)
    return run, render_report(run)


def test_section_renders_with_its_figures_and_files(rendered):
    run, index = rendered
    _, page = _parse(index)
    assert "calibration" in page.ids and "calibration" not in page.missing
    images = [src for s, src in page.imgs if s == "calibration"]
    assert images == ["report/calibration_severity.png", "report/calibration_reliability.png"]
    for src in images:
        assert (run / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("calibration", "calibration_per_condition", "calibration_reliability", "calibration_real_world"):
        assert (run / "report" / f"{name}.csv").is_file() and (run / "report" / f"{name}.md").is_file()
    order = list(SECTION_IDS)
    assert order.index("severity-curves") < order.index("calibration") < order.index("real-world")
    text = section_text(index, "calibration")
    assert "http" not in text and "and the worst attack" in text


def test_table_values_equal_the_rows(rendered):
    run, index = rendered
    table = pd.read_csv(run / "report" / "calibration.csv").set_index("model")
    rows = {head: cells for head, cells in section_rows(index) if len(cells) == 4 and cells[0] not in REAL}
    for model in MODELS:
        clean = ECE[model]["clean"]
        expected = (clean, nll(model, "clean"), brier(model, "clean"), mean_corrupted_ece(model))
        got = table.loc[model, ["clean_ece", "clean_nll", "clean_brier", "corrupted_ece"]]
        np.testing.assert_allclose(got.to_numpy(float), expected, rtol=1e-5)
        assert table.loc[model, "corruptions"] == 4  # the attack is not a corruption, nor are the real conditions
        assert rows[model] == [f"{expected[0]:.2f}", f"{expected[1]:.3f}", f"{expected[2]:.3f}", f"{expected[3]:.2f}"]


def test_severity_curves_average_a_categorys_corruptions(rendered):
    cal, _ = calibration_of(rendered[0])
    curves = C.severity_curves(cal).set_index(["model", "category", "severity"])["ece"]
    e = ECE["segformer-b0"]
    assert curves[("segformer-b0", "blur", 0)] == e["clean"]
    assert curves[("segformer-b0", "blur", 2)] == pytest.approx((e["gaussian_blur-2"] + e["motion_blur-2"]) / 2)
    assert curves[("segformer-b0", "noise", 1)] == e["gaussian_noise-1"]
    assert list(dict.fromkeys(curves.index.get_level_values("category"))) == ["blur", "noise", "weather"]


def test_worst_corruption_and_attack_have_the_highest_ece(rendered):
    cal, _ = calibration_of(rendered[0])
    for model in MODELS:
        corrupted = {c: ECE[model][c] for c in CORRUPTED}
        assert C.worst(cal, model)["condition"] == max(corrupted, key=corrupted.get)
        assert C.worst(cal, model, attacks=True)["condition"] == ATTACK
    assert C.worst(cal, "segformer-b0")["condition"] == "gaussian_noise-2"
    assert C.worst(cal, "fcn-r18")["condition"] == "fog-2"  # acdc:fog is higher, but real-world, not a corruption


def test_reliability_points_are_the_right_cells_bins(rendered):
    run, _ = rendered
    cal, folder = calibration_of(run)
    bins = folder.calibration()
    assert set(bins) == {(m, c) for m in MODELS for c in ("clean", *CORRUPTED, *REAL, ATTACK)}
    panels = C.diagram_panels(cal, bins, MODELS)
    shown = [(m, role, c) for m, role, c, _, _ in panels]
    assert shown == [
        ("segformer-b0", "clean", "clean"),
        ("segformer-b0", "worst corruption", "gaussian_noise-2"),
        ("segformer-b0", "worst attack", ATTACK),
        ("fcn-r18", "clean", "clean"),
        ("fcn-r18", "worst corruption", "fog-2"),
        ("fcn-r18", "worst attack", ATTACK),
    ]
    for model, _, condition, ece, points in panels:
        assert ece == ECE[model][condition]
        stored = json.loads((run / "cells" / cell_filename(f"{model}|{condition}")).read_text())
        count = np.array(stored[CALIBRATION_KEY]["count"])
        kept = np.flatnonzero(count)
        assert list(points["bin"]) == list(kept) and 0 not in set(points["count"])  # empty bins left out
        correct = np.array(stored[CALIBRATION_KEY]["correct"])[kept]
        confidence = np.array(stored[CALIBRATION_KEY]["confidence"])[kept]
        np.testing.assert_allclose(points["accuracy"], correct / count[kept])
        np.testing.assert_allclose(points["confidence"], confidence / count[kept])
        np.testing.assert_allclose(points["lower"], kept / CALIBRATION_BINS)


def test_real_world_conditions_get_their_table(rendered):
    _, index = rendered
    real = [(head, cells) for head, cells in section_rows(index) if cells and cells[0] in REAL]
    assert len(real) == len(MODELS) * len(REAL)
    for model, cells in real:
        c = cells[0]
        assert cells[1:] == [f"{ECE[model][c]:.2f}", f"{nll(model, c):.3f}", f"{brier(model, c):.3f}"]


def test_a_run_without_calibration_shows_the_missing_line(tmp_path):
    run = make_cal_run(tmp_path / "old-run", calibrated=False)
    assert RunFolder(run).calibration() == {}  # cells without the key are absent
    index = render_report(run)
    _, page = _parse(index)
    assert "calibration" in page.missing
    assert "no calibration rows (ece, nll, brier)" in section_text(index, "calibration")
    assert not list((run / "report").glob("calibration*"))


def test_without_real_world_or_attacks_neither_is_shown(tmp_path):
    run = make_cal_run(tmp_path / "run")
    index = render_report(run)
    assert not any(cells and cells[0] in REAL for _, cells in section_rows(index))
    assert "worst attack" not in section_text(index, "calibration")
    assert not (run / "report" / "calibration_real_world.csv").exists()


def test_a_damaged_calibration_key_is_left_out_and_named(tmp_path):
    run = make_cal_run(tmp_path / "run")
    path = run / "cells" / cell_filename("fcn-r18|clean")
    record = json.loads(path.read_text())
    record[CALIBRATION_KEY]["count"] = record[CALIBRATION_KEY]["count"][:-1]
    path.write_text(json.dumps(record))
    folder = RunFolder(run)
    bins = folder.calibration()
    assert ("fcn-r18", "clean") not in bins and ("segformer-b0", "clean") in bins
    assert len(folder.problems) == 1 and path.name in folder.problems[0] and "14" in folder.problems[0]
    render_report(run)  # the section still renders, without that panel
