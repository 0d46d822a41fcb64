"""Attacks as run conditions: names and budgets, the options, the budget pass (the evaluated model is the attacked
one, the per-image worst case), resume, summaries, refusals and the gallery."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from segbench.bench.data.cityscapes import CityscapesDataset
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.measure.attacks import attack
from segbench.bench.measure.inference import predict
from segbench.bench.measure.metrics import confusion_matrix
from segbench.bench.measure.robustness import robustness_area
from segbench.bench.results.axes import (
    DEFAULT_EPS,
    WORST,
    AttackSpec,
    Condition,
    attack_grid,
    attack_label,
)
from segbench.bench.results.schema import ADV_AREA, ADV_MIOU, ATTACK_STEP_TIME, MIOU
from segbench.bench.results.store import RunMismatchError
from segbench.bench.run.attack_options import AttackOptionError, select_attacks
from segbench.bench.run.config import ConfigError, InferenceSpec, RunConfig
from segbench.bench.run.gallery import write_gallery
from segbench.bench.run.residency import ModelSlot, model_factory
from segbench.bench.run.runner import run

WHOLE = InferenceSpec(mode="whole")
BUDGET = "linf-4/255-2steps"
CONDITIONS = ("clean", f"pgd-{BUDGET}", f"cospgd-{BUDGET}", f"worst-{BUDGET}", "pgd-linf-0/255-2steps")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_synthetic_cityscapes(tmp_path_factory.mktemp("cityscapes"), num_images=3, size=(48, 96), seed=5)


def make_config(data_root, out, **kw) -> RunConfig:
    base = dict(
        suite="adv-test",
        suite_version="1",
        models=("segformer-tiny",),
        data_root=str(data_root),
        out_dir=str(out),
        allow_random_weights=True,
        batch_size=2,
        quiet=True,
        seed=7,
    )
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def attacked_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run(make_config(data_root, out, run_id="adv"), CONDITIONS, WHOLE)


def _cell(run_dir: Path, condition: str) -> dict:
    matches = [p for p in (run_dir / "cells").glob("*.json") if json.loads(p.read_text())["condition"] == condition]
    assert len(matches) == 1, (condition, matches)
    return json.loads(matches[0].read_text())


# --------------------------------------------------------------------------------------------------------------------
# Names, budgets, options
# --------------------------------------------------------------------------------------------------------------------


def test_attack_names_round_trip_and_read_well():
    spec = AttackSpec("cospgd", "l2", 0.5, steps=20, step_size=0.01, random_start=False)
    cond = Condition.parse(spec.condition_name())
    assert cond.attack == spec and cond.category == "adversarial" and cond.corruption_column == "cospgd"
    assert cond.name == "cospgd-l2-0.5-20steps-step0.01-nostart" and cond.severity_column is None
    assert attack_label(spec) == "CosPGD L2 0.5 (20 steps, step 0.01, no random start)"
    assert Condition.parse("pgd-linf-0.25/255").attack.eps == 0.25 / 255  # the name keeps the float it was made of
    assert Condition.parse("worst-linf-8/255").attack.is_worst
    assert not Condition.parse("fog-2").is_attack and Condition.parse("clean").is_clean


@pytest.mark.parametrize("text", ["pgd-linf-8", "pgd-linf-x/255", "pgd-l2-1-foo", "pgd-linf--1"])
def test_bad_attack_names_are_refused(text):
    with pytest.raises(ValueError):
        Condition.parse(text)


def test_the_default_grid_has_every_attack_and_a_worst_case_per_budget():
    grid = attack_grid()
    assert len(grid) == len(DEFAULT_EPS["linf"]) * 4
    assert [c.attack.name for c in grid[:4]] == ["pgd", "segpgd", "cospgd", WORST]
    assert [c.attack for c in attack_grid(("pgd",), eps=(1 / 255,))] == [AttackSpec("pgd", eps=1 / 255)]


def test_options_remake_a_suites_grid_and_keep_it_when_silent():
    suite = (Condition(), *attack_grid(("pgd", "segpgd"), eps=(1 / 255, 2 / 255)))
    assert select_attacks(suite) == suite[1:]
    assert [c.name for c in select_attacks(suite, eps=(8 / 255,))] == [
        "pgd-linf-8/255",
        "segpgd-linf-8/255",
        "worst-linf-8/255",
    ]
    l2 = select_attacks(suite, attacks=("cospgd",), norm="l2", steps=3, random_start=False)
    assert [c.name for c in l2] == [f"cospgd-l2-{e:g}-3steps-nostart" for e in DEFAULT_EPS["l2"]]
    with pytest.raises(AttackOptionError, match="given without attacks"):
        select_attacks((Condition(),), eps=(1 / 255,))
    with pytest.raises(AttackOptionError, match=r"eps.*8/255, not 8"):
        select_attacks((), attacks=("pgd",), eps=(8.0,))


def test_config_parses_the_command_lines_texts():
    cfg = RunConfig(attacks="pgd,cospgd", norm="L-inf", eps="8/255,0.25/255", attack_step_size="1/255")
    assert cfg.attacks == ("pgd", "cospgd") and cfg.norm == "linf"
    assert cfg.eps == (0.25 / 255, 8 / 255) and cfg.attack_step_size == 1 / 255
    with pytest.raises(ConfigError) as info:
        RunConfig(attacks="fgsm")
    assert info.value.field == "attacks"


# --------------------------------------------------------------------------------------------------------------------
# The budget pass
# --------------------------------------------------------------------------------------------------------------------


def _direct(data_root, specs, seed=7):
    """Each image attacked and scored on its own: per attack its confusion matrix, and the per-image worst case's."""
    model = ModelSlot(make_config(data_root, "unused"), torch.device("cpu")).build("segformer-tiny")
    data = CityscapesDataset(data_root, split="val")
    spec = WHOLE.resolve(model.meta)
    per_attack = {s.name: torch.zeros(19, 19, dtype=torch.int64) for s in specs}
    worst = torch.zeros(19, 19, dtype=torch.int64)
    for k in range(len(data)):
        item = data[k]
        images, labels = item["image"][None], item["label"][None].long()
        best = None
        for s in specs:
            adv = attack(model, images, labels, s, spec, seed, [item["id"]])
            pred = predict(model, adv, spec, out_size=tuple(labels.shape[-2:]))
            cm = confusion_matrix(pred, labels, 19)
            per_attack[s.name] += cm
            valid = labels != 255
            acc = ((pred == labels) & valid).sum().item() / max(valid.sum().item(), 1)
            if best is None or acc < best[0]:
                best = (acc, cm)
        worst += best[1]
    return per_attack, worst


