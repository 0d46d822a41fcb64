"""COCO-Stuff 164k reader: 171 classes, mmseg's converted train-id labels or the official stuffthingmaps PNGs.

Layouts (`write_synthetic` writes the first, with or without the converted labels)::

    ROOT/images/val2017/<id>.jpg                                (val2017.zip extracted into images/)
    ROOT/annotations/val2017/<id>_labelTrainIds.png             (mmseg's converter: train ids 0-170, 255 unlabelled)
    ROOT/annotations/val2017/<id>.png                           (stuffthingmaps_trainval2017.zip extracted into
                                                                 annotations/, as mmseg's and COCO-Stuff's guides do)
    ROOT/stuffthingmaps_trainval2017/val2017/<id>.png           (the same zip extracted into a folder of its name)

Images may also sit in ``ROOT/val2017/`` (val2017.zip extracted at the root). A `_labelTrainIds.png` is used when
present, else the raw stuffthingmaps PNG. Samples are sorted by file name. ``ROOT`` is an argument or the
``COCO_STUFF_DATASET`` environment variable.

Raw stuffthingmaps hold COCO category id - 1 (0-181) and 255 for unlabelled pixels. The 11 thing ids COCO defines but
never annotates (category ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91) leave 171 classes; raw values map to train
ids in ascending order, as mmseg's `tools/dataset_converters/coco_stuff164k.py` maps them, and an unannotated id (not
present in the official maps) is ignored. Values 182-254 (raw) or 171-254 (train ids) are a `DataError`.

Protocol: mmseg's `configs/_base_/datasets/coco-stuff164k.py` test pipeline, `Resize(scale=(2048, 512),
keep_ratio=True)`, whole-image inference.
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

ENV_VAR = "COCO_STUFF_DATASET"
NUM_CLASSES = 171
NUM_RAW_IDS = 182
IGNORE_INDEX = 255
TRAIN_IDS = "trainIds"
RAW = "stuffthingmaps"
TRAIN_ID_SUFFIX = "_labelTrainIds.png"
STUFFTHINGMAPS = "stuffthingmaps_trainval2017"
UNANNOTATED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
"""Raw ids (COCO category id - 1) of the 11 thing categories COCO never annotates; no train id."""

COCO_STUFF = ClassTable(
    "coco_stuff",
    # mmseg's COCOStuffDataset class names and palette, in train-id order
    names=(
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
        "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
        "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
        "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
        "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge", "building-other", "bush",
        "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
        "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
        "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
        "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal",
        "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other",
        "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
        "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone",
        "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
        "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
        "waterdrops", "window-blind", "window-other", "wood",
    ),
    palette=(
        (0, 192, 64), (0, 192, 64), (0, 64, 96), (128, 192, 192), (0, 64, 64), (0, 192, 224),
        (0, 192, 192), (128, 192, 64), (0, 192, 96), (128, 192, 64), (128, 32, 192), (0, 0, 224),
        (0, 0, 64), (0, 160, 192), (128, 0, 96), (128, 0, 192), (0, 32, 192), (128, 128, 224),
        (0, 0, 192), (128, 160, 192), (128, 128, 0), (128, 0, 32), (128, 32, 0), (128, 0, 128),
        (64, 128, 32), (0, 160, 0), (0, 0, 0), (192, 128, 160), (0, 32, 0), (0, 128, 128),
        (64, 128, 160), (128, 160, 0), (0, 128, 0), (192, 128, 32), (128, 96, 128), (0, 0, 128),
        (64, 0, 32), (0, 224, 128), (128, 0, 0), (192, 0, 160), (0, 96, 128), (128, 128, 128),
        (64, 0, 160), (128, 224, 128), (128, 128, 64), (192, 0, 32), (128, 96, 0), (128, 0, 192),
        (0, 128, 32), (64, 224, 0), (0, 0, 64), (128, 128, 160), (64, 96, 0), (0, 128, 192),
        (0, 128, 160), (192, 224, 0), (0, 128, 64), (128, 128, 32), (192, 32, 128), (0, 64, 192),
        (0, 0, 32), (64, 160, 128), (128, 64, 64), (128, 0, 160), (64, 32, 128), (128, 192, 192),
        (0, 0, 160), (192, 160, 128), (128, 192, 0), (128, 0, 96), (192, 32, 0), (128, 64, 128),
        (64, 128, 96), (64, 160, 0), (0, 64, 0), (192, 128, 224), (64, 32, 0), (0, 192, 128),
        (64, 128, 224), (192, 160, 0), (0, 192, 0), (192, 128, 96), (192, 96, 128), (0, 64, 128),
        (64, 0, 96), (64, 224, 128), (128, 64, 0), (192, 0, 224), (64, 96, 128), (128, 192, 128),
        (64, 0, 224), (192, 224, 128), (128, 192, 64), (192, 0, 96), (192, 96, 0), (128, 64, 192),
        (0, 128, 96), (0, 224, 0), (64, 64, 64), (128, 128, 224), (0, 96, 0), (64, 192, 192),
        (0, 128, 224), (128, 224, 0), (64, 192, 64), (128, 128, 96), (128, 32, 128), (64, 0, 192),
        (0, 64, 96), (0, 160, 128), (192, 0, 64), (128, 64, 224), (0, 32, 128), (192, 128, 192),
        (0, 64, 224), (128, 160, 128), (192, 128, 0), (128, 64, 32), (128, 32, 64), (192, 0, 128),
        (64, 192, 32), (0, 160, 64), (64, 0, 0), (192, 192, 160), (0, 32, 64), (64, 128, 128),
        (64, 192, 160), (128, 160, 64), (64, 128, 0), (192, 192, 32), (128, 96, 192), (64, 0, 128),
        (64, 64, 32), (0, 224, 192), (192, 0, 0), (192, 64, 160), (0, 96, 192), (192, 128, 128),
        (64, 64, 160), (128, 224, 192), (192, 128, 64), (192, 64, 32), (128, 96, 64), (192, 0, 192),
        (0, 192, 32), (64, 224, 64), (64, 0, 64), (128, 192, 160), (64, 96, 64), (64, 128, 192),
        (0, 192, 160), (192, 224, 64), (64, 128, 64), (128, 192, 32), (192, 32, 192), (64, 64, 192),
        (0, 64, 32), (64, 160, 192), (192, 64, 64), (128, 64, 160), (64, 32, 192), (192, 192, 192),
        (0, 64, 160), (192, 160, 192), (192, 192, 0), (128, 64, 96), (192, 32, 64), (192, 64, 128),
        (64, 192, 96), (64, 160, 64), (64, 64, 0),
    ),
    ignore_index=IGNORE_INDEX,
)  # fmt: skip
"""COCO-Stuff 164k's 171 classes (80 things, then 91 stuff; train ids 0-170, 255 ignored)."""


