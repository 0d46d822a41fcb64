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

from segbench.bench.results.axes import Condition
from segbench.bench.results.schema import E2E_STAGES as STAGES
from segbench.bench.results.schema import SPEEDUP, deploy_variant, variant_name
from segbench.bench.results.store import RunStore
from segbench.reports import deploy as D
from segbench.reports import figures, render_report
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
    return {
        "model": variant_name(model, backend, precision),
        "suite": "deploy",
        "corruption": None,
        "category": None,
        "severity": None,
    }


def deploy_cell(model: str, backend: str, precision: str) -> dict:
    """A `deploy` cell as `bench.deploy.grid.deploy_record` writes it."""
    name = variant_name(model, backend, precision)
    keys = {
        **_key(model, backend, precision),
        "condition": "deploy",
        "backend": backend,
        "precision": precision,
        "device": "cpu",
    }
    if backend == "tensorrt":
        rows = [
            {
                **keys,
                "status": "unavailable",
                "reason": TRT_REASON,
                "metric": "unavailable",
                "value": 1.0,
                "unit": "flag",
            }
        ]
        return {
            "cell": f"{name}__deploy",
            "kind": "deploy",
            "model": name,
            "condition": "deploy",
            "status": "unavailable",
            "reason": TRT_REASON,
            "rows": rows,
        }
    agrees = precision != "int8"
    status = "agrees" if agrees else "disagrees"
    keys |= {"status": status, "reason": None}
    cached = model == "fcn-r18" and backend == "onnxruntime" and precision == "fp32"
    rows = [
        {
            **keys,
            "metric": "build_time",
            "value": 0.05 if cached else 2.5,
            "unit": "s",
            "cache_hit": cached,
            "artifact_build_s": 3.25 if cached else 2.4,
        }
    ]
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
    return {
        "cell": f"{name}__deploy",
        "kind": "deploy",
        "model": name,
        "condition": "deploy",
        "status": status,
        "reason": "",
        "rows": rows,
    }


def efficiency_cell(model: str, backend: str, precision: str) -> dict:
    """An efficiency cell of a variant as the runner writes it (params of the architecture, the latency probe)."""
    median = LATENCY[model, backend, precision]
    keys = {**_key(model, backend, precision), "condition": "efficiency", "backend": backend}
    setting = {
        "resolution": "512x1024",
        "batch_size": 1,
        "precision": precision,
        "device": "cpu",
        "device_name": "Fake CPU",
        "threads": 2,
        "noisy": False,
    }
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
    return {"cell": f"{name}__efficiency", "kind": "efficiency", "model": name, "condition": "efficiency", "rows": rows}


def accuracy_cell(model: str, backend: str, precision: str, condition: str) -> dict:
    c = Condition.parse(condition)
    clean, fog, noise = MIOU[model, backend, precision]
    value = {"clean": clean, "fog-3": fog, "gaussian_noise-3": noise}[condition]
    name = variant_name(model, backend, precision)
    base = {
        "model": name,
        "suite": "deploy",
        "condition": c.name,
        "corruption": c.corruption,
        "category": c.category,
        "severity": c.severity,
    }
    rows = [
        {**base, "metric": "miou", "value": value, "unit": "%"},
        {**base, "metric": "num_images", "value": 50, "unit": "count"},
    ]
    return {
        "cell": f"{name}|{condition}",
        "kind": "accuracy",
        "model": name,
        "condition": condition,
        "num_images": 50,
        "rows": rows,
    }


