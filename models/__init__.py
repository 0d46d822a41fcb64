"""What is measured: segmentation networks, the name registry and checkpoint formats.

>>> from segbench import models
>>> model = models.create_model("segformer-b0", num_classes=19, weights=None)
>>> model.meta.output_stride
4
"""

from __future__ import annotations

from segbench._rooms import require_namespace

require_namespace(__name__)

from collections.abc import Callable
from typing import Any

from torch import nn

from segbench.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelMeta, WeightsInfo
from segbench.models.registry import MODELS, register_model
from segbench.models.sources import BuildRequest


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
        name: a registered name such as `segformer-b2`, `<head>:<timm model name>`, or a model an installed package
            registers in the `segbench.models` entry-point group.
        **kwargs: `num_classes` (default 19), `weights` (None for random init, or a checkpoint path / HF id),
            and family-specific options.
    """
    _import_families()
    if ":" in name:
        from segbench.models.baselines import create_composed

        model = create_composed(name, **kwargs)
    elif name in MODELS or name not in list_plugin_models():
        model = MODELS.create(name, **kwargs)  # an unknown name raises with the closest registered ones
    else:
        from segbench.models.user import create_entry_point_model

        model = create_entry_point_model(name, **kwargs)
    return model.eval()


def build_from_source(request: BuildRequest) -> nn.Module:
    """Build a model of a non-registry source (`request.spec.kind` in `sources.SOURCE_KINDS`), in eval mode."""
    return _loaders()[request.spec.kind](request).eval()


def _loaders() -> dict[str, Callable[[BuildRequest], nn.Module]]:
    # imported on use: transformers and onnxruntime are optional extras
    def hf(request: BuildRequest) -> nn.Module:
        from segbench.models.hf import load_hf

        return load_hf(request)

    def py(request: BuildRequest) -> nn.Module:
        from segbench.models.user import load_py

        return load_py(request)

    def torchscript(request: BuildRequest) -> nn.Module:
        from segbench.models.exported import load_torchscript

        return load_torchscript(request)

    def onnx(request: BuildRequest) -> nn.Module:
        from segbench.models.exported import load_onnx

        return load_onnx(request)

    return {"hf": hf, "py": py, "torchscript": torchscript, "onnx": onnx}


def list_plugin_models(pattern: str = "*") -> list[str]:
    """Models that installed packages register in the `segbench.models` entry-point group (built-in names win)."""
    from segbench.models.user import list_entry_point_models

    _import_families()
    return [n for n in list_entry_point_models(pattern) if n not in MODELS]


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
    "build_from_source",
    "create_model",
    "list_models",
    "list_models_grouped",
    "list_plugin_models",
    "register_model",
]
