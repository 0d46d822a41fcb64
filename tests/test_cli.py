"""run_bench.py end to end, as a user types it, on synthetic data.

Most user mistakes run `segbench.cli.main` in this interpreter (`in_process`); a few run `run_bench.py` in a fresh one
(`cli`), for the exit code and the absence of a traceback through a real interpreter."""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    return {"SEGBENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_CACHE": str(tmp_path / "hf")}


def cli(*args: str, tmp_path: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **_env(tmp_path)}
    full_env.pop("CITYSCAPES_DATASET", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "run_bench.py"), *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def in_process(tmp_path, monkeypatch, capsys, cli_here) -> Callable[..., tuple[int, str]]:
    """`main(args)` here, set up as `cli` sets up a fresh interpreter (folder, environment); returns the exit code and
    what a user sees on stderr: the printed lines, then each warning a fresh interpreter would print."""
    call = cli_here(monkeypatch, tmp_path, capsys)
    return lambda *args: (lambda code, _, err: (code, err))(*call(*args))


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_list(tmp_path):
    out = cli("list", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    for text in ("segformer-b5", "deeplabv3plus-mobilenetv2", "cityscapes-c (v1)", "demo (v2)", "weather: snow"):
        assert text in out.stdout


@pytest.mark.slow
def test_run_shorthand_then_resume(tmp_path):
    run_dir = tmp_path / "runs" / "short"
    args = (
        "--suite",
        "ci",
        "--models",
        "segformer-b0,b5",
        "--allow-random-weights",
        "--only",
        "accuracy",
        "--corruptions",
        "fog",
        "--severities",
        "1",
        "--max-images",
        "2",
        "--workers",
        "0",
        "--quiet",
        "--out",
        str(run_dir),
    )
    first = cli(*args, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"report: {run_dir / 'index.html'}" in first.stdout
    assert re.search(r"^evaluation: 4 images in [\d.]+ s, the models busy for \d+% of it", first.stdout, re.M)
    rows = _rows(run_dir)
    assert {r["model"] for r in rows} == {"segformer-b0", "segformer-b5"}
    assert {r["condition"] for r in rows} == {"clean", "fog-1"}
    assert (run_dir / "index.html").is_file() and (run_dir / "env.json").is_file()
    if platform.libc_ver()[0] == "glibc":  # the entry point keeps freed memory (bench.run.allocator) and records it
        allocator = json.loads((run_dir / "env.json").read_text())["hardware"]["allocator"]
        assert allocator.startswith("glibc malloc, heap only"), allocator
    before = (run_dir / "results.csv").read_text()

    again = cli(*args, "--resume", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (run_dir / "results.csv").read_text() == before


def test_missing_data_says_where_it_looked(in_process):
    code, stderr = in_process("--suite", "cityscapes", "--models", "segformer-tiny", "--allow-random-weights")
    assert code == 2
    assert "Traceback" not in stderr
    line = stderr.strip()
    assert "\n" not in line
    assert "CITYSCAPES_DATASET" in line and "--data" in line and "--suite demo" in line


def test_an_unusable_cache_says_where_it_is_and_how_to_move_it(in_process, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "a-file"))
    code, stderr = in_process("--suite", "ci", "--models", "segformer-tiny", "--allow-random-weights")
    assert code == 2 and "Traceback" not in stderr
    line = stderr.strip()
    assert "\n" not in line
    assert f"cannot create the folder {tmp_path / 'a-file' / 'synthetic'}" in line
    assert f"SEGBENCH_CACHE={tmp_path / 'a-file'}" in line and "writable folder" in line


def test_random_weights_refused_without_flag(in_process):
    code, stderr = in_process("--suite", "ci", "--models", "segformer-tiny", "--max-images", "1")
    assert code == 2 and "Traceback" not in stderr
    assert "segformer-tiny" in stderr and "random" in stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("--models", "segformer-b9"), "unknown model 'segformer-b9'; closest: "),
        (("--suite", "cityscapes-x"), "unknown suite 'cityscapes-x'; closest: cityscapes"),
        (("--severities", "0,6"), "--severities: '0' is not a severity"),
        (("--corruptions", "rain"), "unknown corruption 'rain'"),
        (("--weights", "/nonexistent/folder"), "--weights folder /nonexistent/folder does not exist"),
        (("report", "/nonexistent/run"), "/nonexistent/run: no results.csv here"),
        (("--workers", "two"), "--workers: 'two' is not a number of processes"),
        (("generate-c", "--out", "x", "--workers", "-1"), "--workers: '-1' is not a number of processes"),
        (("--models", ","), "--models: no model names in ','"),
        (("--device", "tpu"), "--device: 'tpu' is not a device; use cpu, cuda or cuda:N"),
        (("--precision", "fp64"), "--precision: 'fp64' is not a precision; choose one of fp32, fp16, bf16"),
        (("--precision", "fp16"), "--precision: fp16 needs a CUDA device"),
        (("--batch-size", "0"), "--batch-size: must be a positive integer, got 0"),
        (("--batch-size", "two"), "argument --batch-size: invalid int value: 'two'"),
        (("--only", "speed"), "--only: 'speed' unknown"),
        (("--max-images", "0"), "--max-images: must be a positive integer or None, got 0"),
        (("--model-args", "a=1,a=2"), "error: --model-args: a is given twice"),
        (("--reference", "segformer-b5"), "--reference: 'segformer-b5' is not among the models (segformer-b0, "),
        (("--nope",), "unrecognized arguments: --nope"),
        (("list", "everything"), "argument what: invalid choice: 'everything'"),
        (("generate-c",), "the following arguments are required: --out"),
        (("generate-c", "--out", "x", "--nope"), "unrecognized arguments: --nope"),
        (("compare", "--nope"), "the following arguments are required: baseline, candidate"),
        (("compare", "/nonexistent/a", "/nonexistent/b"), "/nonexistent/a: not a run folder, results.csv or baseline"),
    ],
)
def test_user_mistakes_are_one_line(in_process, args, message):
    code, stderr = in_process(*args)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (("--nope",), "unrecognized arguments: --nope"),  # argparse's mistakes
        (("--models", "segformer-b9"), "unknown model 'segformer-b9'; closest: "),  # the run's own
    ],
)
def test_user_mistakes_are_one_line_through_a_fresh_interpreter(tmp_path, args, message):
    out = cli(*args, tmp_path=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_run_folder_in_use_by_another_process_is_one_line(tmp_path):
    from segbench.bench.run.locks import folder_lock

    run_dir = tmp_path / "runs" / "busy"
    args = (
        "--suite",
        "ci",
        "--models",
        "segformer-tiny",
        "--allow-random-weights",
        "--only",
        "accuracy",
        "--max-images",
        "1",
        "--quiet",
        "--out",
        str(run_dir),
    )
    with folder_lock(run_dir, what="run folder"):  # as a first run (or resume) of this folder holds it
        out = cli(*args, tmp_path=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert f"{run_dir}: this run folder is in use by process {os.getpid()} on " in out.stderr
    assert not (run_dir / "run.json").exists()
