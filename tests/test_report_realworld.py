"""The report's real-world sections: mIoU and drop under ACDC / Dark Zurich / Foggy Cityscapes beside the published
SemSegBench figures, and whether Cityscapes-C predicts them (scatter, Pearson / Spearman, rank agreement).

Run folders are fabricated with the results contract (cells written by `RunStore`, gathered into results.csv and
summary.csv), without running a model.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import EVIL, _parse, _timed_cell, make_fake_run

from segbench.bench.results.axes import INVALID_REGION_NOTE, Condition
from segbench.bench.results.classes import CITYSCAPES
from segbench.bench.results.schema import class_metric_name
from segbench.bench.results.store import RunStore
from segbench.reports import realworld as RW
from segbench.reports import render_report
from segbench.reports import tables as T

MODELS = ("segformer-b5", "segformer-b0", "fcn-r18", "tiny-net")
CLEAN = {"segformer-b5": 82.0, "segformer-b0": 76.0, "fcn-r18": 70.0, "tiny-net": 50.0}
# Cityscapes-C mIoU averaged over severities 1 and 2 (stored as value + 2 and value - 2)
SYNTHETIC = {
    "segformer-b5": {"fog": 70.0, "snow": 50.0, "brightness": 75.0, "contrast": 60.0, "spatter": 66.0},
    "segformer-b0": {"fog": 65.0, "snow": 40.0, "brightness": 70.0, "contrast": 50.0, "spatter": 58.0},
    "fcn-r18": {"fog": 60.0, "snow": 30.0, "brightness": 66.0, "contrast": 30.0, "spatter": 60.0},
    "tiny-net": {"fog": 30.0, "snow": 10.0, "brightness": 45.0, "contrast": 20.0, "spatter": 25.0},
}
REAL_NAMES = ("acdc:fog", "acdc:night", "acdc:rain", "acdc:snow", "dark_zurich:night",
              "foggy_cityscapes:beta_0.005", "foggy_cityscapes:beta_0.01", "foggy_cityscapes:beta_0.02")  # fmt: skip
# fog -> ACDC fog: segformer-b0 is 2nd on fog but 3rd on ACDC fog (fcn-r18 the other way); snow -> ACDC snow agrees
REAL = {
    "segformer-b5": dict(zip(REAL_NAMES, (60.0, 31.0, 55.0, 52.0, 25.0, 78.0, 75.0, 70.0))),
    "segformer-b0": dict(zip(REAL_NAMES, (40.0, 22.0, 45.0, 41.0, 18.0, 72.0, 68.0, 60.0))),
    "fcn-r18": dict(zip(REAL_NAMES, (55.0, 20.0, 47.0, 35.0, 19.0, 66.0, 60.0, 52.0))),
    "tiny-net": dict(zip(REAL_NAMES, (20.0, 10.0, 21.0, 12.0, 8.0, 45.0, 40.0, 30.0))),
}
IMAGES = {"clean": 500, "acdc:fog": 100, "acdc:night": 106, "acdc:rain": 100, "acdc:snow": 100,
          "dark_zurich:night": 50, "foggy_cityscapes:beta_0.005": 500, "foggy_cityscapes:beta_0.01": 500,
          "foggy_cityscapes:beta_0.02": 500}  # fmt: skip


def class_iou(model: str, condition: str, i: int) -> float:
    return round((CLEAN[model] + 3 * i + 7 * len(condition)) % 100, 3)


def cell_rows(model: str, condition: str, miou: float, template: str | None = None) -> list[dict]:
    """An accuracy cell's rows as `bench.measure.metrics` writes them (metrics, per-class IoU, images, timing)."""
    c = Condition.parse(condition)
    base = {
        "model": model,
        "suite": "robustness",
        "condition": c.name,
        "corruption": c.corruption,
        "category": c.category,
        "severity": None if c.is_real else c.severity,
    }
    rows = [
        {**base, "metric": m, "value": v, "unit": "%"}
        for m, v in (("miou", miou), ("pixel_acc", miou + 15), ("mean_acc", miou + 5))
    ]
    rows += [
        {**base, "metric": class_metric_name(name), "value": class_iou(template or model, c.name, i), "unit": "%"}
        for i, name in enumerate(CITYSCAPES.names)
    ]
    rows.append({**base, "metric": "num_images", "value": IMAGES.get(c.name, 20), "unit": "count"})
    rows.append({**base, "metric": "time_total", "value": 3.0, "unit": "s"})
    return rows