def test_attack_cells_score_the_attacked_model_and_the_per_image_worst_case(attacked_run, data_root):
    """Each cell's confusion matrix equals attacking each image alone with the same model, seed and image id; the
    worst case takes, per image, the attack with the lower pixel accuracy."""
    specs = [AttackSpec("pgd", eps=4 / 255, steps=2), AttackSpec("cospgd", eps=4 / 255, steps=2)]
    per_attack, worst = _direct(data_root, specs)
    run_dir = attacked_run.run_dir
    for s in specs:
        assert torch.equal(torch.tensor(_cell(run_dir, s.condition_name())["confusion_matrix"]), per_attack[s.name])
    assert torch.equal(torch.tensor(_cell(run_dir, f"worst-{BUDGET}")["confusion_matrix"]), worst)
    assert not torch.equal(per_attack["pgd"], torch.tensor(_cell(run_dir, "clean")["confusion_matrix"]))


def test_rows_place_attacks_and_a_zero_budget_equals_clean(attacked_run):
    frame = pd.read_csv(attacked_run.results_csv)
    miou = frame[frame.metric == MIOU].set_index("condition")
    assert miou.loc[f"pgd-{BUDGET}", "corruption"] == "pgd" and miou.loc[f"worst-{BUDGET}", "corruption"] == WORST
    assert set(miou.loc[list(CONDITIONS[1:]), "category"]) == {"adversarial"}
    assert miou.loc[list(CONDITIONS[1:]), "severity"].isna().all()
    assert miou.loc["pgd-linf-0/255-2steps", "value"] == pytest.approx(miou.loc["clean", "value"], abs=1e-9)
    cost = frame[frame.metric == ATTACK_STEP_TIME].set_index("condition")["value"]
    assert set(cost.index) == {f"pgd-{BUDGET}", f"cospgd-{BUDGET}", "pgd-linf-0/255-2steps"} and (cost > 0).all()
    settings = json.loads((attacked_run.run_dir / "run.json").read_text())["settings"]
    assert settings["attacks"][f"pgd-{BUDGET}"]["alpha"] == pytest.approx(2.5 * 4 / 255 / 2)


