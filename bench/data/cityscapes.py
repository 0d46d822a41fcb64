"""Cityscapes reader: official layout, train-id labels, clean or corrupted images.

Layout (the official one; the synthetic generator in :mod:`bench.data.synthetic` writes exactly this)::

    ROOT/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png   (used when present)
    ROOT/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png        (else; mapped through the official label table)

``stem`` is the image id, e.g. ``frankfurt_000000_000294``. Labels come back as uint8 train ids 0-18 with 255 for
every ignored class. ``ROOT`` is an argument or the ``CITYSCAPES_DATASET`` environment variable.

Image decisions: images must be 8-bit RGB PNGs. Grayscale, palette and RGBA images are rejected with a
:class:`DataError` rather than converted: Cityscapes images are RGB, and a silent conversion would benchmark something
else than the user thinks. Images must be at least 32 px per side (the corruption module's minimum).

Validation happens in two stages. :func:`find_samples` checks the layout and each selected image's and label's PNG
header (readable, mode, size, matching sizes) and fails on the first bad file. Full decoding (truncated files, label
values that are not Cityscapes ids) is checked by :func:`read_image` and :func:`read_label` whenever a sample is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segbench.bench.data import images
from segbench.bench.data.datasets import Dataset, Sample, register_dataset
from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.images import check_files
from segbench.bench.data.loading import MANIFEST, SegmentationDataset, check_manifest, read_manifest
from segbench.bench.results.axes import CLEAN, Condition
from segbench.bench.results.classes import CITYSCAPES

__all__ = [
    "MANIFEST",
    "CityscapesDataset",
    "DataError",
    "DataNotFoundError",
    "check_manifest",
    "read_manifest",
]

ENV_VAR = "CITYSCAPES_DATASET"
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_ID_SUFFIX = "_gtFine_labelIds.png"
NUM_CLASSES = CITYSCAPES.num_classes
IGNORE_INDEX = CITYSCAPES.ignore_index


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    """Returns (id -> trainId lookup of 256 entries, validity mask of label ids) from the official label table."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    for label in labels:
        if label.id < 0:  # license plate: never written into label images
            continue
        valid[label.id] = True
        lut[label.id] = label.trainId if 0 <= label.trainId < NUM_CLASSES else IGNORE_INDEX
    return lut, valid


ID_TO_TRAIN_ID, VALID_LABEL_IDS = _build_tables()
"""uint8 lookup table id -> train id (255 for ignored ids) and the boolean mask of valid Cityscapes label ids."""

VALID_TRAIN_IDS = np.zeros(256, dtype=bool)
VALID_TRAIN_IDS[:NUM_CLASSES] = True
VALID_TRAIN_IDS[IGNORE_INDEX] = True


@dataclass(frozen=True)
class SampleRef:
    """One image of the dataset and its label file.

    Attributes:
        id: the Cityscapes stem, e.g. ``frankfurt_000000_000294``.
        city: the city folder.
        image: path of the ``_leftImg8bit.png`` file.
        label: path of the label file.
        label_kind: "trainIds" (labelTrainIds, read as is) or "labelIds" (mapped to train ids).
    """

    id: str
    city: str
    image: Path
    label: Path
    label_kind: str


def resolve_root(root: str | Path | None) -> Path:
    """Returns the dataset root: the argument if given, else the ``CITYSCAPES_DATASET`` environment variable
    (`bench.data.datasets.Dataset.resolve_root`).

    Raises:
        DataNotFoundError: neither is set, or the folder does not exist.
    """
    return DATASET.resolve_root(root)


def read_image(path: str | Path) -> np.ndarray:
    """Reads an 8-bit RGB PNG into a uint8 array (H, W, 3).

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: unreadable or truncated file, not RGB (grayscale/palette/RGBA are rejected), or under 32 px.
    """
    return images.read_image(path)


def read_label(path: str | Path, kind: str | None = None) -> np.ndarray:
    """Reads a Cityscapes label PNG and returns uint8 train ids (H, W), 255 for ignored pixels.

    Args:
        path: a ``_gtFine_labelTrainIds.png`` or ``_gtFine_labelIds.png`` file.
        kind: "trainIds" or "labelIds"; inferred from the file name when None.

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: unreadable or truncated file, not single-channel 8-bit, or values that are not Cityscapes ids.
    """
    path = Path(path)
    if kind is None:
        if path.name.endswith(TRAIN_ID_SUFFIX):
            kind = "trainIds"
        elif path.name.endswith(LABEL_ID_SUFFIX):
            kind = "labelIds"
        else:
            raise DataError(
                f"{path}: cannot tell the label encoding from the name; expected *{TRAIN_ID_SUFFIX} or "
                f"*{LABEL_ID_SUFFIX}"
            )
    if kind not in ("trainIds", "labelIds"):
        raise ValueError(f"label kind {kind!r} must be 'trainIds' or 'labelIds'")
    values = images.read_indices(path)
    valid = VALID_TRAIN_IDS if kind == "trainIds" else VALID_LABEL_IDS
    bad = ~valid[values]
    if bad.any():
        found = np.unique(values[bad])
        allowed = "0-18 and 255" if kind == "trainIds" else "0-33"
        raise DataError(
            f"{path}: label values {found[:10].tolist()} are not Cityscapes {kind} (valid: {allowed}); "
            "regenerate the labels with cityscapesscripts"
        )
    return values if kind == "trainIds" else ID_TO_TRAIN_ID[values]