def make_deploy_run(run_dir: Path, efficiency=efficiency_cell, machine: dict | None = None) -> Path:
    """A run of the deploy suite with two models: eager fp32, onnxruntime fp32 (agrees), onnxruntime int8
    (disagrees), tensorrt fp16 (unavailable: no rows but its deploy cell). `efficiency(model, backend, precision)`
    makes a variant's efficiency cell (default: suite version 1's, batch 1 at one resolution); `machine`, the run's
    GEMM peak cell, is stored first."""
    store = RunStore(run_dir)
    order = []
    if machine is not None:
        store.write_cell(machine)
        order.append(machine["cell"])
    for model in MODELS:
        for backend, precision in GRID:
            cells = [deploy_cell(model, backend, precision)]
            if backend != "tensorrt":
                cells.append(efficiency(model, backend, precision))
                cells += [accuracy_cell(model, backend, precision, c) for c in CONDITIONS]
            for cell in cells:
                store.write_cell(cell)
                order.append(cell["cell"])
    store.gather(order, suite="deploy")
    built = [variant_name(m, b, p) for m in MODELS for b, p in GRID if b != "tensorrt"]
    weights = {name: {"source": "trained.pth", "sha256": "cd" * 32, "status": "trained"} for name in built}
    store.write_env(
        {
            "suite": {"name": "deploy", "version": "1"},
            "weights": weights,
            "device": "cpu",
            "device_name": "Fake CPU",
            "threads": 2,
        }
    )
    return run_dir


class _Grid(HTMLParser):
    """The rows of one section's tables of one class in page order: (tr class, header text, [(td text, td class,
    td title)])."""

    def __init__(self, section: str, table: str = "deploy"):
        super().__init__()
        self.section, self.table, self.rows = section, table, []
        self._section, self._in, self._row, self._cell = False, False, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id") == self.section
        elif tag == "table":
            self._in = self._section and attrs.get("class") == self.table
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
        elif tag == "table":
            self._in = False


def grid_rows(index: Path, table: str = "deploy") -> dict[str, tuple[str, list[tuple[str, str, str]]]]:
    """The rows of the deployment section's tables of class `table` (the grid by default) by variant name (the
    divider rows name the model, the row's head its backend, its first cell the precision): (row class, cells)."""
    parser = _Grid("deployment", table)
    parser.feed(index.read_text(encoding="utf-8"))
    out, model = {}, None
    for cls, head, cells in parser.rows:
        if cls == "divider":
            model = head.split(":")[0].split(" [")[0]
        elif cells and model is not None and head not in ("", "Backend"):
            out[variant_name(model, head, cells[0][0])] = (cls, cells)
    return out


COLUMN = {
    name: i
    for i, name in enumerate(
        [
            "precision",
            "status",
            "p50",
            "p90",
            "p99",
            "iqr",
            "throughput",
            "memory",
            "speedup",
            "build",
            "file",
            "rel",
            "argmax",
            "clean",
            "d_clean",
            "mpc",
            "d_mpc",
        ]
    )
}


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
        "10.00",
        "11.00",
        "12.50",
        "0.5",
        "100.0",
        "310.0",
    ]
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


def test_speed_ups_are_written_by_the_run_for_agreeing_variants_only(rendered):
    run, _ = rendered
    summary = pd.read_csv(run / "summary.csv")
    speedups = summary[summary["metric"] == SPEEDUP]
    assert set(speedups["unit"]) == {"x"} and set(speedups["resolution"]) == {"512x1024"}
    by = speedups.set_index("model")["value"]
    assert by.to_dict() == pytest.approx(
        {
            "segformer-b0@eager-fp32": 1.0,
            "segformer-b0@onnxruntime-fp32": 4.0,  # 40 ms / 10 ms
            "fcn-r18@eager-fp32": 1.0,
            "fcn-r18@onnxruntime-fp32": 1.25,
        }
    )  # the int8 variants disagree and tensorrt fp16 was not built: no speed-up
    assert set(speedups["compared_with"]) == {"segformer-b0@eager-fp32", "fcn-r18@eager-fp32"}


