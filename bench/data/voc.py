"""Pascal VOC 2012 segmentation reader: 21 classes (background scored), palette-PNG labels read as indices.

Layout (the official VOCtrainval_11-May-2012.tar; `write_synthetic` writes exactly this)::

    ROOT/ImageSets/Segmentation/val.txt     (one image id a line; only these ids are read, in this order)
    ROOT/JPEGImages/<id>.jpg
    ROOT/SegmentationClass/<id>.png         (palette PNG: index k = class k, 255 = object border, not scored)

``ROOT`` is the ``VOC2012`` folder (``VOCdevkit/VOC2012``), from an argument or the ``VOC_DATASET`` environment
variable. JPEGImages/ holds the detection images too: an image whose id the split file does not list is never read.
The split file's order is kept, as mmseg's `BaseSegDataset` keeps an annotation file's order.

Labels are palette PNGs: their indices are the classes, never their colours (`bench.data.images.read_indices`);
values 21..254 are a `DataError` naming the file.

Protocol: mmseg's `configs/_base_/datasets/pascal_voc12.py` test pipeline resizes with `Resize(scale=(2048, 512),
keep_ratio=True)`; its VOC models evaluate the whole image (`test_cfg=dict(mode='whole')`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from segbench.bench.data.ade20k import jitter_size, paint_scene, save_jpeg
from segbench.bench.data.datasets import Dataset, Protocol, Sample, register_dataset, values_outside
from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.images import read_indices
from segbench.bench.results.classes import ClassTable

ENV_VAR = "VOC_DATASET"
NUM_CLASSES = 21
IGNORE_INDEX = 255
BORDER = 255
"""The label value of object borders (and difficult regions) in SegmentationClass PNGs."""


def voc_colormap(count: int = 256) -> np.ndarray:
    """The standard VOC colormap, (count, 3) uint8: the bits of index i, three at a time (red, green, blue), fill the
    colour channels from their most significant bit down. Index 255 (borders) is (224, 224, 192)."""
    colours = np.zeros((count, 3), dtype=np.uint8)
    for index in range(count):
        value, rgb = index, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        colours[index] = rgb
    return colours


VOC = ClassTable(
    "voc",
    # mmseg's PascalVOCDataset class names
    names=(
        "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
        "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
    ),
    palette=tuple((int(r), int(g), int(b)) for r, g, b in voc_colormap(NUM_CLASSES)),
    ignore_index=IGNORE_INDEX,
)  # fmt: skip
"""Pascal VOC's 21 scored classes (0 = background; 255 ignored)."""

VALID_LABELS = np.zeros(256, dtype=bool)
VALID_LABELS[:NUM_CLASSES] = True
VALID_LABELS[IGNORE_INDEX] = True

LAYOUT_HINT = (
    "expected the VOC2012 folder (VOCdevkit/VOC2012) holding ImageSets/Segmentation/<split>.txt, JPEGImages/<id>.jpg "
    "and SegmentationClass/<id>.png"
)


def split_ids(path: Path) -> list[str]:
    """The image ids a split file lists, in its order (blank lines skipped, repeats kept once).

    Raises:
        DataNotFoundError: no such file.
        DataError: the file lists no id.
    """
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not found; {LAYOUT_HINT}")
    ids = list(dict.fromkeys(line.strip() for line in path.read_text().splitlines() if line.strip()))
    if not ids:
        raise DataError(f"{path}: lists no image ids; re-extract ImageSets/ from VOCtrainval_11-May-2012.tar")
    return ids


def find_samples(root: str | Path, split: str = "val", domain: str | None = None) -> list[Sample]:
    """The images `ImageSets/Segmentation/<split>.txt` lists, in its order, each with its label (not opened).

    Args:
        root: the VOC2012 folder.
        split: "val", "train", "trainval" (any split file of ImageSets/Segmentation/).
        domain: unused (VOC has no domains).

    Raises:
        DataNotFoundError: the split file, or a listed id's image or label, is missing (naming the file).
        DataError: the split file lists nothing.
    """
    root = Path(root)
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    samples = []
    for image_id in split_ids(listing):
        image = root / "JPEGImages" / f"{image_id}.jpg"
        label = root / "SegmentationClass" / f"{image_id}.png"
        for path in (image, label):
            if not path.is_file():
                raise DataNotFoundError(f"{path}: not found but {listing.name} lists {image_id!r}; {LAYOUT_HINT}")
        samples.append(Sample(image_id, image, label, image.relative_to(root)))
    return samples


