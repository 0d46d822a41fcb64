"""What every segmentation model in this suite carries besides its weights: metadata and weight provenance.

The runner and the efficiency code treat all models alike through these two records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, images scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelMeta:
    """Static facts about a model variant.

    `mean`/`std` apply to RGB images scaled to [0, 1]: `x = (img / 255 - mean) / std`.
    `output_stride` is the ratio of input size to logit size (logits are `ceil(H / s)` by `ceil(W / s)`).
    `eval_crop` / `eval_stride` are the default sliding-window settings (H, W) for Cityscapes evaluation.
    """

    name: str
    family: str
    backbone: str
    head: str
    num_classes: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    output_stride: int = 4
    eval_crop: tuple[int, int] = (1024, 1024)
    eval_stride: tuple[int, int] = (768, 768)
    paper: str = ""


@dataclass
class WeightsInfo:
    """Where a model's weights came from. `random` is True when any part was left at random init."""

    source: str = "random-init"
    path: str = ""
    format: str = ""
    sha256: str = ""
    random: bool = True
    notes: list[str] = field(default_factory=list)
