"""Readers (and synthetic writers) for real adverse-condition datasets in their official layouts.

Three datasets, each read where its official archive puts it::

    ACDC           ROOT/rgb_anon/{condition}/{split}/{sequence}/{stem}_rgb_anon.png
                   ROOT/gt/{condition}/{split}/{sequence}/{stem}_gt_labelTrainIds.png   (used when present)
                   ROOT/gt/{condition}/{split}/{sequence}/{stem}_gt_labelIds.png        (else; mapped to train ids)
                   ROOT/gt/{condition}/{split}/{sequence}/{stem}_gt_invIds.png          (optional invalid-region mask)
                   condition in fog, night, rain, snow; images are 1080x1920.
    Dark Zurich    ROOT/rgb_anon/{split}/night/{sequence}/{stem}_rgb_anon.png
                   ROOT/gt/{split}/night/{sequence}/{stem}_gt_labelTrainIds.png         (or _gt_labelIds.png)
                   ROOT/gt/{split}/night/{sequence}/{stem}_gt_invIds.png                (optional)
    Foggy          ROOT/leftImg8bit_foggyDBF/{split}/{city}/{stem}_leftImg8bit_foggy_beta_{beta}.png
    Cityscapes     with the standard ROOT/gtFine labels (ROOT is the Cityscapes root), beta in 0.005, 0.01, 0.02.

Roots come from an argument or from ``ACDC_DATASET``, ``DARK_ZURICH_DATASET`` and ``CITYSCAPES_DATASET``.

Invalid regions: ACDC and Dark Zurich ship a ``_gt_invIds.png`` mask per label, 1 where the annotators could not
assign a class with confidence (the pixel still carries a best-guess label) and 0 elsewhere.
:func:`read_realworld_label` turns every pixel marked invalid into 255, so invalid regions are *ignored* by the metrics
exactly like void pixels.
This is what the report states for these datasets: "pixels marked invalid in the dataset's invIds masks are ignored
(set to 255) in addition to the void classes". A sample without a mask is read without one (nothing extra ignored);
:func:`describe_samples` says how many samples had a mask. Masks with 255 for invalid are accepted too.

Errors are :class:`bench.data.cityscapes.DataError` / :class:`bench.data.cityscapes.DataNotFoundError` of one line that
names the file or folder, as for the Cityscapes reader; labels are decoded and checked by
:func:`bench.data.cityscapes.read_label` (the official labelIds -> trainIds table).

The writers (:func:`write_synthetic_acdc`, :func:`write_synthetic_dark_zurich`,
:func:`write_synthetic_foggy_cityscapes`) produce these exact layouts at a small size from the scenes of
:mod:`bench.data.synthetic`; their weather effects are simple synthetic renderings, not the datasets' real appearance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segbench.bench.data.cityscapes import (
    ENV_VAR as CITYSCAPES_ENV_VAR,
)
from segbench.bench.data.cityscapes import (
    IGNORE_INDEX,
    IMAGE_SUFFIX,
    cityscapes_label_for,
    read_image,
    read_label,
)
from segbench.bench.data.datasets import Dataset, Sample, get_dataset, register_dataset
from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.images import check_files, read_indices
from segbench.bench.data.loading import item, label_size_error
from segbench.bench.data.synthetic import TRAIN_OF_ID, draw_scene, save_png
from segbench.bench.results.axes import (
    FOGGY_BETAS,
    INVALID_REGION_NOTE,
    REAL_WORLD,
    REAL_WORLD_NAMES,
    Condition,
    beta_name,
)
from segbench.bench.results.classes import CITYSCAPES

ACDC = "acdc"
DARK_ZURICH = "dark_zurich"
FOGGY_CITYSCAPES = "foggy_cityscapes"
DATASETS = tuple(REAL_WORLD)

ENV_VARS = {ACDC: "ACDC_DATASET", DARK_ZURICH: "DARK_ZURICH_DATASET", FOGGY_CITYSCAPES: CITYSCAPES_ENV_VAR}
"""Environment variable of each dataset's root (Foggy Cityscapes sits inside the Cityscapes root)."""

