"""Tests for bench/data/realworld.py: ACDC, Dark Zurich and Foggy Cityscapes readers on their synthetic official
layouts."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.bench.data.cityscapes import DataError, DataNotFoundError, read_label
from segbench.bench.data.realworld import (
    INVALID_REGION_NOTE,
    RealWorldSample,
    describe_samples,
    find_acdc,
    find_dark_zurich,
    find_foggy_cityscapes,
    read_realworld_label,
    resolve_realworld_root,
    write_synthetic_acdc,
    write_synthetic_dark_zurich,
    write_synthetic_foggy_cityscapes,
)
from segbench.bench.data.synthetic import write_synthetic_cityscapes

SIZE = (54, 96)


@pytest.fixture(scope="module")
def acdc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_acdc(tmp_path_factory.mktemp("acdc"), images_per_condition=2, size=SIZE)


@pytest.fixture(scope="module")
def foggy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_synthetic_cityscapes(tmp_path_factory.mktemp("cs"), num_images=2, size=(48, 96))
    return write_synthetic_foggy_cityscapes(root)


def _without(root: Path, tmp_path: Path, pattern: str) -> Path:
    copy = Path(shutil.copytree(root, tmp_path / "copy"))
    for path in copy.rglob(pattern):
        path.unlink()
    return copy


def test_acdc_layout_and_reading(acdc_root: Path) -> None:
    for condition in ("fog", "night", "rain", "snow"):
        samples = find_acdc(acdc_root, condition)
        assert len(samples) == 2
        assert [s.id for s in samples] == sorted(s.id for s in samples)
        s = samples[0]
        assert s.dataset == "acdc" and s.condition == condition and s.label_kind == "trainIds"
        assert s.image.relative_to(acdc_root).parts[:3] == ("rgb_anon", condition, "val")
        assert s.image.name == f"{s.id}_rgb_anon.png" and s.label.name == f"{s.id}_gt_labelTrainIds.png"
        assert s.invalid_mask is not None and s.invalid_mask.name == f"{s.id}_gt_invIds.png"
        assert s.label.parent.relative_to(acdc_root) == Path("gt", condition, "val", s.sequence)
        with Image.open(s.image) as img:
            assert img.mode == "RGB" and img.size == (SIZE[1], SIZE[0])
        label = read_realworld_label(s)
        assert label.shape == SIZE and label.dtype == np.uint8
        assert set(np.unique(label)) <= set(range(19)) | {255}


def test_label_ids_and_train_ids_agree(acdc_root: Path, tmp_path: Path) -> None:
    by_train = find_acdc(acdc_root, "night")
    ids_only = _without(acdc_root, tmp_path, "*_gt_labelTrainIds.png")
    by_ids = find_acdc(ids_only, "night")
    assert [s.label_kind for s in by_ids] == ["labelIds"] * 2
    for a, b in zip(by_train, by_ids, strict=True):
        np.testing.assert_array_equal(read_realworld_label(a), read_realworld_label(b))


def test_invalid_mask_ignores_exactly_the_marked_pixels(acdc_root: Path) -> None:
    sample = find_acdc(acdc_root, "fog")[0]
    raw = read_label(sample.label, sample.label_kind)
    mask = np.asarray(Image.open(sample.invalid_mask))
    assert set(np.unique(mask)) == {0, 1}
    masked = read_realworld_label(sample)
    newly_ignored = (masked == 255) & (raw != 255)
    assert newly_ignored.sum() == ((mask == 1) & (raw != 255)).sum() > 0
    assert (masked[mask == 1] == 255).all()
    np.testing.assert_array_equal(masked[mask == 0], raw[mask == 0])
    without = RealWorldSample(**{**sample.__dict__, "invalid_mask": None})
    np.testing.assert_array_equal(read_realworld_label(without), raw)


def test_no_mask_files_means_none(tmp_path: Path) -> None:
    root = write_synthetic_acdc(tmp_path, conditions=("rain",), images_per_condition=1, size=SIZE, inv_masks=False)
    samples = find_acdc(root, "rain")
    assert samples[0].invalid_mask is None
    assert "no invalid-region masks" in describe_samples(samples)


def test_bad_mask_values_are_one_line(acdc_root: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(acdc_root, tmp_path / "copy"))
    sample = find_acdc(copy, "snow")[0]
    Image.fromarray(np.full(SIZE, 7, dtype=np.uint8)).save(sample.invalid_mask)
    with pytest.raises(DataError, match=r"_gt_invIds\.png: invalid-region mask values \[7\]") as err:
        read_realworld_label(sample)
    assert "\n" not in str(err.value)


def test_missing_condition_lists_found(tmp_path: Path) -> None:
    root = write_synthetic_acdc(tmp_path, conditions=("night", "rain"), images_per_condition=1, size=SIZE)
    with pytest.raises(DataNotFoundError) as err:
        find_acdc(root, "fog")
    msg = str(err.value)
    assert "\n" not in msg and str(root / "rgb_anon" / "fog" / "val") in msg and "found" in msg
    assert "night, rain" in msg


def test_missing_label_names_the_file(acdc_root: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(acdc_root, tmp_path / "copy"))
    victim = sorted((copy / "gt" / "rain" / "val").rglob("*_frame_000001_gt_label*Ids.png"))
    for path in victim:
        path.unlink()
    with pytest.raises(DataNotFoundError) as err:
        find_acdc(copy, "rain")
    msg = str(err.value)
    assert "\n" not in msg and "missing label" in msg
    assert "_frame_000001_rgb_anon.png" in msg and "_frame_000001_gt_labelTrainIds.png" in msg


def test_mismatched_label_size_is_one_line(acdc_root: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(acdc_root, tmp_path / "copy"))
    sample = find_acdc(copy, "fog")[0]
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(sample.label)
    with pytest.raises(DataError, match=r"_gt_labelTrainIds\.png: 40x40 px but its image") as err:
        find_acdc(copy, "fog")
    assert "\n" not in str(err.value)


def test_dark_zurich(tmp_path: Path) -> None:
    root = write_synthetic_dark_zurich(tmp_path / "dz", num_images=2, size=SIZE)
    samples = find_dark_zurich(root)
    assert [s.id for s in samples] == ["GOPR0356_frame_000000", "GOPR0356_frame_000001"]
    s = samples[0]
    assert s.image == root / "rgb_anon/val/night/GOPR0356/GOPR0356_frame_000000_rgb_anon.png"
    assert s.label == root / "gt/val/night/GOPR0356/GOPR0356_frame_000000_gt_labelTrainIds.png"
    assert s.condition == "night" and s.invalid_mask is not None
    ids_only = _without(root, tmp_path, "*_gt_labelTrainIds.png")
    for a, b in zip(samples, find_dark_zurich(ids_only), strict=True):
        assert b.label_kind == "labelIds"
        np.testing.assert_array_equal(read_realworld_label(a), read_realworld_label(b))
    with pytest.raises(DataNotFoundError, match=r"rgb_anon/train/night: not found.*splits.*: val$"):
        find_dark_zurich(root, split="train")


def test_foggy_cityscapes(foggy_root: Path) -> None:
    for beta in (0.005, 0.01, 0.02):
        samples = find_foggy_cityscapes(foggy_root, beta)
        assert len(samples) == 2
        s = samples[0]
        assert s.image.name == f"{s.id}_leftImg8bit_foggy_beta_{beta}.png"
        assert s.image.parent == foggy_root / "leftImg8bit_foggyDBF" / "val" / s.sequence
        assert s.label.parent == foggy_root / "gtFine" / "val" / s.sequence
        assert s.condition == f"beta_{beta}" and s.invalid_mask is None
        np.testing.assert_array_equal(read_realworld_label(s), read_label(s.label))
    light = np.asarray(Image.open(find_foggy_cityscapes(foggy_root, 0.005)[0].image), dtype=float)
    dense = np.asarray(Image.open(find_foggy_cityscapes(foggy_root, "0.02")[0].image), dtype=float)
    assert dense.std() < light.std()  # denser fog, less contrast
    with pytest.raises(DataNotFoundError) as err:
        find_foggy_cityscapes(foggy_root, 0.04)
    assert "\n" not in str(err.value) and "betas found: 0.005, 0.01, 0.02" in str(err.value)


def test_foggy_missing_label(foggy_root: Path, tmp_path: Path) -> None:
    copy = _without(foggy_root, tmp_path, "*_000001_000019_gtFine_label*Ids.png")
    with pytest.raises(DataNotFoundError, match=r"_000001_000019_leftImg8bit_foggy_beta_0\.01\.png: missing label"):
        find_foggy_cityscapes(copy, 0.01)


def test_env_var_roots(acdc_root: Path, foggy_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dz = write_synthetic_dark_zurich(tmp_path / "dz", num_images=1, size=SIZE)
    monkeypatch.setenv("ACDC_DATASET", str(acdc_root))
    monkeypatch.setenv("DARK_ZURICH_DATASET", str(dz))
    monkeypatch.setenv("CITYSCAPES_DATASET", str(foggy_root))
    assert resolve_realworld_root("acdc", None) == acdc_root
    assert resolve_realworld_root("acdc", tmp_path) == tmp_path  # the command line wins
    assert len(find_acdc(None, "fog")) == 2
    assert len(find_dark_zurich(None)) == 1
    assert len(find_foggy_cityscapes(None, 0.02)) == 2
    monkeypatch.delenv("ACDC_DATASET")
    with pytest.raises(DataNotFoundError, match="set ACDC_DATASET=ROOT"):
        resolve_realworld_root("acdc", None)
    monkeypatch.setenv("DARK_ZURICH_DATASET", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match=r"from \$DARK_ZURICH_DATASET\) is not a folder"):
        find_dark_zurich(None)
    with pytest.raises(ValueError, match="unknown real-world dataset"):
        resolve_realworld_root("kitti", None)


def test_describe_samples(acdc_root: Path) -> None:
    samples = find_acdc(acdc_root, "fog") + find_acdc(acdc_root, "night")
    line = describe_samples(samples)
    assert line.startswith("ACDC: 4 images (fog: 2, night: 2); labels: trainIds")
    assert "invalid-region masks for 4 of 4" in line and INVALID_REGION_NOTE in line
