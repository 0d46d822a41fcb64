"""Pascal VOC reader: val.txt rule and order, palette indices, borders, errors, mIoU and the protocol."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.bench.data.datasets import get_dataset
from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.voc import DATASET, write_synthetic

# mmseg's PascalVOCDataset palette, a few entries (index: colour)
MMSEG_COLOURS = {0: (0, 0, 0), 1: (128, 0, 0), 7: (128, 128, 128), 15: (192, 128, 128), 20: (0, 64, 128)}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("voc"), num_images=4, size=(64, 96), seed=0)


@pytest.fixture()
def copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "VOC2012"))


def listed(root: Path, split: str = "val") -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def decode_independently(path: Path) -> np.ndarray:
    img = Image.open(path)
    assert img.mode == "P"
    lookup = {k: k for k in range(21)} | {255: 255}
    indices = np.frombuffer(img.tobytes(), dtype=np.uint8).reshape(img.size[1], img.size[0])
    return np.vectorize(lookup.__getitem__, otypes=[np.uint8])(indices)


def test_registered_value():
    dataset = get_dataset("voc")
    assert dataset is DATASET and dataset.env_var == "VOC_DATASET"
    names = dataset.classes.names
    assert names == (
        "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
        "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
    )  # fmt: skip
    for index, colour in MMSEG_COLOURS.items():
        assert dataset.classes.palette[index] == colour
    assert dataset.classes.ignore_index == 255
    assert (dataset.protocol.scale, dataset.protocol.mode) == ((2048, 512), "whole")
    assert not dataset.same_size and not dataset.grayscale


def test_only_listed_ids_in_file_order(root: Path, copy: Path):
    ids = listed(root)
    assert len(ids) == 4
    extra = set(p.stem for p in (root / "JPEGImages").glob("*.jpg")) - set(ids)
    assert len(extra) == 1 and (root / "SegmentationClass" / f"{extra.pop()}.png").is_file()
    samples = DATASET.samples(root)
    assert [s.id for s in samples] == ids
    for sample in samples:
        assert sample.image == root / "JPEGImages" / f"{sample.id}.jpg" and sample.rel == Path("JPEGImages") / (
            f"{sample.id}.jpg"
        )
        assert sample.label == root / "SegmentationClass" / f"{sample.id}.png"
    assert [s.id for s in DATASET.samples(root, "train")] == listed(root, "train")
    (copy / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(reversed(ids)) + "\n\n")
    assert [s.id for s in DATASET.samples(copy)] == ids[::-1]


def test_labels_are_palette_indices(root: Path):
    for sample in DATASET.samples(root):
        img = Image.open(sample.label)
        assert img.mode == "P" and img.format == "PNG"
        palette = np.array(img.getpalette()[: 3 * 256]).reshape(-1, 3)
        for index, colour in MMSEG_COLOURS.items():
            assert tuple(palette[index]) == colour
        assert tuple(palette[255]) == (224, 224, 192)
        label = DATASET.read_label(sample)
        np.testing.assert_array_equal(label, decode_independently(sample.label))
        assert (label == 0).any() and (label == 255).any() and ((label > 0) & (label < 21)).any()


def test_borders_separate_regions(root: Path):
    for sample in DATASET.samples(root):
        label = DATASET.read_label(sample)
        assert (label == 255).any()
        # no two neighbouring pixels hold different classes: a 255 border always lies between regions
        for a, b in ((label[1:], label[:-1]), (label[:, 1:], label[:, :-1])):
            assert not ((a != b) & (a != 255) & (b != 255)).any()


@pytest.mark.parametrize("value", [21, 254])
def test_out_of_range_value_names_the_file(copy: Path, value: int):
    sample = DATASET.samples(copy)[1]
    img = Image.open(sample.label)
    indices = np.array(img)
    indices[3, 3] = value
    out = Image.fromarray(indices)
    out.putpalette(img.getpalette())
    out.save(sample.label)
    with pytest.raises(DataError) as info:
        DATASET.read_label(sample)
    message = str(info.value)
    assert str(sample.label) in message and str(value) in message and "\n" not in message


def test_missing_files_name_the_file(copy: Path):
    listing = copy / "ImageSets" / "Segmentation" / "val.txt"
    ids = listed(copy)
    for path in (copy / "SegmentationClass" / f"{ids[2]}.png", copy / "JPEGImages" / f"{ids[1]}.jpg", listing):
        path.unlink()
        with pytest.raises(DataNotFoundError) as info:
            DATASET.samples(copy)
        message = str(info.value)
        assert message.startswith(str(path)) and "\n" not in message


def test_empty_split_file(copy: Path):
    (copy / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(DataError, match="val.txt: lists no image ids"):
        DATASET.samples(copy)


def test_miou_matches_numpy(root: Path, miou_pair):
    labels = [decode_independently(root / "SegmentationClass" / f"{i}.png") for i in listed(root)]
    bench, reference = miou_pair(DATASET, root, labels)
    assert 0 < reference < 0.5
    assert bench == pytest.approx(reference, abs=1e-12)


def test_protocol_resize():
    assert DATASET.protocol.input_size(375, 500) == (512, 683)
    assert DATASET.protocol.input_size(300, 400) == (512, 683)
