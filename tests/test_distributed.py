"""Distributed evaluation: sharding without duplicates or skips, and 2-process gloo torchrun == 1 process."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch

from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.schema import TIMING_UNITS
from segbench.bench.results.store import RunStore
from segbench.bench.run import distributed
from segbench.bench.run.config import RunConfig
from segbench.bench.run.distributed import DistContext, all_reduce_, any_failed, on_main, setup, shard_indices
from segbench.bench.run.runner import run

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n, world", [(7, 3), (5, 2), (2, 4), (0, 2), (9, 1)])
def test_shards_cover_every_index_once(n, world):
    shards = [list(shard_indices(n, r, world)) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # uneven tails differ by at most one image


def test_single_process_context_is_inert(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = setup("cpu")
    assert ctx == DistContext() and not ctx.enabled and ctx.is_main
    assert on_main(lambda: 41 + 1, ctx) == 42 and any_failed(True, ctx) and not any_failed(False, ctx)

    def fail():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        on_main(fail, ctx)
    t = torch.ones(2)
    assert all_reduce_(t, ctx) is t and t.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="rank 2 outside"):
        shard_indices(3, 2, 2)


class _Launch:
    """The environment torchrun gives one rank, with stand-ins for the CUDA and process-group calls `setup` makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, local_rank: int, gpus: int = 0):
        for var, value in (("WORLD_SIZE", "4"), ("RANK", str(local_rank)), ("LOCAL_RANK", str(local_rank))):
            monkeypatch.setenv(var, value)
        monkeypatch.delenv("SEGBENCH_DIST_TIMEOUT_MIN", raising=False)
        self.joined: list[dict] = []
        self.current: list[torch.device] = []
        monkeypatch.setattr(distributed.dist, "is_initialized", lambda: bool(self.joined))
        monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: self.joined.append(kw))
        if gpus:
            monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
            monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
            monkeypatch.setattr(torch.cuda, "set_device", self.current.append)


def test_the_group_waits_hours_not_nccls_ten_minutes(monkeypatch):
    """Ranks past 0 wait in a collective while rank 0 runs the efficiency cells alone: NCCL's default 10 minutes
    would abort them, so the group gets `DEFAULT_TIMEOUT_MIN`, or `SEGBENCH_DIST_TIMEOUT_MIN`."""
    launch = _Launch(monkeypatch, local_rank=1)
    ctx = setup("cpu")
    assert ctx.initialized_here and (ctx.rank, ctx.world_size) == (1, 4)
    (joined,) = launch.joined
    assert joined["backend"] == "gloo" and joined["timeout"] == datetime.timedelta(hours=4)
    assert joined["timeout"] == datetime.timedelta(minutes=distributed.DEFAULT_TIMEOUT_MIN)

    launch = _Launch(monkeypatch, local_rank=1)
    monkeypatch.setenv("SEGBENCH_DIST_TIMEOUT_MIN", "90.5")
    setup("cpu")
    assert launch.joined[0]["timeout"] == datetime.timedelta(minutes=90.5)
    for bad in ("soon", "0", "-5", "inf", "nan"):
        monkeypatch.setenv("SEGBENCH_DIST_TIMEOUT_MIN", bad)
        with pytest.raises(ValueError, match=f"SEGBENCH_DIST_TIMEOUT_MIN='{bad}' is not a number of minutes > 0"):
            setup("cpu")


@pytest.mark.parametrize(
    "gpus, local_rank, expected",
    [(1, 3, "cuda:0"), (1, 0, "cuda:0"), (4, 3, "cuda:3"), (2, 3, "cuda:1"), (8, 5, "cuda:5")],
    ids=["one-gpu-per-task", "rank-0", "a-node-of-4", "two-ranks-per-gpu", "a-node-of-8"],
)
def test_each_rank_takes_a_gpu_it_can_see(monkeypatch, gpus, local_rank, expected):
    """With one visible GPU per task (SLURM), `cuda:LOCAL_RANK` is an invalid device ordinal on every rank past 0."""
    launch = _Launch(monkeypatch, local_rank, gpus=gpus)
    ctx = setup("cuda:2")  # under torchrun the rank's own GPU wins over the index given
    assert ctx.device == torch.device(expected) and launch.current == [torch.device(expected)]
    assert launch.joined[0]["backend"] == "nccl" and ctx.local_rank == local_rank


@pytest.mark.slow
def test_two_process_torchrun_equals_single_process(tmp_path, torchrun_runner):
    # 5 images over 2 ranks: an uneven tail (3 + 2), and batch size 2 leaves a partial batch on each rank
    root = write_synthetic_cityscapes(tmp_path / "data", num_images=5, size=(64, 96), seed=5)
    conditions = ["clean", "gaussian_noise-2"]
    # two models: their cells of a condition run together, so each rank goes through both models' collectives
    base = dict(
        suite="dist",
        models=("segformer-tiny", "fcn-mit-tiny"),
        data_root=str(root),
        out_dir=str(tmp_path / "runs"),
        allow_random_weights=True,
        batch_size=2,
        quiet=True,
        seed=0,
    )
    single = run(RunConfig(**base, run_id="single"), conditions)

    torchrun_runner({**base, "run_id": "two", "conditions": conditions}, tmp_path / "two.json")

    two = RunStore(tmp_path / "runs" / "two")
    for cell, record in RunStore(single.run_dir).finished().items():
        other = two.finished()[cell]
        assert other["world_size"] == 2 and other["num_images"] == record["num_images"] == 5
        assert other["confusion_matrix"] == record["confusion_matrix"], cell

    def accuracy(path):
        frame = pd.read_csv(path)
        return frame[~frame["unit"].isin(TIMING_UNITS)].reset_index(drop=True)

    pd.testing.assert_frame_equal(accuracy(two.results_csv), accuracy(single.results_csv))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["single", "two"]  # only rank 0 wrote

    # a torchrun run resumes in one process (another world size): only the missing cell is computed, and it equals
    # the one the two ranks made
    dropped = "fcn-mit-tiny__gaussian_noise-2"
    kept = two.finished()[dropped]
    two.cell_path(dropped).unlink()
    two.results_csv.unlink()
    resumed = run(RunConfig(**base, run_id="two", resume=True), conditions)
    assert resumed.computed == [dropped]
    again = RunStore(tmp_path / "runs" / "two").finished()[dropped]
    assert again["world_size"] == 1 and again["confusion_matrix"] == kept["confusion_matrix"]