def read_label(path: str | Path) -> np.ndarray:
    """A SegmentationClass PNG as uint8 class indices (H, W), 255 at borders: the palette indices themselves.

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: unreadable file, not single-channel 8-bit (an RGB colour label is refused), or values 21-254.
    """
    values = read_indices(path)
    bad = values_outside(values, VALID_LABELS)
    if bad:
        raise DataError(
            f"{path}: label values {bad} are not Pascal VOC classes (valid: 0-20 and 255); use the palette PNGs of "
            "SegmentationClass/ from VOCtrainval_11-May-2012.tar"
        )
    return values


def _read_sample_label(sample: Sample) -> np.ndarray:
    return read_label(sample.label)


def with_borders(label: np.ndarray, width: int = 1) -> np.ndarray:
    """`label` with `BORDER` on every pixel within `width` px of a pixel of another value (VOC's object outlines)."""
    h, w = label.shape
    padded = np.pad(label, width, mode="edge")
    edge = np.zeros(label.shape, dtype=bool)
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            edge |= padded[width + dy : width + dy + h, width + dx : width + dx + w] != label
    return np.where(edge, np.uint8(BORDER), label)


def save_palette_png(label: np.ndarray, path: Path) -> None:
    """Writes class indices as a palette PNG with the VOC colormap, as SegmentationClass holds them."""
    img = Image.fromarray(label)
    img.putpalette(voc_colormap().tobytes())
    img.save(path)


def write_synthetic(root: str | Path, num_images: int = 4, size: tuple[int, int] = (64, 96), seed: int = 0) -> Path:
    """Writes a synthetic VOC2012 folder: `ImageSets/Segmentation/val.txt` listing `num_images` ids, their JPEGs and
    palette-PNG labels (objects over background, 255 borders around them), and one more image with its label that
    only `train.txt` lists (it must never be read as val).

    Args:
        root: the VOC2012 folder to create or add to.
        num_images: number of val scenes.
        size: (H, W) around which the image sizes vary (+-30%, each side independently); at least 32 px.
        seed: the same seed gives the same files.

    Returns:
        The root path.
    """
    root = Path(root)
    folders = [root / "JPEGImages", root / "SegmentationClass", root / "ImageSets" / "Segmentation"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    ids = [f"2012_{i:06d}" for i in range(num_images + 1)]
    for i, image_id in enumerate(ids):
        rng = np.random.default_rng([seed, i])
        objects = rng.integers(1, NUM_CLASSES, size=3).tolist()
        image, label = paint_scene(rng, jitter_size(rng, size), 0, objects, num_shapes=3)
        save_jpeg(image, folders[0] / f"{image_id}.jpg")
        save_palette_png(with_borders(label), folders[1] / f"{image_id}.png")
    (folders[2] / "val.txt").write_text("".join(f"{i}\n" for i in ids[:-1]))
    (folders[2] / "train.txt").write_text(f"{ids[-1]}\n")
    return root


DATASET = register_dataset(
    Dataset(
        name="voc",
        title="Pascal VOC 2012",
        classes=VOC,
        env_var=ENV_VAR,
        layout="JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/ (VOC2012)",
        find=find_samples,
        read_label=_read_sample_label,
        protocol=Protocol(scale=(2048, 512), mode="whole"),
        write_synthetic=write_synthetic,
        same_size=False,
        download="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (VOCtrainval_11-May-2012.tar)",
    )
)
"""Pascal VOC 2012 as a dataset value: 21 classes, 255 borders ignored, images resized to (2048, 512) keep-ratio."""
