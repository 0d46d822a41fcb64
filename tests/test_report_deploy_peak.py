"""Closeness to the hardware in the deployment section: each variant's GMAC/s beside its latency, its share of the
run's measured GEMM peak in its precision (a dash with a footnote where none was measured: int8), the peak stated,
and the figure.

The run folder is fabricated with the results contract (`tests/test_report_deploy.make_deploy_run`), with FLOP rows in
each variant's efficiency cell and the run's `machine` cell; summary.csv's `achieved_gmacs` and `peak_share` are
written by the contract when the cells are gathered, as a run writes them.
"""

from __future__ import annotations

import pandas as pd
import pytest
from test_report import _parse
from test_report_deploy import GRID, LATENCY, MODELS, _key, efficiency_cell, grid_rows, make_deploy_run
from test_report_realworld import section_text

from segbench.bench.results.schema import (
    ACHIEVED_GMACS,
    GEMM_PEAK,
    MACHINE,
    MACHINE_CELL,
    PEAK_SHARE,
    make_row,
    variant_name,
)
from segbench.reports import render_report
from segbench.reports import tables as T
from segbench.reports.console import results_table

GMACS = {"segformer-b0": ("paper", 0.5), "fcn-r18": ("fvcore", 2.0)}
"""Per model: the convention its FLOPs were counted with (registry SegFormer: the paper's; here fcn-r18 stands for a
model counted with fvcore only) and its GMACs per image at 512x1024."""
PEAK = 200.0
"""The fabricated fp32 GEMM peak (GFLOP/s); the run measured no other precision."""

# The grid table's cells with the closeness columns (after throughput), by name.
COLUMN = {"p50": 2, "throughput": 6, "gmacs": 7, "share": 8, "memory": 9}


def flop_efficiency_cell(model: str, backend: str, precision: str) -> dict:
    """`efficiency_cell` plus the architecture's FLOP rows as `efficiency_sweep` writes them (batch 1, no precision or
    device: the same for every backend)."""
    cell = efficiency_cell(model, backend, precision)
    convention, gmacs = GMACS[model]
    keys = {**_key(model, backend, precision), "condition": "efficiency", "backend": backend}
    keys |= {"resolution": "512x1024", "batch_size": 1, "precision": None, "device": None, "convention": convention}
    cell["rows"] += [
        {**keys, "metric": "gmacs", "value": gmacs, "unit": "GMAC", "counter": f"{convention} counter"},
        {**keys, "metric": "gflops", "value": 2 * gmacs, "unit": "GFLOP", "counter": f"{convention} counter"},
    ]
    return cell


def machine_cell() -> dict:
    """The run's `machine` cell as `bench.run.deployment.gemm_peak_cell` writes it: an fp32 peak only."""
    row = make_row(
        GEMM_PEAK,
        PEAK,
        model=MACHINE,
        suite="deploy",
        condition=MACHINE,
        precision="fp32",
        device="cpu",
        device_name="Fake CPU",
        size=64,
        threads=2,
        repeats=3,
        best_ms=2 * 64**3 / PEAK / 1e6,
    )
    return {"cell": MACHINE_CELL, "kind": MACHINE, "model": MACHINE, "condition": MACHINE, "rows": [row]}


@pytest.fixture(scope="module")
def peaked(tmp_path_factory):
    run = make_deploy_run(tmp_path_factory.mktemp("peak") / "peak-run", flop_efficiency_cell, machine_cell())
    return run, render_report(run)


def expected(model: str, backend: str, precision: str) -> tuple[float, float]:
    """GMAC/s and % of the fp32 peak: GMACs / latency, and 2 x that / the peak."""
    gmacs_per_s = GMACS[model][1] / (LATENCY[model, backend, precision] / 1e3)
    return gmacs_per_s, 100 * 2 * gmacs_per_s / PEAK


def test_summary_holds_gmacs_per_second_and_the_share_of_the_peak(peaked):
    run, _ = peaked
    summary = pd.read_csv(run / "summary.csv")
    achieved = summary[summary["metric"] == ACHIEVED_GMACS].set_index("model")
    share = summary[summary["metric"] == PEAK_SHARE].set_index("model")
    built = [(m, b, p) for m in MODELS for b, p in GRID if b != "tensorrt"]
    assert sorted(achieved.index) == sorted(variant_name(*k) for k in built)
    assert sorted(share.index) == sorted(variant_name(*k) for k in built if k[2] == "fp32")  # no int8 peak
    for key in built:
        name = variant_name(*key)
        assert achieved.loc[name, "value"] == pytest.approx(expected(*key)[0])
        assert achieved.loc[name, "convention"] == GMACS[key[0]][0] and achieved.loc[name, "unit"] == "GMAC/s"
        if key[2] == "fp32":
            assert share.loc[name, "value"] == pytest.approx(expected(*key)[1])
            assert share.loc[name, "peak_gflops"] == PEAK and share.loc[name, "unit"] == "%"
    assert share.loc["segformer-b0@onnxruntime-fp32", "value"] == pytest.approx(50.0)  # 0.5 GMAC in 10 ms of 200


