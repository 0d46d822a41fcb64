"""Damaged files segbench reads back (a hand edit, a killed job, a full disk): each is one line naming the file, a
damaged cell is set aside and computed again, and the report renders what it can.

One small run (the `ci` suite on `segformer-tiny`, accuracy only, clean and fog-2 on one image) is made once; each test
damages a copy of it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from segbench.bench.results.schema import TIMING_UNITS
from segbench.bench.results.store import RunFolder, RunStore, read_run

ARGS = (
    "--suite",
    "ci",
    "--models",
    "segformer-tiny",
    "--allow-random-weights",
    "--only",
    "accuracy",
    "--corruptions",
    "fog",
    "--severities",
    "2",
    "--max-images",
    "1",
    "--workers",
    "0",
    "--quiet",
)
CLEAN, FOG = "segformer-tiny__clean.json", "segformer-tiny__fog-2.json"


def _stderr_only(call: Callable[..., tuple[int, str, str]]) -> Callable[..., tuple[int, str]]:
    """`call` (`cli_here`'s) returning the exit code and stderr."""
    return lambda *args: (lambda code, _, err: (code, err))(*call(*args))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cli_here) -> Path:
    """The undamaged run (never modified: tests damage copies)."""
    home = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, _, _ = cli_here(monkeypatch, home)(*ARGS, "--out", str(home / "run"))
    assert code == 0
    return home / "run"


