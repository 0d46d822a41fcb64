"""Tests for bench/data/cityscapes.py: the Cityscapes reader on data in the official layout, and its bad-input
errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels
from PIL import Image

from segbench.bench.data.cityscapes import (
    ID_TO_TRAIN_ID,
    CityscapesDataset,
    DataError,
    DataNotFoundError,
    find_samples,
    read_image,
    read_label,
    resolve_root,
)
from segbench.bench.data.corruptions import SEED_PROTOCOL, condition_seed, corrupt
from segbench.bench.results.axes import Condition


def official_id_to_train_id() -> dict[int, int]:
    """The official table, written out independently of bench.data.cityscapes: 19 train ids, everything else 255."""
    return {lab.id: (lab.trainId if lab.trainId in range(19) else 255) for lab in labels if lab.id >= 0}


@pytest.fixture
def root(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the session's synthetic dataset."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "cs"))


def image_file(root: Path, index: int = 0) -> Path:
    return root / "leftImg8bit" / "val" / "synthtown" / f"synthtown_{index:06d}_000019_leftImg8bit.png"


def label_file(root: Path, index: int = 0, kind: str = "labelTrainIds") -> Path:
    return root / "gtFine" / "val" / "synthtown" / f"synthtown_{index:06d}_000019_gtFine_{kind}.png"


def test_id_to_train_id_equals_official_table():
    table = official_id_to_train_id()
    assert sorted(table) == list(range(34))
    assert sum(v != 255 for v in table.values()) == 19
    for label_id, train_id in table.items():
        assert ID_TO_TRAIN_ID[label_id] == train_id, label_id
    assert table[7] == 0 and table[26] == 13 and table[33] == 18 and table[0] == 255  # road, car, bicycle, unlabeled


def test_read_label_maps_every_id(tmp_path):
    table = official_id_to_train_id()
    ids = np.tile(np.arange(34, dtype=np.uint8), (40, 2))
    path = tmp_path / "x_000000_000019_gtFine_labelIds.png"
    Image.fromarray(ids).save(path)
    assert np.array_equal(read_label(path), np.vectorize(table.get)(ids).astype(np.uint8))


def test_round_trip_synthetic_through_reader(synthetic_root):
    samples = find_samples(synthetic_root)
    assert [s.id for s in samples] == [f"synthtown_{i:06d}_000019" for i in range(4)]
    assert all(s.label_kind == "trainIds" and s.city == "synthtown" for s in samples)
    ds = CityscapesDataset(synthetic_root)
    assert len(ds) == 4
    for i, item in enumerate(ds):
        assert item["id"] == samples[i].id
        assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 64, 128)
        assert item["label"].dtype == torch.uint8 and item["label"].shape == (64, 128)
        on_disk = np.asarray(Image.open(image_file(synthetic_root, i)).convert("RGB"))
        assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), on_disk)
        label_ids = np.asarray(Image.open(label_file(synthetic_root, i, "labelIds")))
        expected = np.vectorize(official_id_to_train_id().get)(label_ids)
        assert np.array_equal(item["label"].numpy(), expected)
        assert set(np.unique(item["label"].numpy())) >= set(range(19))


def test_label_ids_fallback_gives_same_labels(root):
    with_train_ids = [item["label"] for item in CityscapesDataset(root)]
    for path in root.glob("gtFine/val/*/*_labelTrainIds.png"):
        path.unlink()
    samples = find_samples(root)
    assert all(s.label_kind == "labelIds" for s in samples)
    for item, expected in zip(CityscapesDataset(root), with_train_ids):
        assert torch.equal(item["label"], expected)


def test_max_images_is_sorted_prefix(root):
    (image_file(root, 0).parent.parent / "aachen").mkdir()  # a city sorting before synthtown
    shutil.copy(image_file(root, 3), root / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png")
    (root / "gtFine/val/aachen").mkdir()
    shutil.copy(label_file(root, 3), root / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png")
    every = [s.id for s in find_samples(root)]
    assert every == ["aachen_000000_000019"] + [f"synthtown_{i:06d}_000019" for i in range(4)]
    assert [s.id for s in find_samples(root, max_images=2)] == every[:2]
    assert len(CityscapesDataset(root, max_images=3)) == 3


def test_resolve_root(monkeypatch, synthetic_root):
    monkeypatch.setenv("CITYSCAPES_DATASET", str(synthetic_root))
    assert resolve_root(None) == synthetic_root
    assert len(CityscapesDataset()) == 4
    monkeypatch.delenv("CITYSCAPES_DATASET")
    with pytest.raises(DataNotFoundError, match="--data cityscapes=ROOT or set CITYSCAPES_DATASET.*--suite demo"):
        resolve_root(None)
    with pytest.raises(FileNotFoundError, match="/no/such/dir.*not a folder"):
        resolve_root("/no/such/dir")


def test_corruption_applied_on_the_fly(synthetic_root):
    clean = CityscapesDataset(synthetic_root)[1]
    item = CityscapesDataset(synthetic_root, condition="shot_noise-2", base_seed=3)[1]
    seed = condition_seed(item["id"], "shot_noise", 2, 3)
    expected = corrupt(clean["image"].permute(1, 2, 0).numpy(), "shot_noise", 2, seed)
    assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), expected)
    assert torch.equal(item["label"], clean["label"])


@pytest.mark.parametrize("condition", ["frost-3", "impulse_noise-4"])
def test_dataloader_workers_and_order_do_not_change_bytes(synthetic_root, condition):
    ds = CityscapesDataset(synthetic_root, condition=Condition.parse(condition), base_seed=11)

    def collect(num_workers, order):
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, order), batch_size=1, num_workers=num_workers)
        return {batch["id"][0]: batch["image"][0] for batch in loader}

    serial = collect(0, [0, 1, 2, 3])
    parallel = collect(2, [3, 1, 0, 2])
    assert list(serial) != list(parallel)  # really visited in another order
    for key, value in serial.items():
        assert torch.equal(value, parallel[key])
    assert not torch.equal(serial["synthtown_000000_000019"], CityscapesDataset(synthetic_root)[0]["image"])


def test_truncated_png(root):
    path = image_file(root)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{path}.*truncated or corrupt"):
        read_image(path)
    with pytest.raises(DataError, match="truncated or corrupt"):
        CityscapesDataset(root)[0]
    path.write_bytes(b"not a png")
    with pytest.raises(DataError, match=f"{path}.*cannot read the image"):
        find_samples(root)


def test_missing_label(root):
    label_file(root, 2).unlink()
    label_file(root, 2, "labelIds").unlink()
    with pytest.raises(DataNotFoundError, match="synthtown_000002_000019_leftImg8bit.png: missing label"):
        find_samples(root)


def test_size_mismatch(root):
    Image.fromarray(np.zeros((64, 120), np.uint8)).save(label_file(root, 1))
    with pytest.raises(DataError, match="synthtown_000001_000019_gtFine_labelTrainIds.png: 64x120 px but its image"):
        find_samples(root)


def test_label_values_not_cityscapes_ids(root):
    bad = np.zeros((64, 128), np.uint8)
    bad[0, 0] = 19
    Image.fromarray(bad).save(label_file(root))
    with pytest.raises(DataError, match=r"labelTrainIds.png: label values \[19\] are not Cityscapes trainIds"):
        CityscapesDataset(root)[0]
    bad[0, 0] = 40
    label_file(root).unlink()
    Image.fromarray(bad).save(label_file(root, 0, "labelIds"))
    with pytest.raises(DataError, match=r"labelIds.png: label values \[40\] are not Cityscapes labelIds"):
        CityscapesDataset(root)[0]
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(label_file(root, 0, "labelIds"))
    with pytest.raises(DataError, match="label mode 'RGB'"):
        find_samples(root)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_non_rgb_image_is_rejected(root, mode):
    path = image_file(root)
    Image.open(path).convert(mode).save(path)
    with pytest.raises(DataError, match=f"{path}: image mode '{mode}', expected 8-bit RGB.*rejected"):
        find_samples(root)
    with pytest.raises(DataError, match="rejected"):
        read_image(path)


def test_image_under_32_px(tmp_path):
    from segbench.bench.data.synthetic import write_synthetic_cityscapes

    root = write_synthetic_cityscapes(tmp_path, num_images=1, size=(31, 64))
    with pytest.raises(DataError, match="31x64 px is under the minimum of 32 px"):
        find_samples(root)


def test_empty_or_wrong_layout(tmp_path):
    with pytest.raises(DataNotFoundError, match="leftImg8bit/val: not found; expected the official layout"):
        find_samples(tmp_path)
    (tmp_path / "leftImg8bit/val/x").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="no <city>/\\*_leftImg8bit.png images"):
        find_samples(tmp_path)


def test_bad_condition(synthetic_root):
    with pytest.raises(ValueError, match="unknown corruption 'haze'.*valid corruptions: motion_blur"):
        CityscapesDataset(synthetic_root, condition="haze-2")
    with pytest.raises(ValueError, match="severity 7 is outside 1-5"):
        CityscapesDataset(synthetic_root, condition="fog-7")


def test_corrupted_root_manifest_checks(synthetic_root, tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    with pytest.raises(DataNotFoundError, match="manifest.json: not found"):
        CityscapesDataset(synthetic_root, condition="fog-1", corrupted_root=folder)
    manifest = {"seed_protocol": SEED_PROTOCOL, "base_seed": 0, "split": "val"}
    (folder / "manifest.json").write_text(json.dumps({**manifest, "base_seed": 1}))
    with pytest.raises(DataError, match="base_seed is 1 but this run needs 0"):
        CityscapesDataset(synthetic_root, condition="fog-1", corrupted_root=folder)
    (folder / "manifest.json").write_text(json.dumps({**manifest, "seed_protocol": "other-v0"}))
    with pytest.raises(DataError, match="seed_protocol is 'other-v0'"):
        CityscapesDataset(synthetic_root, condition="fog-1", corrupted_root=folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataNotFoundError, match="fog/1/leftImg8bit/val/synthtown/.*not found.*generate-c for fog-1"):
        CityscapesDataset(synthetic_root, condition="fog-1", corrupted_root=folder)


def test_corrupted_root_of_another_size_names_the_pre_generated_image(synthetic_root, tmp_path):
    """A generate-c folder made from other images (another size) is to blame, not the label it is paired with."""
    folder = tmp_path / "c"
    (folder / "manifest.json").parent.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"seed_protocol": SEED_PROTOCOL, "base_seed": 0, "split": "val"}))
    for path in sorted((synthetic_root / "leftImg8bit" / "val").rglob("*.png")):
        target = folder / "fog" / "1" / path.relative_to(synthetic_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((96, 192, 3), np.uint8)).save(target)
    dataset = CityscapesDataset(synthetic_root, condition="fog-1", corrupted_root=folder)
    with pytest.raises(DataError) as info:
        dataset[0]
    message = str(info.value)
    assert message.startswith(f"{folder}/fog/1/leftImg8bit/val/synthtown/synthtown_000000_000019_leftImg8bit.png: ")
    assert "pre-generated image of 96x192 px, but its label synthtown_000000_000019_gtFine" in message
    assert "is 64x128 px: the --corrupted-data folder" in message and "\n" not in message
