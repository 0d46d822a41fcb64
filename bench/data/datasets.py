"""A dataset as one value: its classes, its label decoder, its layout reader, its evaluation protocol and a writer of
synthetic data in its exact layout.

Every reader of images and labels goes through a `Dataset`: the runner's accuracy cells (`SegmentationDataset`), the
data check before a run, generate-c, the gallery, the deployment grid's calibration images. A new dataset is a new
instance, registered by name (`register_dataset`); nothing else changes. The instances live beside their readers:
Cityscapes in `bench.data.cityscapes`, ACDC, Dark Zurich and Foggy Cityscapes in `bench.data.realworld`.

Protocol. mmseg's test pipelines resize the image and leave the label as it is; predictions are resized back to the
label's size before they are scored (`bench.measure.inference.predict(out_size=...)`). `Protocol.scale` is mmseg's
`Resize(scale=(long, short), keep_ratio=True)`: the image is scaled by `min(long / max(h, w), short / min(h, w))`
(mmcv's `rescale_size`, sizes rounded half up), bilinearly; None keeps the image size (Cityscapes).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.images import check_files
from segbench.bench.results.classes import ClassTable


@dataclass(frozen=True)
class Sample:
    """One image of a dataset and what scores it.

    Attributes:
        id: the image's id (the file's stem, or the dataset's own id).
        image: the image file.
        label: the label file.
        rel: the image's path under its dataset's root; a generate-c folder holds the corrupted copy, always a PNG,
            at `<out>/<corruption>/<severity>/<rel with suffix .png>` (`corrupted_rel`; for Cityscapes
            `leftImg8bit/<split>/<city>/<file>`).
        kind: how the label is encoded, for the dataset's decoder (Cityscapes: "trainIds" or "labelIds").
        masks: further label-like files that go with the label (ACDC's invalid-region mask), checked alike.
        domain: the real-world condition the sample belongs to ("fog", "night", "beta_0.01"), or None.
    """

    id: str
    image: Path
    label: Path
    rel: Path
    kind: str = ""
    masks: tuple[Path, ...] = ()
    domain: str | None = None

    @property
    def corrupted_rel(self) -> Path:
        """Where generate-c writes this image's corrupted copy under `<out>/<corruption>/<severity>/` (lossless PNG)."""
        return self.rel.with_suffix(".png")


@dataclass(frozen=True)
class Protocol:
    """How a dataset's images are evaluated (its mmseg test pipeline).

    Attributes:
        scale: mmseg's `Resize(scale=(long, short), keep_ratio=True)` of the image (None: the image as it is).
        mode: "whole" (one forward per image) or "slide" (crops of `crop` at `stride`), for models whose own
            metadata names no protocol of their own.
        crop, stride: the sliding window's (H, W); None: the model's own.
    """

    scale: tuple[int, int] | None = None
    mode: str = "whole"
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"protocol mode {self.mode!r} must be 'whole' or 'slide'")
        for name in ("scale", "crop", "stride"):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or any(int(v) <= 0 for v in value)):
                raise ValueError(f"protocol {name} {value!r} must be two positive integers")

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the image is resized to: mmcv's `rescale_size` with keep-ratio."""
        if self.scale is None:
            return height, width
        long, short = max(self.scale), min(self.scale)
        factor = min(long / max(height, width), short / min(height, width))
        return int(height * factor + 0.5), int(width * factor + 0.5)

    def resize(self, image: np.ndarray) -> np.ndarray:
        """`image` (H, W, 3 uint8) at `input_size`, bilinear, as mmcv's `imrescale` (cv2.INTER_LINEAR)."""
        size = self.input_size(*image.shape[:2])
        if size == image.shape[:2]:
            return image
        import cv2

        return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Dataset:
    """A dataset as the benchmark reads it.

    Attributes:
        name: the name runs, rows and `--data name=PATH` use ("cityscapes", "ade20k", ...).
        title: how a person reads it ("ADE20K").
        classes: the label space the decoder gives (names in train-id order, palette, ignore index).
        env_var: the environment variable that holds its root when `--data` does not name one.
        layout: what a root holds, in words, for messages ("leftImg8bit/ and gtFine/").
        find: `find(root, split, domain)` -> every sample of the split (of one domain for a real-world dataset),
            sorted as the benchmark takes them; raises `DataNotFoundError` / `DataError` naming the folder or file.
            Files are not opened here; `check` does that for the samples a run keeps.
        read_label: `read_label(sample)` -> the label as uint8 train ids (H, W), `classes.ignore_index` where not
            scored; a value outside the classes is a `DataError` naming the file.
        protocol: the image resize of its evaluation.
        domains: the conditions of a real-world dataset (ACDC's fog, night, rain, snow); empty otherwise.
        write_synthetic: `write_synthetic(root, num_images, size, seed)` writes synthetic data in the exact layout
            and returns the root; None where there is no such writer.
        grayscale: whether some images are grayscale (ADE20K); they are read as RGB. Otherwise a non-RGB image is
            refused, not converted.
        same_size: whether every image of the split has one size (Cityscapes, ACDC): batches of several images are
            possible. Otherwise accuracy runs at batch size 1.
        download: where to get the dataset yourself (one line for messages and the README).
    """

    name: str
    title: str
    classes: ClassTable
    env_var: str | None
    layout: str
    find: Callable[[Path, str, str | None], list[Sample]]
    read_label: Callable[[Sample], np.ndarray]
    protocol: Protocol = field(default_factory=Protocol)
    domains: tuple[str, ...] = ()
    write_synthetic: Callable[..., Path] | None = None
    grayscale: bool = False
    same_size: bool = False
    download: str = ""

    def resolve_root(self, root: str | Path | None) -> Path:
        """The dataset's root: `root` if given, else its environment variable.

        Raises:
            DataNotFoundError: neither is set, or the folder does not exist (one line saying what to give).
        """
        source, flag = "the data argument", f"--data {self.name.replace('_', '-')}=ROOT"
        where = f"{flag} or {self.env_var}" if self.env_var else flag
        hint = f"the folder holding {self.layout}; `--suite demo` runs on synthetic data without it"
        if root is None or str(root) == "":
            env = os.environ.get(self.env_var or "", "") if self.env_var else ""
            if not env:
                via = f" or set {self.env_var}=ROOT" if self.env_var else ""
                raise DataNotFoundError(f"no {self.title} root given: pass {flag}{via} ({hint})")
            root, source = env, f"${self.env_var}"
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(
                f"{self.title} root {str(path)!r} (from {source}) is not a folder: point {where} at {hint}"
            )
        return path

    def samples(
        self, root: str | Path | None, split: str = "val", max_images: int | None = None, domain: str | None = None
    ) -> list[Sample]:
        """The split's samples (of `domain`), the first `max_images` of them, each checked (`check_sample`)."""
        if max_images is not None and max_images < 0:
            raise ValueError(f"max_images must be >= 0, got {max_images}")
        found = self.find(self.resolve_root(root), split, domain)
        kept = found[:max_images] if max_images else found
        for sample in kept:
            check_sample(sample, self.grayscale)
        return kept


