"""The leaderboard across run folders: each run's own figures, settings never merged, the Pareto front, a
self-contained escaped page, the exports and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.schema import MIOU
from segbench.bench.results.targets import TargetError
from segbench.bench.run.config import InferenceSpec, RunConfig
from segbench.bench.run.runner import run
from segbench.reports.leaderboard import CLEAN, leaderboard, pareto_front, write_leaderboard


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Three runs: two models at fp32, the same at bf16 (another setting), and a copy of the first whose cells say
    they ran on cuda:0 (a device this machine does not have: the record is what the leaderboard reads)."""
    root = write_synthetic_cityscapes(tmp_path_factory.mktemp("cs"), num_images=2, size=(48, 96), seed=1)
    out = tmp_path_factory.mktemp("runs")
    made = []
    for run_id, precision in (("fp32-run", "fp32"), ("bf16-run", "bf16")):
        config = RunConfig(
            suite="lb",
            suite_version="1",
            models=("segformer-tiny", "fcn-mit-tiny"),
            data_root=str(root),
            out_dir=str(out),
            run_id=run_id,
            precision=precision,
            allow_random_weights=True,
            quiet=True,
        )
        made.append(run(config, ["clean", "fog-1"], InferenceSpec(mode="whole")).run_dir)
    gpu = shutil.copytree(made[0], out / "<i>gpu-run")
    for path in (gpu / "cells").glob("*.json"):
        cell = json.loads(path.read_text())
        path.write_text(json.dumps({**cell, "device": "cuda:0"}))
    return [*made, gpu]


def test_rows_are_each_runs_own_and_settings_stay_apart(runs):
    table = leaderboard(runs)
    assert len(table) == 6 and table["Setting"].nunique() == 3
    assert set(table["Device"]) == {"cpu", "cuda:0"} and set(table["Precision"]) == {"fp32", "bf16"}
    assert table["Weights (sha256)"].str.endswith("[random]").all()  # allow_random_weights: marked, not hidden
    for run_dir in runs:
        frame = pd.read_csv(run_dir / "results.csv")
        clean = frame[(frame.metric == MIOU) & (frame.condition == "clean")].set_index("model")["value"]
        mine = table[table["Run"] == run_dir.name].set_index("Model")["Clean mIoU"]
        assert (mine.sort_index() == clean.sort_index()).all()
    for _, rows in table.groupby("Setting", sort=False):  # best first within each setting
        assert list(rows["Clean mIoU"]) == sorted(rows["Clean mIoU"], reverse=True)


def test_the_pareto_front_keeps_what_nothing_beats():
    accuracy = pd.Series([70.0, 75.0, 72.0, 60.0, None])
    latency = pd.Series([10.0, 20.0, 25.0, 5.0, 1.0])
    assert list(pareto_front(accuracy, latency)) == [True, True, False, True, False]


def test_the_page_is_self_contained_escaped_and_exported(runs, tmp_path):
    page = write_leaderboard([str(r) for r in runs], tmp_path / "board.html")
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    assert "&lt;i&gt;gpu-run" in html and "<i>gpu-run" not in html
    assert "3 settings" in html
    for suffix in (".csv", ".md", ".tex"):
        assert page.with_suffix(suffix).is_file()
    assert len(pd.read_csv(page.with_suffix(".csv"))) == 6
    again = write_leaderboard([str(runs[0])], page)  # its own page is replaced
    assert "1 runs" in again.read_text()


def test_mistakes_are_one_line_each(runs, tmp_path):
    with pytest.raises(ValueError, match="matches no folder"):
        write_leaderboard([str(tmp_path / "nothing-*")], tmp_path / "a.html")
    with pytest.raises(ValueError, match="no run.json here"):
        write_leaderboard([str(tmp_path)], tmp_path / "a.html")
    mine = tmp_path / "notes.html"
    mine.write_text("<html><body>my page</body></html>")
    with pytest.raises(TargetError, match="left as it is"):
        write_leaderboard([str(runs[0])], mine)
    assert mine.read_text() == "<html><body>my page</body></html>"
    with pytest.raises(ValueError, match="give an .html file"):
        write_leaderboard([str(runs[0])], tmp_path / "board.csv")


def test_published_tables_are_marked_rows_of_their_own_settings(runs):
    from segbench.reports import tables as T

    table = leaderboard(runs, published=True)
    published = table[table["Run"] == "published"]
    assert set(published["Setting"]).isdisjoint(table.loc[table["Run"] != "published", "Setting"])
    table1 = T.read_reference("segformer_table1.csv").set_index("variant")["cityscapes_miou_ss"]
    paper = published[published["Suite"].str.startswith("SegFormer paper")].set_index("Model")[CLEAN]
    assert (paper.sort_index() == table1.sort_index()).all()
    assert len(leaderboard(runs)) == 6  # without the flag, only the runs


def test_a_deploy_grid_shows_each_variants_precision_and_leaves_out_what_was_not_built(runs, tmp_path):
    """A run of the deploy grid, made from the fp32 run by naming its models as variants, plus the `deploy` cell of a
    variant this machine could not build."""
    grid = shutil.copytree(runs[0], tmp_path / "grid-run")
    names = {"segformer-tiny": "segformer-tiny@openvino-bf16", "fcn-mit-tiny": "fcn-mit-tiny@eager-fp32"}
    for path in [p for p in grid.rglob("*") if p.is_file() and p.suffix in (".json", ".csv")]:
        text = path.read_text()
        for old, new in names.items():
            text = text.replace(old, new)
        path.write_text(text)
    unavailable = {"cell": "x@eager-fp16__deploy", "kind": "deploy", "model": "x@eager-fp16", "status": "unavailable"}
    (grid / "cells" / "x@eager-fp16__deploy.json").write_text(json.dumps({**unavailable, "rows": []}))
    results = pd.read_csv(grid / "results.csv")
    rows = [{"model": "x@eager-fp16", "suite": "lb", "condition": "deploy", "metric": "unavailable", "value": 1.0}]
    for model, precision, ms in (
        ("segformer-tiny@openvino-bf16", "bf16", 5.0),
        ("fcn-mit-tiny@eager-fp32", "fp32", 9.0),
    ):
        # each variant's latency row carries its own precision, as the grid writes them
        keys = {"model": model, "suite": "lb", "condition": "efficiency", "device": "cpu", "precision": precision}
        rows.append({**keys, "metric": "latency_median", "value": ms, "resolution": "48x96", "batch_size": 1})
    pd.concat([results, pd.DataFrame(rows)]).to_csv(grid / "results.csv", index=False)
    table = leaderboard([grid])
    assert dict(zip(table["Model"], table["Precision"])) == {
        "segformer-tiny@openvino-bf16": "bf16",  # the variant's own, not the run's fp32 setting
        "fcn-mit-tiny@eager-fp32": "fp32",
    }
    assert table["Setting"].nunique() == 2  # bf16 and fp32 are never one column
    latency = table.set_index("Model").filter(like="Latency ms")
    fp32, bf16 = (next(c for c in latency.columns if f", {p}, " in c) for p in ("fp32", "bf16"))
    assert latency.loc["segformer-tiny@openvino-bf16", bf16] == 5.0
    assert pd.isna(latency.loc["segformer-tiny@openvino-bf16", fp32])  # never under an fp32 label
    assert pd.isna(latency.loc["fcn-mit-tiny@eager-fp32", bf16]) and latency.loc["fcn-mit-tiny@eager-fp32", fp32] == 9.0
