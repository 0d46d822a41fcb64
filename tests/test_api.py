"""The Python door: `run_suite(suite, config)` takes every setting from the run config."""

from __future__ import annotations

import json

import pytest

from segbench import suites
from segbench.bench.api import run_suite
from segbench.bench.run.config import ConfigError, RunConfig
from segbench.bench.run.plan import plan_run


def test_run_suite_takes_every_setting_from_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))
    config = RunConfig(
        models="segformer-tiny",
        corruptions="fog",
        severities="2",
        fast=True,
        only="accuracy",
        max_images=1,
        allow_random_weights=True,
        quiet=True,
        out_dir=str(tmp_path),
        run_id="api",
    )
    result = run_suite(suites.get_suite("ci"), config)
    assert result.computed == ["segformer-tiny__clean", "segformer-tiny__fog-2"]
    manifest = json.loads((result.run_dir / "run.json").read_text())
    assert manifest["suite"] == "ci" and manifest["config"]["fast"] is True
    assert manifest["settings"]["conditions"] == ["clean", "fog-2"] and manifest["settings"]["fast"] is True


def test_the_suite_fills_the_models_before_the_reference_is_checked():
    demo = suites.get_suite("demo")
    cfg = plan_run(demo, RunConfig(reference_model="segformer-b0", only="efficiency")).config
    assert cfg.models == demo.default_models and cfg.reference_model == "segformer-b0"
    assert cfg.weights == demo.weights  # the checkpoints the suite ships
    with pytest.raises(ConfigError, match="reference_model: 'segformer-b5' is not among the models"):
        plan_run(demo, RunConfig(reference_model="segformer-b5", only="efficiency"))


def test_readme_python_api_register_run_and_read(tmp_path, monkeypatch):
    """The README's worked example: register a model, run a suite on it, get a DataFrame, read the folder back."""
    import torch
    from torch import nn

    import segbench
    from segbench.models import ModelMeta

    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))

    class TinyNet(nn.Module):
        def __init__(self, num_classes: int):
            super().__init__()
            self.meta = ModelMeta("readme-tinynet", "readme", "conv", "conv", num_classes, output_stride=4)
            self.stem = nn.Conv2d(3, 8, 3, stride=4, padding=1)
            self.classifier = nn.Conv2d(8, num_classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.relu(self.stem(x)))

    if "readme-tinynet" not in segbench.list_models():

        @segbench.register_model("readme-tinynet", group="readme")
        def readme_tinynet(num_classes: int = 19, weights: str | None = None, **kwargs) -> nn.Module:
            return TinyNet(num_classes)

    config = segbench.RunConfig(
        models="readme-tinynet", allow_random_weights=True, quiet=True, out_dir=str(tmp_path), run_id="readme"
    )
    result = segbench.run("ci", config)
    frame = result.frame()
    assert set(frame["model"]) == {"readme-tinynet"}
    assert {"miou", "params", "latency_calibrated"} <= set(frame["metric"])
    params = frame.query("metric == 'params'")["value"].item()
    assert params == pytest.approx(sum(p.numel() for p in TinyNet(19).parameters()) / 1e6)
    run = segbench.read_run(result.run_dir)
    summary = run.summary()
    assert summary.query("metric == 'mPC'")["value"].item() == pytest.approx(
        result.summary().query("metric == 'mPC'")["value"].item()
    )
    assert segbench.render_report(result.run_dir).is_file()
    with pytest.raises(FileNotFoundError, match="no results.csv or cells"):
        segbench.read_run(tmp_path / "cache")