def make_real_run(run_dir: Path, models=MODELS, corrupted: bool = True, real: bool = True, names=None) -> Path:
    """A run folder of the robustness suite, written through the contract. `names` renames the models (template ->
    name in the run)."""
    names = names or {}
    store = RunStore(run_dir)
    order = []
    for model in models:
        name = names.get(model, model)
        conditions = {"clean": CLEAN[model]}
        if corrupted:
            for corruption, value in SYNTHETIC[model].items():
                conditions |= {f"{corruption}-1": value + 2, f"{corruption}-2": value - 2}
        if real:
            conditions |= REAL[model]
        for condition, value in conditions.items():
            cell = f"{name}|{condition}"
            rows = cell_rows(name, condition, value, model)
            store.write_cell(
                {
                    "cell": cell,
                    "kind": "accuracy",
                    "model": name,
                    "condition": condition,
                    "num_images": IMAGES.get(condition, 20),
                    "rows": rows,
                }
            )
            order.append(cell)
    store.gather(order, suite="robustness")
    weights = {names.get(m, m): {"source": "trained.pth", "sha256": "cd" * 32, "status": "trained"} for m in models}
    store.write_env({"suite": {"name": "robustness", "version": "1"}, "weights": weights})
    return run_dir


class _Tables(HTMLParser):
    """Every table row of the page as (section id, header cell text, [data cell texts])."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, str, list[str]]] = []
        self._section, self._cell, self._row = None, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self._section = dict(attrs).get("id")
        elif tag == "tr":
            self._row = ["", []]
        elif tag in ("th", "td") and self._row is not None:
            self._cell = [tag, ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None and self._row is not None:
            kind, text = self._cell
            text = " ".join(text.split())
            if kind == "th" and not self._row[0] and not self._row[1]:
                self._row[0] = text
            else:
                self._row[1].append(text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append((self._section, self._row[0], self._row[1]))
            self._row = None


def table_rows(index: Path, section: str) -> dict[str, list[str]]:
    """A section's table rows by their first cell (the first row of that name: the divider rows of a later table
    repeat a pair's name)."""
    parser = _Tables()
    parser.feed(index.read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for s, head, cells in parser.rows:
        if s == section:
            out.setdefault(head, cells)
    return out


def section_text(index: Path, section: str) -> str:
    text = index.read_text(encoding="utf-8")
    start = text.index(f'<section id="{section}"')
    return text[start : text.index("</section>", start)]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run = make_real_run(tmp_path_factory.mktemp("real") / "robustness-run")
    return run, render_report(run)


# --------------------------------------------------------------------------------------------------------------------
# Real-world conditions
# --------------------------------------------------------------------------------------------------------------------


def test_both_sections_render_with_figures_and_files(rendered):
    run, index = rendered
    _, page = _parse(index)
    assert {"real-world", "prediction"} <= page.ids
    assert not {"real-world", "prediction"} & set(page.missing)
    images = {section: src for section, src in page.imgs}
    assert images["real-world"] == "report/real_world_class_iou.png"
    assert images["prediction"] == "report/prediction.png"
    for src in images.values():
        assert (run / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for stem in ("real_world", "real_world_class_iou", "prediction", "prediction_points"):
        assert (run / "report" / f"{stem}.csv").is_file() and (run / "report" / f"{stem}.md").read_text().count("|") > 4
    order = [s for s in re.findall(r'<section id="([^"]+)"', index.read_text())]
    assert order.index("severity-curves") < order.index("real-world") < order.index("prediction")


def test_real_world_table_shows_the_rows_and_summary_drops(rendered):
    run, index = rendered
    table = pd.read_csv(run / "report" / "real_world.csv")
    ours = table[table["source"] == "this run"].set_index("model")
    summary = pd.read_csv(run / "summary.csv")
    drops = summary[summary["metric"] == "drop"].set_index(["model", "condition"])["value"]
    means = summary[summary["metric"] == "miou_avg"].set_index(["model", "condition"])["value"]
    assert list(ours.index) == list(MODELS)
    html = table_rows(index, "real-world")
    for model in MODELS:
        assert ours.loc[model, "clean"] == CLEAN[model]
        for name in REAL_NAMES:
            assert ours.loc[model, name] == REAL[model][name]
            assert ours.loc[model, f"{name}_drop_pp"] == pytest.approx(drops[model, name], rel=1e-5)
        for dataset in ("acdc", "foggy_cityscapes"):
            assert ours.loc[model, dataset] == pytest.approx(means[model, dataset], rel=1e-5)
            assert ours.loc[model, f"{dataset}_drop_pp"] == pytest.approx(drops[model, dataset], rel=1e-5)
        assert "dark_zurich" not in ours.columns  # a single condition: no separate mean column
    cells = html["segformer-b5"]  # clean, ACDC fog night rain snow mean, Dark Zurich night, Foggy 3 betas + mean
    assert cells[:2] == ["82.0", "60.0 (\u221222.0)"]
    assert cells[5] == f"{np.mean([60, 31, 55, 52]):.1f} (\u2212{82 - np.mean([60, 31, 55, 52]):.1f})"
    assert len(cells) == 11
    assert html["images"][:3] == ["500", "100", "106"]  # the subheader


def test_drops_are_read_from_summary_csv_not_recomputed(tmp_path):
    run = make_real_run(tmp_path / "run", MODELS[:3], corrupted=False)
    summary = pd.read_csv(run / "summary.csv")
    fog = (summary["model"] == "fcn-r18") & (summary["condition"] == "acdc:fog") & (summary["metric"] == "drop")
    assert summary.loc[fog, "value"].item() == pytest.approx(70.0 - 55.0)
    summary.loc[fog, "value"] = 12.345  # what summary.csv says is what the report shows
    summary.to_csv(run / "summary.csv", index=False)
    index = render_report(run)
    shown = pd.read_csv(run / "report" / "real_world.csv").set_index("model")
    assert shown.loc["fcn-r18", "acdc:fog_drop_pp"] == pytest.approx(12.345)
    assert table_rows(index, "real-world")["fcn-r18"][1] == "55.0 (\u221212.3)"


def test_per_class_iou_under_each_condition(rendered):
    run, _ = rendered
    table = pd.read_csv(run / "report" / "real_world_class_iou.csv")
    assert list(table.columns) == ["model", "condition", *CITYSCAPES.names]
    assert len(table) == len(MODELS) * len(REAL_NAMES)
    assert list(table["condition"][: len(REAL_NAMES)]) == list(REAL_NAMES)
    row = table[(table["model"] == "fcn-r18") & (table["condition"] == "acdc:night")].iloc[0]
    assert [row[c] for c in CITYSCAPES.names] == pytest.approx(
        [class_iou("fcn-r18", "acdc:night", i) for i in range(19)]
    )
    clean = pd.read_csv(run / "report" / "per_class_iou.csv").set_index("model")  # the clean section is unaffected
    assert clean.loc["fcn-r18", "road"] == class_iou("fcn-r18", "clean", 0) and len(clean) == len(MODELS)


def test_published_semsegbench_figures_only_for_matching_models(rendered, tmp_path):
    run, index = rendered
    table = pd.read_csv(run / "report" / "real_world.csv")
    published = table[table["source"] != "this run"].set_index("model")
    assert set(published["source"]) == {"published: SemSegBench, Agnihotri et al., arXiv 2505.18015"}
    assert list(published.index) == ["segformer-b5-mmseg", "segformer-b0-mmseg"]  # fcn-r18, tiny-net: no match
    reference = pd.read_csv(T.REFERENCE_DIR / "semsegbench_cityscapes.csv").set_index("model")
    conditions = pd.read_csv(T.REFERENCE_DIR / "semsegbench_acdc_conditions.csv")
    b5 = published.loc["segformer-b5-mmseg"]
    assert b5["acdc"] == reference.loc["segformer-b5-mmseg", "acdc_miou"] == 58.75
    assert b5["clean"] == 82.25
    assert {c: b5[c] for c in conditions["condition"]} == {
        "acdc:fog": 75.04,
        "acdc:snow": 61.47,
        "acdc:rain": 64.40,
        "acdc:night": 30.91,
    }
    assert published.filter(like="_drop_pp").isna().all().all()  # never given a measured-looking drop
    assert np.isnan(published.loc["segformer-b0-mmseg", "acdc:fog"])  # B0: only the all-conditions figure
    section = section_text(index, "real-world")
    assert "Published numbers (SemSegBench, Agnihotri et al., arXiv 2505.18015): not measured in this run" in section
    assert "segformer-b5 against segformer-b5-mmseg" in section and "re-implemented SegFormer checkpoint" in section
    assert "split is not stated" in section and "autocast" in section
    rows = table_rows(index, "real-world")
    assert rows["segformer-b5-mmseg (SemSegBench)"][:2] == ["82.2", "75.0"]  # 82.25 shown to one decimal
    assert "fcn-r18-mmseg (SemSegBench)" not in rows

    other = make_real_run(tmp_path / "other", ("fcn-r18", "tiny-net"), corrupted=False)
    text = section_text(render_report(other), "real-world")
    assert "SemSegBench" not in text and "published" not in text.lower()
    assert set(pd.read_csv(other / "report" / "real_world.csv")["source"]) == {"this run"}


def test_invalid_region_note_names_the_masked_datasets(rendered, tmp_path):
    _, index = rendered
    note = f"Invalid regions (ACDC and Dark Zurich): {INVALID_REGION_NOTE}."
    assert note.replace("'", "&#39;") in section_text(index, "real-world")


def test_run_without_real_world_rows_marks_both_sections_missing(tmp_path):
    run = make_real_run(tmp_path / "run", MODELS[:3], real=False)
    index = render_report(run)
    _, page = _parse(index)
    assert {"real-world", "prediction"} <= set(page.missing) and "robustness-scores" not in page.missing
    missing = section_text(index, "real-world")
    assert "no real-world rows" in missing and "acdc, dark-zurich, foggy-cityscapes, robustness" in missing
    assert "robustness suite" in section_text(index, "prediction")
    assert not (run / "report" / "real_world.csv").exists() and not (run / "report" / "prediction.png").exists()


def test_real_world_without_corruptions_has_no_prediction(tmp_path):
    index = render_report(make_real_run(tmp_path / "run", MODELS[:3], corrupted=False))
    _, page = _parse(index)
    assert "real-world" not in page.missing and "prediction" in page.missing
    assert {"robustness-scores", "severity-curves"} <= set(page.missing)


# --------------------------------------------------------------------------------------------------------------------
# Existing sections stay as they were
# --------------------------------------------------------------------------------------------------------------------


def test_real_world_rows_do_not_pollute_the_existing_sections(tmp_path):
    """The same fake run, rendered without and with real-world rows (and a model measured only on clean and real
    conditions): Table 5, the scores, the severity table and the clean per-class IoU do not change."""
    before = make_fake_run(tmp_path / "before", gallery=False, history=False, efficiency=False)
    render_report(before)
    after = make_fake_run(tmp_path / "after", gallery=False, history=False, efficiency=False)
    rows = pd.read_csv(after / "results.csv").to_dict("records")
    for model in ("segformer-b0", "fcn-r18"):
        for name in REAL_NAMES:
            rows += cell_rows(model, name, REAL["fcn-r18"][name], "fcn-r18")
    rows += cell_rows("real-only", "clean", 64.0, "fcn-r18") + cell_rows("real-only", "acdc:fog", 33.0, "fcn-r18")
    RunStore(after).write_summary(rows, "demo", None)
    pd.DataFrame(rows).to_csv(after / "results.csv", index=False)
    render_report(after)

    def read(run, stem):
        frame = pd.read_csv(run / "report" / f"{stem}.csv")
        return frame[frame["model"] != "real-only"].reset_index(drop=True)

    for stem in ("cityscapes_c", "robustness_scores", "miou_per_condition", "per_class_iou"):
        pd.testing.assert_frame_equal(read(before, stem), read(after, stem), obj=stem)
    assert "real-only" not in set(pd.read_csv(after / "report" / "robustness_scores.csv")["model"])
    assert not pd.read_csv(after / "report" / "miou_per_condition.csv")["condition"].str.contains(":").any()
    assert not any(":" in c or "acdc" in c for c in pd.read_csv(after / "report" / "cityscapes_c.csv").columns)
    _, page = _parse(after / "index.html")
    assert "real-world" not in page.missing


def test_evaluation_time_lists_real_conditions_after_the_corruptions():
    names = ["foggy_cityscapes:beta_0.01", "zoom_blur-1", "acdc:fog", "fog-2", "clean", "dark_zurich:night"]
    table = T.evaluation_time(pd.DataFrame([_timed_cell("a", c) for c in names]))
    assert list(table["condition"]) == [
        "clean",
        "fog-2",
        "zoom_blur-1",
        "acdc:fog",
        "dark_zurich:night",
        "foggy_cityscapes:beta_0.01",
    ]


# --------------------------------------------------------------------------------------------------------------------
# Does Cityscapes-C predict the real world?
# --------------------------------------------------------------------------------------------------------------------


def _pairs() -> dict[str, tuple[list[float], list[float]]]:
    """The hand-made synthetic and real scores per pair (the report's inputs, computed here independently)."""

    def syn(*corruptions):
        return [float(np.mean([SYNTHETIC[m][c] for c in corruptions])) for m in MODELS]

    def real(*names):
        return [float(np.mean([REAL[m][n] for n in names])) for m in MODELS]

    mpc = [float(np.mean(list(SYNTHETIC[m].values()))) for m in MODELS]
    return {
        "fog \u2192 Foggy Cityscapes (mean)": (syn("fog"), real(*REAL_NAMES[5:])),
        "fog \u2192 ACDC fog": (syn("fog"), real("acdc:fog")),
        "snow \u2192 ACDC snow": (syn("snow"), real("acdc:snow")),
        "brightness + contrast \u2192 ACDC night": (syn("brightness", "contrast"), real("acdc:night")),
        "brightness + contrast \u2192 Dark Zurich night": (syn("brightness", "contrast"), real("dark_zurich:night")),
        "spatter \u2192 ACDC rain": (syn("spatter"), real("acdc:rain")),
        "mPC \u2192 ACDC (mean)": (mpc, real(*REAL_NAMES[:4])),
    }


def test_correlations_shown_equal_scipy(rendered):
    run, index = rendered
    table = pd.read_csv(run / "report" / "prediction.csv").set_index("pair")
    html = table_rows(index, "prediction")
    clean = [CLEAN[m] for m in MODELS]
    expected = _pairs()
    assert list(table.index) == list(expected)
    for pair, (x, y) in expected.items():
        rel_x, rel_y = [a / c for a, c in zip(x, clean)], [b / c for b, c in zip(y, clean)]
        want = {
            "pearson": stats.pearsonr(x, y)[0],
            "spearman": stats.spearmanr(x, y)[0],
            "pearson_rel": stats.pearsonr(rel_x, rel_y)[0],
            "spearman_rel": stats.spearmanr(rel_x, rel_y)[0],
        }
        assert table.loc[pair, "n"] == 4
        cells = html[pair]
        assert cells[0] == "4"
        for k, (column, value) in enumerate(want.items()):
            assert table.loc[pair, column] == pytest.approx(value, abs=1e-5), (pair, column)
            assert cells[k + 1] == f"{value:.3f}", (pair, column)
    points = pd.read_csv(run / "report" / "prediction_points.csv")
    fog = points[points["pair"] == "fog \u2192 ACDC fog"].set_index("model")
    assert fog.loc["fcn-r18", "synthetic_miou"] == 60.0 and fog.loc["fcn-r18", "real_miou"] == 55.0
    assert fog.loc["fcn-r18", "real_rel"] == pytest.approx(55.0 / 70.0, abs=1e-3)


def test_agreement_sentences_name_the_model_whose_rank_moves(rendered):
    _, index = rendered
    section = section_text(index, "prediction")
    assert "fog \u2192 ACDC fog: ranks differ; segformer-b0 is 2nd on fog but 3rd on ACDC fog" in section
    assert "fcn-r18 is 3rd on fog but 2nd on ACDC fog" in section
    assert "snow \u2192 ACDC snow: ranks agree (segformer-b5 &gt; segformer-b0 &gt; fcn-r18 &gt; tiny-net)." in section
    method = "Pearson&#39;s r on the values, Spearman&#39;s \u03c1 on their ranks (ties get their average rank)"
    assert method in section
    assert "no correlation can be read" not in section


def test_rank_agreement_sentences():
    entry = {"synthetic": ("mPC",), "real": "acdc", "models": ["a", "b", "c"], "x": [50.0, 40.0, 30.0]}
    assert RW.rank_agreement({**entry, "y": [9.0, 8.0, 7.0]}) == "mPC \u2192 ACDC (mean): ranks agree (a > b > c)."
    assert RW.rank_agreement({**entry, "y": [7.0, 8.0, 9.0]}) == (
        "mPC \u2192 ACDC (mean): ranks differ; a is 1st on mPC but 3rd on ACDC (mean); "
        "c is 3rd on mPC but 1st on ACDC (mean)."
    )
    tied = RW.rank_agreement({**entry, "y": [9.0, 7.0, 7.0]})  # tied models share the better rank
    assert tied == "mPC \u2192 ACDC (mean): ranks differ; c is 3rd on mPC but 2nd on ACDC (mean)."
    one = {**entry, "models": ["a"], "x": [1.0], "y": [2.0]}
    assert "one model only" in RW.rank_agreement(one)
    assert [RW.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
    ]


def test_two_models_say_no_correlation_can_be_read(tmp_path):
    run = make_real_run(tmp_path / "run", ("segformer-b5", "fcn-r18"), names={"fcn-r18": EVIL})
    index = render_report(run)
    section = section_text(index, "prediction")
    assert "n = 2 models: no correlation can be read; run three or more models." in section
    rows = table_rows(index, "prediction")
    assert rows["fog \u2192 ACDC fog"] == ["2", "\u2014", "\u2014", "\u2014", "\u2014"]
    table = pd.read_csv(run / "report" / "prediction.csv")
    assert (table["n"] == 2).all() and table[list(RW.PREDICTION_COLUMNS)].isna().all().all()
    points = pd.read_csv(run / "report" / "prediction_points.csv")  # the values are still shown
    assert len(points) == 2 * 7 and set(points["model"]) == {"segformer-b5", EVIL}
    assert (run / "report" / "prediction.png").is_file()
    text = index.read_text()
    assert "<script>alert" not in text and "&lt;script&gt;" in section_text(index, "real-world")


def test_published_rows_match_by_name(tmp_path):
    """A run model is held against the published model of the same name, else its '-mmseg' checkpoint."""
    run = make_real_run(tmp_path / "run", ("segformer-b5",), corrupted=False)
    (run / "env.json").write_text(json.dumps({}))
    render_report(run)
    table = pd.read_csv(run / "report" / "real_world.csv")
    assert list(table["model"]) == ["segformer-b5", "segformer-b5-mmseg"]
    assert RW.semsegbench_match("segformer-b5-mmseg", ["segformer-b5-mmseg"]) == "segformer-b5-mmseg"
    assert RW.semsegbench_match("segformer-b9", ["segformer-b5-mmseg"]) is None


def test_a_run_without_clean_shows_values_without_drops(tmp_path):
    """The dark-zurich suite has no clean condition: values are shown, drops are not, and the note says why."""
    store = RunStore(tmp_path / "run")
    for model in MODELS[:3]:
        rows = cell_rows(model, "dark_zurich:night", REAL[model]["dark_zurich:night"])
        store.write_cell({"cell": f"{model}|dz", "kind": "accuracy", "model": model, "rows": rows})
    store.gather(suite="dark-zurich")
    index = render_report(store.dir)
    rows = table_rows(index, "real-world")
    assert rows["fcn-r18"] == ["\u2013", "19.0"]  # clean not measured, no bracket
    assert "No clean mIoU in this run for fcn-r18, segformer-b0, segformer-b5" in section_text(index, "real-world")
    table = pd.read_csv(store.dir / "report" / "real_world.csv")
    assert table["dark_zurich:night_drop_pp"].isna().all()
    _, page = _parse(index)
    assert "prediction" in page.missing


def test_no_published_figures_beside_demo_or_random_weights(tmp_path):
    """SemSegBench's Cityscapes-trained checkpoints say nothing about synthetic-demo or random weights: no row."""
    run = make_real_run(tmp_path / "run", ("segformer-b5", "segformer-b0"))
    env = json.loads((run / "env.json").read_text())
    env["weights"] = {"segformer-b5": {"status": "synthetic-demo"}, "segformer-b0": {"status": "random"}}
    (run / "env.json").write_text(json.dumps(env))
    render_report(run)
    table = pd.read_csv(run / "report" / "real_world.csv")
    assert set(table["source"]) == {"this run"}
    assert "SemSegBench" not in section_text(run / "index.html", "real-world")
