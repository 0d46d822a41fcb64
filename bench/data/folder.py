"""The user's own data as a dataset: `--data folder=PATH`, a folder of images, index labels and a dataset.json.

The layout::

    ROOT/images/<id>.png|.jpg|.jpeg    8-bit RGB images; subfolders allowed (the id is the path without suffix)
    ROOT/labels/<id>.png               single-channel 8-bit index PNGs of the image's size
    ROOT/dataset.json                  the classes, and how the label values map to them

dataset.json (msgspec schema `FolderSpec`; only "classes" is required)::

    {"classes": ["background", "crop", "weed"],        # class k is names[k]
     "palette": [[0, 0, 0], [0, 128, 0], [128, 0, 0]], # one colour per class
     "ignore_index": 255,                               # the label value no metric counts
     "offset": 0,                                       # label value v is class v - offset; values below are ignored
     "protocol": {"scale": [2048, 512], "mode": "slide", "crop": [512, 512], "stride": [341, 341]},
     "grayscale": false,                                # whether some images are grayscale (read as RGB)
     "name": "My fields"}                               # the title messages and reports use

Offset. A label value v in [offset, offset + len(classes)) is class v - offset; a value below the offset is ignored
(offset 1 where 0 means "unlabelled", as in ADE20K); the ignore index itself stays the ignore index; any other value is
a `DataError` naming the file when the label is read. The ignore index is neither a class index (0 to classes - 1)
nor a class's label value (offset to offset + classes - 1).

Every problem is one line naming the file (and the field of dataset.json): the classes come from the root, so the
dataset is registered as a loader (`get_dataset("folder", root)`), not as a value. The folder has no splits: every
image is read, as split "val".
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import numpy as np

from segbench.bench.data.datasets import Dataset, Protocol, Sample, register_dataset, values_outside
from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.images import read_indices
from segbench.bench.results.classes import ClassTable, default_palette

NAME = "folder"
SPEC_FILE = "dataset.json"
IMAGES, LABELS = "images", "labels"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_SUFFIX = ".png"
LAYOUT = "images/, labels/ and dataset.json"
EXAMPLE = '{"classes": ["background", "crop", "weed"]}'
"""The smallest dataset.json, shown where the file is missing or does not parse."""
DEFAULT_CLASSES = ("background", "crop", "weed", "soil")


# --------------------------------------------------------------------------------------------------------------------
# dataset.json
# --------------------------------------------------------------------------------------------------------------------

_Positive = Annotated[int, msgspec.Meta(ge=1)]
_Pair = tuple[_Positive, _Positive]


class ProtocolSpec(msgspec.Struct, forbid_unknown_fields=True):
    """dataset.json's "protocol": `bench.data.datasets.Protocol` (scale [long, short], crop and stride [h, w])."""

    scale: _Pair | None = None
    mode: Literal["whole", "slide"] = "whole"
    crop: _Pair | None = None
    stride: _Pair | None = None


class FolderSpec(msgspec.Struct, forbid_unknown_fields=True):
    """dataset.json of a folder dataset. Unknown keys are refused: a misspelt optional key would silently fall back
    to its default (an "ignore_idx" would score the unlabelled pixels)."""

    classes: list[str]
    palette: list[tuple[int, int, int]] | None = None
    ignore_index: int = 255
    offset: int = 0
    protocol: ProtocolSpec | None = None
    grayscale: bool = False
    name: str | None = None


_FIELDS = ", ".join(FolderSpec.__struct_fields__)


def _schema_problem(exc: msgspec.ValidationError) -> str:
    """msgspec's message as `field: problem` ("Expected `int` >= 1 - at `$.protocol.scale[0]`" ->
    "protocol.scale[0]: expected `int` >= 1")."""
    text = str(exc).strip().splitlines()[0]
    message, _, where = text.partition(" - at `$")
    message = message[:1].lower() + message[1:]
    if "unknown field" in message:
        message += f" (the fields are {_FIELDS})"
    elif not where:  # not an object, or no classes
        message += f"; it should hold at least {EXAMPLE}"
    where = where.rstrip("`").lstrip(".")
    return f"{where}: {message}" if where else message


