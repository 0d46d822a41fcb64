"""The deployment grid through the runner: every backend x precision a variant of its own, built and checked before
the run, measured like any model (accuracy re-measured, latency), what the machine lacks reported in one line, and
the accuracy delta from eager fp32 computed from two real cells."""

from __future__ import annotations

import pytest

from segbench import suites
from segbench.bench.api import run_suite
from segbench.bench.deploy.backends import list_backends
from segbench.bench.deploy.grid import grid_cells
from segbench.bench.measure.peak import percent_of_peak
from segbench.bench.results.axes import Condition
from segbench.bench.results.schema import (
    ACHIEVED_GMACS,
    DEPLOY_BACKENDS,
    GEMM_PEAK,
    MACHINE,
    MACHINE_CELL,
    PEAK_SHARE,
    deploy_variant,
    make_row,
    variant_name,
)
from segbench.bench.results.store import RunFolder, cell_filename
from segbench.bench.results.summaries import summary_rows
from segbench.bench.run.config import ConfigError, InferenceSpec, RunConfig
from segbench.bench.spec import DeploySpec, EfficiencySpec, SuiteSpec, SyntheticData
from segbench.cli import main as cli
from segbench.reports import render_report

TINY = SuiteSpec(
    name="deploy-test",
    version="1",
    description="a tiny deployment grid",
    data="synthetic",
    synthetic=SyntheticData(num_images=3, size=(64, 128), seed=0),
    conditions=(Condition(), Condition("fog", 3)),
    inference=InferenceSpec(mode="whole"),
    efficiency=EfficiencySpec(resolutions=((64, 128),), conventions=("paper",), warmup=1, iters=3),
    gallery=False,
    deploy=DeploySpec(
        backends=("eager", "onnxruntime", "tensorrt"),
        precisions=("fp32", "int8", "fp16"),
        calibration_images=2,
        agreement_images=1,
        gemm_size=64,  # the GEMM peak in milliseconds
    ),
)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))


def test_variant_names_round_trip():
    assert deploy_variant(variant_name("segformer-b0", "onnxruntime", "int8")) == (
        "segformer-b0",
        "onnxruntime",
        "int8",
    )
    assert deploy_variant("segformer-b0") is None and deploy_variant("x@onnxruntime-int4") is None
    assert tuple(list_backends()) == tuple(sorted(DEPLOY_BACKENDS))  # the contract names what is registered


def test_grid_starts_with_eager_fp32_and_leaves_out_what_no_backend_offers():
    cells = grid_cells(["m"], ("onnxruntime", "eager"), ("int8", "bf16"))
    assert cells == [("m", "eager", "fp32"), ("m", "onnxruntime", "int8"), ("m", "eager", "bf16")]  # no eager int8


def test_delta_is_computed_from_two_real_cells():
    rows = []
    for name, clean, fog in (("m@eager-fp32", 60.0, 40.0), ("m@onnxruntime-int8", 58.5, 41.0)):
        for cond, value in (("clean", clean), ("fog-3", fog)):
            c = Condition.parse(cond)
            rows.append(
                dict(
                    model=name,
                    suite="s",
                    condition=c.name,
                    corruption=c.corruption,
                    category=c.category,
                    severity=c.severity,
                    metric="miou",
                    value=value,
                    unit="%",
                )
            )
    summary = {(r["model"], r["metric"]): r for r in summary_rows(rows, "s")}
    delta = summary["m@onnxruntime-int8", "delta_miou"]
    assert delta["value"] == pytest.approx(-1.5) and delta["unit"] == "pp"
    assert delta["compared_with"] == "m@eager-fp32" and delta["reference"] is None  # not the mCE reference
    assert summary["m@onnxruntime-int8", "delta_mPC"]["value"] == pytest.approx(1.0)
    assert ("m@eager-fp32", "delta_miou") not in summary


def _efficiency_row(model: str, metric: str, value: float, **keys) -> dict:
    return make_row(metric, value, model=model, suite="s", condition="efficiency", **keys)