def test_summary_has_the_worst_case_per_budget_and_the_area(attacked_run):
    frame = pd.read_csv(attacked_run.results_csv)
    miou = frame[frame.metric == MIOU].set_index("condition")["value"]
    summary = pd.read_csv(attacked_run.run_dir / "summary.csv")
    adv = summary[summary.metric == ADV_MIOU].set_index("condition")["value"]
    assert adv[BUDGET] == pytest.approx(miou[f"worst-{BUDGET}"])
    area = summary[(summary.metric == ADV_AREA) & (summary.corruption == "pgd")]
    assert list(area.condition) == [f"area-{BUDGET}"]
    clean = miou["clean"]
    expected = robustness_area(clean, {0.0: miou["pgd-linf-0/255-2steps"], 4 / 255: miou[f"pgd-{BUDGET}"]})
    assert float(area.value.iloc[0]) == pytest.approx(expected)


def test_the_console_table_shows_the_worst_case_and_the_area(attacked_run):
    from segbench.reports.console import results_table

    table = results_table(attacked_run.run_dir)
    summary = pd.read_csv(attacked_run.run_dir / "summary.csv").set_index(["metric", "condition", "corruption"])
    assert (
        table.loc["segformer-tiny", f"Worst-attack mIoU [{BUDGET}]"] == summary.loc[(ADV_MIOU, BUDGET, WORST), "value"]
    )
    area = summary.loc[(ADV_AREA, f"area-{BUDGET}", WORST), "value"]
    assert table.loc["segformer-tiny", f"Attack area [0 to {BUDGET}]"] == area


def test_a_resumed_worst_case_runs_its_attacks_again_and_equals_the_first(attacked_run, tmp_path, data_root):
    run_dir = tmp_path / "adv"
    shutil.copytree(attacked_run.run_dir, run_dir)
    worst = _cell(run_dir, f"worst-{BUDGET}")
    for path in (run_dir / "cells").glob("*.json"):
        if json.loads(path.read_text())["condition"] == f"worst-{BUDGET}":
            path.unlink()
    result = run(make_config(data_root, tmp_path, run_id="adv", resume=True), CONDITIONS, WHOLE)
    assert result.computed == [worst["cell"]]
    assert _cell(run_dir, f"worst-{BUDGET}")["confusion_matrix"] == worst["confusion_matrix"]
    with pytest.raises(RunMismatchError):
        other = (*CONDITIONS[:1], "pgd-linf-4/255-3steps")
        run(make_config(data_root, tmp_path, run_id="adv", resume=True), other, WHOLE)


def test_a_worst_case_without_attacks_at_its_budget_is_refused(data_root, tmp_path):
    with pytest.raises(ConfigError, match="none is run there"):
        run(make_config(data_root, tmp_path), ["clean", "pgd-linf-1/255", "worst-linf-8/255"], WHOLE)


def test_attacks_under_autocast_warn_about_their_gradients(data_root, tmp_path):
    result = run(make_config(data_root, tmp_path, precision="bf16", max_images=1), ["pgd-linf-1/255-1steps"], WHOLE)
    cell = _cell(result.run_dir, "pgd-linf-1/255-1steps")
    assert any("attack gradients taken under bf16" in w for w in cell["warnings"])


