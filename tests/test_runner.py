"""Runner and results store: end to end on synthetic scenes, resume, SIGKILL, faults, provenance."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
import weakref
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from segbench import models
from segbench.bench.data.cityscapes import CityscapesDataset
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.measure.inference import predict
from segbench.bench.measure.metrics import confusion_matrix, mean_iou
from segbench.bench.results.axes import Condition
from segbench.bench.results.classes import CITYSCAPES
from segbench.bench.results.schema import TIMING_UNITS
from segbench.bench.results.store import RunFolder, RunMismatchError, RunStore
from segbench.bench.run.config import InferenceSpec, RunConfig
from segbench.bench.run.locks import FolderBusyError, folder_lock
from segbench.bench.run.outcome import RunFailed
from segbench.bench.run.residency import model_factory
from segbench.bench.run.runner import run
from segbench.models import segformer_native
from segbench.models.base import WeightsInfo

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = ("clean", "fog-1", "fog-2", "gaussian_noise-1", "gaussian_noise-2")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_synthetic_cityscapes(tmp_path_factory.mktemp("cityscapes"), num_images=3, size=(64, 128), seed=3)


def make_config(data_root, out, **kw) -> RunConfig:
    base = dict(
        suite="test",
        suite_version="1",
        models=("segformer-tiny",),
        data_root=str(data_root),
        out_dir=str(out),
        allow_random_weights=True,
        batch_size=2,
        quiet=True,
        seed=0,
    )
    return RunConfig(**{**base, **kw})


def accuracy_frame(path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame[~frame["unit"].isin(TIMING_UNITS)].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference_run(data_root, tmp_path_factory):
    """The uninterrupted end-to-end run: tiny model, clean plus two corruptions at two severities."""
    out = tmp_path_factory.mktemp("runs")
    start = time.perf_counter()
    result = run(make_config(data_root, out, run_id="ref"), CONDITIONS, InferenceSpec(mode="whole"))
    wall = time.perf_counter() - start
    split = {k: sum(t.get(k, 0.0) for t in result.timing.values()) for k in ("model", "data", "metric")}
    print(f"\nend-to-end wall {wall:.2f}s; cells: " + ", ".join(f"{k} {v:.2f}s" for k, v in split.items()))
    return result


def test_end_to_end_python_api(reference_run, data_root):
    result = reference_run
    assert result.computed == [f"segformer-tiny__{c}" for c in CONDITIONS] and not result.failed
    frame = pd.read_csv(result.results_csv)
    assert list(frame.columns[:10]) == [
        "model",
        "suite",
        "dataset",
        "condition",
        "corruption",
        "category",
        "severity",
        "metric",
        "value",
        "unit",
    ]
    assert frame["condition"].unique().tolist() == list(CONDITIONS)
    miou = frame[frame.metric == "miou"].set_index("condition")["value"]
    assert ((miou >= 0) & (miou <= 100)).all()
    fog2 = frame[(frame.condition == "fog-2") & (frame.metric == "miou")].iloc[0]
    assert (fog2.corruption, fog2.category, fog2.severity) == ("fog", "weather", 2)
    assert {"time_model", "time_data", "time_metric", "time_total", "throughput", "num_images"} <= set(frame.metric)

    # the stored confusion matrix equals a plain loop over the dataset, image by image, and gives the row's mIoU
    store = RunStore(result.run_dir)
    torch.manual_seed(0)
    model = models.create_model("segformer-tiny")
    for name in ("clean", "fog-2"):
        record = json.loads(store.cell_path(f"segformer-tiny__{name}").read_text())
        cm = torch.tensor(record["confusion_matrix"])
        expected = torch.zeros(19, 19, dtype=torch.int64)
        for item in CityscapesDataset(data_root, condition=Condition.parse(name)):
            pred = predict(model, item["image"][None], InferenceSpec())
            expected += confusion_matrix(pred, item["label"][None])
        assert torch.equal(cm, expected), name
        assert miou[name] == pytest.approx(100 * mean_iou(cm), rel=1e-12)
        assert record["num_images"] == 3

    summary = pd.read_csv(result.run_dir / "summary.csv")
    mpc = summary[summary.metric == "mPC"]["value"].item()
    fog = (miou["fog-1"] + miou["fog-2"]) / 2
    noise = (miou["gaussian_noise-1"] + miou["gaussian_noise-2"]) / 2
    assert mpc == pytest.approx((fog + noise) / 2)
    assert summary[summary.metric == "rPC"]["value"].item() == pytest.approx(100 * mpc / miou["clean"])

    env = json.loads((result.run_dir / "env.json").read_text())
    assert env["seed"] == 0 and env["suite"] == {"name": "test", "version": "1"}
    assert env["weights_sha256"] == {"segformer-tiny": "random-init/seed=0"}
    assert env["weights"]["segformer-tiny"]["status"] == "random"  # what the report marks the model by
    assert env["versions"]["torch"] and "git" in env and "cpu_model" in env["hardware"]


def test_resume_skips_finished_cells(reference_run, data_root, tmp_path):
    shutil.copytree(reference_run.run_dir, tmp_path / "ref")
    cfg = make_config(data_root, tmp_path, run_id="ref", resume=True)
    again = run(cfg, CONDITIONS, InferenceSpec())
    assert again.computed == [] and again.skipped == reference_run.computed


def test_run_json_records_every_setting_that_can_change_a_number(reference_run):
    manifest = json.loads((reference_run.run_dir / "run.json").read_text())
    assert manifest["settings"] == {
        "fast": False,
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
        "batch_size": 2,
        "sources": {},
        "model_args": {},
        "label_map": None,
        "model_meta": None,
        "conditions": list(CONDITIONS),
    }
    assert manifest["config"]["fast"] is False and manifest["config"]["weights_text"] is None
    # the class table the run scored with, as a value a later reader (the report) takes from the run
    palette = [list(rgb) for rgb in CITYSCAPES.palette]
    assert manifest["classes"] == {
        "name": "cityscapes",
        "names": list(CITYSCAPES.names),
        "palette": palette,
        "ignore_index": 255,
    }
    assert RunFolder(reference_run.run_dir).classes == CITYSCAPES


def test_resume_of_a_run_made_before_class_tables_and_datasets_were_recorded(reference_run, data_root, tmp_path):
    shutil.copytree(reference_run.run_dir, tmp_path / "ref")
    manifest_path = tmp_path / "ref" / "run.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["classes"], manifest["dataset"], manifest["config"]["dataset"]
    manifest["config"]["num_classes"] = 19
    manifest_path.write_text(json.dumps(manifest))
    for cell in (tmp_path / "ref" / "cells").glob("*.json"):  # rows without the dataset column
        record = json.loads(cell.read_text())
        record["rows"] = [{k: v for k, v in row.items() if k != "dataset"} for row in record["rows"]]
        cell.write_text(json.dumps(record))
    folder = RunFolder(tmp_path / "ref")
    assert folder.classes == CITYSCAPES and folder.dataset == "cityscapes"  # 19 classes: Cityscapes' table
    again = run(make_config(data_root, tmp_path, run_id="ref", resume=True), CONDITIONS, InferenceSpec())
    assert again.computed == [] and again.skipped == reference_run.computed
    assert set(again.frame()["dataset"]) == {"cityscapes"}  # filled in when the tables are gathered


@pytest.mark.parametrize(
    "change, conditions, setting",
    [
        ({"fast": True}, CONDITIONS, "fast"),
        ({"batch_size": 1}, CONDITIONS, "batch_size"),
        ({"channels_last": True}, CONDITIONS, "channels_last"),
        ({"compile": True}, CONDITIONS, "compile"),
        ({}, (*CONDITIONS, "contrast-1"), "conditions"),
        ({}, CONDITIONS[:-1], "conditions"),
    ],
)
def test_resume_refuses_a_different_setting_naming_it(reference_run, data_root, tmp_path, change, conditions, setting):
    shutil.copytree(reference_run.run_dir, tmp_path / "ref")
    cfg = make_config(data_root, tmp_path, run_id="ref", resume=True, **change)
    with pytest.raises(RunMismatchError) as info:
        run(cfg, conditions, InferenceSpec())
    message = str(info.value).replace(str(tmp_path), "<run>")
    assert setting in message and len(message.splitlines()) == 1
    assert sorted(RunStore(tmp_path / "ref").finished()) == sorted(reference_run.computed)  # nothing computed


def test_a_second_process_on_a_run_folder_is_refused(reference_run, data_root, tmp_path):
    shutil.copytree(reference_run.run_dir, tmp_path / "ref")
    with folder_lock(tmp_path / "ref", what="run folder"):  # as if another run were going on in it
        with pytest.raises(FolderBusyError, match=f"run folder is in use by process {os.getpid()} on "):
            run(make_config(data_root, tmp_path, run_id="ref", resume=True), CONDITIONS, InferenceSpec())
    with folder_lock(tmp_path / "new", what="run folder"):  # another run has just taken this new folder
        with pytest.raises(FolderBusyError, match="in use by process"):
            run(make_config(data_root, tmp_path, run_id="new", max_images=1), ["clean"])
    again = run(make_config(data_root, tmp_path, run_id="ref", resume=True), CONDITIONS, InferenceSpec())
    assert again.skipped == reference_run.computed  # the lock is the other process's only: free again, it resumes


def test_fast_path_is_a_run_setting_for_every_family(data_root, tmp_path):
    """`RunConfig.fast` reaches the runner's own factory: SegFormer folds its decoder, a `<head>:<backbone>`
    composition (no fast path) is built as it is."""
    cfg = make_config(
        data_root, tmp_path, run_id="fast", max_images=1, fast=True, models=("segformer-tiny", "deeplabv3plus:resnet18")
    )
    result = run(cfg, ["clean"])
    assert sorted(result.computed) == ["deeplabv3plus:resnet18__clean", "segformer-tiny__clean"]
    env = json.loads((result.run_dir / "env.json").read_text())
    assert env["config"]["fast"] is True
    assert env["fast_kernels"] == segformer_native.status().detail  # which kernels its CPU blocks and decoder ran
    factory = model_factory(cfg)
    assert type(factory("segformer-tiny").decode_head).__name__ == "FoldedMLPDecoder"
    plain = model_factory(dataclasses.replace(cfg, fast=False))
    assert type(plain("segformer-tiny").decode_head).__name__ != "FoldedMLPDecoder"


def test_resume_refuses_other_settings(reference_run, data_root, tmp_path):
    out = reference_run.run_dir.parent
    with pytest.raises(RunMismatchError, match="suite_version was '1', now '2'"):
        run(make_config(data_root, out, run_id="ref", resume=True, suite_version="2"), CONDITIONS)
    with pytest.raises(RunMismatchError, match="seed"):
        run(make_config(data_root, out, run_id="ref", resume=True, seed=1), CONDITIONS)
    with pytest.raises(RunMismatchError, match="inference protocol"):
        run(make_config(data_root, out, run_id="ref", resume=True), CONDITIONS, InferenceSpec(flip=True))
    with pytest.raises(FileExistsError, match="resume"):
        run(make_config(data_root, out, run_id="ref"), CONDITIONS)

    def factory_for(weights_file: Path):
        def factory(name, **kw):
            kw.pop("weights")
            model = models.create_model(name, **kw)
            model.weights_info = WeightsInfo(source="file", path=str(weights_file), random=False)
            return model

        return factory

    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"version 1")
    cfg = make_config(data_root, tmp_path / "runs", run_id="w", max_images=1)
    run(cfg, ["clean"], model_factory=factory_for(ckpt))
    ckpt.write_bytes(b"version 2")
    with pytest.raises(RunMismatchError, match="weights of segformer-tiny changed"):
        run(
            make_config(data_root, tmp_path / "runs", run_id="w", max_images=1, resume=True),
            ["clean"],
            model_factory=factory_for(ckpt),
        )


KILL_SCRIPT = """
import os, signal, sys
from segbench.bench.run.config import InferenceSpec, RunConfig
from segbench.bench.run.runner import run
cfg = RunConfig.from_dict({config})
def die(record):
    os.kill(os.getpid(), signal.SIGKILL)  # as if the machine went away right after the first cell was stored
