"""Whole runs on every dataset: the suite's mIoU equals a computation from the label files alone, the rows and run.json
name the dataset, the corrupted suites and generate-c work on images of any size, and an ADE20K-labelled transformers
SegFormer gives the same mIoU with its labels permuted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import segbench
from segbench.bench.data.datasets import get_dataset
from segbench.bench.data.folder import write_synthetic_folder
from segbench.bench.data.generate_c import generate_c

QUIET = dict(allow_random_weights=True, quiet=True, workers=0, only="accuracy")


class Constant(nn.Module):
    """Scores class `k` highest everywhere, at a quarter of the input size."""

    def __init__(self, num_classes: int, k: int):
        super().__init__()
        self.k, self.num_classes = k, num_classes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.num_classes, x.shape[2] // 4, x.shape[3] // 4) * self.scale
        out[:, self.k] = 1.0
        return out


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _write(name: str, root: Path) -> Path:
    if name == "folder":
        return write_synthetic_folder(root, num_images=3, size=(64, 96), seed=1, offset=1)
    return get_dataset(name).write_synthetic(root, num_images=3, size=(64, 96), seed=1)


def _labels_from_files(name: str, root: Path) -> list[np.ndarray]:
    """Each scored image's classes (255: not scored), from the label files alone, decoded independently of segbench."""
    if name == "ade20k":
        files = sorted((root / "annotations" / "validation").glob("*.png"))
        return [np.where(a == 0, 255, a.astype(np.int64) - 1) for a in (np.array(Image.open(f)) for f in files)]
    if name == "voc":
        ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
        return [np.array(Image.open(root / "SegmentationClass" / f"{i}.png")).astype(np.int64) for i in ids]
    spec = json.loads((root / "dataset.json").read_text())
    files = sorted((root / "labels").glob("*.png"))
    raw = [np.array(Image.open(f)).astype(np.int64) for f in files]
    n, offset = len(spec["classes"]), spec["offset"]
    return [np.where((a >= offset) & (a < offset + n), a - offset, 255) for a in raw]


def _independent_miou(labels: list[np.ndarray], k: int) -> float:
    """mIoU (%) of predicting class `k` everywhere: class k's IoU is its share of the scored pixels, every other
    class present in the labels scores 0, absent classes do not count."""
    scored = np.concatenate([a[a != 255] for a in labels])
    present = set(np.unique(scored).tolist()) | {k}
    return 100.0 * float((scored == k).mean()) / len(present)


@pytest.mark.parametrize("name", ["ade20k", "voc", "folder"])
def test_a_run_scores_as_the_label_files_say(name: str, tmp_path: Path) -> None:
    root = _write(name, tmp_path / name)
    labels = _labels_from_files(name, root)
    values, counts = np.unique(np.concatenate([a[a != 255] for a in labels]), return_counts=True)
    k = int(values[np.argmax(counts)])
    n = get_dataset(name, root).classes.num_classes
    config = segbench.RunConfig(data_root=f"{name}={root}", out_dir=str(tmp_path / "runs"), run_id=name, **QUIET)
    result = segbench.run(name, config, modules={"const": Constant(n, k)})
    assert not result.failed
    frame = result.frame()
    miou = frame.query("metric == 'miou' and condition == 'clean'")
    assert miou["value"].item() == pytest.approx(_independent_miou(labels, k), abs=1e-9)
    assert miou["unit"].item() == "%"
    assert set(frame["dataset"]) == {name}
    manifest = json.loads((result.run_dir / "run.json").read_text())
    assert (manifest["dataset"], manifest["num_classes"], manifest["classes"]["name"]) == (name, n, name)


def test_voc_counts_only_the_ids_of_val_txt(tmp_path: Path) -> None:
    root = _write("voc", tmp_path / "voc")
    listed = set((root / "ImageSets" / "Segmentation" / "val.txt").read_text().split())
    on_disk = {p.stem for p in (root / "JPEGImages").glob("*.jpg")}
    assert on_disk - listed, "the writer should leave an image out of val.txt"
    samples = get_dataset("voc").samples(root)
    assert {s.id for s in samples} == listed