def test_share_of_the_gemm_peak_is_two_gmacs_over_latency_over_the_peak():
    at = {"resolution": "256x512", "device": "cpu"}
    rows = [
        make_row(GEMM_PEAK, 100.0, model=MACHINE, suite="s", condition=MACHINE, precision="fp32", device="cpu"),
        make_row(GEMM_PEAK, 400.0, model=MACHINE, suite="s", condition=MACHINE, precision="bf16", device="cpu"),
    ]
    for name, precision, ms in (
        ("m@eager-fp32", "fp32", 50.0),
        ("m@fast-bf16", "bf16", 20.0),
        ("m@ort-int8", "int8", 10.0),
    ):
        rows += [
            _efficiency_row(name, "gmacs", 2.5, resolution="256x512", batch_size=1, convention="fvcore"),
            _efficiency_row(name, "gmacs", 2.0, resolution="256x512", batch_size=1, convention="paper"),  # preferred
            _efficiency_row(name, "latency_median", ms, **at, batch_size=1, precision=precision),
            _efficiency_row(name, "latency_median", ms / 3, **at, batch_size=4, precision=precision),  # not batch 1
            _efficiency_row(name, "latency_median", ms / 5, resolution="256x512", device="cuda:0", batch_size=1,
                            precision=precision),  # a device without a measured peak
        ]  # fmt: skip
    summary = summary_rows(rows, "s")
    achieved = {(r["model"], r["device"]): r for r in summary if r["metric"] == ACHIEVED_GMACS}
    share = {r["model"]: r for r in summary if r["metric"] == PEAK_SHARE}
    assert achieved["m@eager-fp32", "cpu"]["value"] == pytest.approx(2.0 / 0.050)  # GMACs / s
    assert achieved["m@eager-fp32", "cpu"]["convention"] == "paper" and len(achieved) == 6
    assert share["m@eager-fp32"]["value"] == pytest.approx(100 * 2 * 2.0 / 0.050 / 100.0)  # 80 %
    assert share["m@fast-bf16"]["value"] == pytest.approx(100 * 2 * 2.0 / 0.020 / 400.0)  # 50 %: bf16's own peak
    assert share["m@fast-bf16"]["peak_gflops"] == 400.0 and share["m@fast-bf16"]["unit"] == "%"
    assert "m@ort-int8" not in share and set(share) == {"m@eager-fp32", "m@fast-bf16"}  # int8, cuda:0: no peak
    assert share["m@eager-fp32"]["value"] == pytest.approx(percent_of_peak(2.0, 50.0, 100.0))  # the same formula