def test_speed_up_is_what_summary_csv_holds_and_none_without_it(rendered):
    run, _ = rendered
    summary = pd.read_csv(run / "summary.csv")
    edited = run.parent / "speedup-edited"
    shutil.copytree(run, edited)
    summary.loc[(summary["model"] == "fcn-r18@onnxruntime-fp32") & (summary["metric"] == SPEEDUP), "value"] = 3.21
    summary.to_csv(edited / "summary.csv", index=False)
    rows = grid_rows(render_report(edited))
    assert cell(rows["fcn-r18@onnxruntime-fp32"], "speedup") == "3.21\u00d7"  # read, not recomputed (16 ms vs 20 ms)
    assert cell(rows["segformer-b0@onnxruntime-fp32"], "speedup") == "4.00\u00d7"

    older = run.parent / "speedup-missing"  # a run folder written before the run wrote speed-ups
    shutil.copytree(run, older)
    summary[summary["metric"] != SPEEDUP].to_csv(older / "summary.csv", index=False)
    rows = grid_rows(render_report(older))
    for name in ("segformer-b0@onnxruntime-fp32", "fcn-r18@onnxruntime-fp32"):
        assert cell(rows[name], "speedup") == "\u2013"  # latencies are there, yet no speed-up is formed from them
    table = pd.read_csv(older / "report" / "deployment.csv")
    assert table["speedup_vs_eager_fp32"].isna().all()


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


# --------------------------------------------------------------------------------------------------------------------
# Beside the grid (deploy suite version 2 and later): throughput against batch size, latency against resolution, end
# to end, energy
# --------------------------------------------------------------------------------------------------------------------

MAIN = "1024x2048"
CURVE = {"512x1024": 0.25, "768x1536": 0.56}  # latency at batch 1 relative to the main resolution's
SWEEP = {
    ("eager", "fp32"): {1: 40.0, 2: 70.0, 4: 130.0, 8: None},  # ms per batch; None: out of memory
    ("onnxruntime", "fp32"): {1: 10.0, 2: 18.0, 4: 35.0},  # 100, 111, 114 img/s: saturated, no batch 8
    ("onnxruntime", "int8"): {1: 5.0, 2: 9.0},
}
SCALE = {"segformer-b0": 1.0, "fcn-r18": 0.5}
GPU = {"device": "cuda:0", "device_name": "Fake GPU", "threads": 2}
DECODE, PREPROCESS, POSTPROCESS = 12.0, 3.0, 5.0
E2E_MODEL = {"whole": 1.05, "slide": 1.6}  # the model stage relative to the model-only latency


def e2e_median(model: str, backend: str, precision: str, mode: str) -> float:
    base = SWEEP[backend, precision][1] * SCALE[model]
    return DECODE + PREPROCESS + base * E2E_MODEL[mode] + POSTPROCESS