def read_spec(path: Path) -> FolderSpec:
    """dataset.json, parsed, checked against `FolderSpec` and `check_spec`.

    Raises:
        DataNotFoundError: the file does not exist (the message shows a minimal one).
        DataError: unreadable, not JSON, or a field that is wrong; one line naming the file and the field.
    """
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not found; a folder dataset names its classes there, at least {EXAMPLE}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc}); it should hold at least {EXAMPLE}") from None
    try:
        spec = msgspec.json.decode(raw, type=FolderSpec)
    except msgspec.ValidationError as exc:
        raise DataError(f"{path}: {_schema_problem(exc)}") from None
    except msgspec.DecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc}); it should hold at least {EXAMPLE}") from None
    problem = check_spec(spec)
    if problem:
        raise DataError(f"{path}: {problem}")
    return spec


def check_spec(spec: FolderSpec) -> str | None:
    """The first problem of a parsed dataset.json that the schema does not see, as `field ...`, or None."""
    names, count = spec.classes, len(spec.classes)
    if not names:
        return f"classes is empty: name at least one class, e.g. {EXAMPLE}"
    for index, name in enumerate(names):
        if not name.strip():
            return f"classes[{index}] is an empty name: every class needs one"
        if name in names[:index]:
            return f"classes[{index}] {name!r} is named twice (also classes[{names.index(name)}]): names are unique"
    if spec.palette is not None:
        if len(spec.palette) != count:
            return f"palette has {len(spec.palette)} colours for {count} classes: give one [r, g, b] per class"
        for index, colour in enumerate(spec.palette):
            if any(not 0 <= c <= 255 for c in colour):
                return f"palette[{index}] is {list(colour)}: colours are 0-255"
    if spec.offset < 0:
        return f"offset is {spec.offset}: it must be >= 0 (label value v is class v - offset)"
    if spec.offset + count > 256:
        return f"offset {spec.offset} + {count} classes is over 256: the label values of an 8-bit PNG are 0-255"
    ignore = spec.ignore_index
    if not 0 <= ignore <= 255:
        return f"ignore_index is {ignore}: it must be 0-255 (an 8-bit label value)"
    if ignore < count:
        return f"ignore_index {ignore} is a class index (classes are 0-{count - 1}): pick a value past them, e.g. 255"
    if spec.offset <= ignore < spec.offset + count:
        return (
            f"ignore_index {ignore} is the label value of class {names[ignore - spec.offset]!r} (offset "
            f"{spec.offset}: values {spec.offset}-{spec.offset + count - 1} are the classes): pick another, e.g. 255"
        )
    return None