@pytest.fixture
def damaged(reference, tmp_path, monkeypatch, capsys, cli_here) -> tuple[Path, Callable[..., tuple[int, str]]]:
    """(a copy of the reference run, `call(*args)` running the command line beside it)."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    return run, _stderr_only(cli_here(monkeypatch, tmp_path, capsys))


def _resume(call, run: Path) -> tuple[int, str]:
    return call(*ARGS, "--out", str(run), "--resume")


def _measured(run: Path) -> pd.DataFrame:
    """results.csv without its timing rows (seconds, images per second)."""
    frame = pd.read_csv(run / "results.csv")
    return frame[~frame["unit"].isin(TIMING_UNITS)].reset_index(drop=True)


def _lines(stderr: str, prefix: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


CELL_DAMAGE = {
    "null": lambda text: "null",
    "list": lambda text: "[]",
    "empty object": lambda text: "{}",
    "no rows": lambda text: json.dumps({"cell": "segformer-tiny__fog-2"}),
    "rows not a list": lambda text: json.dumps({"cell": "segformer-tiny__fog-2", "rows": {"miou": 1}}),
    "rows not objects": lambda text: json.dumps({"cell": "segformer-tiny__fog-2", "rows": [1, 2]}),
    "truncated": lambda text: text[: len(text) // 2],
    "empty file": lambda text: "",
}


@pytest.mark.parametrize("form", [*CELL_DAMAGE, "another cell's"])
def test_a_damaged_cell_is_set_aside_and_recomputed(reference, damaged, form):
    run, call = damaged
    target = run / "cells" / FOG
    if form == "another cell's":
        bad = (run / "cells" / CLEAN).read_text()
    else:
        bad = CELL_DAMAGE[form](target.read_text())
    target.write_text(bad)

    code, stderr = _resume(call, run)

    assert code == 0, stderr
    warnings = _lines(stderr, "warning:")
    assert len(warnings) == 1 and str(target) in warnings[0], stderr
    assert "set aside as" in warnings[0] and "recomputed" in warnings[0]
    (aside,) = (run / "cells").glob(f"{FOG}.damaged-*")
    assert aside.read_text() == bad  # renamed, never deleted
    assert json.loads(target.read_text())["cell"] == "segformer-tiny__fog-2"  # computed again
    pd.testing.assert_frame_equal(_measured(run), _measured(reference))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[1, 2]", "not a segbench run.json (Expected `object`, got `array`)"),
        ('{"suite": "ci"} {}', "unreadable run.json (Extra data: line 1 column 17"),
        ('{"suite": "ci"}', "not a segbench run.json (Object missing required field"),
    ],
)
def test_a_damaged_run_json_is_one_error_line(damaged, text, problem):
    run, call = damaged
    (run / "run.json").write_text(text)
    code, stderr = _resume(call, run)
    assert code == 2
    line = stderr.strip()
    assert "\n" not in line and line.startswith(f"error: {run / 'run.json'}: {problem}")
    assert line.endswith("; remove the folder or give another --out")


def test_a_damaged_env_json_is_set_aside_on_resume(damaged):
    run, call = damaged
    (run / "env.json").write_text("[]")
    code, stderr = _resume(call, run)
    assert code == 0, stderr
    (warning,) = _lines(stderr, "warning:")
    assert warning.startswith(f"warning: {run / 'env.json'}: not a segbench env.json") and "set aside as" in warning
    (aside,) = run.glob("env.json.damaged-*")
    assert aside.read_text() == "[]"
    assert json.loads((run / "env.json").read_text())["sessions"] == []


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("env.json", "[]", "env.json: not a segbench env.json (Expected `object`, got `array`)"),
        ("env.json", '{"sessions": 3', "env.json: unreadable env.json"),
        ("summary.csv", "a,b\n1,2\n", "summary.csv: not a segbench results CSV (no column model, metric, value)"),
        ("results.csv", "model,metric,value\nm,miou,lots\n", "results.csv: not a segbench results CSV (value 'lots'"),
        ("results.csv", "model,metric,value\nm,miou,41.5\nm,pixel_acc,8", "results.csv: cut short"),  # truncated
    ],
)
def test_report_renders_around_a_damaged_file(damaged, name, text, problem):
    run, call = damaged
    (run / name).write_text(text)
    code, stderr = call("report", str(run))
    assert code == 0, stderr
    html = (run / "index.html").read_text()
    assert problem.replace("'", "&#39;") in html
    assert "segformer-tiny" in html
    if name == "results.csv":  # the rows come from the cells instead
        assert "cells/*.json (results.csv damaged)" in html
        assert (run / name).read_text() == text  # the report never rewrites the results
    if name == "summary.csv":  # derived from the rows: written again
        assert "mPC" in set(pd.read_csv(run / "summary.csv")["metric"])


def test_report_on_a_killed_run_shows_the_finished_cells_and_says_partial(damaged):
    run, call = damaged
    for path in (run / "results.csv", run / "summary.csv", run / "index.html", run / "cells" / FOG):
        path.unlink()
    code, stderr = call("report", str(run))
    assert code == 0, stderr
    partial = "partial run: 1 of 2 accuracy cells finished, results.csv not gathered"
    assert f"note: {partial}" in stderr and f"--out {run} --resume" in stderr
    html = (run / "index.html").read_text()
    assert partial in html and "cells/*.json (results.csv not gathered yet)" in html
    assert not (run / "results.csv").exists()


def test_report_on_a_folder_without_results_or_cells_is_one_error_line(damaged):
    run, call = damaged
    shutil.rmtree(run / "cells")
    (run / "results.csv").unlink()
    code, stderr = call("report", str(run))
    assert code == 2
    assert stderr == (
        f"error: {run}: no results.csv here, nor any finished cell (cells/*.json); give a run folder made by "
        "run_bench.py\n"
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[]", "not a segbench baseline (Expected `object`, got `array`)"),
        ('{"format": "segbench-baseline-v1", "suite": "ci", "suite_version": "1", "rows": "x"}', "at `$.rows`"),
        ('{"format": "other", "suite": null, "suite_version": null, "rows": []}', "(format 'other')"),
        ("{", "unreadable baseline"),
    ],
)
def test_a_baseline_that_is_not_one_is_one_error_line(damaged, tmp_path, text, problem):
    run, call = damaged
    baseline = tmp_path / "baseline.json"
    baseline.write_text(text)
    code, stderr = call("compare", str(baseline), str(run))
    assert code == 2
    assert stderr.startswith(f"error: {baseline}: ") and problem in stderr and stderr.count("\n") == 1


def test_the_python_reader_lists_damaged_cells(damaged):
    run, _ = damaged
    (run / "cells" / FOG).write_text(json.dumps({"cell": "segformer-tiny__fog-2"}))
    folder = read_run(run)
    assert [c["cell"] for c in folder.cells()] == ["segformer-tiny__clean"]
    assert folder.problems == [
        f"cells/{FOG}: not a segbench cell record (Object missing required field `rows`); `--resume` sets it aside "
        "and computes the cell again"
    ]
    assert (run / "cells" / FOG).is_file()  # reading changes nothing


def test_gather_sets_a_damaged_cell_aside(damaged, capsys):
    run, _ = damaged
    (run / "cells" / FOG).write_text("[]")
    RunStore(run).gather(suite="ci")
    assert "set aside as" in capsys.readouterr().err
    assert set(pd.read_csv(run / "results.csv")["condition"]) == {"clean"}
    assert len(list((run / "cells").glob(f"{FOG}.damaged-*"))) == 1
    assert RunFolder(run).partial() == (
        f"partial run: 1 of 2 accuracy cells finished; resume with the run's command and --out {run} --resume"
    )


def test_a_damaged_artifact_manifest_is_a_cache_miss(tmp_path):
    from segbench.bench.deploy.cache import ArtifactCache, CacheKey

    cache = ArtifactCache(tmp_path)
    key = CacheKey("m", "w", (1, 3, 8, 8), "fp32", "onnxruntime", ".onnx")
    built = cache.get_or_build(key, lambda: b"graph")
    cache.manifest_path(built.path).write_text(json.dumps({"digest": key.digest, "bytes": 5, "build_s": "slow"}))
    assert cache.lookup(key) is None
    again = cache.get_or_build(key, lambda: b"graph")
    assert not again.hit and cache.lookup(key).hit


def test_a_damaged_generate_c_manifest_is_one_line(tmp_path):
    from segbench.bench.data.cityscapes import DataError, read_manifest

    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(DataError, match=r"manifest.json: not a segbench generate-c manifest \(Expected `object`"):
        read_manifest(tmp_path)