def sweep_cell(model: str, backend: str, precision: str, energy: bool = False, end_to_end: bool = True) -> dict:
    """A variant's efficiency cell as the deploy suite (version 2 and later) writes it: the batch sweep at 1024x2048
    (eager fp32 runs out of memory at batch 8), the latency curve at batch 1, end to end whole image and sliding window,
    and with `energy` the NVML rows."""
    keys = {**_key(model, backend, precision), "condition": "efficiency", "backend": backend}
    setting = {"precision": precision, **GPU, "noisy": False}
    rows = [{**keys, "metric": "params", "value": 3.7, "unit": "M", "precision": None}]

    def timed(resolution: str, batch: int, median: float) -> list[dict]:
        at = {**keys, **setting, "resolution": resolution, "batch_size": batch}
        out = [
            {**at, "metric": metric, "value": value, "unit": unit}
            for metric, value, unit in (
                ("latency_median", median, "ms"),
                ("latency_p90", median * 1.1, "ms"),
                ("latency_p99", median * 1.25, "ms"),
                ("latency_iqr", median * 0.05, "ms"),
                ("latency_cv", 0.03, "ratio"),
                ("throughput", 1000.0 * batch / median, "img/s"),
                ("peak_memory", 300.0 + median, "MiB"),
            )
        ]
        if energy:
            source = {"energy_source": "nvml_total_energy"}
            out += [
                {**at, **source, "metric": "energy_per_image", "value": median * 0.2 / batch, "unit": "J"},
                {**at, **source, "metric": "power_mean", "value": 200.0, "unit": "W"},
            ]
        return out

    for batch, median in SWEEP[backend, precision].items():
        if median is None:
            at = {**keys, **setting, "resolution": MAIN, "batch_size": batch}
            rows.append({**at, "metric": "oom", "value": 1.0, "unit": "flag"})
        else:
            rows += timed(MAIN, batch, median * SCALE[model])
    for resolution, share in CURVE.items():
        rows += timed(resolution, 1, SWEEP[backend, precision][1] * SCALE[model] * share)
    if end_to_end:
        for mode in ("whole", "slide"):
            at = {**keys, **setting, "resolution": MAIN, "batch_size": 1, "inference": mode, "clock": "cuda_event"}
            if mode == "slide":
                at |= {"crop": "1024x1024", "stride": "768x768", "num_crops": 3}
            total = e2e_median(model, backend, precision, mode)
            rows += [
                {**at, "metric": "latency_e2e_median", "value": total, "unit": "ms"},
                {**at, "metric": "latency_e2e_p90", "value": total * 1.1, "unit": "ms"},
                {**at, "metric": "latency_e2e_p99", "value": total * 1.2, "unit": "ms"},
                {**at, "metric": "throughput_e2e", "value": 1000.0 / total, "unit": "img/s"},
            ]
            model_ms = SWEEP[backend, precision][1] * SCALE[model] * E2E_MODEL[mode]
            for stage, value in zip(STAGES, (DECODE, PREPROCESS, model_ms, POSTPROCESS)):
                rows.append({**at, "stage": stage, "metric": "latency_stage", "value": value, "unit": "ms"})
    name = variant_name(model, backend, precision)
    return {"cell": f"{name}__efficiency", "kind": "efficiency", "model": name, "condition": "efficiency", "rows": rows}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    run = make_deploy_run(tmp_path_factory.mktemp("deploy") / "deploy-v2", sweep_cell)
    return run, render_report(run)


def test_new_parts_render_under_their_headings_with_files(swept):
    run, index = swept
    section = section_text(index, "deployment")
    headings = re.findall(r'<h3 id="([^"]+)">([^<]+)</h3>', section)
    assert headings == [
        ("deployment-batch", "Throughput against batch size"),
        ("deployment-resolution", "Latency against resolution"),
        ("deployment-e2e", "Model only vs end to end"),
    ]
    for stem in ("deployment_batch", "deployment_resolution", "deployment_end_to_end"):
        assert (run / "report" / f"{stem}.csv").is_file() and f'href="report/{stem}.md"' in section
    grid = grid_rows(index)  # the grid is timed at batch 1 at the largest resolution
    assert cell(grid["segformer-b0@onnxruntime-fp32"], "p50") == "10.00"
    assert cell(grid["segformer-b0@onnxruntime-fp32"], "speedup") == "4.00\u00d7"
    assert "segformer-b0: timed at 1024x2048, batch 1, on cuda:0 (Fake GPU)" in section
    assert "Energy (J/image)" not in section and "Power (W)" not in section  # no energy rows: no empty columns
    table = pd.read_csv(run / "report" / "deployment.csv")
    assert table["energy_per_image_J"].isna().all()
    frame = T.normalize_results(pd.read_csv(run / "results.csv"))
    clean = T.miou_conditions(frame).query("corruption == 'clean'").set_index("model")["miou"]
    (latency,) = T.efficiency_curves(T.efficiency_rows(frame), clean)  # the sweep's batch 1, still one point each
    assert sorted(latency.points["model"]) == sorted(variant_name(m, *k) for m in MODELS for k in SWEEP)
    assert latency.setting == "1024x2048, batch 1, cuda:0"