run(cfg, {conditions}, InferenceSpec(), on_cell_finished=die)
"""


def test_sigkill_after_first_cell_then_resume_gives_same_results(reference_run, data_root, tmp_path):
    cfg = make_config(data_root, tmp_path, run_id="killed")
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(config=repr(cfg.to_dict()), conditions=repr(CONDITIONS)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    store = RunStore(tmp_path / "killed")
    assert list(store.finished()) == ["segformer-tiny__clean"]
    assert not (store.dir / "results.csv").exists()

    resumed = run(make_config(data_root, tmp_path, run_id="killed", resume=True), CONDITIONS, InferenceSpec())
    assert resumed.skipped == ["segformer-tiny__clean"] and len(resumed.computed) == 4
    pd.testing.assert_frame_equal(accuracy_frame(resumed.results_csv), accuracy_frame(reference_run.results_csv))


def test_keyboard_interrupt_keeps_finished_cells(data_root, tmp_path, capsys):
    def interrupt(record):
        raise KeyboardInterrupt

    cfg = make_config(data_root, tmp_path, run_id="int", max_images=1)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, ["clean", "fog-1"], on_cell_finished=interrupt)
    err = capsys.readouterr().err
    assert f"--resume (Python: RunConfig(..., out_dir={str(tmp_path)!r}, run_id='int', resume=True))" in err
    assert list(RunStore(tmp_path / "int").finished()) == ["segformer-tiny__clean"]
    assert (tmp_path / "int" / "results.csv").is_file() and not (tmp_path / "int" / ".segbench.lock.json").exists()
    done = run(make_config(data_root, tmp_path, run_id="int", max_images=1, resume=True), ["clean", "fog-1"])
    assert done.computed == ["segformer-tiny__fog-1"]


def _oom():
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def _cublas_oom():
    """How cuBLAS says it could not allocate its workspace: a plain RuntimeError, not `torch.OutOfMemoryError`."""
    return RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")


OUT_OF_MEMORY = {"oom": _oom, "cublas": _cublas_oom}
OOM_KINDS = pytest.mark.parametrize("error", [_oom, _cublas_oom], ids=["OutOfMemoryError", "cuBLAS"])


class _Broken(torch.nn.Module):
    def __init__(self, fail: str):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 19, 1)
        self.fail = fail
        self.meta = models.ModelMeta("broken", "test", "none", "conv", 19, output_stride=1)
        self.weights_info = WeightsInfo(random=True)

    def forward(self, x):
        if self.fail in OUT_OF_MEMORY:
            raise OUT_OF_MEMORY[self.fail]()
        if self.fail == "crash":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.conv(x) * float("nan")


FAILURES = [("nan", "NaN or inf logits"), ("oom", "lower the batch size"), ("cublas", "lower the batch size")]


@pytest.mark.parametrize("fail, message", FAILURES)
def test_failing_cell_raises_with_clear_message(data_root, tmp_path, fail, message):
    cfg = make_config(data_root, tmp_path, run_id="bad", max_images=1)
    with pytest.raises(RunFailed, match=message) as info:
        run(cfg, ["clean"], model_factory=lambda name, **kw: _Broken(fail))
    assert info.value.result.failed and not RunStore(tmp_path / "bad").finished()
    assert "batch size 2" in str(info.value) or fail == "nan"


@pytest.fixture(params=[False, True], ids=["checked-per-batch", "checked-at-the-end"])
def deferred(request, monkeypatch):
    """Both loops of `_accuracy_cells`: NaN and label checks per batch (the CPU's), or left on the device until the
    cell ends (a GPU's; forced here on the CPU)."""
    from segbench.bench.run import accuracy

    monkeypatch.setattr(accuracy, "defers_syncs", lambda device: request.param)
    return request.param


@pytest.mark.parametrize("fail, message", FAILURES)
def test_a_failing_model_leaves_the_other_models_cells_of_its_condition(data_root, tmp_path, fail, message, deferred):
    def factory(name, **kw):
        return _Broken(fail) if name == "broken" else models.create_model(name, **kw)

    cfg = make_config(data_root, tmp_path, run_id="mixed", max_images=2, models=("broken", "segformer-tiny"))
    with pytest.raises(RunFailed, match=message) as info:
        run(cfg, ["clean", "fog-1"], model_factory=factory)
    assert sorted(info.value.result.failed) == ["broken__clean", "broken__fog-1"]
    assert sorted(RunStore(tmp_path / "mixed").finished()) == ["segformer-tiny__clean", "segformer-tiny__fog-1"]


class _Device:
    """A fake device with room for `room` models: the factory raises out of memory beyond it. Only models that
    something still references count, so a run that forgets to drop one is caught."""

    def __init__(self, room: int = 1, error=_oom):
        self.room, self.error, self.alive, self.built = room, error, weakref.WeakSet(), []

    def count(self) -> int:
        gc.collect()
        return len(self.alive)

    def factory(self, name, **kw):
        if self.count() >= self.room:
            raise self.error()
        model = models.create_model(name, **kw)
        self.alive.add(model)
        self.built.append(name)
        return model


class _NeedsTheDeviceAlone(nn.Module):
    """Runs out of memory in its forward while another model is loaded."""

    def __init__(self, model, device: _Device):
        super().__init__()
        self.model, self.device, self.meta = model, device, model.meta

    def forward(self, x):
        if self.device.count() > 1:
            raise self.device.error()
        return self.model(x)


TWO = ("segformer-tiny", "fcn-mit-tiny")


def _by_model(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    return frame[frame["model"] == model].reset_index(drop=True)


@pytest.fixture(scope="module")
def together_run(data_root, tmp_path_factory):
    """Both models of TWO on clean and fog-1, evaluated together (the reference for the one-at-a-time runs)."""
    result = run(make_config(data_root, tmp_path_factory.mktemp("together"), models=TWO), ["clean", "fog-1"])
    return accuracy_frame(result.run_dir / "results.csv")


def test_models_that_do_not_fit_together_run_one_at_a_time(data_root, tmp_path, together_run, capsys):
    device = _Device(room=1)
    calls = []

    def probe(model, name):
        calls.append((name, device.count()))
        return [{"metric": "params", "value": 0.03, "unit": "M"}]

    cfg = make_config(data_root, tmp_path, run_id="solo", models=TWO)
    result = run(cfg, ["clean", "fog-1"], efficiency=probe, model_factory=device.factory)
    err = capsys.readouterr().err
    assert "out of memory on cpu while loading the models segformer-tiny, fcn-mit-tiny together: going on" in err
    assert not result.failed and calls == [(TWO[0], 1), (TWO[1], 1)]
    # model by model, each loaded once for its cells (after the preflight's fingerprints)
    assert result.computed == [f"{m}__{c}" for m in TWO for c in ("efficiency", "clean", "fog-1")]
    assert device.built == [TWO[0], TWO[0], TWO[1], TWO[0], TWO[1]]
    got = accuracy_frame(result.run_dir / "results.csv")
    got = got[got["condition"] != "efficiency"]  # (its severity column is float: efficiency rows have none)
    for model in TWO:
        pd.testing.assert_frame_equal(_by_model(got, model), _by_model(together_run, model), check_dtype=False)
    cell = json.loads((result.run_dir / "cells" / "fcn-mit-tiny__fog-1.json").read_text())
    assert cell["shared_with"] == []


@OOM_KINDS
def test_a_model_out_of_memory_beside_the_others_gets_another_try_alone(
    data_root, tmp_path, together_run, capsys, error
):
    device = _Device(room=2, error=error)

    def factory(name, **kw):
        model = device.factory(name, **kw)
        return _NeedsTheDeviceAlone(model, device) if name == TWO[1] else model

    cfg = make_config(data_root, tmp_path, run_id="retry", models=TWO)
    result = run(cfg, ["clean", "fog-1"], model_factory=factory)
    err = capsys.readouterr().err
    assert "out of memory on cpu in fcn-mit-tiny__clean with the run's other models loaded" in err
    assert not result.failed
    # the retried model goes on with its other cells while it is loaded
    assert result.computed == [
        "segformer-tiny__clean",
        "fcn-mit-tiny__clean",
        "fcn-mit-tiny__fog-1",
        "segformer-tiny__fog-1",
    ]
    got = accuracy_frame(result.run_dir / "results.csv")
    for model in TWO:
        pd.testing.assert_frame_equal(_by_model(got, model), _by_model(together_run, model))


def test_progress_counts_each_cell_of_the_whole_run_once(data_root, tmp_path, capsys):
    """A cell tried again alone (out of memory beside the other model) is counted once, when it settles."""
    device = _Device(room=2)

    def factory(name, **kw):
        model = device.factory(name, **kw)
        return _NeedsTheDeviceAlone(model, device) if name == TWO[1] else model

    cfg = make_config(data_root, tmp_path, run_id="progress", models=TWO, quiet=False)
    run(cfg, ["clean", "fog-1"], model_factory=factory)
    err = capsys.readouterr().err
    progress = re.findall(r"^progress: (\d+)/4 cells, (.+) elapsed, ETA (.+)$", err, re.M)
    assert [int(p[0]) for p in progress] == [1, 2, 3, 4]
    assert all(re.fullmatch(r"\d+ s|\d+ min \d\d s", p[1]) for p in progress), progress
    assert progress[-1][2] == "0 s"
    labels = re.findall(r"(\[[\d-]+/4\] [^\r\n:]+): done in", err)  # (after the \r of a progress bar)
    assert labels == [
        "[1-2/4] clean x 2 models segformer-tiny",
        "[2/4] fcn-mit-tiny__clean",
        "[3/4] fcn-mit-tiny__fog-1",
        "[4/4] segformer-tiny__fog-1",
    ]

    resumed = make_config(data_root, tmp_path, run_id="progress", models=TWO, quiet=False, resume=True)
    run(resumed, ["clean", "fog-1"])
    err = capsys.readouterr().err
    assert "4 cells, 4 already done, 0 to run" in err and not re.search("^progress:", err, re.M)


def test_checks_left_on_the_device_give_the_same_numbers(data_root, tmp_path, together_run, deferred):
    result = run(make_config(data_root, tmp_path, run_id="d", models=TWO), ["clean", "fog-1"])
    pd.testing.assert_frame_equal(accuracy_frame(result.run_dir / "results.csv"), together_run)
    timing = result.timing["fcn-mit-tiny__fog-1"]
    assert timing["model"] > 0 and timing["metric"] > 0 and timing["data"] > 0


@OOM_KINDS
def test_out_of_memory_even_alone_fails_only_that_models_cells(data_root, tmp_path, error):
    builds = []

    def factory(name, **kw):
        builds.append(name)
        if name == "huge" and builds.count("huge") > 1:
            raise error()
        return models.create_model("segformer-tiny", **kw)

    def probe(model, name):  # the probe of "huge" runs out of memory: the run goes on one model at a time
        if name == "huge":
            raise error()
        return [{"metric": "params", "value": 0.03, "unit": "M"}]

    cfg = make_config(data_root, tmp_path, run_id="oom", max_images=1, models=("segformer-tiny", "huge"))
    with pytest.raises(RunFailed) as info:
        run(cfg, ["clean"], efficiency=probe, model_factory=factory)
    failed = info.value.result.failed
    assert sorted(failed) == ["huge__clean", "huge__efficiency"]
    message = "CUDA out of memory while loading huge for huge__clean, with no other model loaded: use a GPU with more"
    assert failed["huge__clean"].startswith(message)
    assert sorted(RunStore(tmp_path / "oom").finished()) == ["segformer-tiny__clean", "segformer-tiny__efficiency"]


@OOM_KINDS
def test_out_of_memory_while_loading_the_models_is_one_clear_error(data_root, tmp_path, error):
    def factory(name, **kw):
        if name == "huge":
            raise error()
        return models.create_model(name, **kw)

    cfg = make_config(data_root, tmp_path, run_id="big", models=("segformer-tiny", "huge"))
    with pytest.raises(ValueError, match="out of memory while loading the model huge on cpu, with no other model"):
        run(cfg, ["clean"], model_factory=factory)
    assert not (tmp_path / "big").exists()  # nothing written that could look like a run


def test_an_error_that_is_not_out_of_memory_stops_the_run(data_root, tmp_path):
    """Only out of memory becomes a failed cell; any other error (a CUDA fault, a bug) stops the run as it is."""
    cfg = make_config(data_root, tmp_path, run_id="crash", max_images=1)
    with pytest.raises(RuntimeError, match="illegal memory access") as info:
        run(cfg, ["clean"], model_factory=lambda name, **kw: _Broken("crash"))
    assert not isinstance(info.value, RunFailed)


class _HoldsActivations(nn.Module):
    """Runs out of memory in its forward after making an activation that only the failed call's frame holds."""

    def __init__(self, model: nn.Module, error):
        super().__init__()
        self.model, self.meta, self.error, self.activations = model, model.meta, error, []

    def forward(self, x):
        activation = self.model(x)
        self.activations.append(weakref.ref(activation))
        raise self.error()


@OOM_KINDS
def test_device_memory_is_given_back_once_the_failed_forward_is_gone(data_root, tmp_path, monkeypatch, error, deferred):
    """`empty_cache` inside the `except` block frees nothing the failed forward held: its traceback still holds
    them. It runs after the block, when no exception is being handled and the activations are gone."""
    failing: list[_HoldsActivations] = []
    calls = []

    def factory(name, **kw):
        model = models.create_model("segformer-tiny", **kw)
        if name == "huge":
            failing.append(_HoldsActivations(model, error))
            return failing[-1]
        return model

    def empty_cache():
        activations = failing[-1].activations if failing else []
        calls.append((sys.exc_info()[0], [ref() is None for ref in activations]))

    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    cfg = make_config(data_root, tmp_path, run_id="free", max_images=1, models=("huge",))
    with pytest.raises(RunFailed, match="lower the batch size"):
        run(cfg, ["clean"], model_factory=factory)
    after_forward = [c for c in calls if c[1]]
    assert after_forward, calls  # the memory is given back after the failed forward (on the CPU too: a no-op there)
    assert all(handled is None and all(gone) for handled, gone in after_forward), calls


def test_random_weights_refused_unless_allowed(data_root, tmp_path):
    with pytest.raises(ValueError, match="no trained weights"):
        run(make_config(data_root, tmp_path, allow_random_weights=False), ["clean"])


def test_efficiency_cell_rows(data_root, tmp_path):
    calls = []

    def probe(model, name):
        calls.append(name)
        return [{"metric": "params", "value": 0.03, "unit": "M", "resolution": "64x128"}]

    cfg = make_config(data_root, tmp_path, run_id="eff", only="efficiency")
    result = run(cfg, ["clean"], efficiency=probe)
    assert calls == ["segformer-tiny"] and result.computed == ["segformer-tiny__efficiency"]
    frame = pd.read_csv(result.results_csv)
    assert frame.iloc[0][["condition", "metric", "unit", "resolution"]].tolist() == [
        "efficiency",
        "params",
        "M",
        "64x128",
    ]


def test_efficiency_spec_runs_the_sweep(data_root, tmp_path):
    from segbench.bench.spec import EfficiencySpec

    spec = EfficiencySpec(resolutions=((64, 128),), conventions=("fvcore",), latency=False)
    result = run(make_config(data_root, tmp_path, run_id="sweep", only="efficiency"), ["clean"], efficiency=spec)
    frame = pd.read_csv(result.results_csv)
    assert set(frame.condition) == {"efficiency"} and set(frame.model) == {"segformer-tiny"}
    assert {"params", "gmacs"} <= set(frame.metric) and set(frame.suite) == {"test"}


def test_a_suites_efficiency_probe_measures_on_the_ranks_device_and_leaves_the_model_there(tmp_path, monkeypatch):
    """Under torchrun with `--device cuda:K` every rank has its own device (`distributed.setup`), not `config.device`:
    rank 0's probe measures on its device, and its model is back there for the accuracy cells that follow
    (`calibrated_latency` moves the model to the device it is given)."""
    from segbench import suites
    from segbench.bench.api import run_suite
    from segbench.bench.measure import efficiency, latency
    from segbench.bench.run import distributed

    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(distributed, "setup", lambda device: distributed.DistContext(device=torch.device("cpu")))
    measured, probed = [], []

    def sweep(model, resolutions, batch_sizes, device, *args, **kwargs):
        measured.append(("sweep", str(device)))
        return [{"metric": "params", "value": 0.03, "unit": "M"}]

    def calibrated(model, size, device, warmup, iters, name, suite):
        measured.append(("calibrated", str(device)))
        probed.append(model)
        model.to("meta")  # like the real one: the model goes to the device given, and stays there
        return [{"metric": "latency_calibrated", "value": 1.0, "unit": "x calibration"}]

    monkeypatch.setattr(efficiency, "efficiency_sweep", sweep)
    monkeypatch.setattr(latency, "calibrated_latency", calibrated)
    config = RunConfig(
        models="segformer-tiny",
        device="cuda:1",
        allow_random_weights=True,
        quiet=True,
        max_images=1,
        out_dir=str(tmp_path),
        run_id="rank",
    )
    result = run_suite(suites.get_suite("ci"), config, conditions=[Condition()])
    assert measured == [("sweep", "cpu"), ("calibrated", "cpu")]
    assert result.computed == ["segformer-tiny__efficiency", "segformer-tiny__clean"] and not result.failed
    (model,) = probed
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"cpu"}


def test_bf16_on_a_gpu_without_it_is_refused_before_any_work(data_root, tmp_path, monkeypatch, capsys):
    """The rank's GPU is asked before any model is built (`torch.autocast` would raise on the first batch instead),
    for the run's precision and the efficiency probe's; the command line says so in one line."""
    from segbench import cli
    from segbench.bench.run import distributed
    from segbench.bench.run.config import ConfigError
    from segbench.bench.spec import EfficiencySpec

    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(distributed, "setup", lambda device: distributed.DistContext(device=torch.device("cuda:1")))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Tesla V100-SXM2-16GB")
    built = []

    def factory(name, **kw):
        built.append(name)
        return models.create_model(name, **kw)

    problem = "bf16 is not supported on cuda:1 (Tesla V100-SXM2-16GB); use fp16 or fp32"
    with pytest.raises(ConfigError, match=re.escape(f"precision: {problem}")):
        run(make_config(data_root, tmp_path, device="cuda:1", precision="bf16"), ["clean"], model_factory=factory)
    probe = EfficiencySpec(precisions=("fp32", "bf16"))
    with pytest.raises(ConfigError, match=re.escape(problem)):
        run(make_config(data_root, tmp_path, device="cuda:1"), ["clean"], efficiency=probe, model_factory=factory)
    assert built == [] and list(tmp_path.iterdir()) == []

    out = str(tmp_path / "runs" / "bf16")
    args = [
        "--suite",
        "ci",
        "--models",
        "segformer-tiny",
        "--allow-random-weights",
        "--device",
        "cuda:1",
        "--precision",
        "bf16",
        "--only",
        "efficiency",
        "--quiet",
        "--out",
        out,
    ]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err == f"error: --precision: {problem}\n"


def test_workers_do_not_change_results(reference_run, data_root, tmp_path):
    result = run(make_config(data_root, tmp_path, run_id="w", workers=2, batch_size=1), ["fog-2"])
    new = RunStore(result.run_dir).finished()["segformer-tiny__fog-2"]["confusion_matrix"]
    ref = RunStore(reference_run.run_dir).finished()["segformer-tiny__fog-2"]["confusion_matrix"]
    assert new == ref


def test_json_entry_point(data_root, tmp_path):
    cfg = make_config(data_root, tmp_path, run_id="cli", max_images=1).to_dict()
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({**cfg, "conditions": ["clean"]}))
    from segbench.bench.run.runner import main

    assert main(["--config", str(path)]) == 0
    assert (tmp_path / "cli" / "results.csv").is_file()


def test_config_validation():
    with pytest.raises(ValueError, match="only"):
        RunConfig(only="speed")
    with pytest.raises(ValueError, match="reference_model"):
        RunConfig(models=("a",), reference_model="b")
    with pytest.raises(ValueError, match="unknown RunConfig fields"):
        RunConfig.from_dict({"modles": ["a"]})
    spec = RunConfig(device="cpu", precision="bf16", batch_size=4).inference_spec(InferenceSpec(mode="slide", crop=64))
    assert (spec.mode, spec.crop, spec.precision, spec.batch_size) == ("slide", (64, 64), "bf16", 4)


class _Warns(torch.nn.Module):
    """Wraps a model and warns on every forward pass."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.meta, self.weights_info = inner, inner.meta, inner.weights_info

    def forward(self, x):
        warnings.warn("odd <input> seen", UserWarning, stacklevel=1)
        return self.inner(x)


def test_warnings_raised_in_a_cell_are_logged_with_it(data_root, tmp_path):
    def factory(name, **kw):
        return _Warns(models.create_model(name, **kw))

    result = run(make_config(data_root, tmp_path, run_id="w", max_images=1), ["clean"], model_factory=factory)
    cell = json.loads(next((result.run_dir / "cells").glob("*clean*.json")).read_text())
    assert cell["warnings"] == ["UserWarning: odd <input> seen"]


def test_models_share_each_conditions_images_and_are_built_once(reference_run, data_root, tmp_path, monkeypatch):
    import segbench.bench.data.loading as data_module

    built, corrupted = [], []
    real_corrupt = data_module.corrupt

    def factory(name, **kw):
        built.append(name)
        return models.create_model(name, **kw)

    def counting_corrupt(image, name, severity, seed):
        corrupted.append((name, severity, seed))
        return real_corrupt(image, name, severity, seed)

    monkeypatch.setattr(data_module, "corrupt", counting_corrupt)
    names = ("segformer-tiny", "fcn-mit-tiny")
    cfg = make_config(data_root, tmp_path, run_id="shared", models=names)
    result = run(cfg, ["clean", "fog-1"], InferenceSpec(mode="whole"), model_factory=factory)
    assert built == list(names)  # preflight builds each model once, and it stays loaded for its cells
    assert len(corrupted) == 3 and len(set(corrupted)) == 3  # fog-1 computed once per image, not once per model
    assert result.computed == [f"{m}__{c}" for c in ("clean", "fog-1") for m in names]

    # the same numbers as evaluating each model alone
    got = accuracy_frame(result.run_dir / "results.csv")
    ref = accuracy_frame(reference_run.run_dir / "results.csv")
    ref = ref[ref["condition"].isin(("clean", "fog-1"))].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[got["model"] == "segformer-tiny"].reset_index(drop=True), ref)
    alone = run(make_config(data_root, tmp_path, run_id="fcn", models=names[1:]), ["clean", "fog-1"])
    pd.testing.assert_frame_equal(
        got[got["model"] == "fcn-mit-tiny"].reset_index(drop=True), accuracy_frame(alone.run_dir / "results.csv")
    )
    cell = json.loads((result.run_dir / "cells" / "fcn-mit-tiny__fog-1.json").read_text())
    assert cell["shared_with"] == ["segformer-tiny__fog-1"]


def test_a_models_warnings_stay_in_its_own_cells_when_models_share_batches(data_root, tmp_path):
    def factory(name, **kw):
        model = models.create_model(name, **kw)
        return _Warns(model) if name == "fcn-mit-tiny" else model

    cfg = make_config(data_root, tmp_path, run_id="w2", max_images=2, models=("segformer-tiny", "fcn-mit-tiny"))
    result = run(cfg, ["clean"], model_factory=factory)
    cells = {p.stem: json.loads(p.read_text()) for p in (result.run_dir / "cells").glob("*.json")}
    assert cells["fcn-mit-tiny__clean"]["warnings"] == ["UserWarning: odd <input> seen"]
    assert cells["segformer-tiny__clean"]["warnings"] == []


def test_corrupted_cells_warm_up_the_corruption_before_forking_workers(data_root, tmp_path, monkeypatch):
    from segbench.bench.run import accuracy

    calls = []
    monkeypatch.setattr(accuracy, "warm_up", lambda name, severity: calls.append((name, severity)))
    run(make_config(data_root, tmp_path, run_id="wu", max_images=1, workers=1), ["clean", "fog-2"])
    run(make_config(data_root, tmp_path, run_id="w0", max_images=1, workers=0), ["fog-1"])
    assert calls == [("fog", 2)]  # not for clean images, nor without workers to fork


@pytest.mark.parametrize(
    "device, cores, threads, local_ranks, expected",
    [
        ("cpu", 2, 2, None, 0),  # the model's threads use every core: no worker could run beside them
        ("cpu", 16, 12, None, 4),  # the cores the model leaves free
        ("cpu", 16, 1, "4", 3),  # torchrun on CPU: 4 cores per rank, 1 model thread each
        ("cuda", 2, 2, None, 1),  # all cores but the main process's, at least one
        ("cuda", 64, 64, None, 8),  # at most 8
        ("cuda", 32, 32, "4", 7),  # 8 cores per rank
    ],
)
def test_default_workers_leave_the_model_its_cores(monkeypatch, device, cores, threads, local_ranks, expected):
    from segbench.bench.run import config

    monkeypatch.setattr(config, "usable_cores", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    if local_ranks is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_ranks)
    assert config.default_workers(device) == expected


def test_compile_runs_accuracy_cells_through_torch_compile(reference_run, data_root, tmp_path, monkeypatch):
    wrapped = []
    real_compile = torch.compile

    def compile_eagerly(model, **kwargs):  # the real dynamo wrapper, without inductor's minutes of C++ compilation
        wrapped.append(type(model).__name__)
        return real_compile(model, backend="eager")

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    conditions = ("clean", "fog-1")
    result = run(make_config(data_root, tmp_path, run_id="compiled", compile=True), conditions, InferenceSpec())
    assert wrapped == ["SegFormer"]  # once per model, shared by its cells
    got = accuracy_frame(result.run_dir / "results.csv")
    ref = accuracy_frame(reference_run.run_dir / "results.csv")
    ref = ref[ref["condition"].isin(conditions)].reset_index(drop=True)
    assert len(got) == len(ref) > 0
    pd.testing.assert_frame_equal(got, ref)
    env = json.loads((result.run_dir / "env.json").read_text())
    assert env["config"]["compile"] is True


def test_gpu_clock_reads_the_device_once_per_condition(monkeypatch):
    """The clock of the accuracy loop (`bench.measure.clock.Clock`) with stand-in events: they go on the measured
    device's stream, and only the last one is waited for, when the condition ends."""
    from segbench.bench.measure.clock import Clock

    waits, now = [], iter(range(100))

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing

        def record(self, stream=None):
            assert stream == ("stream of", "cuda:1")
            self.t = next(now)

        def synchronize(self):
            waits.append(self.t)

        def elapsed_time(self, end):  # milliseconds
            return 1000.0 * (end.t - self.t)

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream of", str(device)))
    clock = Clock(torch.device("cuda:1"))
    for cell in (0, 1, 0):
        t0 = clock.mark()
        t1 = clock.mark()
        clock.add((cell, 0), t0, t1)
        clock.add((cell, 1), t1, clock.mark())
    assert waits == []  # nothing waited for the device inside the loop
    s = clock.seconds()
    assert [[s[i, p] for p in (0, 1)] for i in range(2)] == [[2.0, 2.0], [1.0, 1.0]] and waits == [8]


def test_accuracy_cells_run_strict_fp32_whatever_the_process_default(data_root, tmp_path, monkeypatch):
    """PyTorch's default lets cuDNN run "fp32" convolutions in TF32; accuracy cells turn it off, record it, and
    leave the process setting as it was."""
    import segbench.bench.run.accuracy as accuracy_module
    from segbench.bench.measure.latency import tf32_flags

    seen = []
    real = accuracy_module.ConditionPass.stream

    def spy(self, loader, bar):
        seen.append(tf32_flags())
        return real(self, loader, bar)

    monkeypatch.setattr(accuracy_module.ConditionPass, "stream", spy)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    result = run(make_config(data_root, tmp_path, run_id="strict"), ("clean",), InferenceSpec())
    assert seen == [{"tf32_matmul": False, "tf32_cudnn": False}]
    assert torch.backends.cudnn.allow_tf32
    record = json.loads(next((result.run_dir / "cells").glob("*clean*.json")).read_text())
    assert record["tf32"] == {"tf32_matmul": False, "tf32_cudnn": False}