def test_grid_runs_through_the_runner(tmp_path, cache, capsys):
    config = RunConfig(models=("segformer-tiny",), allow_random_weights=True, out_dir=str(tmp_path), run_id="grid")
    result = run_suite(TINY, config)
    folder = RunFolder(result.run_dir)
    frame = folder.frame()
    deploy = frame[frame["condition"] == "deploy"]
    status = deploy.groupby("model")["status"].first().to_dict()
    assert status["segformer-tiny@eager-fp32"] == "agrees" and status["segformer-tiny@onnxruntime-fp32"] == "agrees"
    assert status["segformer-tiny@onnxruntime-int8"] in ("agrees", "disagrees")  # built, run and judged
    assert status["segformer-tiny@tensorrt-fp32"] == "unavailable"  # no tensorrt package here
    assert status["segformer-tiny@onnxruntime-fp16"] == "unavailable"  # fp16 needs a GPU
    assert "segformer-tiny@eager-int8" not in status  # never offered: not a cell at all
    reason = deploy.loc[deploy["model"] == "segformer-tiny@tensorrt-fp32", "reason"].item()
    assert "tensorrt" in reason and "\n" not in reason
    err = capsys.readouterr().err
    assert "deploy: segformer-tiny@tensorrt-fp32 unavailable: tensorrt: the `tensorrt` package" in err
    assert set(result.computed) == set(result.cells) and result.settled == len(result.cells)  # the checks count too
    last = [line for line in err.splitlines() if line.startswith("progress: ")][-1]
    assert last.startswith(f"progress: {len(result.cells)}/{len(result.cells)} cells,"), last

    measured = {"segformer-tiny@eager-fp32", "segformer-tiny@onnxruntime-fp32", "segformer-tiny@onnxruntime-int8"}
    miou = frame[frame["metric"] == "miou"]
    assert set(miou["model"]) == measured  # only what was built is measured
    latency = frame[frame["metric"] == "latency_median"].set_index("model")
    assert latency.loc["segformer-tiny@onnxruntime-int8", "precision"] == "int8"
    assert latency.loc["segformer-tiny@onnxruntime-int8", "backend"] == "onnxruntime"
    params = frame[frame["metric"] == "params"].set_index("model")["value"]
    assert params.nunique() == 1 and params.iloc[0] > 0  # the architecture's parameters, whatever runs it

    summary = folder.summary().set_index(["model", "metric"])["value"]
    clean = miou[miou["condition"] == "clean"].set_index("model")["value"]
    assert summary["segformer-tiny@onnxruntime-fp32", "delta_miou"] == pytest.approx(
        clean["segformer-tiny@onnxruntime-fp32"] - clean["segformer-tiny@eager-fp32"]
    )
    agreement = deploy.set_index(["model", "metric"])["value"]
    assert agreement["segformer-tiny@onnxruntime-fp32", "argmax_agreement"] == pytest.approx(100.0)

    peaks = frame[frame["metric"] == GEMM_PEAK]  # measured once, between latency and accuracy, fp32 only on a CPU
    assert peaks[["model", "precision", "size"]].values.tolist() == [[MACHINE, "fp32", 64]]
    assert peaks["value"].item() > 0
    assert peaks["device"].item() == "cpu" and peaks["threads"].item() >= 1
    cells = {c["cell"]: c for c in folder.cells()}
    timed = [c["finished_at"] for c in cells.values() if c.get("kind") == "efficiency"]
    scored = [c["finished_at"] for c in cells.values() if c.get("kind") == "accuracy"]
    assert max(timed) <= cells[MACHINE_CELL]["finished_at"] <= min(scored)
    share = folder.summary().query("metric == 'peak_share'").set_index("model")
    ort = frame[(frame["model"] == "segformer-tiny@onnxruntime-fp32") & (frame["condition"] == "efficiency")]
    gmacs = ort.loc[ort["metric"] == "gmacs", "value"].item()
    ms = ort.loc[(ort["metric"] == "latency_median") & (ort["batch_size"] == 1), "value"].item()
    assert share.loc["segformer-tiny@onnxruntime-fp32", "value"] == pytest.approx(
        100 * 2 * gmacs / (ms / 1e3) / peaks["value"].item()
    )
    assert "segformer-tiny@onnxruntime-int8" not in share.index  # no int8 peak
    assert not (ort["metric"] == "gmacs_executed").any()  # a variant counts the architecture only

    peak = folder.dir / "cells" / cell_filename(MACHINE_CELL)
    measured = peak.read_text()
    again = run_suite(TINY, RunConfig(**{**config.to_dict(), "resume": True, "models": ("segformer-tiny",)}))
    assert again.computed == []  # the artifacts are cached and every cell is stored
    assert MACHINE_CELL in again.skipped and peak.read_text() == measured  # the peak is not measured again

    page = render_report(result.run_dir).read_text()
    section = page[page.index('id="deployment"') : page.index('id="evaluation-time"')]
    assert "needs a CUDA GPU" in section and "the `tensorrt` package is not installed" in section
    assert "segformer-tiny" in section and "onnxruntime" in section
    assert ">GMAC/s [paper]<" in section and "\u2013\u2020" in section  # int8: no peak, a dash and its footnote


def test_backends_and_precisions_narrow_the_grid(tmp_path, cache):
    config = RunConfig(
        models=("segformer-tiny",),
        allow_random_weights=True,
        out_dir=str(tmp_path),
        run_id="narrow",
        backends="onnxruntime",
        deploy_precisions="fp32",
        quiet=True,
    )
    result = run_suite(TINY, config)
    models = set(RunFolder(result.run_dir).frame()["model"]) - {MACHINE}  # the GEMM peak's rows
    assert models == {"segformer-tiny@eager-fp32", "segformer-tiny@onnxruntime-fp32"}  # eager fp32 always in
    with pytest.raises(ConfigError, match="backends: 'onnx' is not a backend; choose from eager, fast"):
        RunConfig(backends="onnx")


