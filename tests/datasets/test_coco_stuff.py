"""COCO-Stuff 164k reader: both label forms and layouts, the raw id map, errors, mIoU and the protocol."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.bench.data.coco_stuff import DATASET, write_synthetic
from segbench.bench.data.datasets import get_dataset
from segbench.bench.data.errors import DataError, DataNotFoundError

# mmseg's tools/dataset_converters/coco_stuff164k.py clsID_to_trID, written as runs: raw ids first..last -> train ids
# from `start` on; the 11 raw ids between runs (never annotated) have no train id
RUNS = [(0, 10, 0), (12, 24, 11), (26, 27, 24), (30, 43, 26), (45, 64, 40), (66, 66, 60), (69, 69, 61), (71, 81, 62),
        (83, 89, 73), (91, 181, 80)]  # fmt: skip
RAW_TO_TRAIN = {raw: start + raw - first for first, last, start in RUNS for raw in range(first, last + 1)} | {255: 255}


def decode_independently(path: Path) -> np.ndarray:
    raw = np.array(Image.open(path))
    if path.name.endswith("_labelTrainIds.png"):
        return raw
    return np.vectorize(lambda v: RAW_TO_TRAIN.get(int(v), 255), otypes=[np.uint8])(raw)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("coco"), num_images=4, size=(64, 96), seed=0)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("coco_mmseg"), num_images=4, size=(64, 96), seed=0, converted=True)


@pytest.fixture()
def copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "coco"))


def test_registered_value():
    dataset = get_dataset("coco-stuff")
    assert dataset is DATASET and dataset.env_var == "COCO_STUFF_DATASET"
    names, palette = dataset.classes.names, dataset.classes.palette
    assert len(names) == len(palette) == 171 and len(RAW_TO_TRAIN) == 172
    assert (names[0], names[79], names[80], names[170]) == ("person", "toothbrush", "banner", "wood")
    assert (names[11], names[60], names[61]) == ("stop sign", "dining table", "toilet")  # after ids 11 and 65, 67, 68
    assert palette[0] == (0, 192, 64) and palette[170] == (64, 64, 0)
    assert (dataset.protocol.scale, dataset.protocol.mode) == ((2048, 512), "whole")


def test_raw_layout(root: Path):
    images = sorted((root / "images" / "val2017").glob("*.jpg"))
    assert len(images) == 4 and all(len(p.stem) == 12 and p.stem.isdigit() for p in images)
    assert len({Image.open(p).size for p in images}) > 1 and {Image.open(p).mode for p in images} == {"RGB"}
    samples = DATASET.samples(root)
    assert [s.id for s in samples] == [p.stem for p in images]
    for sample in samples:
        assert sample.label == root / "annotations" / "val2017" / f"{sample.id}.png"
        assert sample.kind == "stuffthingmaps" and sample.rel == Path("images/val2017") / f"{sample.id}.jpg"
        raw = np.array(Image.open(sample.label))
        assert Image.open(sample.label).mode == "L" and (raw == 255).any() and raw[raw != 255].max() <= 181


def test_raw_labels_match_independent_decoding(root: Path):
    for sample in DATASET.samples(root):
        np.testing.assert_array_equal(DATASET.read_label(sample), decode_independently(sample.label))


def test_converted_labels_preferred_and_equal(root: Path, converted: Path):
    samples = DATASET.samples(converted)
    assert all(s.kind == "trainIds" and s.label.name == f"{s.id}_labelTrainIds.png" for s in samples)
    assert all((s.label.parent / f"{s.id}.png").is_file() for s in samples)  # the raw ones stay beside them
    for sample, raw_sample in zip(samples, DATASET.samples(root)):
        label = DATASET.read_label(sample)
        np.testing.assert_array_equal(label, decode_independently(sample.label))
        np.testing.assert_array_equal(label, decode_independently(raw_sample.label))


def test_stuffthingmaps_folder_layout(copy: Path):
    (copy / "annotations").rename(copy / "stuffthingmaps_trainval2017")
    samples = DATASET.samples(copy)
    assert [s.label.parent for s in samples] == [copy / "stuffthingmaps_trainval2017" / "val2017"] * 4
    assert all(s.kind == "stuffthingmaps" for s in samples)


def test_raw_id_map(copy: Path):
    sample = DATASET.samples(copy)[0]
    values = np.array([0, 10, 11, 12, 25, 26, 90, 91, 181, 255], dtype=np.uint8)
    Image.fromarray(np.tile(values, (40, 4))).save(sample.label)
    label = DATASET.read_label(sample)[0, :10]
    assert label.tolist() == [0, 10, 255, 11, 255, 24, 255, 80, 170, 255]
    assert label.tolist() == [RAW_TO_TRAIN.get(int(v), 255) for v in values]


@pytest.mark.parametrize(("converted_form", "value"), [(False, 182), (False, 254), (True, 171)])
def test_out_of_range_value_names_the_file(copy: Path, converted_form: bool, value: int):
    sample = DATASET.samples(copy)[1]
    path = sample.label.with_name(f"{sample.id}_labelTrainIds.png") if converted_form else sample.label
    raw = np.zeros(Image.open(sample.image).size[::-1], dtype=np.uint8)
    raw[5, 5] = value
    Image.fromarray(raw).save(path)
    sample = DATASET.samples(copy)[1]
    assert sample.label == path
    with pytest.raises(DataError) as info:
        DATASET.read_label(sample)
    message = str(info.value)
    assert str(path) in message and str(value) in message and "\n" not in message


def test_missing_files_name_the_path(copy: Path, tmp_path: Path):
    sample = DATASET.samples(copy)[2]
    sample.label.unlink()
    with pytest.raises(DataNotFoundError) as info:
        DATASET.samples(copy)
    message = str(info.value)
    assert message.startswith(str(sample.image)) and f"{sample.id}_labelTrainIds.png" in message
    assert "\n" not in message
    with pytest.raises(DataNotFoundError) as info:
        DATASET.samples(tmp_path)
    assert str(tmp_path / "images" / "val2017") in str(info.value) and "\n" not in str(info.value)


def test_miou_matches_numpy(root: Path, miou_pair):
    labels = [decode_independently(p) for p in sorted((root / "annotations" / "val2017").glob("*.png"))]
    bench, reference = miou_pair(DATASET, root, labels)
    assert 0 < reference < 0.1
    assert bench == pytest.approx(reference, abs=1e-12)


def test_protocol_resize():
    assert DATASET.protocol.input_size(480, 640) == (512, 683)
    assert DATASET.protocol.input_size(300, 400) == (512, 683)
