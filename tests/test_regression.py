"""Regression tracking: unchanged passes, real drops and slowdowns fail, a uniformly slower machine passes."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from segbench.bench.track import regression
from segbench.bench.track.regression import ResultSet, Tolerances, compare

_SEEDS = itertools.count()


def _speed_rows(model_units: int, calib_units: int, sleep_fraction: float = 0.0, iters: int = 30) -> list[dict]:
    """Calibrated-latency rows of simulated timings, the same on every machine and under any load (no test here times
    real work: a loaded machine made that flaky). Each timed pair meets the machine at one moment: its speed then
    (`load`, varying by 20%) hits the model and the calibration workload alike, plus 2% jitter of each own.
    `sleep_fraction` slows the model alone (an injected slowdown inside the timed function); more `units` of both is
    a uniformly slower machine."""
    rng = np.random.default_rng(next(_SEEDS))
    load = rng.lognormal(0.0, 0.2, iters)
    jitter = rng.lognormal(0.0, 0.02, (2, iters))
    model_ms = model_units * (1.0 + sleep_fraction) * load * jitter[0]
    calib_ms = calib_units * load * jitter[1]
    ratios = (model_ms / calib_ms).tolist()
    base = {
        "model": "m",
        "suite": "ci",
        "condition": "efficiency",
        "resolution": "128x256",
        "batch_size": 1,
        "precision": "fp32",
        "convention": None,
    }
    return [
        {
            **base,
            "metric": regression.SPEED_METRIC,
            "value": sorted(ratios)[len(ratios) // 2],
            "unit": "x calibration",
            "samples": ratios,
        }
    ]


def _accuracy_rows(miou: float = 60.0) -> list[dict]:
    rows = [
        {"model": "m", "suite": "ci", "condition": "clean", "metric": "miou", "value": miou, "unit": "%"},
        {"model": "m", "suite": "ci", "condition": "fog-2", "metric": "miou", "value": miou - 10, "unit": "%"},
        {
            "model": "m",
            "suite": "ci",
            "condition": "efficiency",
            "metric": "params",
            "value": 3.75,
            "unit": "M",
            "convention": None,
        },
        {
            "model": "m",
            "suite": "ci",
            "condition": "efficiency",
            "metric": "gmacs",
            "value": 1.5,
            "unit": "GMAC",
            "resolution": "128x256",
            "convention": "fvcore",
        },
    ]
    return rows


def _set(rows, version="1") -> ResultSet:
    return ResultSet("x", "ci", version, rows)


def test_unchanged_run_passes():
    base = _set(_accuracy_rows() + _speed_rows(6, 6))
    cand = _set(_accuracy_rows() + _speed_rows(6, 6))
    result = compare(base, cand)
    assert result.exit_code == 0, regression.markdown(result, base, cand)
    assert {f.status for f in result.findings} == {"ok"}


def test_one_point_miou_drop_fails_and_rise_is_reported():
    base = _set(_accuracy_rows(60.0))
    result = compare(base, _set(_accuracy_rows(59.0)))
    assert result.exit_code == 1
    assert [f.status for f in result.findings if f.key[2] == "miou"] == ["regressed", "regressed"]
    better = compare(base, _set(_accuracy_rows(61.0)))
    assert better.exit_code == 0 and "improved" in {f.status for f in better.findings}
    within = compare(base, _set(_accuracy_rows(60.05)))
    assert within.exit_code == 0


def test_params_and_flops_are_exact():
    rows = _accuracy_rows()
    more = [dict(r, value=r["value"] + 1e-6) if r["metric"] == "gmacs" else r for r in rows]
    assert compare(_set(rows), _set(more)).exit_code == 1


def test_fifteen_percent_slowdown_fails():
    base = _set(_speed_rows(6, 6))
    cand = _set(_speed_rows(6, 6, sleep_fraction=0.15))
    result = compare(base, cand)
    assert result.exit_code == 1, regression.markdown(result, base, cand)


def test_uniformly_slower_machine_passes():
    base = _set(_speed_rows(6, 6))
    # the whole machine a third slower: the model and the calibration workload take 33% longer alike
    cand = _set(_speed_rows(8, 8))
    raw_ratio = cand.rows[0]["samples"][0] / base.rows[0]["samples"][0]
    result = compare(base, cand)
    assert result.exit_code == 0, (raw_ratio, regression.markdown(result, base, cand))


def _on(rows: list[dict], cpu_model: str, isa: tuple[str, ...] = ("avx2",)) -> ResultSet:
    return ResultSet("x", "ci", "1", rows, {"hardware": {"cpu_model": cpu_model, "cpu_isa": list(isa)}})


def test_a_baseline_from_another_processor_reports_speed_ungated_and_says_so():
    """The calibrated ratio does not carry across CPU models (measured: x1.47 from an AMD EPYC baseline on an Intel
    Xeon, same code): speed is reported, not gated, and the summary says to re-take the baseline; accuracy, params
    and FLOPs stay gated."""
    rows = _accuracy_rows() + _speed_rows(6, 6)
    slower = _accuracy_rows() + _speed_rows(6, 6, sleep_fraction=0.5)
    same = compare(_on(rows, "AMD EPYC 9B14"), _on(slower, "AMD EPYC 9B14"))
    assert same.exit_code == 1 and not same.notes  # the same processor: gated as ever
    other = compare(_on(rows, "AMD EPYC 9B14"), _on(slower, "Intel(R) Xeon(R) Processor"))
    speed = [f for f in other.findings if f.kind == "speed"]
    assert other.exit_code == 0 and [f.status for f in speed] == ["info"]
    assert "another CPU (CPU model: 'AMD EPYC 9B14' vs 'Intel(R) Xeon(R) Processor'), not gated" in speed[0].detail
    text = regression.markdown(other, _on(rows, "a"), _on(slower, "b"))
    assert "- note: speed: baseline timed on another CPU" in text and "--update-baseline" in text
    isa = compare(_on(rows, "Xeon", ("avx2",)), _on(slower, "Xeon", ("avx2", "amx_bf16")))
    assert isa.exit_code == 0 and "(CPU ISA flags: amx_bf16 on one side only)" in isa.notes[0]
    worse = _accuracy_rows(58.0) + _speed_rows(6, 6)
    assert compare(_on(rows, "AMD EPYC 9B14"), _on(worse, "Intel(R) Xeon(R) Processor")).exit_code == 1
    unknown = compare(_on(rows, "AMD EPYC 9B14"), _set(slower))  # a side without provenance: gated as before
    assert unknown.exit_code == 1 and not unknown.notes


def test_comparison_that_cannot_be_made_exits_2():
    base = _set(_accuracy_rows())
    assert compare(base, _set(_accuracy_rows()[1:])).exit_code == 2  # a metric vanished
    assert compare(base, _set(_accuracy_rows(), version="2")).exit_code == 2


def test_baseline_file_round_trip_history_and_markdown(tmp_path):
    rows = _accuracy_rows() + _speed_rows(4, 4, iters=10)
    path = regression.write_baseline(ResultSet("run", "ci", "1", rows, {"git": {"commit": "abc"}}), tmp_path / "b.json")
    loaded = regression.load_results(path)
    assert loaded.suite == "ci" and loaded.rows[-1]["samples"] == rows[-1]["samples"]
    cand = _set(_accuracy_rows(58.0))
    cand.rows += _speed_rows(4, 4, iters=10)
    lines = []
    code = regression.run_compare(path, tmp_path / "b.json", Tolerances(), tmp_path / "h.jsonl", out=lines.append)
    assert code == 0 and "no regression" in lines[0]
    comparison = compare(loaded, cand)
    regression.append_history(tmp_path / "h.jsonl", comparison, cand)
    history = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [h["exit_code"] for h in history] == [0, 1]
    md = regression.markdown(comparison, loaded, cand)
    assert "| regressed | m / clean / miou | 60 | 58 | -2.000 pt | ±0.1 pt |" in md


def test_unreadable_inputs(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(regression.CompareError, match="unreadable baseline"):
        regression.load_results(tmp_path / "bad.json")
    with pytest.raises(regression.CompareError, match="not a run folder"):
        regression.load_results(tmp_path / "nothing.txt")
    assert regression.main([str(tmp_path / "bad.json"), str(tmp_path)]) == 2


def test_compare_two_results_csv_with_speed_cells(tmp_path):
    """`compare A/results.csv B/results.csv` of runs with speed cells: the samples come back as numbers, not text."""
    from segbench.bench.results.io import write_csv

    rows = _accuracy_rows() + _speed_rows(4, 4, iters=10)
    for name in ("a", "b"):
        write_csv(rows, tmp_path / name / "results.csv")
    loaded = regression.load_results(tmp_path / "a" / "results.csv")
    assert loaded.rows[-1]["samples"] == pytest.approx(rows[-1]["samples"], rel=1e-15)
    lines = []
    code = regression.run_compare(
        tmp_path / "a" / "results.csv",
        tmp_path / "b" / "results.csv",
        Tolerances(),
        tmp_path / "h.jsonl",
        out=lines.append,
    )
    assert code == 0 and "no regression" in lines[0]
    assert regression.main([str(tmp_path / "a" / "results.csv"), str(tmp_path / "b" / "results.csv")]) == 0


def test_write_baseline_replaces_only_a_baseline(tmp_path):
    """The Python API refuses as `--update-baseline` does: a results CSV, a run folder or any other file is left as it
    is; a new path is written, and a baseline replaced."""
    from segbench.bench.results.io import write_csv
    from segbench.bench.results.targets import TargetError

    results = _set(_accuracy_rows())
    csv = write_csv(_accuracy_rows(), tmp_path / "run" / "results.csv")
    (tmp_path / "notes.json").write_text('{"format": "mine"}')
    for target in (csv, csv.parent, tmp_path / "notes.json"):
        before = target.read_bytes() if target.is_file() else sorted(target.iterdir())
        with pytest.raises(TargetError, match=f"--update-baseline {target}: this is a .*, not a segbench baseline"):
            regression.write_baseline(results, target)
        assert (target.read_bytes() if target.is_file() else sorted(target.iterdir())) == before
    path = regression.write_baseline(results, tmp_path / "baseline.json")
    assert regression.write_baseline(_set(_accuracy_rows(50.0)), path) == path
    assert regression.load_results(path).rows[0]["value"] == 50.0
