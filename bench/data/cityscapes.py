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

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segbench.bench.data.corruptions import MIN_SIZE, SEED_PROTOCOL, condition_seed, corrupt
from segbench.bench.results.axes import CLEAN, Condition
from segbench.bench.results.classes import CITYSCAPES
from segbench.bench.results.files import CORRUPTED, DamagedFileError

ENV_VAR = "CITYSCAPES_DATASET"
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_ID_SUFFIX = "_gtFine_labelIds.png"
NUM_CLASSES = CITYSCAPES.num_classes
IGNORE_INDEX = CITYSCAPES.ignore_index
MANIFEST = "manifest.json"


class DataError(ValueError):
    """Bad or missing input data; the message names the file or value and what to do."""


class DataNotFoundError(DataError, FileNotFoundError):
    """The dataset (or one of its files) is not where it was looked for."""


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
    """Returns the dataset root: the argument if given, else the ``CITYSCAPES_DATASET`` environment variable.

    Raises:
        DataNotFoundError: neither is set, or the folder does not exist.
    """
    source = "the data argument"
    if root is None or str(root) == "":
        env = os.environ.get(ENV_VAR, "")
        if not env:
            raise DataNotFoundError(
                f"no Cityscapes root given: pass --data ROOT or set {ENV_VAR}=ROOT (the folder holding leftImg8bit/ "
                "and gtFine/); `--suite demo` runs on synthetic data without it"
            )
        root, source = env, f"${ENV_VAR}"
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(
            f"Cityscapes root {str(path)!r} (from {source}) is not a folder: point --data or {ENV_VAR} at the folder "
            "holding leftImg8bit/ and gtFine/; `--suite demo` runs on synthetic data without it"
        )
    return path


def _decode_error(path: Path, exc: BaseException) -> DataError:
    return DataError(f"{path}: cannot read PNG ({exc}); the file is truncated or corrupt, re-extract or regenerate it")


def open_header(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _decode_error(path, exc) from None


def check_image_header(path: Path, img: Image.Image) -> None:
    if img.mode != "RGB":
        raise DataError(
            f"{path}: image mode {img.mode!r}, expected 8-bit RGB; grayscale, palette and RGBA images are rejected, "
            "not converted (Cityscapes images are RGB): convert the file to RGB"
        )
    width, height = img.size
    if min(width, height) < MIN_SIZE:
        raise DataError(f"{path}: image of {height}x{width} px is under the minimum of {MIN_SIZE} px per side")


def check_label_header(path: Path, img: Image.Image) -> None:
    if img.mode not in ("L", "P"):
        raise DataError(f"{path}: label mode {img.mode!r}, expected a single-channel 8-bit PNG of Cityscapes ids")


def decode_png(path: Path, check_header) -> np.ndarray:
    """Open a PNG, validate its header with `check_header(path, img)`, decode it to a uint8 array (one error line)."""
    with open_header(path) as img:
        check_header(path, img)
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, zlib.error) as exc:
            raise _decode_error(path, exc) from None
        return np.asarray(img, dtype=np.uint8).copy()


def read_image(path: str | Path) -> np.ndarray:
    """Reads an 8-bit RGB PNG into a uint8 array (H, W, 3).

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: unreadable or truncated file, not RGB (grayscale/palette/RGBA are rejected), or under 32 px.
    """
    return decode_png(Path(path), check_image_header)


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
    values = decode_png(path, check_label_header)
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


def check_files(image: Path, others: Sequence[Path]) -> None:
    """Checks the PNG headers of one image and the label-like files that go with it (labels, masks): readable, RGB
    image of at least 32 px, single-channel 8-bit others, all of the image's size.

    Raises:
        DataError: naming the first bad file and what is wrong with it.
    """
    with open_header(image) as img:
        check_image_header(image, img)
        size = img.size
    for path in others:
        with open_header(path) as other:
            check_label_header(path, other)
            if other.size != size:
                raise DataError(
                    f"{path}: {other.size[1]}x{other.size[0]} px but its image {image.name} is "
                    f"{size[1]}x{size[0]} px; the two must be the same size"
                )


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


