"""ADE20K SceneParsing reader (ADEChallengeData2016): 150 classes, reduced-zero labels, grayscale images read as RGB.

Layout (the official ADEChallengeData2016.zip; `write_synthetic` writes exactly this)::

    ROOT/images/validation/ADE_val_00000001.jpg
    ROOT/annotations/validation/ADE_val_00000001.png     (8-bit; 0 = "other", k = class k - 1)
    ROOT/images/training/ADE_train_*.jpg, ROOT/annotations/training/ADE_train_*.png

Split "val" reads the folder `validation`, "train" the folder `training`. Samples are sorted by file name, as mmseg
lists them. ``ROOT`` is an argument or the ``ADE20K_DATASET`` environment variable.

Labels: 0 ("other") is not scored (255) and k in 1..150 becomes train id k - 1 (mmseg's `reduce_zero_label`); any
value over 150 is a `DataError` naming the file. A few ADE20K images are grayscale JPEGs; they are read as RGB.

Protocol: mmseg's `configs/_base_/datasets/ade20k.py` test pipeline resizes with `Resize(scale=(2048, 512),
keep_ratio=True)`; models evaluated with a sliding window use 512 x 512 crops at a stride of 341 (e.g. mmseg's
ConvNeXt UperNet ADE20K configs).

The scene painter at the bottom (`paint_scene`, `jitter_size`, `save_jpeg`) also serves the Pascal VOC and
COCO-Stuff writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from segbench.bench.data.corruptions import MIN_SIZE
from segbench.bench.data.datasets import Dataset, Protocol, Sample, register_dataset, values_outside
from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.images import read_indices
from segbench.bench.results.classes import ClassTable

ENV_VAR = "ADE20K_DATASET"
SPLITS = {"val": "validation", "train": "training"}
"""Split name -> the folder under `images/` and `annotations/`."""
NUM_CLASSES = 150
IGNORE_INDEX = 255
OTHER = 0
"""The label value of pixels outside the 150 classes ("other"), not scored."""
JPEG_QUALITY = 95

ADE20K = ClassTable(
    "ade20k",
    # objectInfo150 order, first synonym of each, spelled as mmseg's ADE20KDataset and the Hugging Face checkpoints'
    # id2label (index 7 is "bed " with a trailing space)
    names=(
        "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane", "grass", "cabinet",
        "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
        "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
        "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
        "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
        "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
        "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
        "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
        "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
        "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
        "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
        "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
        "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher",
        "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
        "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
    ),
    # mmseg's ADE20K palette
    palette=(
        (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
        (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
        (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
        (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
        (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
        (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
        (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
        (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
        (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
        (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
        (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133),
        (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0),
        (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153),
        (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
        (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
        (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
        (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255),
        (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255),
        (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255),
        (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
        (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
        (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255),
        (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0),
        (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255),
        (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
    ),
    ignore_index=IGNORE_INDEX,
)  # fmt: skip
"""ADE20K's 150 scored classes (train ids 0-149; 255 ignored)."""

LABEL_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LABEL_TO_TRAIN_ID[1 : NUM_CLASSES + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)
"""Label value -> train id: 0 -> 255, k -> k - 1 (values over 150 are refused before the lookup)."""

VALID_LABELS = np.zeros(256, dtype=bool)
VALID_LABELS[: NUM_CLASSES + 1] = True


def split_folder(split: str) -> str:
    """The folder of `split` ("val" -> "validation", "train" -> "training"; a folder name is taken as it is).

    Raises:
        DataError: an unknown split.
    """
    if split in SPLITS.values():
        return split
    if split not in SPLITS:
        raise DataError(f"ADE20K has no split {split!r}; use one of {', '.join(SPLITS)}")
    return SPLITS[split]


def _layout_hint(folder: str) -> str:
    return (
        f"expected ROOT/images/{folder}/*.jpg and ROOT/annotations/{folder}/<same stem>.png, ROOT being the "
        "extracted ADEChallengeData2016 folder"
    )


def find_samples(root: str | Path, split: str = "val", domain: str | None = None) -> list[Sample]:
    """Every image of the split with its annotation, sorted by file name (files are not opened).

    Args:
        root: the folder holding `images/` and `annotations/`.
        split: "val" or "train".
        domain: unused (ADE20K has no domains).

    Raises:
        DataNotFoundError: a missing folder, no images, or an image without its annotation (naming the path).
        DataError: an unknown split.
    """
    root, folder = Path(root), split_folder(split)
    image_dir, label_dir = root / "images" / folder, root / "annotations" / folder
    for path in (image_dir, label_dir):
        if not path.is_dir():
            raise DataNotFoundError(f"{path}: not found; {_layout_hint(folder)}")
    images = sorted(image_dir.glob("*.jpg"))
    if not images:
        raise DataNotFoundError(f"{image_dir}: no *.jpg images found; {_layout_hint(folder)}")
    samples = []
    for image in images:
        label = label_dir / f"{image.stem}.png"
        if not label.is_file():
            raise DataNotFoundError(f"{image}: its annotation {label} is missing; {_layout_hint(folder)}")
        samples.append(Sample(image.stem, image, label, image.relative_to(root)))
    return samples


