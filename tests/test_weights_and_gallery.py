"""Which checkpoint each model gets, and the report's corruption gallery."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from segbench.bench.results.axes import Condition
from segbench.bench.results.classes import CITYSCAPES
from segbench.bench.run.config import InferenceSpec
from segbench.bench.run.gallery import palette_lut, write_gallery
from segbench.bench.run.weights import HF_CITYSCAPES_IDS, WeightsError, resolve_model_weights


def test_weights_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "segformer-b0.safetensors").write_bytes(b"x")
    (folder / "segformer-b1").mkdir()
    (folder / "segformer-b1" / "model.safetensors").write_bytes(b"x")
    models_ = ["segformer-b0", "segformer-b1", "segformer-b2", "segformer-b3"]
    got = resolve_model_weights(
        models_, f"{folder},segformer-b3=/explicit.pth", suite_weights={"segformer-b0": "/suite.safetensors"}
    )
    assert got == {
        "segformer-b0": str(folder / "segformer-b0.safetensors"),  # the folder wins over the suite's weights
        "segformer-b1": str(folder / "segformer-b1"),  # a Hugging Face folder per model
        "segformer-b2": None,  # nothing anywhere: random init (the runner refuses it for accuracy)
        "segformer-b3": "/explicit.pth",
    }
    repo = tmp_path / "hub" / "models--nvidia--segformer-b2-finetuned-cityscapes-1024-1024"
    (repo / "snapshots" / "r1").mkdir(parents=True)
    assert resolve_model_weights(["segformer-b2"])["segformer-b2"] is None  # no ref names it: the hub skips it too
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("r1")
    assert resolve_model_weights(["segformer-b2"])["segformer-b2"] == HF_CITYSCAPES_IDS["segformer-b2"]


def test_env_records_each_models_weights_status(tmp_path):
    from types import SimpleNamespace

    from segbench.bench.results.schema import WEIGHTS_STATUSES
    from segbench.bench.run.manifest import weights_detail
    from segbench.models.base import WeightsInfo
    from segbench.suites.builtin import DEMO_WEIGHTS

    demo = str(DEMO_WEIGHTS / "segformer-b0.safetensors")  # labelled "synthetic-demo" in its metadata
    trained = tmp_path / "trained.pth"
    trained.write_bytes(b"x")
    cases = {
        "random": WeightsInfo(),  # random init
        "synthetic-demo": WeightsInfo(source="suite", path=demo, random=False),
        "trained": WeightsInfo(source="file", path=str(trained), sha256="ab" * 32, random=False),
    }
    for status, info in cases.items():
        assert weights_detail(SimpleNamespace(weights_info=info))["status"] == status
    partly = replace(cases["synthetic-demo"], random=True)  # partly random init: random, whatever the file says
    assert weights_detail(SimpleNamespace(weights_info=partly))["status"] == "random"
    assert weights_detail(SimpleNamespace())["status"] == "random"  # no weights info at all
    assert set(cases) == set(WEIGHTS_STATUSES)


@pytest.mark.parametrize(
    "arg, message",
    [("segformer-b9=/x.pth", "not in --models"), ("/no/such/dir", "does not exist"), ("/tmp,/tmp", "two folders")],
)
def test_bad_weights_arguments(arg, message):
    with pytest.raises(WeightsError, match=message):
        resolve_model_weights(["segformer-b0"], arg)


def test_gallery_has_every_condition_and_model(synthetic_root, tmp_path):
    from segbench import models

    conds = [Condition(), Condition("fog", 3), Condition("gaussian_noise", 1)]
    names = ["segformer-tiny", "fcn-mit-tiny"]
    index = write_gallery(
        tmp_path, synthetic_root, conds, names, lambda n: models.create_model(n), InferenceSpec(mode="whole")
    )
    data = json.loads(index.read_text())
    assert [c["condition"] for c in data["conditions"]] == ["clean", "fog-3", "gaussian_noise-1"]
    palette = palette_lut(CITYSCAPES)
    gt = np.asarray(Image.open(tmp_path / data["ground_truth"]))
    assert gt.shape == (64, 128, 3) and {tuple(c) for c in gt.reshape(-1, 3)} <= {tuple(c) for c in palette}
    for entry in data["conditions"]:
        assert np.asarray(Image.open(tmp_path / entry["input"])).shape == (64, 128, 3)
        assert set(entry["predictions"]) == set(names)
        for rel in entry["predictions"].values():
            pred = np.asarray(Image.open(tmp_path / rel))
            assert pred.shape == (64, 128, 3) and {tuple(c) for c in pred.reshape(-1, 3)} <= {tuple(c) for c in palette}
    clean = np.asarray(Image.open(tmp_path / data["conditions"][0]["input"]))
    fog = np.asarray(Image.open(tmp_path / data["conditions"][1]["input"]))
    assert not np.array_equal(clean, fog)