def test_batch_table_lists_each_variants_batches_and_marks_out_of_memory(swept):
    run, index = swept
    rows = grid_rows(index, "deploy-batch")
    assert set(rows) == {variant_name(m, b, p) for m in MODELS for b, p in SWEEP}
    columns = ["precision", "1", "2", "4", "8", "best", "at"]  # the union of the model's batches, then the best
    for model in MODELS:
        for (backend, precision), batches in SWEEP.items():
            cls, cells = rows[variant_name(model, backend, precision)]
            shown = dict(zip(columns, cells))
            for batch in (1, 2, 4, 8):
                text, css, title = shown[str(batch)]
                if batch not in batches:
                    assert text == "\u2013" and "stopped at batch" in title  # where this variant's sweep stopped
                elif batches[batch] is None:
                    assert text == "OOM" and css == "flag" and "out of memory at batch 8" in title
                else:
                    median = batches[batch] * SCALE[model]
                    assert float(text) == pytest.approx(1000.0 * batch / median, rel=5e-3)
                    latency = re.fullmatch(rf"median latency ([\d.]+) ms per batch of {batch}", title)
                    assert latency and float(latency[1]) == pytest.approx(median, rel=5e-3)
            best = max((b for b, m in batches.items() if m), key=lambda b: b / batches[b])
            assert shown["at"][0] == str(best) and "best" in shown[str(best)][1]
            assert cls == ("disagrees" if precision == "int8" else "")
    section = section_text(index, "deployment")
    assert "segformer-b0: images per second at 1024x2048, on cuda:0 (Fake GPU), 2 threads" in section
    sweep = pd.read_csv(run / "report" / "deployment_batch.csv")
    eager = sweep[sweep["variant"] == "segformer-b0@eager-fp32"]
    assert list(eager["batch_size"]) == [1, 2, 4, 8] and list(eager["oom"]) == [False, False, False, True]


