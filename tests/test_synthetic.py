"""Tests for bench/data/synthetic.py: official layout and naming, all 19 classes, textures, seeded reproducibility."""

import time

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, labels
from PIL import Image

from segbench.bench.data.synthetic import draw_scene, write_synthetic_cityscapes

TRAIN_ID = {lab.id: (lab.trainId if lab.trainId in range(19) else 255) for lab in labels if lab.id >= 0}


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    return np.vectorize(TRAIN_ID.get)(label_ids).astype(np.uint8)


def test_official_layout_and_naming(synthetic_root):
    images = sorted(p.relative_to(synthetic_root).as_posix() for p in synthetic_root.rglob("*.png"))
    expected = []
    for i in range(4):
        stem = f"synthtown_{i:06d}_000019"
        expected += [
            f"gtFine/val/synthtown/{stem}_gtFine_{kind}.png" for kind in ("color", "labelIds", "labelTrainIds")
        ]
        expected.append(f"leftImg8bit/val/synthtown/{stem}_leftImg8bit.png")
    assert images == sorted(expected)


def test_label_files_agree_with_official_table(synthetic_root):
    folder = synthetic_root / "gtFine" / "val" / "synthtown"
    for i in range(4):
        stem = f"synthtown_{i:06d}_000019"
        ids = np.asarray(Image.open(folder / f"{stem}_gtFine_labelIds.png"))
        train = np.asarray(Image.open(folder / f"{stem}_gtFine_labelTrainIds.png"))
        color = Image.open(folder / f"{stem}_gtFine_color.png")
        image = Image.open(synthetic_root / "leftImg8bit" / "val" / "synthtown" / f"{stem}_leftImg8bit.png")
        assert image.mode == "RGB" and image.size == (128, 64)
        assert color.mode == "RGBA"  # like the official colour images
        assert ids.dtype == np.uint8 and ids.shape == (64, 128)
        assert np.array_equal(train, to_train_ids(ids))
        rgba = np.asarray(color)
        assert (rgba[..., 3] == 255).all()
        for label_id in np.unique(ids):
            assert (rgba[ids == label_id][:, :3] == id2label[int(label_id)].color).all()


@pytest.mark.parametrize("size", [(64, 128), (32, 64), (256, 512)])
def test_all_19_classes_occur(size):
    for index in range(3):
        _, ids = draw_scene(size, seed=5, index=index)
        present = set(np.unique(to_train_ids(ids)).tolist())
        assert present >= set(range(19)), sorted(set(range(19)) - present)
        assert 255 in present  # some ignored pixels too (ego vehicle, parking, rail track)


def test_textures_and_edges():
    image, ids = draw_scene((128, 256), seed=2)
    image = image.astype(np.float32)
    for name in ("road", "vegetation", "building", "terrain"):
        mask = ids == next(lab.id for lab in labels if lab.name == name)
        assert image[mask].std(axis=0).mean() > 4, f"{name} has no texture"
    edges = np.abs(np.diff(image.mean(axis=2), axis=1))
    assert (edges > 40).mean() > 0.01  # sharp object boundaries a blur can hurt


def test_seeded_and_reproducible(tmp_path):
    a = write_synthetic_cityscapes(tmp_path / "a", num_images=2, size=(64, 128), seed=9)
    b = write_synthetic_cityscapes(tmp_path / "b", num_images=2, size=(64, 128), seed=9)
    c = write_synthetic_cityscapes(tmp_path / "c", num_images=2, size=(64, 128), seed=10)
    for path in a.rglob("*.png"):
        rel = path.relative_to(a)
        assert path.read_bytes() == (b / rel).read_bytes()
        if "leftImg8bit" in rel.name:
            assert path.read_bytes() != (c / rel).read_bytes()
    assert not np.array_equal(draw_scene((64, 128), 9, 0)[1], draw_scene((64, 128), 9, 1)[1])


def test_same_scene_at_any_resolution():
    _, small = draw_scene((64, 128), seed=4, index=1)
    _, large = draw_scene((256, 512), seed=4, index=1)
    _, other = draw_scene((64, 128), seed=4, index=2)
    downsampled = large[2::4, 2::4]  # the pixel centres of the small grid
    assert (downsampled == small).mean() > 0.85
    assert (other == small).mean() < (downsampled == small).mean() - 0.05


def test_fast():
    start = time.perf_counter()
    for index in range(10):
        draw_scene((64, 128), seed=0, index=index)
    small = (time.perf_counter() - start) / 10
    start = time.perf_counter()
    draw_scene((512, 1024), seed=0, index=0)
    large = time.perf_counter() - start
    assert small < 0.1 and large < 1.5, (small, large)  # ~7 ms and ~0.1 s unloaded


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_images"):
        write_synthetic_cityscapes(tmp_path, num_images=0)
    with pytest.raises(ValueError, match="city"):
        write_synthetic_cityscapes(tmp_path, city="new_york")
    with pytest.raises(ValueError, match="size"):
        draw_scene((0, 10))
