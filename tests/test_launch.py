"""`--launcher`: shards as submitit jobs and a merge job; locally end to end, on SLURM as the sbatch calls it makes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from segbench.bench.results.schema import CALIBRATION_METRICS, TIMING_UNITS

pytest.importorskip("submitit")

RUN = ["run", "--suite", "ci", "--max-images", "3", "--only", "accuracy", "--quiet"]


def accuracy(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "results.csv")
    return frame[~frame["unit"].isin(TIMING_UNITS)].reset_index(drop=True)


def test_the_local_launcher_runs_two_shards_and_the_merge(tmp_path, monkeypatch, capsys, cli_here):
    call = cli_here(monkeypatch, tmp_path, capsys)
    code, out, err = call(*RUN, "--launcher", "local", "--shards", "2", "--out", "runs/x")
    assert code == 0, err
    assert "submitted 2 shards" in out and "merged: runs/x" in out
    code, _, err = call(*RUN, "--out", "runs/one")
    assert code == 0, err
    a, b = accuracy(tmp_path / "runs" / "one"), accuracy(tmp_path / "runs" / "x")
    assert list(a["metric"]) == list(b["metric"])
    # Batch size 1: the confusion counts of the shards add up exactly. The calibration sums are float sums of each
    # pixel's confidence, computed in other processes than the single run's, and their last bits may differ: in one
    # CI run a value moved by 1e-6 (a count-based figure moves by 1e-3 or more when a pixel changes), so they are
    # held to 1e-5.
    calibration = a["metric"].isin(CALIBRATION_METRICS)
    gap = (a["value"] - b["value"]).abs()
    assert gap[~calibration].max() < 1e-9, a.assign(gap=gap)[gap > 1e-9]
    assert gap[calibration].max() < 1e-5, a.assign(gap=gap)[calibration]


def test_slurm_submits_an_array_and_a_merge_that_waits_for_it(tmp_path, monkeypatch, capsys, cli_here):
    """A stand-in `sbatch` records each submission: the array of shards with its partition, time and parallelism,
    then the merge job with `--dependency=afterok:<array>`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    fake = bin_dir / "sbatch"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\ncat "$1" >> {log}\necho "Submitted batch job 4242"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    srun = bin_dir / "srun"  # submitit looks for it to know it is on a cluster
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    call = cli_here(monkeypatch, tmp_path, capsys)
    args = ["--launcher", "slurm", "--shards", "3", "--partition", "gpu", "--time", "30", "--array-parallelism", "2"]
    code, out, err = call(*RUN, *args, "--out", "runs/x")
    assert code == 0, err
    text = log.read_text()
    assert "#SBATCH --array=0-2%2" in text and "#SBATCH --partition=gpu" in text and "#SBATCH --time=30" in text
    assert "#SBATCH --dependency=afterok:4242" in text
    assert "submitted 3 shards" in out and "waits for them (afterok:4242)" in out


@pytest.mark.parametrize(
    "args, says",
    [
        (["--shards", "2"], "--shards is an option of --launcher"),
        (["--launcher", "local"], "--launcher needs --shards N"),
        (["--launcher", "local", "--shards", "2"], "--launcher needs --out RUN_DIR"),
        (["--launcher", "local", "--shards", "2", "--out", "r", "--shard", "0/2"], "drop --shard and --resume"),
    ],
)
def test_launcher_mistakes_are_one_line(args, says, tmp_path, monkeypatch, capsys, cli_here):
    code, _, err = cli_here(monkeypatch, tmp_path, capsys)(*RUN, *args)
    assert code == 2 and says in err and "Traceback" not in err
