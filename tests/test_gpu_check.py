"""benchmarks/gpu_check.py: the CPU rows pass, the GPU rows say "needs CUDA", and a crashing check is one FAIL row."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.slow
def test_cpu_run_passes_its_rows_and_skips_the_gpu_ones(gpu_check, tmp_path):
    out = tmp_path / "rows.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--json", str(out), "--budget-scale", "4"],
        cwd=SCRIPT.parents[1],  # a loaded CI box: --budget-scale 4
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - start
    print(proc.stdout[-6000:], f"\nwall {wall:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pip download --no-deps" in proc.stdout  # the carry note, printed first
    header = next(line for line in proc.stdout.splitlines() if line.startswith("check "))
    assert header.split()[:5] == ["check", "row", "status", "figure", "s"]
    rows = json.loads(out.read_text())["rows"]
    by_check: dict[str, list[dict]] = {}
    for row in rows:
        by_check.setdefault(row["check"], []).append(row)
        assert row["status"] in ("PASS", "SKIP"), row
        if row["status"] == "SKIP":
            assert row["detail"] == "needs CUDA", row
        assert f"{row['check']}  " in proc.stdout and row["name"] in proc.stdout  # each row is in the table
    assert list(by_check) == [c.name for c in gpu_check.CHECKS]
    for check in gpu_check.CHECKS:
        statuses = {r["status"] for r in by_check[check.name]}
        if check.cuda_only:
            assert statuses == {"SKIP"}, check.name
        else:  # a CPU-meaningful check passes its CPU rows and skips only its GPU parts
            assert "PASS" in statuses, check.name
    skipped = {(r["check"], r["name"]) for r in rows if r["status"] == "SKIP"}
    assert {("clock", "perf_counter control"), ("faults", "out-of-memory model"), ("numerics", "numerics")} <= skipped
    passed = {(r["check"], r["name"]) for r in rows if r["status"] == "PASS"}
    assert {
        ("faults", "NaN model"),
        ("nccl", "gloo all_reduce int64 + float64"),
        ("confusion", "device = CPU kernel (uint8)"),
    } <= passed


def test_a_crashing_check_is_one_fail_row_and_the_others_still_run(gpu_check, tmp_path, capsys):
    def fine(ctx):
        yield gpu_check.Row("ok", "PASS", "1 ms")

    def crashes(ctx):
        yield gpu_check.Row("before the crash", "PASS", "2 ms")
        raise ZeroDivisionError("division by zero\nsecond line")

    def slow(ctx):
        time.sleep(5)
        yield gpu_check.Row("never", "PASS")

    checks = (
        gpu_check.Check("first", fine, 10),
        gpu_check.Check("boom", crashes, 10),
        gpu_check.Check("slow", slow, 0.2),
        gpu_check.Check("gpu", fine, 10, cuda_only=True),
        gpu_check.Check("last", fine, 10),
    )
    out = tmp_path / "rows.json"
    code = gpu_check.main(["--device", "cpu", "--json", str(out)], checks=checks)
    assert code == 1
    rows = [(r["check"], r["name"], r["status"], r["detail"]) for r in json.loads(out.read_text())["rows"]]
    assert rows == [
        ("first", "ok", "PASS", ""),
        ("boom", "before the crash", "PASS", ""),
        ("boom", "crashed", "FAIL", "ZeroDivisionError: division by zero"),
        ("slow", "timeout", "FAIL", "ran past its budget of 0.2 s (after 0 rows)"),
        ("gpu", "gpu", "SKIP", "needs CUDA"),
        ("last", "ok", "PASS", ""),
    ]
    table = capsys.readouterr().out
    assert "boom   crashed" in table and "3 PASS, 2 FAIL, 1 SKIP" in table

    assert gpu_check.main(["--device", "cpu", "--only", "first,gpu"], checks=checks) == 0
    with pytest.raises(SystemExit):
        gpu_check.main(["--device", "cpu", "--only", "nope"], checks=checks)


def test_sync_watch_keeps_syncs_after_a_first_call_and_passes_other_warnings_on(gpu_check, monkeypatch):
    """The accuracy check's host-sync finder, with CUDA's debug-mode switch stood in for."""
    modes = []
    monkeypatch.setattr(gpu_check.torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(gpu_check.torch.cuda, "set_sync_debug_mode", modes.append)

    calls = []

    def step(model: object) -> int:  # a function of the per-batch loop, as `accuracy.predict` is
        calls.append(len(calls) + 1)
        warnings.warn("a model's own warning", stacklevel=1)
        if len(calls) in (1, 3, 4):  # set-up syncs in each cell's first batch, and one in a later batch
            warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
        return len(calls)

    loop = types.SimpleNamespace(step=step)
    with warnings.catch_warnings(record=True) as passed_on:
        warnings.simplefilter("always")
        with gpu_check.SyncWatch([(loop, "step"), (loop, "absent")]) as watch:
            first, second = object(), object()  # two cells' models
            assert [loop.step(first) for _ in range(3)] == [1, 2, 3]
            assert loop.step(second) == 4  # a second cell's first batch
    assert loop.step is step  # put back
    assert watch.watched == ["SimpleNamespace.step"] and sorted(watch.calls.values()) == [1, 3]
    assert [call for _, call, where in watch.syncs] == [1, 3, 1]
    assert {where for _, _, where in watch.syncs} == {f"test_gpu_check.py:{step.__code__.co_firstlineno + 4}"}
    assert [call for _, call, _ in watch.after_first_call()] == [3]
    assert [str(w.message) for w in passed_on] == ["a model's own warning"] * 4
    assert modes == ["warn", 0] * 4
