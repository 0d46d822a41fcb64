"""Class tables: a dataset's label space as one value (class names in train-id order, their colours, the ignore index).

A run scores with one table (`RunConfig.classes`) and records it in run.json; `RunFolder.classes` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

UNNAMED = "unnamed"
"""Name of a table whose class names are placeholders (`class0`, `class1`, ...): a label space no dataset names."""


@dataclass(frozen=True)
class ClassTable:
    """A dataset's label space.

    Attributes:
        name: the dataset ("cityscapes"), or `UNNAMED` for placeholder class names.
        names: class names in train-id order (label k is class `names[k]`).
        palette: one RGB colour per class in the same order; empty when the dataset declares none.
        ignore_index: the label value no metric counts.
    """

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int = 255

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError(f"class table {self.name!r} has no classes")
        if self.palette and len(self.palette) != len(self.names):
            raise ValueError(f"class table {self.name!r}: {len(self.palette)} colours for {len(self.names)} classes")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def is_named(self) -> bool:
        """Whether the names are a dataset's own (a model's labels can be matched to them), not placeholders."""
        return self.name != UNNAMED

    def to_dict(self) -> dict[str, Any]:
        """The table as run.json records it (JSON types)."""
        return {
            "name": self.name,
            "names": list(self.names),
            "palette": [list(rgb) for rgb in self.palette],
            "ignore_index": self.ignore_index,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassTable:
        """The table `to_dict` wrote."""
        palette = tuple((int(r), int(g), int(b)) for r, g, b in data.get("palette") or ())
        return cls(str(data["name"]), tuple(data["names"]), palette, int(data.get("ignore_index", 255)))


CITYSCAPES = ClassTable(
    "cityscapes",
    # train-id class names, in train-id order (cityscapesscripts.helpers.labels)
    names=(
        "road",
        "sidewalk",
        "building",
        "wall",
        "fence",
        "pole",
        "traffic light",
        "traffic sign",
        "vegetation",
        "terrain",
        "sky",
        "person",
        "rider",
        "car",
        "truck",
        "bus",
        "train",
        "motorcycle",
        "bicycle",
    ),
    # the colours of the 19 train ids (cityscapesscripts' label table); 255 (ignored) is drawn black
    palette=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
        (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
        (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
    ignore_index=255,
)  # fmt: skip
"""Cityscapes' 19 evaluation classes (train ids 0-18; 255 ignored)."""


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours for a table that declares none: the Pascal VOC colour map's rule (the bits of the class index
    spread over the high bits of R, G and B), which gives 256 distinct colours."""
    out = []
    for k in range(num_classes):
        rgb, c = [0, 0, 0], k
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        out.append((rgb[0], rgb[1], rgb[2]))
    return tuple(out)


def colours(classes: ClassTable) -> tuple[tuple[int, int, int], ...]:
    """The table's palette, or `default_palette` when it declares none."""
    return classes.palette or default_palette(classes.num_classes)


def class_table(num_classes: int) -> ClassTable:
    """The table a run of `num_classes` classes scores with: Cityscapes' for 19, else placeholder names (`class0`,
    `class1`, ...) without colours."""
    if num_classes == CITYSCAPES.num_classes:
        return CITYSCAPES
    return ClassTable(UNNAMED, tuple(f"class{k}" for k in range(num_classes)))