# --------------------------------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------------------------------

_DATASETS: dict[str, Dataset | Callable[[Path], Dataset]] = {}
_MODULES = (
    "segbench.bench.data.cityscapes",
    "segbench.bench.data.realworld",
    "segbench.bench.data.ade20k",
    "segbench.bench.data.voc",
    "segbench.bench.data.coco_stuff",
    "segbench.bench.data.folder",
)
"""The modules that register the built-in datasets (imported on first use, so that importing one reader is cheap)."""


def register_dataset(dataset: Dataset | Callable[[Path], Dataset], name: str | None = None):
    """Add a dataset to the registry under its name. A dataset whose classes live in its root (the user's `folder`)
    registers a loader `loader(root) -> Dataset` under `name` instead. A second one of the same name raises."""
    key = dataset.name if isinstance(dataset, Dataset) else name
    if not key:
        raise ValueError("a dataset loader is registered with a name")
    if key in _DATASETS and _DATASETS[key] is not dataset:
        raise ValueError(f"dataset {key!r} is registered twice")
    _DATASETS[key] = dataset
    return dataset


def _load_builtins() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a reader not written yet in this checkout
            if exc.name != module:
                raise


def dataset_key(name: str) -> str:
    """The registry's spelling of a dataset name (`dark-zurich`, `Dark_Zurich` -> `dark_zurich`)."""
    return str(name).strip().lower().replace("-", "_")


def get_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """The registered dataset `name`; a dataset read from its root (`folder`) is loaded from `root` (resolved)."""
    _load_builtins()
    key = dataset_key(name)
    if key not in _DATASETS:
        import difflib

        close = difflib.get_close_matches(key, list(_DATASETS), n=3)
        hint = f"; closest: {', '.join(close)}" if close else f"; known: {', '.join(sorted(_DATASETS))}"
        raise DataError(f"unknown dataset {name!r}{hint}")
    entry = _DATASETS[key]
    if isinstance(entry, Dataset):
        return entry
    return entry(Path(root) if root is not None else None)


def list_datasets() -> list[str]:
    _load_builtins()
    return sorted(_DATASETS)


# --------------------------------------------------------------------------------------------------------------------
# Checking files (headers only: full decoding happens when a sample is read)
# --------------------------------------------------------------------------------------------------------------------


def check_sample(sample: Sample, grayscale: bool = False) -> None:
    """The headers of a sample's image and label files: readable, an 8-bit RGB image (or grayscale where the dataset
    has such images) of at least 32 px, single-channel labels and masks of the image's size.

    Raises:
        DataError: naming the first bad file and what is wrong with it.
    """
    check_files(sample.image, [sample.label, *sample.masks], grayscale=grayscale)


def values_outside(values: np.ndarray, valid: np.ndarray) -> Sequence[int]:
    """The distinct label values (at most 10) that `valid` (a 256-entry boolean table) does not allow."""
    bad = ~valid[values]
    return np.unique(values[bad])[:10].tolist() if bad.any() else []