ACDC_CONDITIONS = REAL_WORLD[ACDC]
ACDC_SIZE = (1080, 1920)
"""(H, W) of ACDC and Dark Zurich images."""

RGB_SUFFIX = "_rgb_anon.png"
GT_TRAIN_ID_SUFFIX = "_gt_labelTrainIds.png"
GT_LABEL_ID_SUFFIX = "_gt_labelIds.png"
GT_INVALID_SUFFIX = "_gt_invIds.png"
FOGGY_FOLDER = "leftImg8bit_foggyDBF"
FOGGY_INFIX = "_leftImg8bit_foggy_beta_"


_LAYOUTS = {
    ACDC: "ROOT/rgb_anon/<condition>/<split>/<sequence>/*_rgb_anon.png and ROOT/gt/<condition>/<split>/<sequence>/",
    DARK_ZURICH: "ROOT/rgb_anon/<split>/night/<sequence>/*_rgb_anon.png and ROOT/gt/<split>/night/<sequence>/",
    FOGGY_CITYSCAPES: f"ROOT/{FOGGY_FOLDER}/<split>/<city>/*{FOGGY_INFIX}<beta>.png and ROOT/gtFine/<split>/<city>/",
}
_NAMES = REAL_WORLD_NAMES


@dataclass(frozen=True)
class RealWorldSample:
    """One image of a real-world dataset with its label and optional invalid-region mask.

    Attributes:
        dataset: "acdc", "dark_zurich" or "foggy_cityscapes".
        condition: the ACDC condition ("fog", "night", "rain", "snow"), "night" for Dark Zurich, or
            "beta_<beta>" (e.g. "beta_0.02") for Foggy Cityscapes.
        id: the file stem without suffix, e.g. ``GOPR0475_frame_000041`` or ``frankfurt_000000_000294``.
        sequence: the sequence folder (the city for Foggy Cityscapes).
        image: path of the RGB image.
        label: path of the label file.
        label_kind: "trainIds" (read as is) or "labelIds" (mapped to train ids).
        invalid_mask: path of the ``_gt_invIds.png`` mask, or None when the dataset has none for this sample.
    """

    dataset: str
    condition: str
    id: str
    sequence: str
    image: Path
    label: Path
    label_kind: str
    invalid_mask: Path | None = None