def test_cli_names_the_bad_backend_in_one_line(tmp_path, capsys):
    assert cli(["--suite", "deploy", "--backends", "onnx", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    choices = "eager, fast, compile, cudagraphs, onnxruntime, openvino, tensorrt"
    assert err == f"error: --backends: 'onnx' is not a backend; choose from {choices}"


def test_the_deploy_suite_is_registered():
    deploy = suites.get_suite("deploy")
    assert (
        deploy.deploy is not None and deploy.inference.mode == "whole" and deploy.efficiency.conventions == ("paper",)
    )


def test_random_weights_are_refused_before_any_grid_cell_is_built(tmp_path, cache):
    config = RunConfig(models=("segformer-tiny",), out_dir=str(tmp_path), run_id="refused", quiet=True)
    with pytest.raises(ValueError, match="model segformer-tiny has no trained weights"):
        run_suite(TINY, config)
    assert not (tmp_path / "refused").exists()
    assert not list((tmp_path / "cache").rglob("*.onnx"))  # nothing exported for a model the run refuses


def test_each_variant_is_timed_end_to_end_beside_the_model_alone(tmp_path, cache):
    from dataclasses import replace

    from segbench.bench.measure.end_to_end import STAGES

    suite = replace(TINY, efficiency=replace(TINY.efficiency, end_to_end=True))
    config = RunConfig(
        models=("segformer-tiny",),
        allow_random_weights=True,
        out_dir=str(tmp_path),
        run_id="e2e",
        backends="onnxruntime",
        deploy_precisions="fp32",
        quiet=True,
    )
    frame = RunFolder(run_suite(suite, config).run_dir).frame()
    e2e = frame[frame["metric"] == "latency_e2e_median"].set_index("model")
    assert set(e2e.index) == {"segformer-tiny@eager-fp32", "segformer-tiny@onnxruntime-fp32"}
    assert e2e.loc["segformer-tiny@onnxruntime-fp32", "backend"] == "onnxruntime"
    assert set(e2e["inference"]) == {"whole"} and set(e2e["resolution"]) == {"64x128"}  # the scenes' own size
    stages = frame[frame["metric"] == "latency_stage"]
    assert sorted(stages["stage"]) == sorted(STAGES * 2)


def test_a_tiny_run_renders_the_sweep_the_curve_and_end_to_end(tmp_path, cache):
    from dataclasses import replace

    efficiency = replace(TINY.efficiency, batch_sizes=(1, 2), curve=((32, 64),), end_to_end=True)
    config = RunConfig(
        models=("segformer-tiny",),
        allow_random_weights=True,
        out_dir=str(tmp_path),
        run_id="sweep",
        backends="onnxruntime",
        deploy_precisions="fp32",
        quiet=True,
    )
    result = run_suite(replace(TINY, efficiency=efficiency), config)
    frame = RunFolder(result.run_dir).frame()
    ort = frame[(frame["model"] == "segformer-tiny@onnxruntime-fp32") & (frame["metric"] == "throughput")]
    ort = ort[ort["condition"] == "efficiency"]
    timed = sorted(zip(ort["resolution"], ort["batch_size"]))
    assert timed == [("32x64", 1), ("64x128", 1), ("64x128", 2)]  # the static graph rebuilt for each new shape
    page = render_report(result.run_dir).read_text()
    section = page[page.index('id="deployment"') : page.index('id="evaluation-time"')]
    for heading in ("Throughput against batch size", "Latency against resolution", "Model only vs end to end"):
        assert f">{heading}</h3>" in section
    assert "segformer-tiny: images per second at 64x128, on cpu" in section
    assert "report/deployment_resolution_1.png" in section and "sliding window:" not in section  # crop = the image
    assert (result.run_dir / "report" / "deployment_resolution_1.png").is_file()