def cityscapes_label_for(root: Path, split: str, city: str, stem: str, image: Path) -> tuple[Path, str]:
    folder = root / "gtFine" / split / city
    train_ids = folder / f"{stem}{TRAIN_ID_SUFFIX}"
    if train_ids.is_file():
        return train_ids, "trainIds"
    label_ids = folder / f"{stem}{LABEL_ID_SUFFIX}"
    if label_ids.is_file():
        return label_ids, "labelIds"
    raise DataNotFoundError(f"{image}: missing label: neither {train_ids} nor {label_ids} exists")


def check_sample(sample: SampleRef) -> None:
    """Checks the PNG headers of one sample (readable, RGB image, 8-bit label, >= 32 px, same size).

    Raises:
        DataError: naming the first bad file and what is wrong with it.
    """
    check_files(sample.image, [sample.label])


def find_samples(
    root: str | Path | None, split: str = "val", max_images: int | None = None, validate: bool = True
) -> list[SampleRef]:
    """Lists and validates the samples of a split, in a deterministic order.

    Samples are sorted by (city, stem). ``max_images`` keeps the first N of that order, so a subset is the same on
    every machine and every run, and a smaller subset is a prefix of a larger one.

    Args:
        root: dataset root, or None for ``CITYSCAPES_DATASET``.
        split: "train", "val" or "test".
        max_images: keep only the first N samples (None or 0: all).
        validate: check each kept sample's headers with :func:`check_sample`.

    Returns:
        The samples.

    Raises:
        DataError: bad layout or file, naming the first bad one.
    """
    root = resolve_root(root)
    if max_images is not None and max_images < 0:
        raise ValueError(f"max_images must be >= 0, got {max_images}")
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise DataNotFoundError(
            f"{image_dir}: not found; expected the official layout ROOT/leftImg8bit/{split}/<city>/"
        )
    samples = []
    for city_dir in sorted(p for p in image_dir.iterdir() if p.is_dir()):
        for image in sorted(city_dir.glob(f"*{IMAGE_SUFFIX}")):
            stem = image.name[: -len(IMAGE_SUFFIX)]
            label, kind = cityscapes_label_for(root, split, city_dir.name, stem, image)
            samples.append(SampleRef(stem, city_dir.name, image, label, kind))
    if not samples:
        raise DataNotFoundError(f"{image_dir}: no <city>/*{IMAGE_SUFFIX} images found")
    if max_images:
        samples = samples[:max_images]
    if validate:
        for sample in samples:
            check_sample(sample)
    return samples


def corrupted_image_path(corrupted_root: str | Path, condition: Condition, split: str, sample: SampleRef) -> Path:
    """Path of a pre-generated corrupted image: ``OUT/<corruption>/<severity>/leftImg8bit/<split>/<city>/<file>``."""
    return (
        Path(corrupted_root)
        / str(condition.corruption)
        / str(condition.severity)
        / "leftImg8bit"
        / split
        / sample.city
        / sample.image.name
    )


def _find(root: Path, split: str, domain: str | None = None) -> list[Sample]:
    return [
        Sample(s.id, s.image, s.label, s.image.relative_to(root), kind=s.label_kind)
        for s in find_samples(root, split, validate=False)
    ]


def _read_label(sample: Sample) -> np.ndarray:
    return read_label(sample.label, sample.kind)


def _write_synthetic(root: Path, num_images: int, size: tuple[int, int], seed: int = 0) -> Path:
    from segbench.bench.data.synthetic import write_synthetic_cityscapes

    return write_synthetic_cityscapes(root, num_images=num_images, size=size, split="val", seed=seed)


DATASET = register_dataset(
    Dataset(
        name="cityscapes",
        title="Cityscapes",
        classes=CITYSCAPES,
        env_var=ENV_VAR,
        layout="leftImg8bit/ and gtFine/",
        find=_find,
        read_label=_read_label,
        write_synthetic=_write_synthetic,
        same_size=True,
        download="https://www.cityscapes-dataset.com/downloads/ (gtFine_trainvaltest.zip, leftImg8bit_trainvaltest.zip)",  # noqa: E501
    )
)
"""Cityscapes as a dataset value: 19 train-id classes, labelTrainIds or labelIds, images at their own size."""


class CityscapesDataset(SegmentationDataset):
    """Cityscapes images (clean or under one corruption condition) with train-id labels
    (`bench.data.loading.SegmentationDataset` over `DATASET`)."""

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "val",
        max_images: int | None = None,
        condition: Condition | str = CLEAN,
        base_seed: int = 0,
        corrupted_root: str | Path | None = None,
    ) -> None:
        super().__init__(DATASET, root, split, max_images, condition, base_seed, corrupted_root)