def read_label(path: str | Path) -> np.ndarray:
    """An ADE20K annotation as uint8 train ids (H, W): 0 ("other") -> 255, k -> k - 1.

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: unreadable file, not single-channel 8-bit, or values over 150.
    """
    values = read_indices(path)
    bad = values_outside(values, VALID_LABELS)
    if bad:
        raise DataError(
            f"{path}: label values {bad} are not ADE20K classes (valid: 0-150, 0 = other); re-extract the "
            "annotation from ADEChallengeData2016.zip"
        )
    return LABEL_TO_TRAIN_ID[values]


def _read_sample_label(sample: Sample) -> np.ndarray:
    return read_label(sample.label)


# --------------------------------------------------------------------------------------------------------------------
# Synthetic data: a few rectangles and ellipses of classes over a background, each class in its own colour plus noise
# --------------------------------------------------------------------------------------------------------------------

SCENE_COLOURS = np.random.default_rng(20160).integers(40, 216, size=(256, 3)).astype(np.float32)
"""The colour of each label value in synthetic scenes (the same in every scene and dataset, so it can be learnt)."""


def jitter_size(rng: np.random.Generator, size: tuple[int, int], amount: float = 0.3) -> tuple[int, int]:
    """`size` (H, W) with each side scaled by a factor in [1 - amount, 1 + amount], at least `MIN_SIZE`."""
    h, w = (max(MIN_SIZE, round(int(s) * rng.uniform(1 - amount, 1 + amount))) for s in size)
    return h, w


def paint_scene(
    rng: np.random.Generator, size: tuple[int, int], background: int, values: Sequence[int], num_shapes: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic scene: `num_shapes` rectangles or ellipses of label values drawn from `values` over `background`.

    Returns:
        (image uint8 (H, W, 3) RGB: each value's `SCENE_COLOURS` plus noise, label uint8 (H, W) of label values).
    """
    h, w = int(size[0]), int(size[1])
    label = np.full((h, w), background, dtype=np.uint8)
    ys, xs = np.mgrid[0:h, 0:w]
    for _ in range(num_shapes):
        value = int(rng.choice(np.asarray(values)))
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
        ry, rx = rng.uniform(0.1, 0.35) * h, rng.uniform(0.1, 0.35) * w
        if rng.random() < 0.5:
            inside = (np.abs(ys - cy) <= ry) & (np.abs(xs - cx) <= rx)
        else:
            inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1.0
        label[inside] = value
    image = SCENE_COLOURS[label] + rng.normal(0.0, 8.0, size=(h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def save_jpeg(image: np.ndarray, path: Path, grayscale: bool = False) -> None:
    """Writes an RGB image as a JPEG (quality 95); with `grayscale`, as a single-channel JPEG of its luminance."""
    img = Image.fromarray(image)
    (img.convert("L") if grayscale else img).save(path, quality=JPEG_QUALITY)


def write_synthetic(
    root: str | Path, num_images: int = 4, size: tuple[int, int] = (64, 96), seed: int = 0, split: str = "val"
) -> Path:
    """Writes a synthetic ADE20K in the ADEChallengeData2016 layout: `ADE_val_%08d.jpg` images and 8-bit PNG
    annotations with values 0-150 (0 = other in every scene).

    Image i is grayscale when i % 4 == 1 (or when it is the only image), as a few ADE20K images are.

    Args:
        root: dataset root to create or add to.
        num_images: number of scenes.
        size: (H, W) around which the image sizes vary (+-30%, each side independently); at least 32 px.
        seed: the same seed gives the same files.
        split: "val" or "train".

    Returns:
        The root path.
    """
    root, folder = Path(root), split_folder(split)
    prefix = "ADE_val" if folder == "validation" else "ADE_train"
    image_dir, label_dir = root / "images" / folder, root / "annotations" / folder
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        rng = np.random.default_rng([seed, i])
        background = int(rng.integers(1, NUM_CLASSES + 1))
        values = [OTHER, *rng.integers(1, NUM_CLASSES + 1, size=3).tolist()]
        image, label = paint_scene(rng, jitter_size(rng, size), background, values, num_shapes=5)
        label[: max(2, label.shape[0] // 10), : max(2, label.shape[1] // 10)] = OTHER  # "other" in every scene
        stem = f"{prefix}_{i + 1:08d}"
        save_jpeg(image, image_dir / f"{stem}.jpg", grayscale=i % 4 == 1 or num_images == 1)
        Image.fromarray(label).save(label_dir / f"{stem}.png")
    return root


DATASET = register_dataset(
    Dataset(
        name="ade20k",
        title="ADE20K",
        classes=ADE20K,
        env_var=ENV_VAR,
        layout="images/ and annotations/ (ADEChallengeData2016)",
        find=find_samples,
        read_label=_read_sample_label,
        protocol=Protocol(scale=(2048, 512), mode="slide", crop=(512, 512), stride=(341, 341)),
        write_synthetic=write_synthetic,
        grayscale=True,
        same_size=False,
        download="http://sceneparsing.csail.mit.edu/ (ADEChallengeData2016.zip)",
    )
)
"""ADE20K SceneParsing as a dataset value: 150 classes, 0 ignored, images resized to (2048, 512) keep-ratio."""