def test_corrupted_suite_on_the_fly_equals_generate_c(tmp_path: Path) -> None:
    """ADE20K-C: images of several sizes (and a grayscale one) corrupted on the fly give the numbers of the same
    run read from a generate-c folder; the manifest names the dataset, and another dataset's run refuses it."""
    root = _write("ade20k", tmp_path / "ade")
    out = tmp_path / "ade-c"
    generate_c(f"{root}", out, corruptions=["gaussian_noise", "fog"], severities=[2], quiet=True, dataset="ade20k")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"] == "ade20k" and manifest["images_per_condition"] == {"gaussian_noise-2": 3, "fog-2": 3}
    assert sorted(p.name for p in (out / "fog" / "2" / "images" / "validation").iterdir())[0] == "ADE_val_00000001.png"
    model = Constant(150, 3)
    narrow = dict(corruptions="gaussian_noise,fog", severities="2", data_root=f"ade20k={root}", **QUIET)
    fly = segbench.run(
        "ade20k-c", segbench.RunConfig(out_dir=str(tmp_path / "r"), run_id="fly", **narrow), {"m": model}
    )
    disk_config = segbench.RunConfig(out_dir=str(tmp_path / "r"), run_id="disk", corrupted_root=str(out), **narrow)
    disk = segbench.run("ade20k-c", disk_config, {"m": model})
    keep = ["condition", "metric", "value"]
    a = fly.frame().query("metric == 'miou'")[keep].reset_index(drop=True)
    b = disk.frame().query("metric == 'miou'")[keep].reset_index(drop=True)
    assert len(a) == 3 and a.equals(b)
    voc = _write("voc", tmp_path / "voc")
    with pytest.raises(Exception, match="generated from ade20k but this run reads voc"):
        config = dict(narrow, data_root=f"voc={voc}")
        segbench.run("voc-c", segbench.RunConfig(out_dir=str(tmp_path / "r"), corrupted_root=str(out), **config))


def _ade_segformer(folder: Path, names: list[str], perm: np.ndarray | None, favour: int) -> None:
    """A tiny random-init transformers SegFormer with 150 labels, favouring class `favour`; with `perm`, the same
    model with its classifier rows and labels permuted (label i is the original label perm[i])."""
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 16, 32], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16
    )
    torch.manual_seed(0)
    order = np.arange(150) if perm is None else perm
    config.id2label = {i: names[j] for i, j in enumerate(order)}
    config.label2id = {label: i for i, label in config.id2label.items()}
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():
        classifier = model.decode_head.classifier
        classifier.bias[favour] += 2.0
        classifier.weight.copy_(classifier.weight[torch.from_numpy(order)])
        classifier.bias.copy_(classifier.bias[torch.from_numpy(order)])
    model.save_pretrained(folder)


def test_an_ade20k_transformers_segformer_scores_the_same_with_its_labels_permuted(tmp_path: Path) -> None:
    root = _write("ade20k", tmp_path / "ade")
    names = list(get_dataset("ade20k").classes.names)
    perm = np.random.default_rng(0).permutation(150)
    values, counts = np.unique(
        np.concatenate([a[a != 255] for a in _labels_from_files("ade20k", root)]), return_counts=True
    )
    k = int(values[np.argmax(counts)])
    _ade_segformer(tmp_path / "plain", names, None, favour=k)
    _ade_segformer(tmp_path / "permuted", names, perm, favour=k)
    models = f"plain=hf:{tmp_path / 'plain'},permuted=hf:{tmp_path / 'permuted'}"
    config = segbench.RunConfig(models=models, data_root=f"ade20k={root}", out_dir=str(tmp_path / "runs"), **QUIET)
    result = segbench.run("ade20k", config)
    assert not result.failed
    frame = result.frame().query("condition == 'clean' and metric.str.startswith('iou') or metric == 'miou'")
    plain = frame.query("model == 'plain'").set_index("metric")["value"]
    permuted = frame.query("model == 'permuted'").set_index("metric")["value"]
    assert plain["miou"] > 0
    assert plain.equals(permuted.loc[plain.index])
    refused = segbench.RunConfig(models=f"hf:{tmp_path / 'plain'}", out_dir=str(tmp_path / "runs"), **QUIET)
    with pytest.raises(Exception, match="road"):  # on Cityscapes the missing classes are named
        segbench.run("demo", refused)
