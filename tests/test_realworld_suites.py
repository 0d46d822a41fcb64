"""Real-world suites end to end: the contract's conditions and scores, `--data name=path,...`, the acdc /
dark-zurich / foggy-cityscapes / robustness suites through the runner (resume, torchrun, regression check, every kind
of model source), and the invalid-region masks in the confusion matrix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from segbench import suites
from segbench.bench.api import run_suite
from segbench.bench.data import realworld
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.axes import Condition, real_conditions
from segbench.bench.results.schema import TIMING_UNITS
from segbench.bench.results.store import RunFolder, RunStore
from segbench.bench.results.summaries import prediction_table, summary_rows
from segbench.bench.run.config import ConfigError, RunConfig, parse_data
from segbench.bench.run.plan import select_conditions
from segbench.bench.run.runner import run
from segbench.bench.track import regression
from segbench.cli import main as cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("realworld")
    cityscapes = write_synthetic_cityscapes(base / "cityscapes", num_images=2, size=(64, 128), split="val", seed=3)
    realworld.write_synthetic_foggy_cityscapes(cityscapes)
    acdc = realworld.write_synthetic_acdc(base / "acdc", images_per_condition=2, size=(54, 96))
    dz = realworld.write_synthetic_dark_zurich(base / "dz", num_images=2, size=(54, 96))
    return {"cityscapes": cityscapes, "acdc": acdc, "dark_zurich": dz}


def _config(tmp_path: Path, **kw) -> RunConfig:
    base = dict(models=("segformer-tiny",), allow_random_weights=True, quiet=True, out_dir=str(tmp_path / "runs"))
    return RunConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------------------------- the contract


def test_condition_names_round_trip_and_bad_names_are_one_line():
    for condition in real_conditions():
        assert Condition.parse(condition.name) == condition
        assert condition.is_real and not condition.is_clean and condition.category == "real-world"
    assert Condition.parse("Dark-Zurich:night").name == "dark_zurich:night"
    assert Condition.parse("foggy_cityscapes:0.01").name == "foggy_cityscapes:beta_0.01"
    with pytest.raises(ValueError, match="ACDC has no condition 'sun'; valid: fog, night, rain, snow"):
        Condition.parse("acdc:sun")
    with pytest.raises(ValueError, match="unknown real-world dataset 'mars'"):
        Condition.parse("mars:fog")
    with pytest.raises(ValueError, match="unknown real-world dataset 'foggy'"):
        real_conditions(("acdc", "foggy"))


def _rows(values: dict[str, dict[str, float]]) -> list[dict]:
    rows = []
    for model, by_condition in values.items():
        for name, value in by_condition.items():
            c = Condition.parse(name)
            rows.append(
                dict(
                    model=model,
                    suite="s",
                    condition=c.name,
                    corruption=c.corruption,
                    category=c.category,
                    severity=c.severity,
                    metric="miou",
                    value=value,
                    unit="%",
                )
            )
    return rows


TABLE = {  # hand-made: five models, fog at two severities, ACDC fog and night, Foggy Cityscapes at two densities
    "a": {"clean": 80, "fog-1": 70, "fog-3": 60, "acdc:fog": 50, "acdc:night": 20, "foggy_cityscapes:beta_0.01": 66,
          "foggy_cityscapes:beta_0.02": 58},
    "b": {"clean": 75, "fog-1": 68, "fog-3": 50, "acdc:fog": 52, "acdc:night": 25, "foggy_cityscapes:beta_0.01": 60,
          "foggy_cityscapes:beta_0.02": 50},
    "c": {"clean": 70, "fog-1": 50, "fog-3": 40, "acdc:fog": 30, "acdc:night": 10, "foggy_cityscapes:beta_0.01": 50,
          "foggy_cityscapes:beta_0.02": 41},
    "d": {"clean": 60, "fog-1": 55, "fog-3": 45, "acdc:fog": 45, "acdc:night": 15, "foggy_cityscapes:beta_0.01": 49,
          "foggy_cityscapes:beta_0.02": 40},
    "e": {"clean": 65, "fog-1": 50, "fog-3": 46, "acdc:fog": 30, "acdc:night": 18, "foggy_cityscapes:beta_0.01": 55,
          "foggy_cityscapes:beta_0.02": 45},
}  # fmt: skip


def test_correlations_equal_scipys_on_a_hand_made_table():
    pairs = {p["real"]: p for p in prediction_table(_rows(TABLE))}
    assert set(pairs) == {"foggy_cityscapes", "acdc:fog", "acdc"}  # fog -> both, and mPC -> the ACDC mean
    fog = pairs["acdc:fog"]
    x = [(TABLE[m]["fog-1"] + TABLE[m]["fog-3"]) / 2 for m in TABLE]
    y = [TABLE[m]["acdc:fog"] for m in TABLE]
    assert fog["models"] == list(TABLE) and fog["x"] == pytest.approx(x) and fog["y"] == pytest.approx(y)
    assert fog["n"] == 5
    assert fog["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert fog["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)  # y has a tie: 30, 30
    rel_x = [v / TABLE[m]["clean"] for v, m in zip(x, TABLE)]
    rel_y = [v / TABLE[m]["clean"] for v, m in zip(y, TABLE)]
    assert fog["pearson_rel"] == pytest.approx(stats.pearsonr(rel_x, rel_y).statistic, abs=1e-12)
    assert fog["spearman_rel"] == pytest.approx(stats.spearmanr(rel_x, rel_y).statistic, abs=1e-12)
    foggy = [(TABLE[m]["foggy_cityscapes:beta_0.01"] + TABLE[m]["foggy_cityscapes:beta_0.02"]) / 2 for m in TABLE]
    assert pairs["foggy_cityscapes"]["y"] == pytest.approx(foggy)
    acdc_mean = [(TABLE[m]["acdc:fog"] + TABLE[m]["acdc:night"]) / 2 for m in TABLE]
    assert pairs["acdc"]["y"] == pytest.approx(acdc_mean) and pairs["acdc"]["synthetic"] == ("mPC",)


def test_below_three_models_no_correlation_is_read():
    two = prediction_table(_rows({m: TABLE[m] for m in ("a", "b")}))
    assert two and all(p["n"] == 2 and p["pearson"] is None and p["spearman"] is None for p in two)


def test_summary_holds_each_drop_and_each_dataset_mean():
    summary = pd.DataFrame(summary_rows(_rows(TABLE), "s"))
    real = summary[summary["category"] == "real-world"].set_index(["model", "condition", "metric"])["value"]
    assert real["a", "acdc:night", "drop"] == pytest.approx(60)
    assert real["a", "acdc", "miou_avg"] == pytest.approx(35) and real["a", "acdc", "drop"] == pytest.approx(45)
    assert real["c", "foggy_cityscapes", "miou_avg"] == pytest.approx(45.5)
    assert set(summary.loc[summary["metric"] == "drop", "unit"]) == {"pp"}
    # real-world conditions are not corruptions: mPC is fog's average alone
    mpc = summary.query("model == 'a' and metric == 'mPC'")["value"].item()
    assert mpc == pytest.approx(65)


# ----------------------------------------------------------------------------------------------------------- --data


def test_data_flag_takes_a_path_or_named_roots():
    assert parse_data("/data/cs") == ("/data/cs", {})
    named = ("/a", {"cityscapes": "/a", "acdc": "/b", "dark_zurich": "/c"})
    assert parse_data("cityscapes=/a,acdc=/b,dark-zurich=/c") == named
    assert parse_data(None, {"Foggy-Cityscapes": "/f"}) == (None, {"foggy_cityscapes": "/f"})
    assert parse_data("/x/a=b,c") == ("/x/a=b,c", {})  # a path with '=' after its first '/' stays a path
    with pytest.raises(ConfigError, match="unknown dataset 'acd'; did you mean acdc. name one of cityscapes, .*, acdc"):
        RunConfig(data_root="acd=/x")
    with pytest.raises(ConfigError, match="'acdc=' has no path; write acdc=PATH"):
        RunConfig(data_root="acdc=")
    assert RunConfig(data_root="/cs").root_of("foggy_cityscapes") == "/cs"
    assert RunConfig(data_root="/cs", data_roots={"foggy_cityscapes": "/f"}).root_of("foggy_cityscapes") == "/f"


def test_suites_declare_their_datasets():
    assert suites.get_suite("acdc").datasets == ("cityscapes", "acdc")
    assert suites.get_suite("dark-zurich").datasets == ("dark_zurich",)
    assert suites.get_suite("foggy-cityscapes").datasets == ("cityscapes", "foggy_cityscapes")
    robustness = suites.get_suite("robustness")
    assert robustness.datasets == ("cityscapes", "acdc", "foggy_cityscapes")
    assert set(suites.get_suite("cityscapes-c").conditions) < set(robustness.conditions)
    narrowed = select_conditions(robustness, corruptions=("fog",), severities=(1,))
    assert [c.name for c in narrowed] == [
        "clean",
        "fog-1",
        *(c.name for c in real_conditions(("acdc", "foggy_cityscapes"))),
    ]


# ------------------------------------------------------------------------------------------------- through the runner


def test_acdc_suite_end_to_end_resume_and_regression(roots, tmp_path):
    data = f"cityscapes={roots['cityscapes']},acdc={roots['acdc']}"
    result = run_suite(suites.get_suite("acdc"), _config(tmp_path, data_root=data, run_id="a"))
    frame = RunFolder(result.run_dir).frame()
    miou = frame[frame["metric"] == "miou"].set_index("condition")["value"]
    assert list(miou.index) == ["clean", "acdc:fog", "acdc:night", "acdc:rain", "acdc:snow"]
    images = frame[frame["metric"] == "num_images"].set_index("condition")["value"]
    assert images["acdc:fog"] == 2 and images["clean"] == 2
    summary = RunFolder(result.run_dir).summary().set_index(["condition", "metric"])["value"]
    assert summary["acdc:rain", "drop"] == pytest.approx(miou["clean"] - miou["acdc:rain"])
    assert summary["acdc", "miou_avg"] == pytest.approx(miou.drop("clean").mean())
    assert json.loads((result.run_dir / "run.json").read_text())["suite"] == "acdc"

    again = run_suite(suites.get_suite("acdc"), _config(tmp_path, data_root=data, run_id="a", resume=True))
    assert again.computed == [] and len(again.skipped) == 5

    baseline = regression.load_results(result.run_dir)
    assert regression.compare(baseline, baseline).exit_code == 0
    copy = tmp_path / "better"  # a baseline 2 points better on ACDC night: the run regressed there
    shutil.copytree(result.run_dir, copy)
    cell = RunStore(copy).cell_path("segformer-tiny__acdc:night")
    record = json.loads(cell.read_text())
    record["rows"] = [dict(r, value=r["value"] + 2.0) if r["metric"] == "miou" else r for r in record["rows"]]
    cell.write_text(json.dumps(record))
    RunStore(copy).gather(suite="acdc")
    worse = regression.compare(regression.load_results(copy), baseline)
    assert worse.exit_code == 1
    regressed = [f.key for f in worse.findings if f.status == "regressed"]
    assert sorted(key[1:3] for key in regressed) == [("acdc", "miou_avg"), ("acdc:night", "miou")]  # and its mean


def test_dark_zurich_takes_a_bare_path_and_any_model_source(roots, tmp_path):
    class Tiny(nn.Module):
        segbench_meta = {"mean": [0.5] * 3, "std": [0.25] * 3, "trained": False}

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 19, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    model_file = tmp_path / "my_model.py"
    model_file.write_text(
        "from torch import nn\nsegbench_meta = {'mean': [0.5] * 3, 'std': [0.25] * 3}\n"
        "def build(num_classes):\n    return nn.Conv2d(3, num_classes, 3, padding=1)\n"
    )
    config = _config(
        tmp_path, models=f"segformer-tiny,mine=py:{model_file}:build", data_root=str(roots["dark_zurich"]), run_id="dz"
    )
    result = run_suite(suites.get_suite("dark-zurich"), config, modules={"tiny": Tiny()})
    frame = RunFolder(result.run_dir).frame()
    measured = frame[frame["metric"] == "miou"][["model", "condition"]].drop_duplicates()
    assert sorted(measured["model"]) == ["mine", "segformer-tiny", "tiny"]
    assert set(measured["condition"]) == {"dark_zurich:night"}


def test_invalid_region_mask_removes_exactly_its_pixels_from_the_confusion_matrix(roots, tmp_path):
    """The same model on Dark Zurich with and without the invIds masks: the matrices differ by exactly the labelled
    pixels under the masks, class by class (rows: true class); nothing else changes."""
    plain = tmp_path / "dz-no-masks"
    shutil.copytree(roots["dark_zurich"], plain)
    removed = [p.unlink() or p for p in plain.rglob(f"*{realworld.GT_INVALID_SUFFIX}")]
    assert removed
    matrices = []
    for name, root in (("masked", roots["dark_zurich"]), ("plain", plain)):
        result = run_suite(suites.get_suite("dark-zurich"), _config(tmp_path, data_root=str(root), run_id=name))
        (record,) = RunStore(result.run_dir).finished().values()
        matrices.append(np.array(record["confusion_matrix"]))
    masked, unmasked = matrices
    expected = np.zeros(19, dtype=np.int64)
    for sample in realworld.find_dark_zurich(roots["dark_zurich"]):
        labels = realworld.read_label(sample.label, sample.label_kind)
        under = labels[realworld.read_invalid_mask(sample.invalid_mask)]
        expected += np.bincount(under[under != 255], minlength=256)[:19]
    difference = unmasked - masked
    assert (difference >= 0).all()
    assert difference.sum(axis=1).tolist() == expected.tolist()  # per true class: the masked labelled pixels
    assert expected.sum() > 0


def test_cli_errors_for_real_world_data_are_one_line(roots, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ACDC_DATASET", raising=False)
    out = ["--out", str(tmp_path / "runs" / "x"), "--allow-random-weights", "--models", "segformer-tiny", "--quiet"]
    cases = [
        (["--suite", "acdc", "--data", str(roots["cityscapes"])], "no ACDC root given: pass --data acdc=ROOT or set "),
        (
            ["--suite", "acdc", "--data", f"cityscapes={roots['cityscapes']},acdc={roots['dark_zurich']}"],
            "ACDC conditions found with a 'val' split under",
        ),
        (["--suite", "dark-zurich", "--data", str(roots["acdc"])], "Dark Zurich splits with a night/ folder under"),
        (["--suite", "acdc", "--data", "acd=/x"], "--data: unknown dataset 'acd'"),
        (
            ["--suite", "dark-zurich", "--data", f"cityscapes={roots['cityscapes']}"],
            "--data: suite dark-zurich reads no Cityscapes; give --data dark-zurich=PATH",
        ),
    ]
    for argv, message in cases:
        assert cli([*argv, *out]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "runs" / "x").exists()


@pytest.mark.slow
def test_two_process_torchrun_equals_single_process_on_real_world_data(roots, tmp_path, torchrun_runner):
    conditions = ["clean", "acdc:fog", "dark_zurich:night", "foggy_cityscapes:beta_0.02"]
    base = dict(
        suite="dist",
        models=("segformer-tiny",),
        data_root=str(roots["cityscapes"]),
        data_roots={"acdc": str(roots["acdc"]), "dark_zurich": str(roots["dark_zurich"])},
        out_dir=str(tmp_path / "runs"),
        allow_random_weights=True,
        quiet=True,
        seed=0,
    )
    single = run(RunConfig(**base, run_id="single"), conditions)
    torchrun_runner({**base, "run_id": "two", "conditions": conditions}, tmp_path / "two.json")
    two = RunStore(tmp_path / "runs" / "two").finished()
    for cell, record in RunStore(single.run_dir).finished().items():
        assert two[cell]["world_size"] == 2 and two[cell]["num_images"] == record["num_images"] == 2
        assert two[cell]["confusion_matrix"] == record["confusion_matrix"], cell

    def accuracy(path):
        frame = pd.read_csv(path)
        return frame[~frame["unit"].isin(TIMING_UNITS)].reset_index(drop=True)

    pd.testing.assert_frame_equal(accuracy(tmp_path / "runs" / "two" / "results.csv"), accuracy(single.results_csv))


def test_real_world_dataset_items_match_the_reader(roots):
    (condition,) = real_conditions(("dark_zurich",))
    dataset = realworld.RealWorldDataset(roots["dark_zurich"], condition, max_images=1)
    assert len(dataset) == 1
    item = dataset[0]
    sample = dataset.samples[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape[0] == 3
    assert torch.equal(item["label"], torch.from_numpy(realworld.read_realworld_label(sample)))
