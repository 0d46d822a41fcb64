"""`segbench export --format hf-model-index`: the model card block, read back by a YAML parser; untrained refused."""

from __future__ import annotations

import pandas as pd
import pytest
from safetensors.torch import save_file

from segbench import models
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.schema import MIOU
from segbench.bench.run.config import InferenceSpec, RunConfig
from segbench.bench.run.runner import run
from segbench.reports.model_index import model_index, model_index_yaml

yaml = pytest.importorskip("yaml")


def _run(tmp_path, weights: bool):
    root = write_synthetic_cityscapes(tmp_path / "cs", num_images=2, size=(48, 96), seed=1)
    given = {}
    if weights:
        given["segformer-tiny"] = str(tmp_path / "tiny.safetensors")
        save_file(models.create_model("segformer-tiny", num_classes=19).state_dict(), given["segformer-tiny"])
    config = RunConfig(
        suite="mi",
        models=("segformer-tiny",),
        weights=given,
        data_root=str(root),
        out_dir=str(tmp_path / "runs"),
        run_id="r",
        allow_random_weights=not weights,
        quiet=True,
    )
    return run(config, ["clean", "fog-1"], InferenceSpec(mode="whole")).run_dir


def test_the_block_reads_back_with_the_runs_own_numbers(tmp_path, monkeypatch, capsys, cli_here):
    run_dir = _run(tmp_path, weights=True)
    block = yaml.safe_load(model_index_yaml(run_dir))["model-index"]
    assert block == model_index(run_dir)
    (entry,) = block
    result = entry["results"][0]
    assert entry["name"] == "segformer-tiny" and result["task"]["type"] == "image-segmentation"
    assert result["dataset"] == {"type": "cityscapes", "name": "Cityscapes", "split": "val"}
    frame = pd.read_csv(run_dir / "results.csv")
    clean = frame[(frame.metric == MIOU) & (frame.condition == "clean")]["value"].iloc[0]
    metrics = {m["name"].split(" (")[0]: m for m in result["metrics"]}
    assert metrics["Clean mIoU"]["value"] == round(clean, 2) and metrics["Clean mIoU"]["verified"] is False
    assert "mPC" in metrics
    call = cli_here(monkeypatch, tmp_path, capsys)
    code, out, _ = call("export", str(run_dir), "--format", "hf-model-index", "--out", "card.yaml")
    assert code == 0 and yaml.safe_load((tmp_path / "card.yaml").read_text())["model-index"] == block
    (tmp_path / "notes.yaml").write_text("mine: 1\n")
    code, _, err = call("export", str(run_dir), "--format", "hf-model-index", "--out", "notes.yaml")
    assert code == 2 and "left as it is" in err and (tmp_path / "notes.yaml").read_text() == "mine: 1\n"


def test_untrained_weights_are_refused(tmp_path):
    run_dir = _run(tmp_path, weights=False)
    with pytest.raises(ValueError, match="ran with random weights"):
        model_index(run_dir)
