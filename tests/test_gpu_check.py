"""The GPU check's launcher (benchmarks/gpu_check.py) and its reporting (tests/gpu/conftest.py): the CPU rows pass, the
CUDA rows say why they skip, a crashing test is one FAIL row, and a test past its budget fails saying so."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
CONFTEST = ROOT / "tests" / "gpu" / "conftest.py"


def _load_conftest():
    """tests/gpu/conftest.py as a module of its own name, loaded once here: the stand-in runs are in-process, pytester
    drops the modules a run imported when it ends, and torch (which the conftest imports) cannot be imported twice."""
    spec = importlib.util.spec_from_file_location("gpu_check_conftest", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


GPU = _load_conftest()

STAND_INS = """
import time

import pytest


@pytest.mark.gpu(budget_s=10)
def test_fine(rows):
    rows.judged(True, "ok", "1 ms")


@pytest.mark.gpu(budget_s=10)
def test_boom(rows):
    rows.judged(True, "before the crash", "2 ms")
    raise ZeroDivisionError("division by zero\\nsecond line")


@pytest.mark.gpu(budget_s=10)
def test_judged_false(rows):
    rows.judged(False, "too slow", "9 ms", "bound 5 ms")
    rows.skipped("bf16", "not supported")


@pytest.mark.gpu(budget_s=0.2)
def test_slow(rows):
    time.sleep(5)
    rows.judged(True, "never", "")


@pytest.mark.gpu(budget_s=10)
def test_on_the_gpu(cuda, rows):
    rows.judged(True, "never", "")


@pytest.mark.gpu(budget_s=10)
def test_on_the_cpu(cpu_mode, rows):
    rows.judged(cpu_mode.type == "cpu", "cpu", "fine")


def test_unmarked():
    pass
"""


@pytest.fixture
def stand_ins(pytester: pytest.Pytester) -> pytest.Pytester:
    """A folder with the GPU check's conftest and stand-in tests."""
    pytester.makeini("[pytest]\nmarkers =\n    gpu(budget_s): the GPU check\n")
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_stand_ins=STAND_INS)
    return pytester


def _rows(path: Path) -> list[tuple[str, str, str, str]]:
    return [(r["test"], r["name"], r["status"], r["detail"]) for r in json.loads(path.read_text())["rows"]]


def test_each_test_is_its_rows_and_a_crash_a_timeout_or_a_skip_is_one_row(stand_ins):
    out = stand_ins.path / "rows.json"
    args = ["--gpu-device", "cpu", "--gpu-budget-scale", "1", "--gpu-json", str(out), "test_stand_ins.py"]
    result = stand_ins.runpytest(*args)
    result.assert_outcomes(passed=3, failed=3, skipped=1)
    assert _rows(out) == [
        ("fine", "ok", "PASS", ""),
        ("boom", "before the crash", "PASS", ""),
        ("boom", "crashed", "FAIL", "ZeroDivisionError: division by zero"),
        ("judged_false", "too slow", "FAIL", "bound 5 ms"),
        ("judged_false", "bf16", "SKIP", "not supported"),
        ("slow", "timeout", "FAIL", "ran past its budget of 0.2 s (after 0 rows)"),
        ("on_the_gpu", "skipped", "SKIP", "needs CUDA (--gpu-device cpu)"),
        ("on_the_cpu", "cpu", "PASS", ""),
    ]
    result.stdout.fnmatch_lines(
        [
            "*= GPU check =*",
            "test*row*status*figure*s*detail",
            "boom*crashed*FAIL*ZeroDivisionError: division by zero",
            "3 PASS, 3 FAIL, 2 SKIP in * s on cpu",
            "FAILED *test_judged_false - Failed: 1 FAIL row(s)*",
        ]
    )
    payload = json.loads(out.read_text())
    assert payload["device"] == "cpu" and payload["counts"] == {"PASS": 3, "FAIL": 3, "SKIP": 2}


def test_the_sets_time_spent_stops_a_test_and_fails_the_ones_left(stand_ins):
    stand_ins.makepyfile(
        test_the_set="""
import time

import pytest


@pytest.mark.gpu(budget_s=1000)
def test_hangs(rows):
    time.sleep(5)


@pytest.mark.gpu(budget_s=10)
def test_last(rows):
    rows.judged(True, "never", "")
"""
    )
    out = stand_ins.path / "rows.json"
    # x 0.001: test_hangs may take 1 s, but the set only 0.285 s; test_last gets nothing
    args = ["--gpu-device", "cpu", "--gpu-budget-scale", "0.001", "--gpu-json", str(out), "test_the_set.py"]
    result = stand_ins.runpytest(*args)
    result.assert_outcomes(failed=2)
    rows = _rows(out)
    total = f"the set's {GPU.TOTAL_BUDGET_S * 0.001:.3g} s"
    assert [row[:3] for row in rows] == [("hangs", "timeout", "FAIL"), ("last", "not run", "FAIL")]
    assert rows[0][3].startswith("ran past the 0.2") and rows[0][3].endswith(f"s left of {total} (after 0 rows)")
    assert rows[1][3] == f"{total} were spent before this test"


def test_a_gpu_test_needs_a_budget(stand_ins):
    stand_ins.makepyfile(test_no_budget="import pytest\n\n@pytest.mark.gpu\ndef test_x(rows):\n    pass\n")
    result = stand_ins.runpytest("--gpu-device", "cpu", "test_no_budget.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_x: a gpu test needs a time budget*"])


def test_launcher_runs_pytest_with_the_device_and_returns_its_code(monkeypatch, capsys, tmp_path):
    commands = []

    def fake_run(command, cwd):
        commands.append((command, cwd))
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(gpu_check.subprocess, "run", fake_run)
    code = gpu_check.main(["--device", "cpu", "--json", str(tmp_path / "x.json"), "-k", "clock", "--budget-scale", "2"])
    assert code == 1
    assert commands == [
        (
            [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                "gpu",
                "tests/gpu",
                "--gpu-device",
                "cpu",
                "--gpu-json",
                str(tmp_path / "x.json"),
                "--gpu-budget-scale",
                "2.0",
                "-k",
                "clock",
            ],
            ROOT,
        )
    ]
    out = capsys.readouterr().out
    assert out.startswith(gpu_check.CARRY) and "-m pytest -m gpu tests/gpu --gpu-device cpu" in out


def test_launcher_without_a_gpu_for_cuda_returns_2(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check.subprocess, "run", lambda *a, **k: pytest.fail("pytest started without a GPU"))
    assert gpu_check.main(["--device", "cuda:1"]) == 2
    assert "--device cuda:1, but torch" in capsys.readouterr().err


@pytest.mark.slow
def test_launcher_cpu_run_passes_the_cpu_rows_and_the_cuda_rows_say_why_they_skip(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--json", str(out), "-k", "environment"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith(gpu_check.CARRY)  # the carry note, printed first
    rows = {(r["test"], r["name"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows[("environment", "torch")]["status"] == "PASS"
    assert rows[("environment", "packages runs import")]["status"] == "PASS"
    assert rows[("gpu_environment", "skipped")]["detail"] == "needs CUDA (--gpu-device cpu)"
    for test, name in rows:
        assert f"{test}  " in proc.stdout and name in proc.stdout  # each row is in the table