def resolve_realworld_root(name: str, given: str | Path | None) -> Path:
    """Returns a dataset root: ``given`` if set, else the dataset's environment variable.

    Args:
        name: "acdc", "dark_zurich" or "foggy_cityscapes" (its root is the Cityscapes root).
        given: the root from the command line, or None.

    Raises:
        ValueError: unknown dataset name.
        DataNotFoundError: neither is set, or the folder does not exist.
    """
    if name not in ENV_VARS:
        raise ValueError(f"unknown real-world dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return get_dataset(name).resolve_root(given)


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _found(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def _gt_files(gt_dir: Path, stem: str, image: Path) -> tuple[Path, str, Path | None]:
    """The label (trainIds preferred, else labelIds) and optional invalid mask of one ACDC/Dark Zurich image."""
    train_ids = gt_dir / f"{stem}{GT_TRAIN_ID_SUFFIX}"
    label_ids = gt_dir / f"{stem}{GT_LABEL_ID_SUFFIX}"
    if train_ids.is_file():
        label, kind = train_ids, "trainIds"
    elif label_ids.is_file():
        label, kind = label_ids, "labelIds"
    else:
        raise DataNotFoundError(f"{image}: missing label: neither {train_ids} nor {label_ids} exists")
    invalid = gt_dir / f"{stem}{GT_INVALID_SUFFIX}"
    return label, kind, invalid if invalid.is_file() else None


def _collect_rgb_anon(dataset: str, condition: str, image_dir: Path, gt_dir: Path) -> list[RealWorldSample]:
    samples = []
    for seq_dir in sorted(p for p in image_dir.iterdir() if p.is_dir()):
        for image in sorted(seq_dir.glob(f"*{RGB_SUFFIX}")):
            stem = image.name[: -len(RGB_SUFFIX)]
            label, kind, invalid = _gt_files(gt_dir / seq_dir.name, stem, image)
            samples.append(RealWorldSample(dataset, condition, stem, seq_dir.name, image, label, kind, invalid))
    if not samples:
        raise DataNotFoundError(f"{image_dir}: no <sequence>/*{RGB_SUFFIX} images found")
    return samples


def check_realworld_sample(sample: RealWorldSample) -> None:
    """Checks the PNG headers of one sample: RGB image, 8-bit label and mask, all of the same size.

    Raises:
        DataError: naming the first bad file and what is wrong with it.
    """
    check_files(sample.image, [sample.label] + ([sample.invalid_mask] if sample.invalid_mask is not None else []))


def _finish(samples: list[RealWorldSample], validate: bool) -> list[RealWorldSample]:
    if validate:
        for sample in samples:
            check_realworld_sample(sample)
    return samples


def find_acdc(
    root: str | Path | None, condition: str, split: str = "val", validate: bool = True
) -> list[RealWorldSample]:
    """Lists the ACDC samples of one condition and split, sorted by (sequence, stem).

    Args:
        root: ACDC root (holding rgb_anon/ and gt/), or None for ``ACDC_DATASET``.
        condition: "fog", "night", "rain" or "snow".
        split: "train" or "val" (the test split has no public labels).
        validate: check each sample's PNG headers.

    Raises:
        DataNotFoundError: no such condition/split folder (the message lists the conditions found), or a label is
            missing for an image (the message names the image and the labels looked for).
        DataError: a bad file, naming it.
    """
    root = resolve_realworld_root(ACDC, root)
    image_dir = root / "rgb_anon" / condition / split
    if not image_dir.is_dir():
        found = [c for c in _subfolders(root / "rgb_anon") if (root / "rgb_anon" / c / split).is_dir()]
        raise DataNotFoundError(
            f"{image_dir}: not found; ACDC conditions found with a {split!r} split under {root / 'rgb_anon'}: "
            f"{_found(found)} (expected {', '.join(ACDC_CONDITIONS)})"
        )
    samples = _collect_rgb_anon(ACDC, condition, image_dir, root / "gt" / condition / split)
    return _finish(samples, validate)


def find_dark_zurich(root: str | Path | None, split: str = "val", validate: bool = True) -> list[RealWorldSample]:
    """Lists the Dark Zurich night samples of a split, sorted by (sequence, stem).

    Args:
        root: Dark Zurich root (holding rgb_anon/ and gt/), or None for ``DARK_ZURICH_DATASET``.
        split: "val" (the only split with public labels).
        validate: check each sample's PNG headers.

    Raises:
        DataNotFoundError: no rgb_anon/<split>/night folder (the message lists the splits found), or a missing label.
        DataError: a bad file, naming it.
    """
    root = resolve_realworld_root(DARK_ZURICH, root)
    image_dir = root / "rgb_anon" / split / "night"
    if not image_dir.is_dir():
        found = [s for s in _subfolders(root / "rgb_anon") if (root / "rgb_anon" / s / "night").is_dir()]
        raise DataNotFoundError(
            f"{image_dir}: not found; Dark Zurich splits with a night/ folder under {root / 'rgb_anon'}: "
            f"{_found(found)}"
        )
    samples = _collect_rgb_anon(DARK_ZURICH, "night", image_dir, root / "gt" / split / "night")
    return _finish(samples, validate)


def _foggy_betas_found(image_dir: Path) -> list[str]:
    betas = set()
    for city_dir in (p for p in image_dir.iterdir() if p.is_dir()):
        for image in city_dir.glob(f"*{FOGGY_INFIX}*.png"):
            betas.add(image.name.rsplit(FOGGY_INFIX, 1)[1][: -len(".png")])
    return sorted(betas, key=lambda b: (float(b) if b.replace(".", "", 1).isdigit() else float("inf"), b))


def find_foggy_cityscapes(
    root: str | Path | None, beta: float | str, split: str = "val", validate: bool = True
) -> list[RealWorldSample]:
    """Lists the Foggy Cityscapes (DBF) images of one fog density with their gtFine labels, sorted by (city, stem).

    Args:
        root: the Cityscapes root (holding leftImg8bit_foggyDBF/ and gtFine/), or None for ``CITYSCAPES_DATASET``.
        beta: attenuation coefficient, 0.005, 0.01 or 0.02.
        split: "train" or "val".
        validate: check each sample's PNG headers.

    Raises:
        DataNotFoundError: no leftImg8bit_foggyDBF/<split> folder, no image of that beta (the message lists the betas
            found), or a missing gtFine label.
        DataError: a bad file, naming it.
    """
    root = resolve_realworld_root(FOGGY_CITYSCAPES, root)
    image_dir = root / FOGGY_FOLDER / split
    if not image_dir.is_dir():
        raise DataNotFoundError(
            f"{image_dir}: not found; expected {_LAYOUTS[FOGGY_CITYSCAPES]} (splits found: "
            f"{_found(_subfolders(root / FOGGY_FOLDER))})"
        )
    name = beta_name(beta)
    suffix = f"{FOGGY_INFIX}{name}.png"
    samples = []
    for city_dir in sorted(p for p in image_dir.iterdir() if p.is_dir()):
        for image in sorted(city_dir.glob(f"*{suffix}")):
            stem = image.name[: -len(suffix)]
            label, kind = cityscapes_label_for(root, split, city_dir.name, stem, image)
            samples.append(
                RealWorldSample(FOGGY_CITYSCAPES, f"beta_{name}", stem, city_dir.name, image, label, kind, None)
            )
    if not samples:
        raise DataNotFoundError(
            f"{image_dir}: no <city>/*{suffix} images found; betas found: {_found(_foggy_betas_found(image_dir))}"
        )
    return _finish(samples, validate)


def read_invalid_mask(path: str | Path) -> np.ndarray:
    """Reads an ``_gt_invIds.png`` mask as a boolean array, True where the pixel is marked invalid.

    The official masks hold 1 for invalid and 0 for valid pixels; 255 is accepted as invalid too.

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: unreadable file, not single-channel 8-bit, or values other than 0, 1 and 255.
    """
    path = Path(path)
    values = read_indices(path)
    bad = (values != 0) & (values != 1) & (values != 255)
    if bad.any():
        raise DataError(
            f"{path}: invalid-region mask values {np.unique(values[bad])[:10].tolist()} are not 0 (valid) or 1 "
            "(invalid); re-extract the dataset's gt archive"
        )
    return values != 0


def read_realworld_label(sample: RealWorldSample) -> np.ndarray:
    """Reads a sample's label as uint8 train ids (H, W), 255 for ignored pixels.

    Pixels marked invalid in the sample's invIds mask (when it has one) become 255, i.e. ignored by the metrics;
    the report describes this with :data:`INVALID_REGION_NOTE`.

    Raises:
        DataError: bad label or mask file (naming it), or a mask of another size than the label.
    """
    return _masked_label(sample.label, sample.label_kind, sample.invalid_mask)


def _masked_label(path: Path, kind: str, invalid_mask: Path | None) -> np.ndarray:
    """The label at `path` (`kind` encoding) as train ids, with the pixels `invalid_mask` marks set to 255."""
    label = read_label(path, kind)
    if invalid_mask is None:
        return label
    invalid = read_invalid_mask(invalid_mask)
    if invalid.shape != label.shape:
        raise DataError(
            f"{invalid_mask}: mask is {invalid.shape[0]}x{invalid.shape[1]} px but the label "
            f"{path.name} is {label.shape[0]}x{label.shape[1]} px"
        )
    label = label.copy()
    label[invalid] = IGNORE_INDEX
    return label


def describe_samples(samples: list[RealWorldSample]) -> str:
    """One line for the start-up check: dataset, images per condition, label encodings and invalid masks found."""
    if not samples:
        return "no samples"
    per_condition: dict[str, int] = {}
    for sample in samples:
        per_condition[sample.condition] = per_condition.get(sample.condition, 0) + 1
    kinds = sorted({s.label_kind for s in samples})
    masks = sum(s.invalid_mask is not None for s in samples)
    conditions = ", ".join(f"{c}: {n}" for c, n in per_condition.items())
    datasets = ", ".join(sorted({_NAMES[s.dataset] for s in samples}))
    line = f"{datasets}: {len(samples)} images ({conditions}); labels: {', '.join(kinds)}"
    if masks:
        return f"{line}; invalid-region masks for {masks} of {len(samples)} ({INVALID_REGION_NOTE})"
    return f"{line}; no invalid-region masks"


def find_condition(
    root: str | Path | None,
    condition: Condition,
    split: str = "val",
    max_images: int | None = None,
    validate: bool = True,
) -> list[RealWorldSample]:
    """The samples of one real-world `Condition` (`acdc:fog`, `dark_zurich:night`, `foggy_cityscapes:beta_0.01`),
    sorted as their dataset's reader sorts them; `max_images` keeps the first N, and only those are validated.

    Raises:
        DataNotFoundError / DataError: as the dataset's reader (one line naming the folder or file).
    """
    if not condition.is_real:
        raise ValueError(f"{condition.name} is not a real-world condition")
    if condition.dataset == ACDC:
        samples = find_acdc(root, condition.domain, split, validate=False)
    elif condition.dataset == DARK_ZURICH:
        samples = find_dark_zurich(root, split, validate=False)
    else:
        samples = find_foggy_cityscapes(root, str(condition.domain).removeprefix("beta_"), split, validate=False)
    if max_images:
        samples = samples[:max_images]
    return _finish(samples, validate=validate)


class RealWorldDataset(torch.utils.data.Dataset):
    """The images of one real-world condition with train-id labels (invalid regions set to 255, see
    :func:`read_realworld_label`). Items are those of :class:`bench.data.cityscapes.CityscapesDataset`:
    ``dict(image=uint8 tensor (3, H, W) RGB, label=uint8 tensor (H, W), id=stem)``.
    """

    def __init__(
        self, root: str | Path | None, condition: Condition, split: str = "val", max_images: int | None = None
    ) -> None:
        self.condition = condition
        self.samples = find_condition(root, condition, split, max_images)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image, label = read_image(sample.image), read_realworld_label(sample)
        if image.shape[:2] != label.shape:
            raise label_size_error(sample.label, image, label)
        return item(image, label, sample.id)


def _as_sample(root: Path, sample: RealWorldSample) -> Sample:
    masks = (sample.invalid_mask,) if sample.invalid_mask is not None else ()
    return Sample(
        sample.id,
        sample.image,
        sample.label,
        sample.image.relative_to(root),
        kind=sample.label_kind,
        masks=masks,
        domain=sample.condition,
    )


def _finder(name: str):
    def find(root: Path, split: str, domain: str | None) -> list[Sample]:
        domains = [domain] if domain is not None else list(REAL_WORLD[name])
        found = []
        for each in domains:
            condition = Condition.real(name, each)
            found += [_as_sample(root, s) for s in find_condition(root, condition, split, validate=False)]
        return found

    return find


def _read_sample_label(sample: Sample) -> np.ndarray:
    return _masked_label(sample.label, sample.kind, sample.masks[0] if sample.masks else None)


for _name, _layout in _LAYOUTS.items():
    register_dataset(
        Dataset(
            name=_name,
            title=_NAMES[_name],
            classes=CITYSCAPES,
            env_var=ENV_VARS[_name],
            layout=_layout,
            find=_finder(_name),
            read_label=_read_sample_label,
            domains=tuple(REAL_WORLD[_name]),
            same_size=True,
        )
    )


# ---------------------------------------------------------------------------------------------------------- writers


def _weather(image: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    """A simple synthetic rendering of an adverse condition (not the real datasets' appearance)."""
    img = image.astype(np.float32)
    h, w = img.shape[:2]
    if condition == "fog":
        img = _haze(img, 0.45, 200.0)
    elif condition == "night":
        img = img * 0.18
        for _ in range(3):  # a few street lights
            cy, cx, r = rng.uniform(0.1, 0.5) * h, rng.uniform(0, 1) * w, max(h, w) * 0.06
            ys, xs = np.mgrid[0:h, 0:w]
            img += 160 * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * r * r))[:, :, None] * [1.0, 0.85, 0.55]
    elif condition == "rain":
        img = _haze(img * 0.8, 0.85, 150.0)
        streaks = rng.random((h, w)) < 0.01
        for k in range(1, max(2, h // 30)):
            streaks[k:, : w - k] |= streaks[:-k, k:]
        img[streaks] = img[streaks] * 0.5 + 110
    elif condition == "snow":
        img = _haze(img, 0.8, 225.0)
        flakes = rng.random((h, w)) < 0.015
        img[flakes] = 245
    else:
        raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(ACDC_CONDITIONS)}")
    return np.clip(img, 0, 255).astype(np.uint8)


def _haze(img: np.ndarray, transmittance: float, airlight: float) -> np.ndarray:
    """Depth-free haze: I = J t + A (1 - t) with one transmittance for the whole image."""
    return img * transmittance + airlight * (1 - transmittance)


def _invalid_region(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A uint8 mask (1 invalid, 0 valid): an elliptic blob, like a glare or a region too dark to annotate."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    ry, rx = rng.uniform(0.1, 0.2) * h, rng.uniform(0.1, 0.2) * w
    return (((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1).astype(np.uint8)


def _write_rgb_anon_sample(
    image_dir: Path,
    gt_dir: Path,
    stem: str,
    condition: str,
    size: tuple[int, int],
    seed: int,
    index: int,
    inv_mask: bool,
    label_files: tuple[str, ...],
) -> None:
    image, label_ids = draw_scene(size, seed, index)
    rng = np.random.default_rng([seed, index, 2])
    image_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    save_png(_weather(image, condition, rng), image_dir / f"{stem}{RGB_SUFFIX}")
    if "labelTrainIds" in label_files:
        save_png(TRAIN_OF_ID[label_ids], gt_dir / f"{stem}{GT_TRAIN_ID_SUFFIX}")
    if "labelIds" in label_files:
        save_png(label_ids, gt_dir / f"{stem}{GT_LABEL_ID_SUFFIX}")
    if inv_mask:
        save_png(_invalid_region(label_ids.shape, rng), gt_dir / f"{stem}{GT_INVALID_SUFFIX}")


def _check_label_files(label_files: tuple[str, ...]) -> None:
    if not label_files or not set(label_files) <= {"labelTrainIds", "labelIds"}:
        raise ValueError(f"label_files {label_files!r} must be a non-empty subset of ('labelTrainIds', 'labelIds')")


def write_synthetic_acdc(
    root: str | Path,
    conditions: tuple[str, ...] = ACDC_CONDITIONS,
    images_per_condition: int = 2,
    size: tuple[int, int] = (108, 192),
    split: str = "val",
    seed: int = 0,
    inv_masks: bool = True,
    label_files: tuple[str, ...] = ("labelTrainIds", "labelIds"),
) -> Path:
    """Writes a synthetic ACDC in the official layout (see the module docstring), at a tenth of the real size.

    Each condition has one sequence ``GOPR{n:04d}``; image k is ``GOPR{n:04d}_frame_{k:06d}``. Scenes come from
    :func:`bench.data.synthetic.draw_scene` with a simple synthetic rendering of the condition.

    Args:
        root: dataset root to create or add to.
        conditions: ACDC conditions to write.
        images_per_condition: images per condition.
        size: (H, W); ACDC is (1080, 1920).
        split: split folder name.
        seed: dataset seed.
        inv_masks: also write ``_gt_invIds.png`` masks (1 = invalid) with one invalid blob each.
        label_files: which label encodings to write ("labelTrainIds", "labelIds").

    Returns:
        The root path.
    """
    if images_per_condition < 1:
        raise ValueError(f"images_per_condition must be >= 1, got {images_per_condition}")
    _check_label_files(label_files)
    root = Path(root)
    for c, condition in enumerate(conditions):
        if condition not in ACDC_CONDITIONS:
            raise ValueError(f"unknown ACDC condition {condition!r}; expected one of {', '.join(ACDC_CONDITIONS)}")
        sequence = f"GOPR{475 + c:04d}"
        for k in range(images_per_condition):
            _write_rgb_anon_sample(
                root / "rgb_anon" / condition / split / sequence,
                root / "gt" / condition / split / sequence,
                f"{sequence}_frame_{k:06d}",
                condition,
                size,
                seed,
                1000 * (c + 1) + k,
                inv_masks,
                label_files,
            )
    return root


def write_synthetic_dark_zurich(
    root: str | Path,
    num_images: int = 2,
    size: tuple[int, int] = (108, 192),
    split: str = "val",
    seed: int = 0,
    inv_masks: bool = True,
    label_files: tuple[str, ...] = ("labelTrainIds", "labelIds"),
) -> Path:
    """Writes a synthetic Dark Zurich in the official layout: one sequence ``GOPR0356`` of night images.

    Args:
        root: dataset root to create or add to.
        num_images: number of images.
        size: (H, W); Dark Zurich is (1080, 1920).
        split: split folder name.
        seed: dataset seed.
        inv_masks: also write ``_gt_invIds.png`` masks (1 = invalid).
        label_files: which label encodings to write ("labelTrainIds", "labelIds").

    Returns:
        The root path.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    _check_label_files(label_files)
    root = Path(root)
    sequence = "GOPR0356"
    for k in range(num_images):
        _write_rgb_anon_sample(
            root / "rgb_anon" / split / "night" / sequence,
            root / "gt" / split / "night" / sequence,
            f"{sequence}_frame_{k:06d}",
            "night",
            size,
            seed,
            5000 + k,
            inv_masks,
            label_files,
        )
    return root


FOGGY_PATH_LENGTH_M = 60.0
"""Path length of the synthetic, depth-free fog: transmittance exp(-beta * 60) = 0.74, 0.55, 0.30 for the 3 betas."""


def write_synthetic_foggy_cityscapes(
    root_with_cityscapes: str | Path,
    betas: tuple[float, ...] = FOGGY_BETAS,
    split: str = "val",
    airlight: float = 210.0,
) -> Path:
    """Writes foggy versions of every image of an existing (synthetic) Cityscapes, in the Foggy Cityscapes-DBF layout.

    The fog is synthetic and depth-free: ``I = J t + A (1 - t)`` with ``t = exp(-beta * FOGGY_PATH_LENGTH_M)``; the
    real dataset uses per-pixel depth. Labels are the Cityscapes gtFine labels already under the root.

    Args:
        root_with_cityscapes: a Cityscapes root, e.g. written by
        :func:`bench.data.synthetic.write_synthetic_cityscapes`. betas: attenuation coefficients to write.
        split: split to fog.
        airlight: grey level of the atmospheric light A.

    Returns:
        The root path.

    Raises:
        DataNotFoundError: no leftImg8bit/<split> images under the root.
    """
    root = Path(root_with_cityscapes)
    source = root / "leftImg8bit" / split
    images = sorted(source.glob(f"*/*{IMAGE_SUFFIX}")) if source.is_dir() else []
    if not images:
        raise DataNotFoundError(f"{source}: no <city>/*{IMAGE_SUFFIX} images to fog; write a Cityscapes there first")
    for path in images:
        clear = read_image(path).astype(np.float32)
        stem = path.name[: -len(IMAGE_SUFFIX)]
        out_dir = root / FOGGY_FOLDER / split / path.parent.name
        out_dir.mkdir(parents=True, exist_ok=True)
        for beta in betas:
            t = float(np.exp(-float(beta) * FOGGY_PATH_LENGTH_M))
            foggy = np.clip(_haze(clear, t, airlight), 0, 255).astype(np.uint8)
            save_png(foggy, out_dir / f"{stem}{FOGGY_INFIX}{beta_name(beta)}.png")
    return root
