"""The command line on the new datasets: listing them, running their suites, generate-c, and the mistakes people make
(a missing root, a root named for another dataset, a folder without dataset.json), each one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segbench.bench.data.datasets import get_dataset
from segbench.bench.data.folder import write_synthetic_folder


@pytest.fixture()
def call(cli_here, monkeypatch, tmp_path, capsys):
    return cli_here(monkeypatch, tmp_path, capsys)


def test_list_datasets_names_each_with_its_classes_and_variable(call) -> None:
    code, out, _ = call("list", "datasets")
    assert code == 0
    for line in ("ade20k: ADE20K, 150 classes, $ADE20K_DATASET", "voc: Pascal VOC 2012, 21 classes, $VOC_DATASET",
                 "coco-stuff: COCO-Stuff 164k, 171 classes, $COCO_STUFF_DATASET", "cityscapes: Cityscapes, 19 classes",
                 "folder: your own images/, labels/ and dataset.json"):  # fmt: skip
        assert line in out


def test_a_voc_run_and_its_report_from_the_command_line(call, tmp_path: Path) -> None:
    root = get_dataset("voc").write_synthetic(tmp_path / "VOC2012", num_images=2, size=(48, 64), seed=0)
    out = tmp_path / "runs" / "voc"
    args = ["run", "--suite", "voc-c", "--data", f"voc={root}", "--models", "segformer-b0", "--allow-random-weights"]
    code, _, err = call(*args, "--corruptions", "fog", "--severities", "2", "--out", out, "--quiet")
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["dataset"] == "voc"
    assert (out / "index.html").is_file()


def test_generate_c_on_a_folder_dataset(call, tmp_path: Path) -> None:
    root = write_synthetic_folder(tmp_path / "fields", num_images=2, size=(40, 56), seed=0)
    out = tmp_path / "fields-c"
    code, _, err = call(
        "generate-c",
        "--data",
        f"folder={root}",
        "--out",
        out,
        "--corruptions",
        "snow",
        "--severities",
        "1",
        "--quiet",
        "--workers",
        "1",
    )
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["dataset"] == "folder"
    assert sorted(p.name for p in (out / "snow" / "1" / "images").iterdir()) == ["img_000.png", "img_001.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--suite", "ade20k"], "no ADE20K root given: pass --data ade20k=ROOT or set ADE20K_DATASET"),
        (["run", "--suite", "ade20k", "--data", "cityscapes=/x"], "reads no Cityscapes; give --data ade20k=PATH"),
        (["run", "--suite", "voc", "--data", "voc=/nonexistent"], "Pascal VOC 2012 root '/nonexistent' (from the data"),
        (["run", "--suite", "folder"], "no folder dataset given: pass --data folder=PATH"),
        (["run", "--suite", "ade20k", "--data", "ade=/x"], "unknown dataset 'ade'; did you mean ade20k?"),
        (["run", "--suite", "folder", "--data", "folder=EMPTY"], "dataset.json"),
        (["generate-c", "--data", "ade20k=/a,voc=/b", "--out", "o"], "give one root, name=PATH"),
        (["generate-c", "--dataset", "kitti", "--data", "/x", "--out", "o"], "'kitti' is not a dataset generate-c"),
    ],
)  # fmt: skip
def test_dataset_mistakes_are_one_line(call, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / "EMPTY") if a == "folder=EMPTY" else a for a in args]
    args = [f"folder={tmp_path / 'EMPTY'}" if a == str(tmp_path / "EMPTY") else a for a in args]
    code, _, err = call(*args, "--allow-random-weights") if args[0] == "run" else call(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