def test_latency_curve_is_drawn_per_model_only_with_two_resolutions(swept, rendered):
    run, index = swept
    _, page = _parse(index)
    images = [src for section, src in page.imgs if section == "deployment"]
    assert images == [
        "report/deployment.png",
        "report/deployment_resolution_1.png",
        "report/deployment_resolution_2.png",
    ]
    assert (run / "report" / "deployment_resolution_1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = grid_rows(index, "deploy-resolution")
    cls, cells = rows["fcn-r18@onnxruntime-fp32"]
    assert [c[0] for c in cells] == ["fp32", "1.25", "2.80", "5.00"]  # 512x1024, 768x1536, 1024x2048 (ms)
    section = section_text(index, "deployment")
    assert "fcn-r18: batch 1, cuda:0 (Fake GPU), 2 threads, each variant at its own precision" in section
    curve = pd.read_csv(run / "report" / "deployment_resolution.csv")
    assert set(curve["resolution"]) == {"512x1024", "768x1536", MAIN}
    # one resolution: no curve (the grid's own run, suite version 1, is timed at batch 1 at 512x1024 only)
    old_run, old_index = rendered
    assert not list((old_run / "report").glob("deployment_resolution*"))
    assert "deployment-resolution" not in section_text(old_index, "deployment")
    one = pd.DataFrame(
        {
            "variant": ["m@eager-fp32"] * 2,
            "backend": "eager",
            "precision": "fp32",
            "status": "agrees",
            "resolution": MAIN,
            "megapixels": 2.097152,
            "latency_median_ms": [4.0, 4.1],
        }
    )
    assert figures.deploy_latency_curve(one, "m", run / "one.png") is None and not (run / "one.png").exists()


def test_end_to_end_table_splits_the_call_into_stages(swept):
    run, index = swept
    parser = _Grid("deployment", "deploy-e2e")
    parser.feed(index.read_text(encoding="utf-8"))
    columns = ["precision", "inference", "model_only", "p50", "p90", "p99", *STAGES, "not_model", "throughput"]
    by, model = {}, None
    for cls, head, cells in parser.rows:
        if cls == "divider":
            model = head.split(":")[0]
        elif cells and head not in ("", "Backend"):
            shown = dict(zip(columns, (c[0] for c in cells)))
            mode = "slide" if shown["inference"].startswith("sliding") else "whole"
            by[model, head, shown["precision"], mode] = shown
    assert len(by) == 2 * len(MODELS) * len(SWEEP)  # whole image and sliding window per built variant
    for (model, backend, precision, mode), shown in by.items():
        total = e2e_median(model, backend, precision, mode)
        assert float(shown["p50"]) == pytest.approx(total, rel=5e-3)
        stages = [float(shown[s].split(" (")[0]) for s in STAGES]
        shares = [float(shown[s].split(" (")[1].rstrip("%)")) for s in STAGES]
        assert sum(stages) == pytest.approx(float(shown["p50"]), abs=0.02 * len(STAGES))  # within rounding
        assert sum(shares) == pytest.approx(100, abs=2)
        outside = 100 * (DECODE + PREPROCESS + POSTPROCESS) / total
        assert float(shown["not_model"].rstrip("%")) == pytest.approx(outside, abs=0.5)
        if mode == "whole":
            assert float(shown["model_only"]) == pytest.approx(SWEEP[backend, precision][1] * SCALE[model], rel=5e-3)
        else:
            assert shown["inference"] == "sliding window: 3 crops of 1024x1024, stride 768x768"
            assert shown["model_only"] == "\u2013"
    section = section_text(index, "deployment")
    assert "segformer-b0: one 1024x2048 PNG per call (batch 1), on cuda:0 (Fake GPU), 2 threads" in section
    table = pd.read_csv(run / "report" / "deployment_end_to_end.csv")
    whole = table[(table["variant"] == "fcn-r18@eager-fp32") & (table["inference"] == "whole")].iloc[0]
    assert whole[[f"{s}_ms" for s in STAGES]].sum() == pytest.approx(whole["latency_e2e_median_ms"])
    assert whole["model_only_ms"] == 20.0 and whole["resolution"] == MAIN


def test_energy_columns_appear_only_with_energy_rows(tmp_path):
    run = make_deploy_run(tmp_path / "energy", lambda m, b, p: sweep_cell(m, b, p, energy=True, end_to_end=False))
    index = render_report(run)
    section = section_text(index, "deployment")
    assert "Energy (J/image)" in section and "Power (W)" in section
    assert "read through NVML (nvml_total_energy)" in section
    rows = grid_rows(index)
    energy = {name: [c[0] for c in cells[8:10]] for name, (cls, cells) in rows.items() if cls != "not-built"}
    assert energy["segformer-b0@eager-fp32"] == ["8.00", "200.0"]  # 40 ms x 0.2 J/ms at batch 1, 200 W
    assert energy["fcn-r18@onnxruntime-int8"] == ["0.5", "200.0"]
    assert all("nvml_total_energy" in cells[8][2] for cls, cells in rows.values() if cls != "not-built")
    cls, cells = rows["segformer-b0@tensorrt-fp16"]
    assert cls == "not-built" and len(cells) == 3  # the reason spans the energy columns too
    assert "deployment-e2e" not in section  # no end-to-end rows: no end-to-end table
    table = pd.read_csv(run / "report" / "deployment.csv").set_index("variant")
    assert table.loc["segformer-b0@eager-fp32", "energy_per_image_J"] == pytest.approx(8.0)


def test_a_version_1_run_renders_without_the_new_parts(rendered):
    run, index = rendered
    section = section_text(index, "deployment")
    assert "<h3" not in section and "Energy (J/image)" not in section
    for stem in ("deployment_batch", "deployment_resolution", "deployment_end_to_end"):
        assert not (run / "report" / f"{stem}.csv").exists()
    eff = T.efficiency_rows(T.normalize_results(pd.read_csv(run / "results.csv")))
    frame = T.normalize_results(pd.read_csv(run / "results.csv"))
    grid = D.deploy_grid(frame, eff, pd.read_csv(run / "summary.csv"), pd.Series(dtype=float))
    assert D.batch_sweep(eff, grid).empty and D.latency_curve(eff, grid).empty and D.end_to_end(eff, grid).empty
    assert not grid.has_energy