def _raw_tables() -> tuple[np.ndarray, np.ndarray]:
    """(raw id -> train id lookup of 256 entries, validity of raw values): annotated ids 0-181 in ascending order
    become 0-170; unannotated ids and 255 become 255; 182-254 are invalid."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    annotated = [raw for raw in range(NUM_RAW_IDS) if raw not in UNANNOTATED]
    lut[annotated] = np.arange(len(annotated), dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    valid[:NUM_RAW_IDS] = True
    valid[IGNORE_INDEX] = True
    return lut, valid


RAW_TO_TRAIN_ID, VALID_RAW = _raw_tables()
VALID_TRAIN_IDS = np.zeros(256, dtype=bool)
VALID_TRAIN_IDS[:NUM_CLASSES] = True
VALID_TRAIN_IDS[IGNORE_INDEX] = True


def split_folder(split: str) -> str:
    """The folder of `split`: "val" -> "val2017", "train" -> "train2017" (a folder name is taken as it is)."""
    return split if split.endswith("2017") else f"{split}2017"


def _layout_hint(folder: str) -> str:
    return (
        f"expected ROOT/images/{folder}/<id>.jpg with ROOT/annotations/{folder}/<id>_labelTrainIds.png (mmseg's "
        f"converter) or <id>.png (stuffthingmaps_trainval2017.zip extracted into annotations/)"
    )


def _label_for(image: Path, folders: list[Path], folder: str) -> tuple[Path, str]:
    """The label of `image`: a `_labelTrainIds.png` in any label folder first, else a raw `<id>.png`."""
    for suffix, kind in ((TRAIN_ID_SUFFIX, TRAIN_IDS), (".png", RAW)):
        for label_dir in folders:
            label = label_dir / f"{image.stem}{suffix}"
            if label.is_file():
                return label, kind
    expected = folders[0] / f"{image.stem}{TRAIN_ID_SUFFIX}"
    raise DataNotFoundError(f"{image}: its label is missing (neither {expected} nor <id>.png); {_layout_hint(folder)}")


def find_samples(root: str | Path, split: str = "val", domain: str | None = None) -> list[Sample]:
    """Every image of the split with its label (train ids preferred), sorted by file name (files are not opened).

    Args:
        root: the folder holding `images/` and `annotations/`.
        split: "val" or "train".
        domain: unused (COCO-Stuff has no domains).

    Raises:
        DataNotFoundError: no image folder, no images, or an image without a label (naming the path).
    """
    root, folder = Path(root), split_folder(split)
    image_dirs = [root / "images" / folder, root / folder]
    image_dir = next((d for d in image_dirs if d.is_dir()), None)
    if image_dir is None:
        raise DataNotFoundError(f"{image_dirs[0]}: not found; {_layout_hint(folder)}")
    images = sorted(image_dir.glob("*.jpg"))
    if not images:
        raise DataNotFoundError(f"{image_dir}: no *.jpg images found; {_layout_hint(folder)}")
    label_dirs = [root / "annotations" / folder, root / STUFFTHINGMAPS / folder, image_dir]
    samples = []
    for image in images:
        label, kind = _label_for(image, label_dirs, folder)
        samples.append(Sample(image.stem, image, label, image.relative_to(root), kind=kind))
    return samples


def read_label(path: str | Path, kind: str | None = None) -> np.ndarray:
    """A COCO-Stuff label as uint8 train ids (H, W), 255 unlabelled.

    Args:
        path: a `_labelTrainIds.png` (read as it is) or a raw stuffthingmaps `<id>.png` (mapped to train ids).
        kind: `TRAIN_IDS` or `RAW`; from the file name when None.

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: unreadable file, not single-channel 8-bit, or values outside the encoding.
    """
    path = Path(path)
    kind = kind or (TRAIN_IDS if path.name.endswith(TRAIN_ID_SUFFIX) else RAW)
    if kind not in (TRAIN_IDS, RAW):
        raise ValueError(f"label kind {kind!r} must be {TRAIN_IDS!r} or {RAW!r}")
    values = read_indices(path)
    bad = values_outside(values, VALID_TRAIN_IDS if kind == TRAIN_IDS else VALID_RAW)
    if bad:
        if kind == TRAIN_IDS:
            what = "0-170 and 255; convert the stuffthingmaps with mmseg's tools/dataset_converters/coco_stuff164k.py"
        else:
            what = "0-181 and 255; re-extract the label from stuffthingmaps_trainval2017.zip"
        raise DataError(f"{path}: label values {bad} are not COCO-Stuff {kind} (valid: {what})")
    return values if kind == TRAIN_IDS else RAW_TO_TRAIN_ID[values]


def _read_sample_label(sample: Sample) -> np.ndarray:
    return read_label(sample.label, sample.kind or None)


def write_synthetic(
    root: str | Path, num_images: int = 4, size: tuple[int, int] = (64, 96), seed: int = 0, converted: bool = False
) -> Path:
    """Writes a synthetic COCO-Stuff 164k val split: `images/val2017/<12-digit id>.jpg` and the raw stuffthingmaps
    labels `annotations/val2017/<id>.png` (COCO ids - 1, an unlabelled 255 patch in every scene); with `converted`,
    also mmseg's `<id>_labelTrainIds.png` beside them, as its converter leaves the folder.

    Args:
        root: dataset root to create or add to.
        num_images: number of scenes.
        size: (H, W) around which the image sizes vary (+-30%, each side independently); at least 32 px.
        seed: the same seed gives the same files.
        converted: also write the train-id labels.

    Returns:
        The root path.
    """
    root = Path(root)
    image_dir, label_dir = root / "images" / "val2017", root / "annotations" / "val2017"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    annotated = np.flatnonzero(RAW_TO_TRAIN_ID[:NUM_RAW_IDS] != IGNORE_INDEX)
    for i in range(num_images):
        rng = np.random.default_rng([seed, i])
        background = int(rng.choice(annotated[annotated >= 91]))  # a stuff class
        values = [*rng.choice(annotated, size=3).tolist(), IGNORE_INDEX]
        image, raw = paint_scene(rng, jitter_size(rng, size), background, values, num_shapes=5)
        raw[-max(2, raw.shape[0] // 10) :, -max(2, raw.shape[1] // 10) :] = IGNORE_INDEX  # unlabelled in every scene
        image_id = f"{139 + 7 * i:012d}"
        save_jpeg(image, image_dir / f"{image_id}.jpg")
        Image.fromarray(raw).save(label_dir / f"{image_id}.png")
        if converted:
            Image.fromarray(RAW_TO_TRAIN_ID[raw]).save(label_dir / f"{image_id}{TRAIN_ID_SUFFIX}")
    return root


DATASET = register_dataset(
    Dataset(
        name="coco_stuff",
        title="COCO-Stuff 164k",
        classes=COCO_STUFF,
        env_var=ENV_VAR,
        layout="images/ and annotations/ (COCO-Stuff 164k)",
        find=find_samples,
        read_label=_read_sample_label,
        protocol=Protocol(scale=(2048, 512), mode="whole"),
        write_synthetic=write_synthetic,
        same_size=False,
        download=(
            "https://github.com/nightrome/cocostuff (val2017.zip into images/, stuffthingmaps_trainval2017.zip into "
            "annotations/)"
        ),
    )
)
"""COCO-Stuff 164k as a dataset value: 171 classes, 255 ignored, images resized to (2048, 512) keep-ratio."""