def read_manifest(folder: str | Path) -> dict:
    """Reads the manifest.json of a generate-c output folder, checked (`bench.results.files.CORRUPTED`).

    Raises:
        DataNotFoundError: no manifest.
        DataError: unreadable or damaged manifest.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not found; is {folder} a folder written by generate-c?")
    try:
        return CORRUPTED.read(path)
    except DamagedFileError as exc:
        raise DataError(str(exc)) from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}); regenerate the folder with generate-c") from None


def check_manifest(manifest: dict, path: str | Path, base_seed: int, split: str) -> None:
    """Refuses a pre-generated folder whose seed protocol, base seed or split differ from the requested ones."""
    expected = {"seed_protocol": SEED_PROTOCOL, "base_seed": int(base_seed), "split": split}
    for key, want in expected.items():
        if manifest.get(key) != want:
            raise DataError(
                f"{Path(path) / MANIFEST}: {key} is {manifest.get(key)!r} but this run needs {want!r}; regenerate the "
                "folder with generate-c or corrupt on the fly"
            )


class CityscapesDataset(torch.utils.data.Dataset):
    """Cityscapes images (clean or under one corruption condition) with train-id labels.

    The corruption is applied in ``__getitem__``, i.e. inside DataLoader workers, seeded per image by
    :func:`bench.data.corruptions.condition_seed`, so the bytes never depend on the worker count or order. With
    ``corrupted_root`` the corrupted images are read from a generate-c folder instead; its manifest must match the
    seed protocol, base seed and split.

    Each item is ``dict(image=uint8 tensor (3, H, W) RGB, label=uint8 tensor (H, W) train ids, 255 ignored,
    id=stem)``.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "val",
        max_images: int | None = None,
        condition: Condition | str = CLEAN,
        base_seed: int = 0,
        corrupted_root: str | Path | None = None,
    ) -> None:
        self.root = resolve_root(root)
        self.split = split
        self.condition = Condition.parse(condition) if isinstance(condition, str) else condition
        self.base_seed = int(base_seed)
        self.samples = find_samples(self.root, split, max_images)
        self.corrupted_root = Path(corrupted_root) if corrupted_root is not None else None
        if self.corrupted_root is not None and not self.condition.is_clean:
            manifest = read_manifest(self.corrupted_root)
            check_manifest(manifest, self.corrupted_root, self.base_seed, split)
            for sample in self.samples:
                path = corrupted_image_path(self.corrupted_root, self.condition, split, sample)
                if not path.is_file():
                    raise DataNotFoundError(
                        f"{path}: not found in the pre-generated folder; run generate-c for {self.condition.name}"
                    )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        label = read_label(sample.label, sample.label_kind)
        condition = self.condition
        if condition.is_clean:
            image = read_image(sample.image)
        elif self.corrupted_root is not None:
            image = self._pre_generated(sample, label.shape)
        else:
            seed = condition_seed(sample.id, condition.corruption, condition.severity, self.base_seed)
            image = corrupt(read_image(sample.image), condition.corruption, condition.severity, seed)
        return dataset_item(image, label, sample.id, sample.label)

    def _pre_generated(self, sample: SampleRef, size: tuple[int, ...]) -> np.ndarray:
        """The sample's corrupted image from the `--corrupted-data` folder, which must be of the label's size (a folder
        generated from other images, at another size, is named as the culprit, not the label)."""
        path = corrupted_image_path(self.corrupted_root, self.condition, self.split, sample)
        image = read_image(path)
        if image.shape[:2] != tuple(size):
            raise DataError(
                f"{path}: pre-generated image of {image.shape[0]}x{image.shape[1]} px, but its label "
                f"{sample.label.name} is {size[0]}x{size[1]} px: the --corrupted-data folder {self.corrupted_root} was "
                "generated from other images; generate it again from this --data (generate-c), or leave "
                "--corrupted-data out to corrupt on the fly"
            )
        return image


def dataset_item(image: np.ndarray, label: np.ndarray, sample_id: str, label_path: Path) -> dict:
    """A dataset item: `dict(image=uint8 tensor (3, H, W) RGB, label=uint8 tensor (H, W), id=...)`; an image and
    label of different sizes are a `DataError` naming the label file."""
    if image.shape[:2] != label.shape:
        raise DataError(
            f"{label_path}: label is {label.shape[0]}x{label.shape[1]} px but the image is "
            f"{image.shape[0]}x{image.shape[1]} px"
        )
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        "label": torch.from_numpy(label),
        "id": sample_id,
    }
