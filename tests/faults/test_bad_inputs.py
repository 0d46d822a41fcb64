"""Bad inputs a new user gives, each refused in one line (exit code 2, no traceback) with the files left as they were:
output paths that hold something else (a run folder, a results CSV given as the baseline to write), label maps and
model declarations that are not what they say, a pre-generated folder at another image size; and the files segbench
writes get the process's umask, so that a colleague can read a report."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.io import atomic_write_text, write_csv
from segbench.bench.results.store import RunStore
from segbench.bench.run.config import ConfigError, RunConfig

ROWS = [
    {"model": "m", "suite": "ci", "condition": "clean", "metric": "miou", "value": 60.0, "unit": "%"},
    {"model": "m", "suite": "ci", "condition": "fog-1", "metric": "miou", "value": 50.0, "unit": "%"},
]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished run folder as the runner leaves it: cells, run.json, results.csv."""
    store = RunStore(tmp_path / "runs" / "ci-1")
    for row in ROWS:
        store.write_cell({"cell": f"m/{row['condition']}", "rows": [row]})
    store.write_manifest({"run_id": "ci-1", "suite": "ci", "suite_version": "1"})
    store.gather(suite="ci")
    return store.dir


@pytest.fixture
def main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, cli_here) -> Callable:
    """`segbench.cli.main(args)` in this process; returns (exit code, stdout, stderr)."""
    return cli_here(monkeypatch, tmp_path, capsys)


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` (or the file itself) by relative name, with its bytes."""
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------------------------------------------------
# Nothing overwritten that is not segbench's own
# --------------------------------------------------------------------------------------------------------------------


def _png(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    return path


def _text(path: Path) -> Path:
    path.write_text("# notes\n")
    return path


def _bytes(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)))
    return path


TARGETS = {
    "the run's results.csv": (lambda run, tmp: run / "results.csv", "a results CSV"),
    "the run folder": (lambda run, tmp: run, "a run folder"),
    "the run's run.json": (lambda run, tmp: run / "run.json", "a JSON file"),
    "a folder of other files": (lambda run, tmp: shutil.copytree(run / "cells", tmp / "mine"), "a folder holding"),
    "a PNG": (lambda run, tmp: _png(tmp / "figure.png"), "a PNG image"),
    "a text file": (lambda run, tmp: _text(tmp / "notes.md"), "a text file"),
    "a checkpoint": (lambda run, tmp: _bytes(tmp / "model.pth"), "a binary file"),
}


@pytest.mark.parametrize("what", TARGETS)
def test_compare_update_baseline_refuses_what_is_not_a_baseline(what, run_dir, tmp_path, main):
    target, described = TARGETS[what][0](run_dir, tmp_path), TARGETS[what][1]
    before, run_before = snapshot(target), snapshot(run_dir)
    code, _, err = main("compare", target, run_dir, "--update-baseline")
    assert_one_line_error(code, err, f"--update-baseline {target}: this is {described}", "not a segbench baseline")
    assert "give a new .json file" in err
    assert snapshot(target) == before and snapshot(run_dir) == run_before


def test_compare_update_baseline_writes_a_new_file_and_replaces_a_baseline(run_dir, tmp_path, main):
    baseline = tmp_path / "baseline.json"
    code, out, err = main("compare", baseline, run_dir, "--update-baseline")
    assert code == 0 and f"baseline written: {baseline}" in out, err
    assert json.loads(baseline.read_text())["format"] == "segbench-baseline-v1"
    code, out, err = main("compare", baseline, run_dir, "--update-baseline")  # compared, then replaced
    assert code == 0 and "no regression" in out and f"baseline written: {baseline}" in out, err


def test_run_update_baseline_refuses_before_running(run_dir, tmp_path, main):
    before = snapshot(run_dir)
    code, _, err = main(
        "--suite",
        "ci",
        "--models",
        "segformer-tiny",
        "--allow-random-weights",
        "--out",
        tmp_path / "runs" / "new",
        "--baseline",
        run_dir / "results.csv",
        "--update-baseline",
    )
    assert_one_line_error(code, err, "--update-baseline", "this is a results CSV, not a segbench baseline JSON")
    assert snapshot(run_dir) == before and not (tmp_path / "runs" / "new").exists()  # refused before the run


@pytest.mark.parametrize(
    "flag, target, fragment",
    [
        ("--summary", "results.csv", "this is a results CSV, not a Markdown or text file"),
        ("--summary", ".", "this is a run folder, not a Markdown or text file"),
        ("--history", "results.csv", "this is a results CSV, not a segbench history (JSON lines)"),
        ("--history", "run.json", "this is a JSON file, not a segbench history"),
        ("--history", ".", "this is a run folder"),
    ],
)
def test_compare_outputs_refuse_other_files(flag, target, fragment, run_dir, main):
    before = snapshot(run_dir)
    code, _, err = main("compare", run_dir, run_dir, flag, run_dir / target)
    assert_one_line_error(code, err, flag, fragment)
    assert snapshot(run_dir) == before  # nor regression.md: refused before anything is written


def test_compare_appends_to_its_own_history_and_a_markdown_summary(run_dir, tmp_path, main):
    summary, history = tmp_path / "summary.md", tmp_path / "history.jsonl"
    summary.write_text("# CI\n")
    for _ in range(2):
        code, _, err = main("compare", run_dir, run_dir, "--summary", summary, "--history", history)
        assert code == 0, err
    assert summary.read_text().startswith("# CI\n### segbench compare: no regression")
    assert [json.loads(line)["exit_code"] for line in history.read_text().splitlines()] == [0, 0]


def test_github_step_summary_that_is_a_folder_is_one_line(run_dir, tmp_path, main, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(run_dir))
    code, _, err = main("compare", run_dir, run_dir)
    assert_one_line_error(code, err, f"GITHUB_STEP_SUMMARY {run_dir}: this is a run folder")


def test_generate_c_out_refuses_a_run_folder_a_dataset_and_a_file(run_dir, synthetic_root, tmp_path, main):
    data = Path(shutil.copytree(synthetic_root, tmp_path / "cityscapes"))
    for target, fragment in (
        (run_dir, "this is a run folder"),
        (data, "this is a folder holding other files (gtFine, leftImg8bit)"),
        (run_dir / "results.csv", "this is a results CSV"),
    ):
        before = snapshot(target)
        code, _, err = main("generate-c", "--data", data, "--out", target, "--corruptions", "fog", "--severities", "1")
        assert_one_line_error(code, err, f"--out {target}", fragment, "not a generate-c folder")
        assert snapshot(target) == before
    out = tmp_path / "cityscapes-c"
    args = ("generate-c", "--data", data, "--out", out, "--corruptions", "fog", "--severities", "1", "--quiet")
    assert main(*args)[0] == 0 and main(*args)[0] == 0  # a new folder, then its own folder again


def test_run_out_refuses_a_file(run_dir, main):
    target = run_dir / "results.csv"
    before = target.read_bytes()
    code, _, err = main("--suite", "ci", "--models", "segformer-tiny", "--allow-random-weights", "--out", target)
    assert_one_line_error(code, err, f"error: --out: {target} is a results CSV, not a run folder; give another one")
    assert target.read_bytes() == before


def test_screenshot_out_refuses_a_report(run_dir, capsys):
    from scripts import screenshot_report

    target = run_dir / "results.csv"
    before = target.read_bytes()
    assert screenshot_report.main([str(run_dir), "--out", str(target), "--chromium", "/nonexistent/chromium"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: --out {target}: this is a results CSV, not a PNG image, and is left as it is; give a new .png file"
    )
    assert target.read_bytes() == before


def test_gpu_check_json_refuses_a_results_csv(run_dir, capsys):
    from benchmarks import gpu_check

    target = run_dir / "results.csv"
    before = target.read_bytes()
    assert gpu_check.main(["--device", "cpu", "--json", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gpu_check: --json {target}: this is a results CSV") and "\n" not in err
    assert target.read_bytes() == before
    earlier = run_dir.parent / "gpu_check.json"
    earlier.write_text(json.dumps({"device": "cpu", "counts": {}, "rows": []}))
    assert gpu_check.check_json_target(earlier) == earlier  # an earlier check's file is replaced


# --------------------------------------------------------------------------------------------------------------------
# Files a colleague can read: the umask decides
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def umask():
    """`umask(mask)` sets this process's umask for the test; the old one comes back after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umask(mask, mode, umask, run_dir, tmp_path):
    from segbench.bench.track import regression

    umask(mask)
    written = [
        atomic_write_text(tmp_path / "a.txt", "x"),
        atomic_write_text(tmp_path / "a.txt", "replaced"),
        write_csv(ROWS, tmp_path / "out" / "results.csv"),
        regression.write_baseline(regression.load_results(run_dir), tmp_path / "baseline.json"),
    ]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {oct(mode)}
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~mask


def test_a_report_is_readable_by_others_under_umask_022(umask, run_dir):
    from segbench.reports import render_report

    umask(0o022)
    render_report(run_dir)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run_dir.rglob("*") if p.is_file()}
    assert modes and all(m & 0o044 == 0o044 for m in modes.values()), modes


# --------------------------------------------------------------------------------------------------------------------
# --label-map and --model-meta: one line naming the file and the flag
# --------------------------------------------------------------------------------------------------------------------

RUN = ("--suite", "ci", "--models", "segformer-tiny", "--allow-random-weights", "--max-images", "1")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("vegetation: tree", "cannot read it as JSON (JSONDecodeError: Expecting value"),
        ('["vegetation", "tree"]', "a label map is an object of dataset class -> the model's label name"),
        ('{"vegetation": 3}', "'vegetation' maps to a number (3); map each dataset class to the model's label name"),
        ('{"vegetation": null}', "'vegetation' maps to null"),
        ('{"vegitation": "tree"}', "not a class of the dataset: 'vegitation' (closest: vegetation)"),
        ('{"traffic sign": "signboard", "trafic light": "x"}', "'trafic light' (closest: traffic light"),
    ],
)
def test_bad_label_maps_are_one_line(text, fragment, tmp_path, main):
    path = tmp_path / "labels.json"
    path.write_text(text)
    code, _, err = main(*RUN, "--label-map", path)
    assert_one_line_error(code, err, f"error: --label-map: {path}: ", fragment)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError) as info:
        RunConfig(label_map=str(path))
    assert info.value.field == "label_map" and fragment in info.value.problem


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("mean = 0.5", "cannot read it as a JSON model declaration (JSONDecodeError"),
        ("[0.5, 0.5, 0.5]", "a model declaration must be a JSON object"),
        ('{"mean": "imagenet"}', "mean must be 3 numbers (RGB), got 'imagenet'"),
        ('{"input_range": [0, 255]}', "input_range must be one of 0-1, 0-255, got [0, 255]"),
        ('{"trained": "yes"}', "trained must be true or false, got 'yes'"),
        ('{"eval_crop": "1024"}', "eval_crop must be a positive int or [H, W]"),
        ('{"std": [0, 1, 1]}', "std must be 3 positive numbers"),
        ('{"normalise": true}', "unknown keys normalise"),
    ],
)
def test_bad_model_declarations_are_one_line(text, fragment, tmp_path, main):
    path = tmp_path / "meta.json"
    path.write_text(text)
    code, _, err = main(*RUN, "--model-meta", path)
    assert_one_line_error(code, err, f"error: --model-meta: {path}: ", fragment)
    with pytest.raises(ConfigError) as info:
        RunConfig(model_meta=str(path))
    assert info.value.field == "model_meta" and fragment in info.value.problem


def test_a_good_label_map_is_taken(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"vegetation": "tree", "Traffic_Sign": "signboard"}')
    assert RunConfig(label_map=path).label_map == str(path)  # class names match as labels do: case, _ and spaces


def test_label_map_keys_are_checked_for_the_python_api_too():
    from segbench.models.sources import SourceError, map_labels

    classes = ("road", "vegetation", "sky")
    assert map_labels(["sky", "tree", "road"], classes, {"vegetation": "tree"}) == [2, 1, 0]
    with pytest.raises(SourceError, match=r"--label-map: not a class of the dataset: 'vegitation' \(closest: vegetat"):
        map_labels(["sky", "tree", "road"], classes, {"vegitation": "tree"})
    with pytest.raises(SourceError, match="a label map is an object"):
        map_labels(["sky", "tree", "road"], classes, [("vegetation", "tree")])


# --------------------------------------------------------------------------------------------------------------------
# The Python API: wrong types are ConfigErrors naming the field, not TypeErrors
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"models": 123}, "models"),
        ({"severities": 3}, "severities"),
        ({"corruptions": 3}, "corruptions"),
        ({"precision": ["fp32"]}, "precision"),
        ({"resume": "yes"}, "resume"),
        ({"data_roots": ["acdc"]}, "data_roots"),
        ({"inference": "slide"}, "inference"),
    ],
)
def test_python_api_wrong_types_name_the_field(fields, field):
    with pytest.raises(ConfigError) as info:
        RunConfig(**fields)
    assert info.value.field == field and "\n" not in str(info.value)


def test_python_api_out_dir_that_is_a_file(run_dir):
    with pytest.raises(ConfigError, match=r"out_dir: .*results.csv is a file, not a folder"):
        RunConfig(out_dir=run_dir / "results.csv")


# --------------------------------------------------------------------------------------------------------------------
# --corrupted-data generated at another size: the pre-generated image is to blame, not the label
# --------------------------------------------------------------------------------------------------------------------


def test_corrupted_data_of_another_size_names_the_pre_generated_image(tmp_path, main):
    from segbench.bench.data.generate_c import generate_c

    data = write_synthetic_cityscapes(tmp_path / "cityscapes", num_images=1, size=(64, 128), seed=0)
    other = write_synthetic_cityscapes(tmp_path / "bigger", num_images=1, size=(96, 192), seed=0)
    generate_c(other, tmp_path / "cityscapes-c", ("fog",), (1,), quiet=True)
    code, _, err = main(
        "--suite",
        "cityscapes-c",
        "--models",
        "segformer-tiny",
        "--allow-random-weights",
        "--only",
        "accuracy",
        "--data",
        data,
        "--corrupted-data",
        tmp_path / "cityscapes-c",
        "--corruptions",
        "fog",
        "--severities",
        "1",
        "--workers",
        "0",
        "--quiet",
    )
    pre_generated = tmp_path / "cityscapes-c" / "fog" / "1" / "leftImg8bit" / "val" / "synthtown"
    assert_one_line_error(
        code,
        err,
        f"error: {pre_generated}/synthtown_000000_000019_leftImg8bit.png: pre-generated image of 96x192 px",
        "its label synthtown_000000_000019_gtFine_labelTrainIds.png is 64x128 px",
        "the --corrupted-data folder",
    )


def test_out_holding_other_files_is_named_as_such(main, tmp_path):
    """Not "already holds a run" (it holds none): the message says what is there."""
    holding = tmp_path / "holding"
    holding.mkdir()
    (holding / "notes.txt").write_text("mine")
    before = snapshot(holding)
    code, _, err = main("--suite", "ci", "--only", "accuracy", "--max-images", "1", "--quiet", "--out", holding)
    assert_one_line_error(code, err, "holds other files (notes.txt), not a run")
    assert snapshot(holding) == before


@pytest.mark.parametrize("flag, value", [("--backends", "onnxruntime"), ("--precisions", "int8")])
def test_a_grid_flag_on_a_suite_without_a_grid_is_refused(main, flag, value):
    """It would change nothing: a silent surprise."""
    code, _, err = main("--suite", "ci", flag, value, "--quiet")
    assert_one_line_error(code, err, f"{flag}: suite ci has no deployment grid to narrow")
