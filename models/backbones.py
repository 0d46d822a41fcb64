"""One backbone interface for every decode head: a list of feature maps with declared channels and strides.

A backbone here is an `nn.Module` with two attributes and a forward:

- `out_channels: list[int]`, `strides: list[int]` (input pixels per feature pixel, one entry per map, non-decreasing);
- `forward(x) -> list[Tensor]`, the maps in that order.

Two sources:

- **MiT** (`mit-b0` .. `mit-b5`, `mit-tiny`): the SegFormer encoder from `models/segformer.py`, used as is
  (strides 4, 8, 16, 32).
- **timm**: any model that `timm.create_model(name, features_only=True)` supports, wrapped by `TimmBackbone`. Levels
  finer than stride 4 (the stride-2 stem output most CNNs expose) are dropped, the way segmentation codebases do.
  `output_stride=8` or `16` replaces the last strides by dilation (DeepLab's atrous trick) where timm supports it.

ResNet choice. The classic Cityscapes baselines in mmsegmentation (FCN, PSPNet, DeepLabV3/V3+ and UPerNet on R50/R101)
use `ResNetV1c`: the three-3x3-conv "deep stem" (32, 32, 64 channels) with plain strided 1x1 shortcuts, stride on the
3x3 conv, and for the D8 models dilations (1, 1, 2, 4) with the first block of a dilated stage at half the dilation
(`contract_dilation`). timm's `resnet50c` / `resnet101c` are exactly that network (stem width 32, deep stem, no
avg-down; timm also gives the first block of a dilated stage the previous stage's dilation), so the registered `r50` /
`r101` use them; `resnet50d` would add the average-pool shortcut that ResNetV1d has and V1c lacks.

Weights (never downloaded): `weights=` accepts a local file (safetensors or a weights-only torch file), a Hugging Face
model folder, a hub id already in the local cache (such as `timm/resnet50c.gluon_in1k`), or `"timm"` for the model's
default timm tag in the local cache. timm weights load strictly into the full classifier model (classifier excluded)
before it is cut into a feature extractor; MiT weights go through the SegFormer converters (HF, NVlabs, mmseg, ImageNet
encoder files).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from segbench.models.checkpoint import CheckpointError, load_strict, read_state_dict, resolve_weights, sha256_file

MIT_PREFIX = "mit-"


class DilationUnsupported(ValueError):
    """A backbone asked for an output stride below 32 that it cannot reach by dilation."""


class TimmBackbone(nn.Module):
    """A timm model as a multi-scale feature extractor (after segmentation_models_pytorch's timm universal encoder).

    Args:
        name: a timm model name (`timm.list_models()`).
        output_stride: 8, 16 or 32; below 32 the last stages are dilated (only where the timm model supports it).
        out_indices: which timm feature levels to return; default every level at stride >= 4.
    """

    def __init__(self, name: str, output_stride: int = 32, out_indices: tuple[int, ...] | None = None, **timm_kwargs):
        super().__init__()
        import timm

        check_timm_name(name)
        kwargs = dict(timm_kwargs)
        if output_stride != 32:
            kwargs["output_stride"] = output_stride
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        self.body = timm.create_model(name, features_only=True, pretrained=False, **kwargs)
        self.name = name
        self.timm_kwargs = kwargs
        reductions = self.body.feature_info.reduction()
        # The stride-2 stem level costs nothing extra to compute (it lies on the path) and is simply not returned.
        keep = list(range(len(reductions)))
        if out_indices is None:
            keep = [i for i in keep if reductions[i] >= 4] or keep
        self.keep = keep
        self.out_channels: list[int] = [self.body.feature_info.channels()[i] for i in keep]
        self.strides: list[int] = [reductions[i] for i in keep]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.body(x)
        return [features[i] for i in self.keep]


def check_timm_name(name: str) -> None:
    """Raise a ValueError with close timm names when `name` is not a timm model."""
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
        hint = f"close timm names: {', '.join(close)}" if close else "see timm.list_models()"
        raise ValueError(f"unknown backbone {name!r}: not a MiT variant ({mit_names_hint()}) nor a timm model; {hint}")


def mit_names_hint() -> str:
    from segbench.models.segformer import MIT_CONFIGS

    return ", ".join(MIT_PREFIX + v for v in MIT_CONFIGS)


def create_backbone(name: str, output_stride: int = 32, weights: str | Path | None = None) -> tuple[nn.Module, dict]:
    """Build a backbone by name: `mit-b0`..`mit-b5`, `mit-tiny`, or a timm model name.

    Args:
        output_stride: wanted output stride for timm CNNs (8 or 16 dilate the last stages; 32 is the plain network).
            MiT encoders are always at 32.
        weights: optional ImageNet (or other) weights for the backbone only; see the module docstring.

    Returns:
        The backbone and a provenance record (`source`, `path`, `format`, `sha256`) for its weights (empty if none).
    """
    if name.startswith(MIT_PREFIX):
        from segbench.models.segformer import MIT_CONFIGS, mit_encoder

        variant = name[len(MIT_PREFIX) :]
        if variant not in MIT_CONFIGS:
            raise ValueError(f"unknown MiT backbone {name!r}; valid: {mit_names_hint()}")
        if output_stride != 32:
            raise ValueError(
                f"{name}: MiT encoders have a fixed output stride of 32, got output_stride={output_stride}"
            )
        backbone = mit_encoder(variant)
        info = load_mit_weights(backbone, weights) if weights is not None else {}
        return backbone, info
    try:
        backbone = TimmBackbone(name, output_stride=output_stride)
    except (TypeError, AssertionError) as e:
        if output_stride == 32:
            raise
        raise DilationUnsupported(
            f"timm model {name!r} cannot run at output_stride={output_stride} (no dilation support: {e}); "
            "use output_stride=32"
        ) from None
    info = load_timm_weights(backbone, weights) if weights is not None else {}
    return backbone, info


def _resolve_backbone_file(weights: str | Path, hub_id: str | None) -> Path:
    if str(weights) == "timm":
        if not hub_id:
            raise CheckpointError("backbone_weights='timm': this timm model has no default weights on the hub")
        weights = hub_id
    return resolve_weights(weights).file


def load_timm_weights(backbone: TimmBackbone, weights: str | Path) -> dict:
    """Load classifier weights in timm's key layout into a `TimmBackbone`, strictly (classifier keys excluded).

    The state dict is first loaded strictly into the full timm model (so a missing, unexpected or mis-shaped key is an
    error naming it), then handed to timm to carve the feature extractor out of the same architecture.
    """
    import timm

    file = _resolve_backbone_file(weights, backbone.body.pretrained_cfg.get("hf_hub_id"))
    sd = read_state_dict(file)
    kwargs = {k: v for k, v in backbone.timm_kwargs.items() if k != "out_indices"}
    full = timm.create_model(backbone.name, pretrained=False, num_classes=0, **kwargs)
    classifiers = full.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    sd = {k: v for k, v in sd.items() if not any(k.startswith(c + ".") for c in classifiers)}
    load_strict(full, sd, f"{file} (timm {backbone.name})")
    body = timm.create_model(
        backbone.name,
        features_only=True,
        pretrained=True,
        pretrained_cfg_overlay=dict(state_dict=full.state_dict()),
        **backbone.timm_kwargs,
    )
    backbone.body.load_state_dict(body.state_dict(), strict=True)
    return {"source": str(weights), "path": str(file), "format": "timm", "sha256": sha256_file(file)}


def load_mit_weights(encoder: nn.Module, weights: str | Path) -> dict:
    """Load MiT encoder weights (any format the SegFormer loader knows: HF, NVlabs, mmseg, ImageNet encoder files)."""
    from segbench.models import segformer

    file = resolve_weights(weights).file
    sd = read_state_dict(file)
    fmt = segformer.detect_format(sd)
    if fmt == "unknown":
        raise CheckpointError(
            f"{file}: not a MiT/SegFormer checkpoint; accepted: a Hugging Face SegFormer folder or cached hub id, the "
            "NVlabs release .pth, an mmseg .pth, or an ImageNet MiT encoder file"
        )
    native = segformer.CONVERTERS[fmt](sd)
    encoder_sd = {k[len("backbone.") :]: v for k, v in native.items() if k.startswith("backbone.")}
    load_strict(encoder, encoder_sd, f"{file} (MiT encoder)")
    return {"source": str(weights), "path": str(file), "format": f"mit:{fmt}", "sha256": sha256_file(file)}