def _protocol(spec: FolderSpec, path: Path) -> Protocol:
    if spec.protocol is None:
        return Protocol()
    p = spec.protocol  # a slide without crop or stride takes the model's own
    try:
        return Protocol(scale=p.scale, mode=p.mode, crop=p.crop, stride=p.stride)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------------------------------


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _files_by_id(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    """The files under `folder` by id (the path under it without suffix, posix style); hidden files are skipped.

    Raises:
        DataError: a file of another suffix, or two files of one id (one line naming the file).
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if _hidden(rel) or path.is_dir():
            continue
        if path.suffix.lower() not in suffixes:
            raise DataError(
                f"{path}: not a {what} ({', '.join(suffixes)}); convert it or move it out of {folder.name}/"
            )
        key = rel.with_suffix("").as_posix()
        if key in found:
            raise DataError(f"{path}: same id {key!r} as {found[key].name}; keep one of the two")
        found[key] = path
    return found


@dataclass(frozen=True)
class FolderReader:
    """Finds and decodes the samples of one folder dataset (picklable, for DataLoader workers).

    Attributes:
        root: the root its dataset.json was read from.
        num_classes: how many classes it names.
        offset: label value v is class v - offset; values below it are ignored.
        ignore_index: the label value no metric counts, kept as it is.
    """

    root: Path
    num_classes: int
    offset: int = 0
    ignore_index: int = 255

    def find(self, root: Path, split: str = "val", domain: str | None = None) -> list[Sample]:
        """Every image under images/ with its label under labels/, sorted by id; `split` must be "val".

        Raises:
            DataNotFoundError: images/ or labels/ missing, or no images.
            DataError: another split or a domain, a file of another type, an image without a label or a label without
                an image; one line naming the file.
        """
        root = Path(root)
        if split != "val":
            raise DataError(
                f"{root}: a folder dataset has no splits: every image under images/ is split 'val', not {split!r}"
            )
        if domain is not None:
            raise DataError(f"{root}: a folder dataset has no domains, got {domain!r}")
        if root.resolve() != self.root.resolve():
            raise DataError(f"{root}: this folder dataset was read from {self.root}; load it with --data folder={root}")
        folders = root / IMAGES, root / LABELS
        for folder in folders:
            if not folder.is_dir():
                raise DataNotFoundError(f"{folder}: not found; a folder dataset holds {LAYOUT}")
        images = _files_by_id(folders[0], IMAGE_SUFFIXES, "png or jpg image")
        labels = _files_by_id(folders[1], (LABEL_SUFFIX,), "png label")
        if not images:
            raise DataNotFoundError(f"{folders[0]}: no {', '.join(IMAGE_SUFFIXES)} images found")
        for key, image in images.items():
            if key not in labels:
                raise DataNotFoundError(f"{image}: no label; expected {folders[1] / key}{LABEL_SUFFIX}")
        for key, label in labels.items():
            if key not in images:
                raise DataError(
                    f"{label}: a label without an image; expected {folders[0] / key} with suffix "
                    f"{', '.join(IMAGE_SUFFIXES)}"
                )
        return [Sample(key, images[key], labels[key], images[key].relative_to(root)) for key in sorted(images)]

    def read_label(self, sample: Sample) -> np.ndarray:
        """The label as uint8 class indices (H, W): value v is class v - offset, values below the offset and the
        ignore index are the ignore index.

        Raises:
            DataError: a value that is neither a class, below the offset nor the ignore index (naming the file).
        """
        values = read_indices(sample.label)
        n, offset, ignore = self.num_classes, self.offset, self.ignore_index
        table = np.full(256, ignore, dtype=np.uint8)
        table[offset : offset + n] = np.arange(n, dtype=np.uint8)
        valid = np.zeros(256, dtype=bool)
        valid[: offset + n] = True
        valid[ignore] = True
        bad = values_outside(values, valid)
        if bad:
            below = f"; values below {offset} are ignored" if offset else ""
            raise DataError(
                f"{sample.label}: label values {list(bad)} are outside the classes: values {offset}-{offset + n - 1} "
                f"are classes 0-{n - 1} (offset {offset}), {ignore} is the ignore index{below}"
            )
        return table[values]


def load_folder(root: str | Path | None) -> Dataset:
    """The folder dataset at `root` (`get_dataset("folder", root)`), its classes read from ROOT/dataset.json.

    Raises:
        DataNotFoundError: no root, a root that is not a folder, or no dataset.json (one line).
        DataError: a bad dataset.json (one line naming the file and the field).
    """
    if root is None or str(root) == "":
        raise DataNotFoundError(f"no folder dataset given: pass --data folder=PATH (a folder holding {LAYOUT})")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(
            f"folder dataset {str(root)!r} is not a folder: pass --data folder=PATH (a folder holding {LAYOUT})"
        )
    try:
        stat = (root / SPEC_FILE).stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = None
    return _load(root.resolve(), stamp)


@functools.lru_cache(maxsize=16)
def _load(root: Path, stamp: tuple[int, int] | None) -> Dataset:
    """The dataset at `root` as its dataset.json of `stamp` (modification time, size) describes it: read once per
    process while the file is unchanged (a run asks for its class table often)."""
    path = root / SPEC_FILE
    spec = read_spec(path)
    palette = tuple((int(r), int(g), int(b)) for r, g, b in spec.palette or default_palette(len(spec.classes)))
    reader = FolderReader(root, len(spec.classes), spec.offset, spec.ignore_index)
    return Dataset(
        name=NAME,
        title=(spec.name or "").strip() or "folder dataset",
        classes=ClassTable(NAME, tuple(spec.classes), palette, spec.ignore_index),
        env_var=None,
        layout=LAYOUT,
        find=reader.find,
        read_label=reader.read_label,
        protocol=_protocol(spec, path),
        write_synthetic=write_synthetic_folder,
        grayscale=spec.grayscale,
        same_size=False,
    )


register_dataset(load_folder, NAME)


# --------------------------------------------------------------------------------------------------------------------
# Synthetic data in the exact layout
# --------------------------------------------------------------------------------------------------------------------


def _draw(rng: np.random.Generator, size: tuple[int, int], classes: int, offset: int, ignore: int) -> np.ndarray:
    """Raw label values (H, W): rectangles of random classes on class 0, a band below the offset (where there is
    one) and a patch of the ignore index."""
    h, w = size
    raw = np.full((h, w), offset, dtype=np.uint8)
    for _ in range(2 * classes + 2):
        y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        dy, dx = int(rng.integers(4, h // 2 + 5)), int(rng.integers(4, w // 2 + 5))
        raw[y : y + dy, x : x + dx] = offset + int(rng.integers(0, classes))
    if offset:
        raw[: h // 8, :] = rng.integers(0, offset, size=(h // 8, w), dtype=np.uint8)
    y, x = int(rng.integers(0, h - h // 4)), int(rng.integers(0, w - w // 4))
    raw[y : y + h // 4, x : x + w // 4] = ignore
    return raw


def write_synthetic_folder(
    root: str | Path,
    num_images: int,
    size: tuple[int, int],
    seed: int = 0,
    classes: Sequence[str] = DEFAULT_CLASSES,
    offset: int = 0,
    palette: Sequence[Sequence[int]] | None = None,
) -> Path:
    """Writes a synthetic folder dataset in the exact layout: `images/img_<i>.png` (RGB: each class's colour, a
    gradient and noise), `labels/img_<i>.png` (raw values: class + offset, values below the offset, 255 ignored) and
    dataset.json (classes, offset, ignore index 255, the palette where given). The same arguments give the same bytes.

    Args:
        root: the root to create or add to.
        num_images: how many images.
        size: (H, W), at least 32 px per side.
        seed: the data's seed (image i draws from `numpy.random.default_rng([seed, i])`).
        classes, offset, palette: dataset.json's fields.

    Returns:
        The root.
    """
    from segbench.bench.data.corruptions import MIN_SIZE
    from segbench.bench.data.synthetic import save_png

    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if min(size) < MIN_SIZE:
        raise ValueError(f"size {tuple(size)} must be at least {MIN_SIZE} px per side")
    spec = FolderSpec(list(classes), [tuple(c) for c in palette] if palette is not None else None, 255, offset)
    problem = check_spec(spec)
    if problem:
        raise ValueError(problem)
    root = Path(root)
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    (root / LABELS).mkdir(parents=True, exist_ok=True)
    n = len(classes)
    colours = np.array(palette, dtype=np.float32) if palette is not None else _colours(n)
    table = np.full((256, 3), 128.0, dtype=np.float32)
    table[offset : offset + n] = colours
    for index in range(num_images):
        rng = np.random.default_rng([seed, index])
        raw = _draw(rng, tuple(size), n, offset, spec.ignore_index)
        ramp = np.linspace(-30.0, 30.0, size[1], dtype=np.float32)[None, :, None]
        image = table[raw] + ramp + rng.normal(0.0, 12.0, (*raw.shape, 3)).astype(np.float32)
        save_png(np.clip(image, 0, 255).astype(np.uint8), root / IMAGES / f"img_{index:03d}.png")
        save_png(raw, root / LABELS / f"img_{index:03d}.png")
    written = {
        "classes": list(classes),
        "ignore_index": spec.ignore_index,
        "offset": offset,
        "name": "synthetic folder dataset",
    }
    if palette is not None:
        written["palette"] = [list(map(int, c)) for c in palette]
    (root / SPEC_FILE).write_text(json.dumps(written, indent=2) + "\n")
    return root


def _colours(n: int) -> np.ndarray:
    """n distinct, fixed RGB colours (float32)."""
    return np.random.default_rng(7).integers(20, 236, size=(n, 3)).astype(np.float32)
