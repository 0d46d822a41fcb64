"""What is measured: segmentation networks, the name registry and checkpoint formats.

>>> from segbench import models
>>> model = models.create_model("segformer-b0", num_classes=19, weights=None)
>>> model.meta.output_stride
4
"""

from __future__ import annotations

from typing import Any

from torch import nn

from segbench.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelMeta, WeightsInfo
from segbench.models.registry import Registry

MODELS: Registry = Registry("model")
register_model = MODELS.register


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern."""
    _import_families()
    return MODELS.list(pattern)


def list_models_grouped(pattern: str = "*") -> dict[str, list[str]]:
    """Registered model names by family."""
    _import_families()
    return MODELS.grouped(pattern)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model (or a `head:timm_backbone` composition) in eval mode.

    Args:
        name: a registered name such as `segformer-b2`, or `<head>:<timm model name>`.
        **kwargs: `num_classes` (default 19), `weights` (None for random init, or a checkpoint path / HF id),
            and family-specific options.
    """
    _import_families()
    if ":" in name:
        from segbench.models.baselines import create_composed

        model = create_composed(name, **kwargs)
    else:
        model = MODELS.create(name, **kwargs)
    return model.eval()


_IMPORTED = False


def _import_families() -> None:
    # Families register themselves on import; importing lazily keeps `import models` cheap and cycle-free.
    global _IMPORTED
    if _IMPORTED:
        return
    _IMPORTED = True
    import importlib

    for module in ("segbench.models.segformer", "segbench.models.baselines"):
        importlib.import_module(module)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS",
    "ModelMeta",
    "WeightsInfo",
    "create_model",
    "list_models",
    "list_models_grouped",
    "register_model",
]
