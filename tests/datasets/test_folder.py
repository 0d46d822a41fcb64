"""Tests for bench/data/folder.py: the user's own data (`--data folder=PATH`) read as a dataset, its dataset.json
checks and its one-line errors."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.bench.data.datasets import Protocol, get_dataset
from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.folder import write_synthetic_folder
from segbench.bench.data.loading import SegmentationDataset
from segbench.bench.results.axes import Condition
from segbench.bench.results.classes import default_palette

SIZE = (40, 56)


def decoded(label: Path, offset: int = 0, ignore: int = 255) -> np.ndarray:
    """The expected class indices of a label PNG, computed here from the raw values (independently of folder.py)."""
    raw = np.array(Image.open(label)).astype(np.int64)
    out = raw - offset
    out[(raw < offset) | (raw == ignore)] = ignore
    return out.astype(np.uint8)


def one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_synthetic_folder(tmp_path / "fields", 3, SIZE, seed=0)


def edit_spec(root: Path, **changes) -> None:
    path = root / "dataset.json"
    spec = json.loads(path.read_text())
    spec.update(changes)
    path.write_text(json.dumps(spec))


def save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# --------------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------------


def test_synthetic_folder_reads_as_a_dataset(root: Path) -> None:
    dataset = get_dataset("folder", root)
    assert (dataset.name, dataset.classes.name, dataset.title) == ("folder", "folder", "synthetic folder dataset")
    assert dataset.classes.names == ("background", "crop", "weed", "soil")
    assert dataset.classes.ignore_index == 255 and dataset.classes.palette == default_palette(4)
    assert dataset.env_var is None and dataset.same_size is False and dataset.grayscale is False
    assert dataset.protocol == Protocol()
    samples = dataset.samples(root)
    assert [s.id for s in samples] == ["img_000", "img_001", "img_002"]
    assert [s.rel for s in samples] == [Path("images") / f"img_00{i}.png" for i in range(3)]
    assert all(s.label == root / "labels" / f"{s.id}.png" for s in samples)
    assert [s.id for s in dataset.samples(root, max_images=2)] == ["img_000", "img_001"]
    # picklable, for DataLoader workers started by spawn
    assert [s.id for s in pickle.loads(pickle.dumps(dataset)).samples(root)] == ["img_000", "img_001", "img_002"]


def test_title_palette_and_protocol_come_from_the_json(root: Path) -> None:
    palette = [[0, 0, 0], [0, 200, 0], [200, 0, 0], [120, 80, 40]]
    protocol = {"scale": [96, 48], "mode": "slide", "crop": [32, 32], "stride": [16, 16]}
    edit_spec(root, name="My fields", palette=palette, protocol=protocol)
    dataset = get_dataset("folder", root)
    assert dataset.title == "My fields" and dataset.classes.palette == tuple(map(tuple, palette))
    assert dataset.protocol == Protocol(scale=(96, 48), mode="slide", crop=(32, 32), stride=(16, 16))


def test_writer_is_deterministic(tmp_path: Path) -> None:
    def files(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    first = files(write_synthetic_folder(tmp_path / "a", 2, SIZE, seed=3))
    assert first == files(write_synthetic_folder(tmp_path / "b", 2, SIZE, seed=3))
    other = files(write_synthetic_folder(tmp_path / "c", 2, SIZE, seed=4))
    assert (
        set(first)
        == set(other)
        == {"dataset.json", *(f"{d}/img_00{i}.png" for d in ("images", "labels") for i in (0, 1))}
    )
    assert first["images/img_000.png"] != other["images/img_000.png"]
    assert get_dataset("folder", tmp_path / "a").write_synthetic is write_synthetic_folder


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_offset_and_ignore_index_decode_the_pngs(tmp_path: Path, offset: int) -> None:
    root = write_synthetic_folder(tmp_path / "f", 2, SIZE, seed=1, classes=("a", "b", "c"), offset=offset)
    dataset = get_dataset("folder", root)
    raws = []
    for sample in dataset.samples(root):
        raw = np.array(Image.open(sample.label))
        raws.append(raw)
        label = dataset.read_label(sample)
        assert label.dtype == np.uint8 and label.shape == SIZE
        np.testing.assert_array_equal(label, decoded(sample.label, offset))
    values = set(np.unique(np.concatenate([r.ravel() for r in raws])).tolist())
    assert 255 in values and {offset, offset + 1, offset + 2} <= values  # every case occurs in the data
    assert (offset == 0) or any(v < offset for v in values)


def test_ignore_index_other_than_255(root: Path) -> None:
    edit_spec(root, ignore_index=10)
    label = root / "labels" / "img_000.png"
    raw = np.array(Image.open(label))
    raw[raw == 255] = 10
    save(raw, label)
    dataset = get_dataset("folder", root)
    sample = dataset.samples(root)[0]
    np.testing.assert_array_equal(dataset.read_label(sample), decoded(label, 0, ignore=10))
    assert (dataset.read_label(sample) == 10).any()
    raw[0, 0] = 255  # no longer the ignore index: outside the classes
    save(raw, label)
    with pytest.raises(DataError) as exc:
        dataset.read_label(sample)
    one_line(exc, str(label), "[255]", "0-3", "offset 0")


def test_jpg_images_in_subfolders(root: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    save(rgb, root / "images" / "field" / "day 2" / "x.JPG")
    save(rgb, root / "images" / "field-a" / "y.jpeg")
    save(np.full((48, 64), 2, np.uint8), root / "labels" / "field" / "day 2" / "x.png")
    save(np.full((48, 64), 1, np.uint8), root / "labels" / "field-a" / "y.png")
    (root / "images" / ".DS_Store").write_bytes(b"junk")  # hidden files are skipped
    dataset = get_dataset("folder", root)
    samples = dataset.samples(root)
    ids = [s.id for s in samples]
    assert ids == ["field-a/y", "field/day 2/x", "img_000", "img_001", "img_002"]  # by id, not by path
    jpg = samples[1]
    assert jpg.rel == Path("images/field/day 2/x.JPG")
    assert jpg.corrupted_rel == Path("images/field/day 2/x.png")
    items = SegmentationDataset(dataset, root)
    item = items[1]
    assert item["id"] == "field/day 2/x" and tuple(item["image"].shape) == (3, 48, 64)
    assert (item["label"].numpy() == 2).all()


# --------------------------------------------------------------------------------------------------------------------
# Mismatches: one line naming the file
# --------------------------------------------------------------------------------------------------------------------


def test_image_without_a_label(root: Path) -> None:
    (root / "labels" / "img_001.png").unlink()
    with pytest.raises(DataNotFoundError) as exc:
        get_dataset("folder", root).samples(root)
    one_line(exc, str(root / "images" / "img_001.png"), str(root / "labels" / "img_001.png"))


def test_label_without_an_image(root: Path) -> None:
    (root / "images" / "img_002.png").unlink()
    with pytest.raises(DataError) as exc:
        get_dataset("folder", root).samples(root)
    one_line(exc, str(root / "labels" / "img_002.png"), "without an image", str(root / "images" / "img_002"))


def test_no_images(root: Path) -> None:
    for path in (root / "images").iterdir():
        path.unlink()
    with pytest.raises(DataNotFoundError) as exc:
        get_dataset("folder", root).samples(root)
    one_line(exc, str(root / "images"), "no .png")


@pytest.mark.parametrize("missing", ["images", "labels"])
def test_missing_folder(root: Path, missing: str) -> None:
    for path in (root / missing).iterdir():
        path.unlink()
    (root / missing).rmdir()
    with pytest.raises(DataNotFoundError) as exc:
        get_dataset("folder", root).samples(root)
    one_line(exc, str(root / missing), "not found")


def test_other_file_types_are_named(root: Path) -> None:
    (root / "images" / "img_003.tif").write_bytes(b"II*")
    with pytest.raises(DataError) as exc:
        get_dataset("folder", root).samples(root)
    one_line(exc, str(root / "images" / "img_003.tif"), "png or jpg")
    (root / "images" / "img_003.tif").unlink()
    save(np.zeros((40, 56, 3), np.uint8), root / "images" / "img_000.jpg")  # a second img_000
    with pytest.raises(DataError) as exc:
        get_dataset("folder", root).samples(root)
    one_line(exc, "img_000", "same id")


def test_image_and_label_of_different_sizes(root: Path) -> None:
    label = root / "labels" / "img_001.png"
    save(np.zeros((SIZE[0], SIZE[1] + 8), np.uint8), label)
    with pytest.raises(DataError) as exc:
        get_dataset("folder", root).samples(root)
    one_line(exc, str(label), "40x64 px", "img_001.png is 40x56 px")


def test_label_value_outside_the_classes(tmp_path: Path) -> None:
    root = write_synthetic_folder(tmp_path / "f", 1, SIZE, offset=2)
    label = root / "labels" / "img_000.png"
    raw = np.array(Image.open(label))
    raw[5, 5], raw[6, 6] = 6, 9  # classes are values 2-5
    save(raw, label)
    dataset = get_dataset("folder", root)
    with pytest.raises(DataError) as exc:
        dataset.read_label(dataset.samples(root)[0])
    one_line(exc, str(label), "[6, 9]", "values 2-5", "classes 0-3", "offset 2")


def test_grayscale_images_only_where_the_json_says_so(root: Path) -> None:
    image = root / "images" / "img_000.png"
    save(np.array(Image.open(image).convert("L")), image)
    with pytest.raises(DataError) as exc:
        get_dataset("folder", root).samples(root)
    one_line(exc, str(image), "'L'")
    edit_spec(root, grayscale=True)
    dataset = get_dataset("folder", root)
    assert dataset.grayscale
    assert tuple(SegmentationDataset(dataset, root)[0]["image"].shape) == (3, *SIZE)


def test_only_split_val(root: Path) -> None:
    dataset = get_dataset("folder", root)
    with pytest.raises(DataError) as exc:
        dataset.samples(root, split="train")
    one_line(exc, str(root), "no splits", "'train'")


def test_root_none_or_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as exc:
        get_dataset("folder", None)
    assert str(exc.value) == (
        "no folder dataset given: pass --data folder=PATH (a folder holding images/, labels/ and dataset.json)"
    )
    with pytest.raises(DataNotFoundError) as exc:
        get_dataset("folder", tmp_path / "nowhere")
    one_line(exc, str(tmp_path / "nowhere"), "is not a folder", "--data folder=PATH")


# --------------------------------------------------------------------------------------------------------------------
# dataset.json: one line naming the file and the field
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, parts",
    [
        ({"classes": []}, ["classes is empty"]),
        ({"classes": ["a", " "]}, ["classes[1]", "empty name"]),
        ({"classes": ["a", "b", "a"]}, ["classes[2]", "'a'", "twice"]),
        ({"classes": ["a", 3]}, ["classes[1]", "`str`"]),
        ({"classes": "abc"}, ["classes", "`array`"]),
        ({"palette": [[0, 0, 0]] * 3}, ["palette has 3 colours for 4 classes"]),
        ({"palette": [[0, 0, 0], [0, 0, 0], [0, 300, 0], [1, 1, 1]]}, ["palette[2]", "0-255"]),
        ({"palette": [[0, 0, 0], [0, 0], [0, 0, 0], [1, 1, 1]]}, ["palette[1]", "length 3"]),
        ({"ignore_index": 256}, ["ignore_index", "0-255"]),
        ({"ignore_index": -1}, ["ignore_index", "0-255"]),
        ({"ignore_index": 2}, ["ignore_index 2", "class index"]),
        ({"ignore_index": 5, "offset": 2}, ["ignore_index 5", "'soil'", "offset 2"]),
        ({"ignore_index": "255"}, ["ignore_index", "`int`"]),
        ({"offset": -1}, ["offset", ">= 0"]),
        ({"offset": 253}, ["offset 253 + 4 classes", "256"]),
        ({"protocol": {"mode": "tiles"}}, ["protocol.mode", "'tiles'"]),
        ({"protocol": {"scale": [512, 0]}}, ["protocol.scale[1]", ">= 1"]),
        ({"protocol": {"crop": [512]}}, ["protocol.crop", "length 2"]),
        ({"grayscale": "yes"}, ["grayscale", "`bool`"]),
        ({"ignore_idx": 0}, ["unknown field `ignore_idx`", "ignore_index"]),
    ],
)
def test_bad_dataset_json_field(root: Path, changes: dict, parts: list[str]) -> None:
    edit_spec(root, **changes)
    with pytest.raises(DataError) as exc:
        get_dataset("folder", root)
    one_line(exc, f"{root / 'dataset.json'}: ", *parts)


def test_classes_are_required(root: Path) -> None:
    (root / "dataset.json").write_text('{"offset": 1}')
    with pytest.raises(DataError) as exc:
        get_dataset("folder", root)
    one_line(exc, str(root / "dataset.json"), "`classes`", '{"classes": [')


@pytest.mark.parametrize("content", [None, "", "{classes: [a]}", "[1, 2]", b"\xff\xfe"])
def test_missing_or_unreadable_dataset_json(root: Path, content) -> None:
    path = root / "dataset.json"
    if content is None:
        path.unlink()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataError) as exc:
        get_dataset("folder", root)
    one_line(exc, str(path), '{"classes": [', "`object`" if content == "[1, 2]" else "")
    assert isinstance(exc.value, DataNotFoundError) == (content is None)


# --------------------------------------------------------------------------------------------------------------------
# As the runner reads it
# --------------------------------------------------------------------------------------------------------------------


def test_segmentation_dataset_items_hold_the_decoded_labels(tmp_path: Path) -> None:
    root = write_synthetic_folder(tmp_path / "f", 3, SIZE, seed=2, offset=1)
    items = SegmentationDataset(get_dataset("folder", root), root)
    assert len(items) == 3
    for index in range(3):
        item = items[index]
        sample = items.samples[index]
        np.testing.assert_array_equal(item["label"].numpy(), decoded(sample.label, offset=1))
        image = np.array(Image.open(sample.image)).transpose(2, 0, 1)
        np.testing.assert_array_equal(item["image"].numpy(), image)
        assert item["id"] == sample.id


def test_corrupted_images_are_deterministic_and_differ_from_clean(root: Path) -> None:
    dataset = get_dataset("folder", root)
    condition = Condition("gaussian_noise", 3)
    clean = SegmentationDataset(dataset, root)[0]["image"].numpy()
    first = SegmentationDataset(dataset, root, condition=condition)[0]
    again = SegmentationDataset(get_dataset("folder", root), root, condition=condition)[0]
    np.testing.assert_array_equal(first["image"].numpy(), again["image"].numpy())
    assert first["image"].shape == clean.shape and (first["image"].numpy() != clean).mean() > 0.5
    np.testing.assert_array_equal(first["label"].numpy(), SegmentationDataset(dataset, root)[0]["label"].numpy())
    other_seed = SegmentationDataset(dataset, root, condition=condition, base_seed=1)[0]["image"].numpy()
    assert (other_seed != first["image"].numpy()).any()


def test_no_domains_and_no_other_root(root: Path, tmp_path: Path) -> None:
    dataset = get_dataset("folder", root)
    with pytest.raises(DataError) as exc:
        dataset.find(root, "val", "night")
    one_line(exc, str(root), "no domains", "'night'")
    other = write_synthetic_folder(tmp_path / "other", 1, SIZE, classes=("x", "y"))
    with pytest.raises(DataError) as exc:  # the classes are the first root's: reading another one would mislabel it
        dataset.samples(other)
    one_line(exc, str(other), f"read from {root}", f"--data folder={other}")
