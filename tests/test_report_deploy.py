"""The report's deployment section: per model, the grid of backend x precision variants with their status, timing,
build, agreement with eager fp32 and accuracy, and the latency / accuracy-change figure.

Run folders are fabricated with the results contract (cells written by `RunStore` as the deploy grid and the runner
write them, gathered into results.csv and summary.csv), without building or running a model.
"""

from __future__ import annotations

import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from test_report import _parse
from test_report_realworld import make_real_run, section_text

from segbench.bench.results import Condition, RunStore, deploy_variant, variant_name
from segbench.reports import render_report
from segbench.reports import tables as T

MODELS = ("segformer-b0", "fcn-r18")
GRID = (("eager", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("tensorrt", "fp16"))
CONDITIONS = ("clean", "fog-3", "gaussian_noise-3")
TRT_REASON = "tensorrt: the `tensorrt` package is not installed (pip install tensorrt)"
# per variant: median latency (ms), clean mIoU and corrupted mIoU (fog, noise); tensorrt fp16 is not built
LATENCY = {
    ("segformer-b0", "eager", "fp32"): 40.0,
    ("segformer-b0", "onnxruntime", "fp32"): 10.0,  # 4.00x
    ("segformer-b0", "onnxruntime", "int8"): 5.0,  # would read 8.00x: it disagrees, so it must not
    ("fcn-r18", "eager", "fp32"): 20.0,
    ("fcn-r18", "onnxruntime", "fp32"): 16.0,  # 1.25x
    ("fcn-r18", "onnxruntime", "int8"): 8.0,
}
MIOU = {
    ("segformer-b0", "eager", "fp32"): (76.0, 60.0, 40.0),
    ("segformer-b0", "onnxruntime", "fp32"): (76.0, 60.0, 40.0),
    ("segformer-b0", "onnxruntime", "int8"): (74.5, 57.0, 38.5),
    ("fcn-r18", "eager", "fp32"): (70.0, 50.0, 30.0),
    ("fcn-r18", "onnxruntime", "fp32"): (70.01, 50.0, 30.02),
    ("fcn-r18", "onnxruntime", "int8"): (69.2, 49.0, 28.0),
}


def _key(model: str, backend: str, precision: str) -> dict:
    return {"model": variant_name(model, backend, precision), "suite": "deploy", "corruption": None,
            "category": None, "severity": None}  # fmt: skip


def deploy_cell(model: str, backend: str, precision: str) -> dict:
    """A `deploy` cell as `bench.deploy.grid.deploy_record` writes it."""
    name = variant_name(model, backend, precision)
    keys = {**_key(model, backend, precision), "condition": "deploy", "backend": backend, "precision": precision,
            "device": "cpu"}  # fmt: skip
    if backend == "tensorrt":
        rows = [{**keys, "status": "unavailable", "reason": TRT_REASON, "metric": "unavailable", "value": 1.0,
                 "unit": "flag"}]  # fmt: skip
        return {"cell": f"{name}__deploy", "kind": "deploy", "model": name, "condition": "deploy",
                "status": "unavailable", "reason": TRT_REASON, "rows": rows}  # fmt: skip
    agrees = precision != "int8"
    status = "agrees" if agrees else "disagrees"
    keys |= {"status": status, "reason": None}
    cached = model == "fcn-r18" and backend == "onnxruntime" and precision == "fp32"
    rows = [{**keys, "metric": "build_time", "value": 0.05 if cached else 2.5, "unit": "s", "cache_hit": cached,
             "artifact_build_s": 3.25 if cached else 2.4}]  # fmt: skip
    if backend == "onnxruntime":
        rows.append({**keys, "metric": "artifact_size", "value": 14.5 if precision == "fp32" else 4.0, "unit": "MiB"})
    tolerance = {"images": 2, "tolerance_rel": 1e-4 if agrees else 0.25, "tolerance_argmax": 99.9 if agrees else 98.0}
    rel, argmax = (4.5e-7, 100.0) if agrees else (0.31, 96.25)
    rows += [
        {**keys, **tolerance, "metric": "agreement_max_abs", "value": rel * 20, "unit": "logit"},
        {**keys, **tolerance, "metric": "agreement_max_rel", "value": rel, "unit": "ratio"},
        {**keys, **tolerance, "metric": "argmax_agreement", "value": argmax, "unit": "%"},
        {**keys, **tolerance, "metric": "agrees", "value": float(agrees), "unit": "flag"},
    ]
    return {"cell": f"{name}__deploy", "kind": "deploy", "model": name, "condition": "deploy", "status": status,
            "reason": "", "rows": rows}  # fmt: skip


def efficiency_cell(model: str, backend: str, precision: str) -> dict:
    """An efficiency cell of a variant as the runner writes it (params of the architecture, the latency probe)."""
    median = LATENCY[model, backend, precision]
    keys = {**_key(model, backend, precision), "condition": "efficiency", "backend": backend}
    setting = {"resolution": "512x1024", "batch_size": 1, "precision": precision, "device": "cpu",
               "device_name": "Fake CPU", "threads": 2, "noisy": False}  # fmt: skip
    rows = [{**keys, "metric": "params", "value": 3.7, "unit": "M", "precision": None}]
    for metric, value, unit in (
        ("latency_median", median, "ms"),
        ("latency_p90", median * 1.1, "ms"),
        ("latency_p99", median * 1.25, "ms"),
        ("latency_iqr", median * 0.05, "ms"),
        ("latency_cv", 0.03, "ratio"),
        ("throughput", 1000.0 / median, "img/s"),
        ("peak_memory", 300.0 + median, "MiB"),
    ):
        memory = {"memory_kind": "cpu_process_peak_rss"} if metric == "peak_memory" else {}
        rows.append({**keys, **setting, **memory, "metric": metric, "value": value, "unit": unit})
    name = variant_name(model, backend, precision)
    return {"cell": f"{name}__efficiency", "kind": "efficiency", "model": name, "condition": "efficiency",
            "rows": rows}  # fmt: skip


def accuracy_cell(model: str, backend: str, precision: str, condition: str) -> dict:
    c = Condition.parse(condition)
    clean, fog, noise = MIOU[model, backend, precision]
    value = {"clean": clean, "fog-3": fog, "gaussian_noise-3": noise}[condition]
    name = variant_name(model, backend, precision)
    base = {"model": name, "suite": "deploy", "condition": c.name, "corruption": c.corruption,
            "category": c.category, "severity": c.severity}  # fmt: skip
    rows = [{**base, "metric": "miou", "value": value, "unit": "%"},
            {**base, "metric": "num_images", "value": 50, "unit": "count"}]  # fmt: skip
    return {"cell": f"{name}|{condition}", "kind": "accuracy", "model": name, "condition": condition,
            "num_images": 50, "rows": rows}  # fmt: skip


def make_deploy_run(run_dir: Path) -> Path:
    """A run of the deploy suite with two models: eager fp32, onnxruntime fp32 (agrees), onnxruntime int8
    (disagrees), tensorrt fp16 (unavailable: no rows but its deploy cell)."""
    store = RunStore(run_dir)
    order = []
    for model in MODELS:
        for backend, precision in GRID:
            cells = [deploy_cell(model, backend, precision)]
            if backend != "tensorrt":
                cells.append(efficiency_cell(model, backend, precision))
                cells += [accuracy_cell(model, backend, precision, c) for c in CONDITIONS]
            for cell in cells:
                store.write_cell(cell)
                order.append(cell["cell"])
    store.gather(order, suite="deploy")
    built = [variant_name(m, b, p) for m in MODELS for b, p in GRID if b != "tensorrt"]
    weights = {name: {"source": "trained.pth", "sha256": "cd" * 32} for name in built}
    store.write_env({"suite": {"name": "deploy", "version": "1"}, "weights": weights, "device": "cpu",
                     "device_name": "Fake CPU", "threads": 2})  # fmt: skip
    return run_dir


class _Grid(HTMLParser):
    """The rows of one section's tables in page order: (tr class, header text, [(td text, td class, td title)])."""

    def __init__(self, section: str):
        super().__init__()
        self.section, self.rows = section, []
        self._in, self._row, self._cell = False, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._in = attrs.get("id") == self.section
        elif self._in and tag == "tr":
            self._row = [attrs.get("class") or "", None, []]
        elif self._in and tag in ("th", "td") and self._row is not None:
            self._cell = [tag, "", attrs.get("class") or "", attrs.get("title") or ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            kind, text, cls, title = self._cell
            text = " ".join(text.split())
            if kind == "th" and self._row[1] is None:
                self._row[1] = text
            else:
                self._row[2].append((text, cls, title))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(tuple(self._row))
            self._row = None


def grid_rows(index: Path) -> dict[str, tuple[str, list[tuple[str, str, str]]]]:
    """The deployment tables' rows by variant name (the divider rows name the model): (row class, cells)."""
    parser = _Grid("deployment")
    parser.feed(index.read_text(encoding="utf-8"))
    out, model = {}, None
    for cls, head, cells in parser.rows:
        if cls == "divider":
            model = head.split(":")[0].split(" [")[0]
        elif cells and model is not None and head not in ("", "Backend"):
            out[variant_name(model, head, cells[0][0])] = (cls, cells)
    return out


COLUMN = {name: i for i, name in enumerate(
    ["precision", "status", "p50", "p90", "p99", "iqr", "throughput", "memory", "speedup", "build", "file", "rel",
     "argmax", "clean", "d_clean", "mpc", "d_mpc"])}  # fmt: skip


def cell(row: tuple[str, list], column: str) -> str:
    return row[1][COLUMN[column]][0]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run = make_deploy_run(tmp_path_factory.mktemp("deploy") / "deploy-run")
    return run, render_report(run)


def test_section_renders_after_the_efficiency_sections_with_files_and_figure(rendered):
    run, index = rendered
    _, page = _parse(index)
    assert "deployment" in page.ids and "deployment" not in page.missing
    order = re.findall(r'<section id="([^"]+)"', index.read_text())
    assert order.index("efficiency-table") < order.index("efficiency-curves") < order.index("deployment")
    assert ("deployment", "report/deployment.png") in page.imgs
    assert (run / "report" / "deployment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(run / "report" / "deployment.csv")
    expected = [variant_name(m, b, p) for m in MODELS for b, p in GRID]  # eager fp32 first, then the contract's order
    assert list(table["variant"]) == expected
    markdown = (run / "report" / "deployment.md").read_text()
    assert markdown.count("\n| segformer-b0 |") == 4 and "\u2014 (disagrees)" in markdown
    assert "Deployment: backends and precisions" in (run / "report" / "report.md").read_text()


def test_table_shows_the_numbers_of_the_rows(rendered):
    run, index = rendered
    rows = grid_rows(index)
    assert set(rows) == {variant_name(m, b, p) for m in MODELS for b, p in GRID}
    ort = rows["segformer-b0@onnxruntime-fp32"]
    assert [cell(ort, c) for c in ("p50", "p90", "p99", "iqr", "throughput", "memory")] == [
        "10.00", "11.00", "12.50", "0.5", "100.0", "310.0"]  # fmt: skip
    assert cell(ort, "status") == "agrees" and "max rel. diff \u2264 0.0001" in ort[1][COLUMN["status"]][2]
    assert cell(ort, "speedup") == "4.00\u00d7"  # 40 ms / 10 ms
    assert cell(ort, "build") == "2.50" and cell(ort, "file") == "14.50"
    assert cell(ort, "rel") == "4.5e-07" and cell(ort, "argmax") == "100.0"
    assert cell(ort, "clean") == "76.00" and cell(ort, "mpc") == "50.00"
    assert cell(rows["fcn-r18@onnxruntime-fp32"], "speedup") == "1.25\u00d7"
    cached = rows["fcn-r18@onnxruntime-fp32"][1][COLUMN["build"]]
    assert cached[0] == "0.05 (cached)" and "building it took 3.25 s" in cached[2]
    eager = rows["segformer-b0@eager-fp32"]
    assert cell(eager, "speedup") == "1 (reference)" and cell(eager, "d_clean") == "ref." and cell(eager, "file") == "–"
    table = pd.read_csv(run / "report" / "deployment.csv").set_index("variant")
    for (model, backend, precision), median in LATENCY.items():
        name = variant_name(model, backend, precision)
        assert table.loc[name, "latency_median_ms"] == median
        assert table.loc[name, "throughput_img_s"] == pytest.approx(1000.0 / median)
        assert table.loc[name, "clean_miou"] == MIOU[model, backend, precision][0]
    section = section_text(index, "deployment")
    assert "segformer-b0: timed at 512x1024, batch 1, on cpu (Fake CPU), 2 threads" in section
    assert "latency measured with segbench&#39;s clock on the model call only" in section.lower()
    assert "interquartile range" in section and "FLOPs are not counted per backend" in section


def test_deltas_are_summary_csv_values(rendered):
    run, index = rendered
    summary = pd.read_csv(run / "summary.csv")
    deltas = summary[summary["metric"].isin(("delta_miou", "delta_mPC"))]
    assert set(deltas["compared_with"]) == {"segformer-b0@eager-fp32", "fcn-r18@eager-fp32"}
    by = deltas.set_index(["model", "metric"])["value"]
    table = pd.read_csv(run / "report" / "deployment.csv").set_index("variant")
    rows = grid_rows(index)
    checked = 0
    for name in table.index:
        _, backend, precision = deploy_variant(name)
        if (backend, precision) in (("eager", "fp32"), ("tensorrt", "fp16")):
            assert math.isnan(table.loc[name, "delta_miou_pp"]) and (name, "delta_miou") not in by
            continue
        for metric, column, html in (
            ("delta_miou", "delta_miou_pp", "d_clean"),
            ("delta_mPC", "delta_mPC_pp", "d_mpc"),
        ):
            value = by[name, metric]
            assert table.loc[name, column] == pytest.approx(value, rel=1e-6)
            shown = cell(rows[name], html).replace("\u2212", "-")
            assert float(shown) == pytest.approx(value, abs=0.005)
            checked += 1
    assert checked == 8
    assert cell(rows["segformer-b0@onnxruntime-int8"], "d_clean") == "\u22121.50"  # 74.5 - 76.0
    assert cell(rows["fcn-r18@onnxruntime-fp32"], "d_clean") == "+0.01"
    summary.loc[(summary["model"] == "fcn-r18@onnxruntime-int8") & (summary["metric"] == "delta_mPC"), "value"] = -9.87
    copy = run.parent / "edited"
    shutil.copytree(run, copy)
    summary.to_csv(copy / "summary.csv", index=False)  # what summary.csv says is what the report shows
    assert cell(grid_rows(render_report(copy))["fcn-r18@onnxruntime-int8"], "d_mpc") == "\u22129.87"


def test_disagreeing_variant_is_marked_and_gets_no_speed_up(rendered):
    run, index = rendered
    rows = grid_rows(index)
    for model in MODELS:
        cls, cells = rows[f"{model}@onnxruntime-int8"]
        assert cls == "disagrees"
        assert cells[COLUMN["status"]][0].startswith("DISAGREES")
        speedup = cells[COLUMN["speedup"]]
        assert speedup[0] == "\u2014 (disagrees)" and "not the same model" in speedup[2]
        assert not re.search(r"\d", speedup[0])
        assert cell((cls, cells), "p50") == f"{LATENCY[model, 'onnxruntime', 'int8']:.2f}"  # shown, for information
        assert rows[f"{model}@onnxruntime-fp32"][0] == ""
    table = pd.read_csv(run / "report" / "deployment.csv").set_index("variant")
    assert table.loc["segformer-b0@onnxruntime-int8", "status"] == "disagrees"
    assert math.isnan(table.loc["segformer-b0@onnxruntime-int8", "speedup_vs_eager_fp32"])
    assert table.loc["segformer-b0@onnxruntime-fp32", "speedup_vs_eager_fp32"] == pytest.approx(4.0)
    section = section_text(index, "deployment")
    assert "DISAGREES (rows in red): segformer-b0@onnxruntime-int8, fcn-r18@onnxruntime-int8" in section
    assert "it is not the same model" in section and "for information only" in section
    efficiency = section_text(index, "efficiency-table")  # the variant as a model of its own: marked there too
    assert efficiency.count('<tr class="disagrees">') == 2 and "not the same model" in efficiency


def test_unavailable_variant_shows_its_reason(rendered):
    run, index = rendered
    rows = grid_rows(index)
    for model in MODELS:
        cls, cells = rows[f"{model}@tensorrt-fp16"]
        assert cls == "not-built"
        assert cells[1][0] == "unavailable" and cells[1][2] == TRT_REASON
        assert cells[2][0] == "the `tensorrt` package is not installed (pip install tensorrt)"
        assert len(cells) == 3  # the reason spans the rest of the row: no numbers
    section = section_text(index, "deployment")
    assert "Not measured on this machine (cpu, Fake CPU, 2 threads), 2 of 8 grid cells" in section
    assert "tensorrt fp16: unavailable, the `tensorrt` package is not installed" in section
    models = section_text(index, "models")
    assert models.count("not built here (unavailable)") == 2 and "trained" in models
    table = pd.read_csv(run / "report" / "deployment.csv").set_index("variant")
    assert table.loc["fcn-r18@tensorrt-fp16", "reason"] == TRT_REASON
    assert table.loc["fcn-r18@tensorrt-fp16", ["latency_median_ms", "clean_miou"]].isna().all()


def test_efficiency_curves_get_one_point_per_variant(rendered):
    run, _ = rendered
    frame = T.normalize_results(pd.read_csv(run / "results.csv"))
    clean = T.miou_conditions(frame).query("corruption == 'clean'").set_index("model")["miou"]
    (latency,) = T.efficiency_curves(T.efficiency_rows(frame), clean)  # no GMACs rows
    assert sorted(latency.points["model"]) == sorted(variant_name(*k) for k in LATENCY)  # int8 ones included
    assert latency.setting == "512x1024, batch 1, cpu"


def test_run_without_deploy_rows_marks_the_section_missing(tmp_path):
    run = make_real_run(tmp_path / "run", ("segformer-b0", "fcn-r18"), real=False)
    index = render_report(run)
    _, page = _parse(index)
    assert "deployment" in page.missing
    assert "no deployment rows; the `deploy` suite measures" in section_text(index, "deployment")
    assert not (run / "report" / "deployment.csv").exists() and not (run / "report" / "deployment.png").exists()