def test_grid_shows_gmacs_and_share_beside_latency_and_a_dash_for_int8(peaked):
    run, index = peaked
    rows = grid_rows(index)
    ort = rows["segformer-b0@onnxruntime-fp32"][1]
    assert ort[COLUMN["p50"]][0] == "10.00" and ort[COLUMN["throughput"]][0] == "100.0"
    assert ort[COLUMN["gmacs"]][0] == "50.00 [paper]"  # two conventions in the grid: each cell names its own
    assert "0.5 GMAC per image (paper convention) / 10.00 ms" in ort[COLUMN["gmacs"]][2]
    assert ort[COLUMN["share"]][0] == "50.0%" and "200.0 GFLOP/s" in ort[COLUMN["share"]][2]
    assert ort[COLUMN["memory"]][0] == "310.0"  # the columns after the new ones are where they belong
    assert rows["fcn-r18@onnxruntime-fp32"][1][COLUMN["gmacs"]][0] == "125.0 [fvcore]"
    assert rows["fcn-r18@onnxruntime-fp32"][1][COLUMN["share"]][0] == "125.0%"
    int8 = rows["segformer-b0@onnxruntime-int8"][1]
    assert int8[COLUMN["gmacs"]][0] == "100.0 [paper]"
    assert int8[COLUMN["share"]][0] == "\u2013\u2020" and "no GEMM peak measured for int8" in int8[COLUMN["share"]][2]
    cls, cells = rows["fcn-r18@tensorrt-fp16"]
    assert cls == "not-built" and len(cells) == 3  # the reason spans the new columns too
    table = pd.read_csv(run / "report" / "deployment.csv").set_index("variant")
    assert table.loc["segformer-b0@eager-fp32", "peak_share_pct"] == pytest.approx(12.5)
    assert table.loc["segformer-b0@eager-fp32", "convention"] == "paper"
    assert pd.isna(table.loc["fcn-r18@onnxruntime-int8", "peak_share_pct"])


def test_section_states_the_peak_the_convention_and_why_int8_has_none(peaked):
    run, index = peaked
    section = section_text(index, "deployment")
    assert ">Closeness to the hardware<" in section and ">% of GEMM peak<" in section
    peak = "fp32 200.0 GFLOP/s on cpu (Fake CPU), 2 threads, 64\u00d764 matrices, best of 3"
    assert peak in section
    assert "paper: the SegFormer paper&#39;s" in section and "fvcore: fvcore&#39;s" in section
    assert "\u2020 No GEMM peak for int8: integer kernels" in section and "no int8 peak is invented" in section
    _, page = _parse(index)
    assert ("deployment", "report/deployment_peak.png") in page.imgs
    assert (run / "report" / "deployment_peak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    peaks = pd.read_csv(run / "report" / "deployment_gemm_peak.csv")
    assert peaks[["precision", "device", "gflops", "size", "threads"]].values.tolist() == [["fp32", "cpu", PEAK, 64, 2]]


def test_the_machine_is_not_a_model(peaked):
    run, index = peaked
    frame = T.normalize_results(pd.read_csv(run / "results.csv"))
    assert MACHINE in set(frame["model"]) and MACHINE not in T.model_order(frame)
    assert MACHINE not in results_table(run).index
    assert "machine" not in section_text(index, "efficiency-table")


def test_one_convention_is_named_in_the_column_head(tmp_path):
    def paper_only(model: str, backend: str, precision: str) -> dict:
        cell = flop_efficiency_cell(model, backend, precision)
        for row in cell["rows"]:
            row["convention"] = "paper" if row.get("convention") else row.get("convention")
        return cell

    index = render_report(make_deploy_run(tmp_path / "paper", paper_only, machine_cell()))
    section = section_text(index, "deployment")
    assert ">GMAC/s [paper]<" in section
    assert grid_rows(index)["fcn-r18@onnxruntime-fp32"][1][COLUMN["gmacs"]][0] == "125.0"  # the head names it