def test_an_onnx_model_and_a_deploy_grid_are_refused(data_root, tmp_path):
    from segbench import suites
    from segbench.bench.api import run_suite

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read before the refusal")
    config = make_config(data_root, tmp_path, models=(f"m=onnx:{onnx}",), attacks=("pgd",))
    with pytest.raises(ConfigError, match="no gradients") as info:
        run(config, ["clean"], WHOLE)
    assert info.value.field == "attacks"
    with pytest.raises(ConfigError, match="exported variants"):
        run_suite(suites.get_suite("deploy"), make_config(data_root, tmp_path, attacks=("pgd",)))


def test_the_gallery_shows_each_attack_at_its_largest_budget(data_root, tmp_path):
    config = make_config(data_root, tmp_path)
    build = model_factory(config)
    conds = [Condition(), *attack_grid(("pgd",), eps=(1 / 255, 4 / 255), steps=1)]
    index = write_gallery(
        tmp_path, data_root, conds, ["segformer-tiny"], lambda n: build(n, num_classes=19).eval(), WHOLE
    )
    data = json.loads(Path(index).read_text())
    assert [a["condition"] for a in data["attacks"]] == ["pgd-linf-4/255-1steps"]
    entry = data["attacks"][0]
    for rel in (entry["inputs"]["segformer-tiny"], entry["predictions"]["segformer-tiny"]):
        assert (tmp_path / rel).is_file() and "/255" not in rel


@pytest.mark.parametrize(
    "args, says",
    [
        (["--eps", "1/255"], "--eps: given without attacks: add --attacks"),
        (["--attacks", "pgd", "--eps", "8"], "--eps: an L-inf budget is in [0, 1] pixel units (8/255, not 8)"),
        (["--attacks", "fgsm"], "--attacks: 'fgsm' unknown; choose from pgd, segpgd, cospgd"),
        (["--attacks", "pgd", "--norm", "l1"], "--norm: 'l1' unknown"),
        (["--no-random-start"], "--no-random-start: given without attacks"),
    ],
)
def test_the_command_line_refuses_bad_attack_options_in_one_line(args, says, tmp_path, monkeypatch, capsys, cli_here):
    call = cli_here(monkeypatch, tmp_path, capsys)
    code, _, err = call("run", "--suite", "demo", "--models", "segformer-b0", "--max-images", "1", *args)
    assert code == 2 and says in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


class _RunsOutOfMemoryBesideOthers(torch.nn.Module):
    """segformer-tiny that runs out of memory in its forward (so during an attack) while `loaded` has another model."""

    def __init__(self, model, loaded):
        super().__init__()
        self.model, self.meta, self.loaded = model, model.meta, loaded

    def forward(self, x):
        gc.collect()  # a released model leaves `loaded` once collected
        if len(self.loaded) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.model(x)


def test_an_attack_out_of_memory_beside_other_models_goes_on_one_model_at_a_time(data_root, tmp_path, capsys):
    """The out-of-memory policy: the budget's cells of the model that ran out are tried again alone, model by model,
    and the worst case still has its budget's attacks beside it; every cell finishes."""
    import weakref

    loaded = weakref.WeakSet()
    plain = model_factory(make_config(data_root, tmp_path))

    def factory(name, **kw):
        model = plain("segformer-tiny", **kw)
        if name == "big":
            model = _RunsOutOfMemoryBesideOthers(model, loaded)
        loaded.add(model)
        return model

    config = make_config(data_root, tmp_path, models=("segformer-tiny", "big"), max_images=1)
    conds = ["clean", "pgd-linf-2/255-1steps", "cospgd-linf-2/255-1steps", "worst-linf-2/255-1steps"]
    result = run(config, conds, WHOLE, model_factory=factory)
    assert not result.failed and len(result.computed) == 8
    assert "going on one model at a time" in capsys.readouterr().err
    frame = pd.read_csv(result.results_csv)
    miou = frame[frame.metric == MIOU].pivot(index="condition", columns="model", values="value")
    assert (miou["big"] == miou["segformer-tiny"]).all()  # the same network, seeded alike
