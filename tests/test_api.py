"""The Python door: `run_suite(suite, config)` takes every setting from the run config."""

from __future__ import annotations

import json

import pytest

from segbench import suites
from segbench.bench.api import run_suite, suite_config
from segbench.bench.config import ConfigError, RunConfig


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
    cfg = suite_config(demo, RunConfig(reference_model="segformer-b0"), accuracy=False)
    assert cfg.models == demo.default_models and cfg.reference_model == "segformer-b0"
    assert cfg.weights == demo.weights  # the checkpoints the suite ships
    with pytest.raises(ConfigError, match="reference_model: 'segformer-b5' is not among the models"):
        suite_config(demo, RunConfig(reference_model="segformer-b5"), accuracy=False)
