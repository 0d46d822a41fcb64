"""The run plan: every decision taken once (`bench.run.plan.plan_run`), and carried out inside the rank's context."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

from segbench import suites
from segbench.bench.results.axes import Condition
from segbench.bench.results.store import RunStore
from segbench.bench.run import plan as plan_module
from segbench.bench.run.config import RunConfig
from segbench.bench.run.plan import plan_run
from segbench.bench.spec import EfficiencySpec
from segbench.cli import _run_parser, run_config

REPO = Path(__file__).resolve().parents[1]


def test_the_command_line_and_the_python_api_share_every_default():
    """A flag not given leaves the field to RunConfig's default: both doors run the same pipeline by default
    (workers 'auto', precision not chosen, ...)."""
    from_cli = run_config(_run_parser().parse_args([]))
    from_api = RunConfig()
    for f in dataclasses.fields(RunConfig):
        if f.name != "command":
            assert getattr(from_cli, f.name) == getattr(from_api, f.name), f.name
    assert from_api.precision is None and from_api.workers == from_cli.workers


def test_only_and_the_conditions_are_decided_in_the_plan(synthetic_root):
    config = RunConfig(models="segformer-tiny", data_root=str(synthetic_root), allow_random_weights=True)
    probe = EfficiencySpec(resolutions=((32, 64),), latency=False)
    both = plan_run(None, dataclasses.replace(config, corruptions=("fog",), severities=(1, 2)), efficiency=probe)
    assert [c.name for c in both.conditions] == ["clean", "fog-1", "fog-2"] and both.accuracy
    assert both.efficiency == probe
    only_eff = plan_run(None, dataclasses.replace(config, only="efficiency"), efficiency=probe)
    assert not only_eff.accuracy and only_eff.conditions == (Condition(),)  # recorded, so a resume adds accuracy
    only_acc = plan_run(None, dataclasses.replace(config, only="accuracy"), efficiency=probe)
    assert only_acc.accuracy and only_acc.efficiency is None
    # no suite, no corruptions: clean only, the same rule a suite's selection follows
    assert plan_run(None, dataclasses.replace(config, severities=(3,))).conditions == (Condition(),)


def test_a_given_precision_replaces_the_probe_s_and_fp32_is_no_sentinel():
    suite = suites.get_suite("efficiency")
    suite = dataclasses.replace(suite, efficiency=dataclasses.replace(suite.efficiency, precisions=("fp32", "bf16")))
    default = plan_run(suite, RunConfig(models="segformer-tiny"))
    assert default.efficiency.precisions == suite.efficiency.precisions and default.config.precision == "fp32"
    fp32 = plan_run(suite, RunConfig(models="segformer-tiny", precision="fp32"))
    assert fp32.efficiency.precisions == ("fp32",)  # asked for fp32: only fp32, unlike the suite's default
    bf16 = plan_run(suite, RunConfig(models="segformer-tiny", precision="bf16"))
    assert bf16.efficiency.precisions == ("bf16",) and bf16.config.precision == "bf16"


def test_weights_are_resolved_once_per_run(synthetic_root, tmp_path, monkeypatch):
    from segbench.bench.api import run_suite
    from segbench.bench.run import residency

    calls = []
    real = residency.resolve_weights
    monkeypatch.setattr(plan_module, "resolve_weights", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(residency, "resolve_weights", lambda *a, **k: pytest.fail("weights resolved again"))
    suite = dataclasses.replace(suites.get_suite("ci"), efficiency=None)
    config = RunConfig(models="segformer-tiny", out_dir=str(tmp_path), quiet=True, allow_random_weights=True)
    run_suite(suite, config, conditions=[Condition()])
    assert len(calls) == 1


MODEL = '''
import json, os
import torch
import torch.distributed as dist
from torch import nn

segbench_meta = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "trained": True}


class Recorder(nn.Module):
    """A 1x1 conv that notes, for every call, whether the process group exists, its rank and the input's device."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, x):
        group = dist.is_available() and dist.is_initialized()
        entry = {"group": group, "rank": dist.get_rank() if group else None, "device": str(x.device)}
        with open(os.environ["RECORD_FILE"], "a") as fh:
            fh.write(json.dumps(entry) + "\\n")
        return self.conv(x)


def build(num_classes):
    return Recorder(num_classes)
'''

SCRIPT = """
import sys
import segbench
from segbench.bench.results.axes import Condition
from segbench.bench.results.store import RunStore
from segbench.bench.spec import DeploySpec, SuiteSpec, SyntheticData
from segbench.bench.run.config import InferenceSpec, RunConfig

suite = SuiteSpec(
    name="plan-ctx", version="1", description="grid and gallery under torchrun", data="synthetic",
    conditions=(Condition(), Condition("fog", 1)), inference=InferenceSpec(mode="whole"),
    synthetic=SyntheticData(num_images=2, size=(32, 64), seed=0), gallery=True,
    deploy=DeploySpec(backends=("eager",), precisions=("fp32",), calibration_images=1, agreement_images=1),
)
config = RunConfig(models=f"rec=py:{sys.argv[1]}:build", out_dir=sys.argv[2], run_id="run", quiet=True)
segbench.run(suite, config)
"""


def test_deploy_grid_and_gallery_run_inside_each_rank_s_context(tmp_path, torchrun):
    """Two gloo ranks: every forward of the grid's build-and-check and of the gallery happens with the process group
    up, each rank checks its own grid on its own device, and only rank 0 draws the gallery."""
    (tmp_path / "rec.py").write_text(textwrap.dedent(MODEL))
    (tmp_path / "launch.py").write_text(textwrap.dedent(SCRIPT))
    record = tmp_path / "calls.jsonl"
    env = {"RECORD_FILE": str(record), "SEGBENCH_CACHE": str(tmp_path / "cache")}
    torchrun([str(tmp_path / "launch.py"), str(tmp_path / "rec.py"), str(tmp_path / "runs")], tmp_path, env)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls and all(c["group"] for c in calls), [c for c in calls if not c["group"]][:3]
    assert {c["rank"] for c in calls} == {0, 1} and {c["device"] for c in calls} == {"cpu"}
    store = RunStore(tmp_path / "runs" / "run")
    assert store.cell_path("rec@eager-fp32__deploy").is_file()
    gallery = json.loads((store.dir / "gallery" / "index.json").read_text())
    assert [c["condition"] for c in gallery["conditions"]] == ["clean", "fog-1"]
