"""ADE20K reader: layout, reduce-zero decoding, grayscale images, errors, mIoU and the protocol's resize."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.bench.data.ade20k import DATASET, write_synthetic
from segbench.bench.data.datasets import get_dataset
from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.loading import SegmentationDataset


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("ade"), num_images=5, size=(64, 96), seed=0)


@pytest.fixture()
def copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "ade"))


def decode_independently(path: Path) -> np.ndarray:
    raw = np.array(Image.open(path)).astype(np.int64)
    return np.where(raw == 0, 255, raw - 1).astype(np.uint8)


def test_registered_value():
    dataset = get_dataset("ade20k")
    assert dataset is DATASET and dataset.env_var == "ADE20K_DATASET"
    names = dataset.classes.names
    assert len(names) == 150 and names[0] == "wall" and names[7] == "bed " and names[149] == "flag"
    assert names[12] == "person" and names[44] == "chest of drawers" and names[136] == "traffic light"
    assert dataset.classes.palette[0] == (120, 120, 120) and dataset.classes.palette[149] == (92, 0, 255)
    protocol = dataset.protocol
    assert (protocol.scale, protocol.mode, protocol.crop, protocol.stride) == (
        (2048, 512),
        "slide",
        (512, 512),
        (341, 341),
    )
    assert dataset.grayscale and not dataset.same_size and "ADEChallengeData2016" in dataset.download


def test_layout(root: Path):
    images = sorted((root / "images" / "validation").glob("ADE_val_*.jpg"))
    assert len(images) == 5
    samples = DATASET.samples(root, "val")
    assert [s.id for s in samples] == [p.stem for p in images]
    for sample, image in zip(samples, images):
        assert sample.image == image and sample.rel == Path("images/validation") / image.name
        assert sample.label == root / "annotations" / "validation" / f"{image.stem}.png"
    assert [s.id for s in DATASET.samples(root, "validation")] == [s.id for s in samples]


def test_writer_files(root: Path, tmp_path: Path):
    images = sorted((root / "images" / "validation").glob("*.jpg"))
    modes = [Image.open(p).mode for p in images]
    assert "L" in modes and "RGB" in modes and all(Image.open(p).format == "JPEG" for p in images)
    assert len({Image.open(p).size for p in images}) > 1  # sizes and aspect ratios vary
    labels = [np.array(Image.open(root / "annotations" / "validation" / f"{p.stem}.png")) for p in images]
    assert all(Image.open(root / "annotations" / "validation" / f"{p.stem}.png").mode == "L" for p in images)
    assert all((label == 0).any() and label.max() <= 150 for label in labels)
    again = write_synthetic(tmp_path / "again", num_images=5, size=(64, 96), seed=0)
    for p in images:
        assert (again / p.relative_to(root)).read_bytes() == p.read_bytes()


def test_labels_match_independent_decoding(root: Path):
    for sample in DATASET.samples(root):
        label = DATASET.read_label(sample)
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, decode_independently(sample.label))


def test_reduce_zero_label(copy: Path):
    sample = DATASET.samples(copy)[0]
    values = np.array([[0, 1, 2, 75], [149, 150, 0, 1]] * 20, dtype=np.uint8)
    values = np.tile(values, (1, 10))
    Image.open(sample.image).resize(values.shape[::-1]).save(sample.image)
    Image.fromarray(values).save(sample.label)
    label = DATASET.read_label(sample)
    lookup = {0: 255, 1: 0, 2: 1, 75: 74, 149: 148, 150: 149}
    for raw, train_id in lookup.items():
        assert np.all(label[values == raw] == train_id), raw


def test_grayscale_image_read_as_rgb(root: Path):
    items = SegmentationDataset(DATASET, root, resize=False)
    gray = [i for i, s in enumerate(items.samples) if Image.open(s.image).mode == "L"]
    assert gray
    item = items[gray[0]]
    image = item["image"].numpy()
    assert image.shape[0] == 3 and image.shape[1:] == tuple(item["label"].shape)
    assert np.array_equal(image[0], image[1]) and np.array_equal(image[1], image[2])
    assert np.array_equal(image[0], np.array(Image.open(items.samples[gray[0]].image)))


@pytest.mark.parametrize("value", [151, 255])
def test_out_of_range_value_names_the_file(copy: Path, value: int):
    sample = DATASET.samples(copy)[1]
    raw = np.array(Image.open(sample.label))
    raw[0, 0] = value
    Image.fromarray(raw).save(sample.label)
    with pytest.raises(DataError) as info:
        DATASET.read_label(sample)
    message = str(info.value)
    assert str(sample.label) in message and str(value) in message and "\n" not in message


def test_missing_annotation_names_the_file(copy: Path):
    sample = DATASET.samples(copy)[2]
    sample.label.unlink()
    with pytest.raises(DataNotFoundError) as info:
        DATASET.samples(copy)
    message = str(info.value)
    assert str(sample.label) in message and "annotations/validation" in message and "\n" not in message


def test_missing_folder_names_the_layout(tmp_path: Path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataNotFoundError) as info:
        DATASET.samples(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "images" / "validation") in message and "ADEChallengeData2016" in message
    assert "\n" not in message
    with pytest.raises(DataError, match="no split"):
        DATASET.samples(tmp_path, "test")


def test_miou_matches_numpy(root: Path, miou_pair):
    labels = [decode_independently(p) for p in sorted((root / "annotations" / "validation").glob("*.png"))]
    bench, reference = miou_pair(DATASET, root, labels)
    assert 0 < reference < 0.1
    assert bench == pytest.approx(reference, abs=1e-12)


def test_protocol_resize_is_mmcv_rescale_size(root: Path):
    protocol = DATASET.protocol
    # mmcv's rescale_size: factor min(2048 / long side, 512 / short side), each side int(side * factor + 0.5)
    assert protocol.input_size(300, 400) == (512, 683)
    assert protocol.input_size(400, 300) == (683, 512)
    assert protocol.input_size(100, 1000) == (205, 2048)  # the long side bounds it: factor 2.048
    assert protocol.resize(np.zeros((300, 400, 3), dtype=np.uint8)).shape == (512, 683, 3)
    item = SegmentationDataset(DATASET, root, max_images=1)[0]
    h, w = item["label"].shape
    assert tuple(item["image"].shape[1:]) == protocol.input_size(h, w) != (h, w)
