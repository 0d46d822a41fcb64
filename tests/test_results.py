"""The results contract (bench/results.py): torch-free, one reader and writer of run folders, one set of formulas."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pandas as pd
import pytest

from segbench.bench.results.axes import CATEGORIES, CORRUPTIONS, Condition, split_condition
from segbench.bench.results.classes import CITYSCAPES, ClassTable, class_table
from segbench.bench.results.io import read_rows, write_csv
from segbench.bench.results.schema import (
    CE,
    COLUMNS,
    E2E_METRICS,
    ECE,
    MCE,
    MCE_CORRUPTIONS,
    METRICS,
    MIOU,
    REL_MCE,
    SPEEDUP,
    SUMMARY_METRICS,
    Row,
    class_metric_name,
    lower_is_better,
    make_row,
    time_metric_name,
)
from segbench.bench.results.store import RunFolder, RunStore, read_run
from segbench.bench.results.summaries import default_reference, summary_rows
from segbench.reports.console import console_table, results_table


def _rows(model: str, clean: float, drop: float, corruptions=("fog", "snow"), severities=(1, 2)) -> list[dict]:
    base = {"model": model, "suite": "t", "metric": "miou", "unit": "%"}
    rows = [{**base, "condition": "clean", "corruption": None, "category": "clean", "severity": 0, "value": clean}]
    for c in corruptions:
        for s in severities:
            rows.append(
                {
                    **base,
                    "condition": f"{c}-{s}",
                    "corruption": c,
                    "category": "weather",
                    "severity": s,
                    "value": clean - drop * s,
                }
            )
    return rows


def test_the_contract_and_the_report_import_no_torch():
    """The import graph: the report and the regression check depend on the results contract only (and no torch)."""
    code = (
        "import sys; import segbench.reports, segbench.reports.console, segbench.bench.track.regression; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))); "
        "print(sorted(m for m in sys.modules if m.startswith('segbench.bench.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    torch_modules, bench_modules = out.stdout.strip().splitlines()
    assert torch_modules == "[]"
    loaded = ast.literal_eval(bench_modules)  # the stages' packages themselves are empty namespaces of modules
    assert [m for m in loaded if m.count(".") > 2 and not m.startswith("segbench.bench.results.")] == [
        "segbench.bench.measure.robustness",
        "segbench.bench.track.regression",
    ]


def test_axes_are_defined_once():
    assert len(CORRUPTIONS) == 16 and set(CORRUPTIONS) == {c for names in CATEGORIES.values() for c in names}
    from segbench.bench.data import corruptions
    from segbench.reports import tables

    assert tables.CATEGORIES is CATEGORIES and not hasattr(tables, "CORRUPTION_GROUPS")
    assert not hasattr(corruptions, "CATEGORIES")  # the corruptions module imports what it needs, no second copy


def test_palette_matches_the_official_label_table():
    from cityscapesscripts.helpers.labels import labels

    official = {label.trainId: (label.name, tuple(label.color)) for label in labels if 0 <= label.trainId < 255}
    assert [official[i][0] for i in range(19)] == list(CITYSCAPES.names)
    assert [official[i][1] for i in range(19)] == list(CITYSCAPES.palette)
    assert CITYSCAPES.ignore_index == 255 and CITYSCAPES.num_classes == 19


def test_a_class_table_is_a_value_run_json_can_hold():
    assert ClassTable.from_dict(json.loads(json.dumps(CITYSCAPES.to_dict()))) == CITYSCAPES
    assert class_table(19) is CITYSCAPES and CITYSCAPES.is_named
    other = class_table(3)
    assert other.names == ("class0", "class1", "class2") and other.palette == () and not other.is_named
    assert ClassTable.from_dict(other.to_dict()) == other
    with pytest.raises(ValueError, match="2 colours for 3 classes"):
        ClassTable("voc", ("a", "b", "c"), ((0, 0, 0), (1, 1, 1)))


def test_a_run_folder_written_before_class_tables_reads_with_cityscapes_table(tmp_path):
    """run.json without `classes` (runs made before it was recorded): 19 classes are Cityscapes', others the
    placeholder names the run scored with; a recorded table wins."""
    write_csv(_rows("a", 60.0, 5.0), tmp_path / "results.csv")
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "old", "suite": "t", "num_classes": 19}))
    assert read_run(tmp_path).classes == CITYSCAPES
    assert read_run(tmp_path).frame()["value"].iloc[0] == 60.0  # the rest of the folder reads as before
    (tmp_path / "run.json").write_text(json.dumps({"num_classes": 4}))
    assert RunFolder(tmp_path).classes == class_table(4)
    voc = ClassTable("voc", ("background", "aeroplane"), ((0, 0, 0), (128, 0, 0)), 255)
    (tmp_path / "run.json").write_text(json.dumps({"num_classes": 2, "classes": voc.to_dict()}))
    assert RunFolder(tmp_path).classes == voc
    (tmp_path / "run.json").unlink()
    assert RunFolder(tmp_path).classes is None


def test_metric_names_units_and_directions_are_defined_once():
    assert set(SUMMARY_METRICS) | set(E2E_METRICS) <= set(METRICS)
    where = {"model": "m", "suite": "s", "condition": "c"}
    assert make_row(MCE_CORRUPTIONS, 16, **where)["unit"] == "count"
    assert make_row(class_metric_name("traffic light"), 1, **where)["unit"] == "%"
    assert make_row(time_metric_name("total"), 1, **where)["unit"] == "s"
    assert [name for name in METRICS if lower_is_better(name) and METRICS[name].unit == "%"] == [ECE, CE, MCE, REL_MCE]
    assert not lower_is_better(MIOU) and not lower_is_better("iou_road") and not lower_is_better("made_up")
    with pytest.raises(ValueError, match="unknown metric 'made_up'"):
        make_row("made_up", 1.0, **where)


def test_a_row_is_the_ten_columns_then_its_keys_in_order():
    row = make_row(MIOU, 61, model="m", suite="s", condition="fog-2", corruption="fog", severity=2, resolution="8x8")
    assert list(row) == [*COLUMNS, "resolution"]
    assert row == {
        "model": "m",
        "suite": "s",
        "dataset": None,
        "condition": "fog-2",
        "corruption": "fog",
        "category": None,
        "severity": 2,
        "metric": "miou",
        "value": 61.0,
        "unit": "%",
        "resolution": "8x8",
    }
    assert isinstance(row["value"], float)
    assert Row(model="m", suite="s", condition="c", metric=MIOU, value=1.0, unit="%").to_dict() == {
        **dict.fromkeys(COLUMNS),
        "model": "m",
        "suite": "s",
        "condition": "c",
        "metric": MIOU,
        "value": 1.0,
        "unit": "%",
    }
    with pytest.raises(ValueError, match="result columns"):
        Row(model="m", suite="s", condition="c", metric=MIOU, value=1.0, unit="%", extra={"severity": 1})


def test_condition_parsing():
    assert split_condition("gaussian_noise-3") == ("gaussian_noise", 3)
    assert split_condition("clean") == (None, None) and split_condition("efficiency") == (None, None)
    assert Condition.parse("fog-2") == Condition("fog", 2) and Condition.parse(" clean ") == Condition()
    with pytest.raises(ValueError, match="cannot parse condition 'fog'"):
        Condition.parse("fog")
    with pytest.raises(ValueError, match="unknown corruption 'mist'"):
        Condition.parse("mist-2")


def test_list_columns_round_trip_through_csv(tmp_path):
    rows = [
        {
            "model": "m",
            "suite": "t",
            "condition": "efficiency",
            "metric": "latency_calibrated",
            "value": 2.0,
            "unit": "x calibration",
            "samples": [1.5, 2.0, 2.5],
        }
    ]
    write_csv(rows, tmp_path / "results.csv")
    back = read_rows(tmp_path).to_dict("records")
    assert back[0]["samples"] == [1.5, 2.0, 2.5] and back[0]["value"] == 2.0


def test_read_rows_refuses_other_files(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="x.csv: not a segbench results CSV"):
        read_rows(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="no results file"):
        read_rows(tmp_path / "missing")


def test_default_reference_is_the_first_corrupted_model():
    rows = _rows("clean-only", 70, 0, corruptions=()) + _rows("a", 60, 5) + _rows("b", 50, 3)
    assert default_reference(rows) == "a"
    assert default_reference(rows, "b") == "b"
    with pytest.raises(ValueError, match="reference model 'nope' has no mIoU rows"):
        default_reference(rows, "nope")
    assert default_reference(_rows("a", 60, 0, corruptions=())) is None


def test_summary_holds_the_reference_and_the_shared_severities():
    rows = _rows("a", 60, 5) + _rows("b", 50, 3, severities=(1, 2, 3))
    summary = pd.DataFrame(summary_rows(rows, "t", reference_model="a"))
    overall = summary[summary["condition"] == "corrupted"].pivot(index="model", columns="metric", values="value")
    assert overall.loc["a", "mCE"] == pytest.approx(100.0) and overall.loc["a", "rel_mCE"] == pytest.approx(100.0)
    # b's CE uses the severities both measured (1, 2): errors (53 + 56) / (45 + 50)
    assert overall.loc["b", "mCE"] == pytest.approx(100 * (53 + 56) / (45 + 50))
    assert overall.loc["b", "mCE_corruptions"] == 2
    # b's mPC averages its own three severities
    assert overall.loc["b", "mPC"] == pytest.approx(50 - 3 * 2)
    assert set(summary.loc[summary["metric"].isin(["CE", "mCE", "rel_mCE"]), "reference"]) == {"a"}
    assert summary.loc[summary["metric"] == "mPC", "reference"].isna().all()


def test_speed_up_is_written_per_timing_setting_for_agreeing_variants_only():
    def latency(model, value, resolution="512x1024", batch_size=1):
        return {
            "model": model,
            "suite": "t",
            "condition": "efficiency",
            "metric": "latency_median",
            "value": value,
            "unit": "ms",
            "resolution": resolution,
            "batch_size": batch_size,
            "device": "cpu",
        }

    def deploy(model, **keys):
        return {"model": model, "suite": "t", "condition": "deploy", "metric": "agrees", "unit": "flag", **keys}

    rows = [
        latency("m@eager-fp32", 40.0),
        latency("m@eager-fp32", 70.0, batch_size=2),
        deploy("m@eager-fp32", value=1.0, status="agrees"),
        latency("m@onnxruntime-fp32", 10.0, batch_size=1.0),
        latency("m@onnxruntime-fp32", 20.0, batch_size=2),
        latency("m@onnxruntime-fp32", 5.0, resolution="256x512"),
        deploy("m@onnxruntime-fp32", value=1.0),
        latency("m@onnxruntime-int8", 5.0),
        deploy("m@onnxruntime-int8", value=0.0, status="disagrees"),
        latency("m@compile-fp32", 20.0),  # no deploy cell: unchecked
        latency("m", 10.0),  # a plain model: no variant, no speed-up
    ]
    speedups = [r for r in summary_rows(rows, "t") if r["metric"] == SPEEDUP]
    got = {(r["model"], r["resolution"], r["batch_size"]): r["value"] for r in speedups}
    assert got == pytest.approx(
        {
            ("m@eager-fp32", "512x1024", 1): 1.0,
            ("m@eager-fp32", "512x1024", 2): 1.0,
            ("m@onnxruntime-fp32", "512x1024", 1.0): 4.0,
            ("m@onnxruntime-fp32", "512x1024", 2): 3.5,
        }
    )  # 256x512: eager fp32 was not timed there; the flag of a deploy row without a status says onnxruntime agrees
    assert {r["unit"] for r in speedups} == {"x"} and {r["compared_with"] for r in speedups} == {"m@eager-fp32"}


def test_run_folder_rewrites_summary_for_another_reference(tmp_path):
    store = RunStore(tmp_path)
    rows = _rows("a", 60, 5) + _rows("b", 50, 3)
    for model in ("a", "b"):
        store.write_cell({"cell": f"{model}|all", "rows": [r for r in rows if r["model"] == model]})
    store.gather(order=["a|all", "b|all"], suite="t")
    folder = RunFolder(tmp_path)
    assert set(folder.summary()["reference"].dropna()) == {"a"}
    assert set(folder.summary("b")["reference"].dropna()) == {"b"}
    assert set(pd.read_csv(tmp_path / "summary.csv")["reference"].dropna()) == {"b"}  # the file follows


def test_run_folder_reports_unreadable_cells(tmp_path):
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "bad.json").write_text("{")
    (tmp_path / "cells" / "list.json").write_text(json.dumps([1]))
    folder = RunFolder(tmp_path)
    assert folder.cells() == [] and len(folder.problems) == 2
    with pytest.raises(FileNotFoundError, match="neither results.csv nor cells"):
        folder.rows()
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        RunFolder(tmp_path / "nope")


def test_console_table(tmp_path):
    store = RunStore(tmp_path)
    rows = _rows("a", 60, 5) + _rows("b", 50, 3)
    eff = {"suite": "t", "condition": "efficiency", "corruption": None, "category": None, "severity": None}
    for model, ms in (("a", 12.5), ("b", 30.0)):
        rows += [
            {**eff, "model": model, "metric": "params", "value": 3.7, "unit": "M"},
            {
                **eff,
                "model": model,
                "metric": "gmacs",
                "value": 8.0,
                "unit": "GMAC",
                "resolution": "512x1024",
                "batch_size": 1,
                "convention": "fvcore",
            },
            {
                **eff,
                "model": model,
                "metric": "latency_median",
                "value": ms,
                "unit": "ms",
                "resolution": "512x1024",
                "batch_size": 1,
                "precision": "fp32",
                "device": "cpu",
            },
        ]
    store.write_cell({"cell": "all", "rows": rows})
    store.gather(suite="t")
    table = results_table(tmp_path)
    assert table.loc["a", "Clean mIoU"] == 60 and table.loc["b", "mCE (%, vs a)"] == pytest.approx(
        pd.read_csv(tmp_path / "summary.csv").query("model == 'b' and metric == 'mCE'")["value"].item()
    )
    assert table.loc["b", "Latency ms [cpu, fp32, 512x1024, batch 1]"] == 30.0
    text = console_table(tmp_path)
    assert "GMACs [fvcore, 512x1024]" in text and text.count("\n") == 3
    assert "ACDC mIoU" not in table.columns


def test_console_table_shows_each_real_world_dataset_mean(tmp_path):
    store = RunStore(tmp_path)
    real = {"suite": "t", "corruption": None, "category": "real-world", "severity": None, "metric": "miou", "unit": "%"}
    rows = _rows("a", 60, 5)
    rows += [{**real, "model": "a", "condition": c, "value": v} for c, v in (("acdc:fog", 40), ("acdc:night", 20))]
    store.write_cell({"cell": "all", "rows": rows})
    store.gather(suite="t")
    table = results_table(tmp_path)
    assert table.loc["a", "ACDC mIoU"] == pytest.approx(30) and "Dark Zurich mIoU" not in table.columns


def test_resume_refuses_a_different_setting_in_one_line(tmp_path):
    from segbench.bench.results.store import RunMismatchError, check_resume

    old = {"suite": "t", "settings": {"fast": False, "precision": "fp32", "conditions": ["clean", "fog-1"]}}
    check_resume(old, old, tmp_path)
    new = {"suite": "t", "settings": {"fast": True, "precision": "fp32", "conditions": ["clean", "fog-1"]}}
    with pytest.raises(RunMismatchError, match=r"^cannot resume .*: fast was False, now True\. Start a new run") as e:
        check_resume(old, new, tmp_path)
    assert "\n" not in str(e.value)
    check_resume({"suite": "t"}, new, tmp_path)  # a run folder from before settings were recorded


def test_console_table_keeps_small_numbers_readable(tmp_path):
    store = RunStore(tmp_path)
    eff = {"suite": "t", "condition": "efficiency", "corruption": None, "category": None, "severity": None}
    rows = _rows("a", 60, 5) + [{**eff, "model": "a", "metric": "params", "value": 0.00071, "unit": "M"}]
    store.write_cell({"cell": "all", "rows": rows})
    store.gather(suite="t")
    assert "0.00071" in console_table(tmp_path) and "60.00" in console_table(tmp_path)
