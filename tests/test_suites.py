"""Suites are frozen, versioned data; the user's corruptions and severities narrow or widen them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from segbench import suites
from segbench.bench.results.axes import CATEGORIES, CORRUPTIONS
from segbench.bench.run.plan import select_conditions
from segbench.bench.spec import SuiteSpec


def test_builtin_suites_are_registered_and_frozen():
    assert set(suites.list_suites()) >= {"cityscapes-c", "cityscapes", "efficiency", "demo", "ci"}
    suite = suites.get_suite("cityscapes-c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        suite.version = "2"
    with pytest.raises(ValueError, match="closest: cityscapes"):
        suites.get_suite("cityscapes-cc")
    with pytest.raises(ValueError, match="already registered"):
        suites.register_suite(SuiteSpec(name="demo", version="9", description="dup"))


def test_cityscapes_c_follows_the_paper_protocol():
    conds = suites.get_suite("cityscapes-c").conditions
    assert conds[0].is_clean and len(conds) == 1 + 12 * 5 + 4 * 3  # 72 corrupted conditions plus clean
    for c in conds[1:]:
        assert c.severity <= 3 if c.corruption in CATEGORIES["noise"] else c.severity <= 5
    assert {c.corruption for c in conds[1:]} == set(CORRUPTIONS)


def test_user_severities_apply_everywhere_and_corruptions_narrow():
    suite = suites.get_suite("cityscapes-c")
    everywhere = select_conditions(suite, severities=(1, 2, 3, 4, 5))
    assert len(everywhere) == 1 + 16 * 5
    fog_noise = select_conditions(suite, corruptions=("fog", "shot_noise"))
    assert [c.name for c in fog_noise] == [
        "clean",
        *(f"fog-{s}" for s in range(1, 6)),
        "shot_noise-1",
        "shot_noise-2",
        "shot_noise-3",
    ]
    assert select_conditions(suite) == suite.conditions


def test_demo_and_ci_need_no_dataset():
    for name in ("demo", "ci"):
        suite = suites.get_suite(name)
        assert suite.data == "synthetic" and suite.synthetic is not None and suite.default_models
    assert suites.get_suite("efficiency").data == "none"


def test_the_deploy_demo_is_the_deploy_grid_on_the_demo_data_and_weights():
    demo, deploy = suites.get_suite("deploy-demo"), suites.get_suite("deploy")
    assert demo.data == "synthetic" and demo.deploy is not None and demo.deploy.backends == deploy.deploy.backends
    assert demo.conditions == deploy.conditions  # the same accuracy protocol, on synthetic scenes
    assert all(Path(demo.weights[m]).is_file() for m in demo.default_models)  # trained demo weights, not random
