"""Shards without a process group: `--shard I/N` runs and `segbench merge`, equal to one process for every accuracy
number; the refusals; a killed shard resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from segbench.bench.data.realworld import write_synthetic_acdc
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.schema import CALIBRATION_METRICS, TIMING_UNITS
from segbench.bench.run.config import ConfigError, InferenceSpec, RunConfig
from segbench.bench.run.merge import MergeError, merge_shards
from segbench.bench.run.runner import run

WHOLE = InferenceSpec(mode="whole")
CONDITIONS = ("clean", "fog-2", "gaussian_noise-1", "acdc:rain", "pgd-linf-2/255-1steps", "cospgd-linf-2/255-1steps")
CONDITIONS += ("worst-linf-2/255-1steps",)
COST = ("attack_step_ms", "attack_peak_memory")


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    cityscapes = write_synthetic_cityscapes(tmp_path_factory.mktemp("cs"), num_images=5, size=(48, 96), seed=2)
    acdc = write_synthetic_acdc(tmp_path_factory.mktemp("acdc"), conditions=("rain",), images_per_condition=3)
    return {"cityscapes": str(cityscapes), "acdc": str(acdc)}


def make_config(roots, out, **kw) -> RunConfig:
    base = dict(
        suite="shard-test",
        suite_version="1",
        models=("segformer-tiny", "fcn-mit-tiny"),
        data_roots=roots,
        out_dir=str(out),
        allow_random_weights=True,
        batch_size=1,  # a shard batches other images together; at batch 2 float rounding may flip a pixel's argmax
        quiet=True,
        seed=3,
    )
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def whole(roots, tmp_path_factory):
    return run(make_config(roots, tmp_path_factory.mktemp("whole"), run_id="whole"), CONDITIONS, WHOLE).run_dir


@pytest.fixture(scope="module")
def shards(roots, tmp_path_factory) -> dict[int, list[Path]]:
    out = tmp_path_factory.mktemp("shards")
    made = {}
    for n in (2, 3):
        made[n] = [
            run(make_config(roots, out, run_id=f"s{i}of{n}", shard=f"{i}/{n}"), CONDITIONS, WHOLE).run_dir
            for i in range(n)
        ]
    return made


def accuracy(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "results.csv")
    return frame[~frame["unit"].isin(TIMING_UNITS) & ~frame["metric"].isin(COST)].reset_index(drop=True)


@pytest.mark.parametrize("n", [2, 3])
def test_merged_shards_equal_one_process(n, shards, whole, tmp_path):
    merged = merge_shards(shards[n], tmp_path / "merged")
    a, b = accuracy(whole), accuracy(merged)
    assert list(a["metric"]) == list(b["metric"]) and list(a["condition"]) == list(b["condition"])
    counts = a["unit"] != "%"  # confusion-matrix figures are exact; calibration sums are added in another order
    exact = ~a["metric"].isin(CALIBRATION_METRICS)
    assert (a.loc[exact, "value"] == b.loc[exact, "value"]).all()
    assert (a.loc[~exact, "value"] - b.loc[~exact, "value"]).abs().max() < 1e-9
    assert counts.any()
    summary_a, summary_b = (pd.read_csv(d / "summary.csv") for d in (whole, merged))
    assert len(summary_a) == len(summary_b) and (summary_a["value"] - summary_b["value"]).abs().max() < 1e-9
    manifest = json.loads((merged / "run.json").read_text())
    assert manifest["shard"] is None and [m["index"] for m in manifest["merged_from"]] == list(range(n))


def test_shards_take_torchruns_shares_and_only_shard_0_probes(shards, roots):
    cells = [json.loads(p.read_text()) for p in (shards[3][1] / "cells").glob("*clean*.json")]
    assert {c["num_images"] for c in cells} == {2}  # images 1 and 4 of 5
    run_json = json.loads((shards[3][1] / "run.json").read_text())
    assert run_json["shard"] == {"index": 1, "count": 3}


def test_merge_refuses_what_is_not_one_whole_run(shards, roots, tmp_path, whole):
    two, three = shards[2], shards[3]
    cases = [
        ([two[0], two[0], two[1]], "shard 0/2 given twice"),
        ([three[0], three[2]], "shard 1/3 missing"),
        ([two[0], three[1]], "give one run's shards"),
        ([two[0], whole], "is a whole run, not a shard"),
        ([tmp_path], "no run.json here"),
    ]
    for dirs, says in cases:
        with pytest.raises(MergeError, match=says):
            merge_shards(dirs, tmp_path / "out")
    only_cityscapes = {"cityscapes": roots["cityscapes"]}
    other = run(make_config(only_cityscapes, tmp_path, run_id="seed", shard="1/2", seed=4), ["clean"], WHOLE).run_dir
    with pytest.raises(MergeError, match=r"not a shard of the same run .*seed was 3, now 4"):
        merge_shards([two[0], other], tmp_path / "out")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(MergeError, match="not an empty folder"):
        merge_shards(two, tmp_path / "taken")
    assert not (tmp_path / "out").exists()


def test_a_killed_shard_is_refused_then_resumed_and_merged(shards, roots, tmp_path, whole):
    copies = [shutil.copytree(d, tmp_path / d.name) for d in shards[2]]
    killed = copies[1]
    for path in list((killed / "cells").glob("*fog-2*.json"))[:1]:
        path.unlink()
    (killed / "results.csv").unlink()
    with pytest.raises(MergeError, match=r"shard 1/2 .* is unfinished: partial run"):
        merge_shards(copies, tmp_path / "merged")
    resumed = run(make_config(roots, tmp_path, run_id=killed.name, shard="1/2", resume=True), CONDITIONS, WHOLE)
    assert len(resumed.computed) == 1
    merged = merge_shards(copies, tmp_path / "merged")
    assert accuracy(merged)["value"].round(9).equals(accuracy(whole)["value"].round(9))
    with pytest.raises(Exception, match="shard was"):
        run(make_config(roots, tmp_path, run_id=killed.name, shard="0/2", resume=True), CONDITIONS, WHOLE)


def test_bad_shards_are_refused_by_the_config():
    for bad in ("2/2", "1", "a/3", "-1/2"):
        with pytest.raises(ConfigError) as info:
            RunConfig(shard=bad)
        assert info.value.field == "shard"
    assert RunConfig(shard=" 01/4").shard_part == (1, 4)
