"""End-to-end latency: a PNG on disk to labels on the host, per stage; the evaluator's prediction; the probe's rows."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from segbench import models
from segbench.bench.data.cityscapes import find_samples, read_image
from segbench.bench.measure.end_to_end import STAGES, end_to_end_rows, measure_end_to_end
from segbench.bench.measure.inference import predict
from segbench.bench.results.schema import E2E_METRICS, LATENCY_STAGE
from segbench.bench.run.config import InferenceSpec, RunConfig
from segbench.bench.run.efficiency_cells import efficiency_probe, sample_image
from segbench.bench.spec import EfficiencySpec

SIZE = (64, 128)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return models.create_model("segformer-tiny", num_classes=19).eval()


@pytest.fixture(scope="module")
def windowed(model) -> nn.Module:
    """The same network with 48x48 windows at stride 32: 2 x 4 windows on a 64x128 image."""
    other = models.create_model("segformer-tiny", num_classes=19).eval()
    other.load_state_dict(model.state_dict())
    other.meta = dataclasses.replace(model.meta, eval_crop=(48, 48), eval_stride=(32, 32))
    return other


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("e2e") / "image.png"
    Image.fromarray(rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)).save(path)
    return str(path)


def _image(path: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(read_image(path).transpose(2, 0, 1))).unsqueeze(0)


def test_the_stages_make_up_each_call(model, png):
    stats = measure_end_to_end(model, png, warmup=1, iters=4)
    assert tuple(stats.stage_samples) == STAGES and all(len(t) == 4 for t in stats.stage_samples.values())
    for i, total in enumerate(stats.samples):
        stages = [stats.stage_samples[s][i] for s in STAGES]
        assert total == pytest.approx(sum(stages)) and all(t >= 0 for t in stages)
        assert total >= stats.stage_samples["model"][i]
    assert stats.median_ms == pytest.approx(float(np.median(stats.samples)))
    assert stats.p90_ms <= stats.p99_ms <= max(stats.samples)
    assert stats.stage_median_ms["model"] == pytest.approx(float(np.median(stats.stage_samples["model"])))
    assert stats.images_per_s == pytest.approx(1e3 / stats.median_ms)
    assert stats.image_size == stats.label_size == SIZE and stats.num_crops is None
    assert stats.clock == "perf_counter" and stats.device == "cpu" and stats.precision == "fp32"
    assert model.training is False


@pytest.mark.parametrize("mode", ["whole", "slide"])
@pytest.mark.parametrize("label_size", [None, (32, 64)])
def test_the_timed_pipeline_predicts_what_the_evaluator_predicts(windowed, png, mode, label_size):
    spec = InferenceSpec(mode=mode)
    stats = measure_end_to_end(windowed, png, inference=spec, warmup=0, iters=1, label_size=label_size)
    expected = predict(windowed, _image(png), spec, out_size=label_size)[0]
    assert stats.labels.dtype == torch.int64 and torch.equal(stats.labels, expected)
    assert stats.label_size == (label_size or SIZE) and stats.image_size == SIZE
    assert stats.num_crops == (8 if mode == "slide" else None)


def test_flip_is_not_timed(model, png):
    with pytest.raises(ValueError, match="without flip"):
        measure_end_to_end(model, png, inference=InferenceSpec(flip=True), iters=1)


def test_rows_whole_always_and_sliding_window_where_the_crop_is_smaller(model, windowed, png):
    rows = end_to_end_rows(model, png, suite="s", warmup=0, iters=2)  # eval crop 1024x1024 > 64x128: whole only
    assert {r["inference"] for r in rows} == {"whole"}
    assert [r["metric"] for r in rows] == [*E2E_METRICS[:-1], *[LATENCY_STAGE] * len(STAGES)]
    assert [r["stage"] for r in rows if r["metric"] == LATENCY_STAGE] == list(STAGES)
    first = rows[0]
    assert first["model"] == "segformer-tiny" and first["suite"] == "s" and first["condition"] == "efficiency"
    assert (first["corruption"], first["category"], first["severity"], first["convention"]) == (None,) * 4
    keys = ("resolution", "batch_size", "precision", "device")
    assert tuple(first[k] for k in keys) == ("64x128", 1, "fp32", "cpu")
    assert "crop" not in first and "num_crops" not in first
    units = {r["metric"]: r["unit"] for r in rows}
    assert units == {
        "latency_e2e_median": "ms",
        "latency_e2e_p90": "ms",
        "latency_e2e_p99": "ms",
        "throughput_e2e": "img/s",
        "latency_stage": "ms",
    }

    rows = end_to_end_rows(windowed, png, model_name="w", warmup=0, iters=1)
    slide = [r for r in rows if r["inference"] == "slide"]
    assert len(slide) == len(rows) / 2 == len(E2E_METRICS) - 1 + len(STAGES)
    assert {(r["crop"], r["stride"], r["num_crops"]) for r in slide} == {("48x48", "32x32", 8)}
    assert {r["model"] for r in rows} == {"w"}


def _spec(**kwargs) -> EfficiencySpec:
    return EfficiencySpec(resolutions=(SIZE,), conventions=(), warmup=0, iters=1, max_retries=0, **kwargs)


def _e2e(rows):
    return [r for r in rows if r["metric"] in E2E_METRICS]


def test_the_probe_adds_end_to_end_rows_only_when_asked_and_given_an_image(model, png):
    assert _e2e(efficiency_probe(_spec(), sample=png)(model, "m")) == []
    assert _e2e(efficiency_probe(_spec(end_to_end=True))(model, "m")) == []
    assert _e2e(efficiency_probe(_spec(end_to_end=True, latency=False), sample=png)(model, "m")) == []
    rows = efficiency_probe(_spec(end_to_end=True), suite="s", sample=png)(model, "m")
    e2e = _e2e(rows)
    assert {r["inference"] for r in e2e} == {"whole"} and {(r["model"], r["suite"]) for r in e2e} == {("m", "s")}
    assert "latency_median" in {r["metric"] for r in rows}  # beside the model-only latency


class _Variant(nn.Module):
    """A stand-in for `bench.deploy.grid.DeployedModel`: a module that says which backend and precision it runs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net, self.meta = model, model.meta
        self.deployment = SimpleNamespace(backend="onnxruntime", precision="int8")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_end_to_end_rows_of_a_deployment_variant_carry_its_backend_and_precision(model, png):
    rows = _e2e(efficiency_probe(_spec(end_to_end=True), sample=png)(_Variant(model), "m@onnxruntime-int8"))
    assert rows and {(r["backend"], r["precision"]) for r in rows} == {("onnxruntime", "int8")}


def test_the_sample_is_the_first_image_of_the_runs_split(synthetic_root):
    config = RunConfig(data_root=str(synthetic_root), split="val")
    first = find_samples(synthetic_root, "val")[0].image
    assert sample_image(_spec(end_to_end=True), config) == first
    assert sample_image(_spec(), config) is None  # not asked for
    assert sample_image(_spec(end_to_end=True), RunConfig()) is None  # no Cityscapes root: nothing to time
