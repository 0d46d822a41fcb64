"""Classic segmentation baselines: any decode head of `models/heads.py` on any backbone of `models/backbones.py`.

Registered names read `<head>-<backbone>` (`deeplabv3plus-r101`, `pspnet-r50`, `mlp-r50`, `deeplabv3plus-mit-b2`, ...):
the set that the SegFormer paper compares against (Table 2's FCN / PSPNet / DeepLabV3+ on MobileNetV2 and ResNet-101,
Table 5's DeepLabV3+ on MobileNetV2, ResNet-50/101 and Xception-41/65/71, the All-MLP decoder on ResNets), plus the
mmseg Cityscapes classics (FCN, PSPNet, DeepLabV3, DeepLabV3+, UPerNet on R50/R101). Anything else composes by name:
`create_model("deeplabv3plus:convnext_tiny")` puts a head on a timm model (or on `mit-bN`, or a short key like `r50`).

Backbone settings, as in the configurations that produced the usual checkpoints:

- `r50`, `r101`: timm `resnet50c` / `resnet101c` (= mmseg ResNetV1c), dilated to output stride 8 under the FCN, PSPNet
  and DeepLab heads (mmseg `*_r50-d8` configs), plain (stride 32) under UPerNet (`upernet_r50.py`) and the All-MLP head.
- `mobilenetv2`: timm `mobilenetv2_100`, output stride 8 (mmseg `deeplabv3plus_m-v2-d8`, dilations (1,1,1,2,2,4,4)).
- `xception41/65/71`: timm's aligned Xceptions at output stride 16, ASPP rates 6/12/18 (DeepLabV3+ paper's setting).
- `mit-b0`..`mit-b5`: the SegFormer encoder (stride 32; DeepLabV3+ then uses ASPP rates 3/6/9 at stride 32).

Default evaluation: CNN baselines run whole 1024x2048 images (mmseg's Cityscapes `test_cfg=dict(mode='whole')`), so
`eval_crop = eval_stride = (1024, 2048)`; MiT-based models use SegFormer's 1024x1024 windows at stride 768.

Weights: `weights=` takes a whole-model checkpoint saved by this suite (`models.checkpoint.save_checkpoint`;
safetensors or a weights-only torch file), loaded strictly, or an mmseg release checkpoint of FCN / PSPNet / DeepLabV3 /
DeepLabV3+ / UPerNet on ResNetV1c-50/101 (`convert_mmseg`; its auxiliary head is dropped). `backbone_weights=` starts
the backbone from ImageNet weights (see `models/backbones.py`); the head stays at random init.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.backbones import MIT_PREFIX, DilationUnsupported, create_backbone
from segbench.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelMeta, WeightsInfo
from segbench.models.checkpoint import (
    CheckpointError,
    check_class_count,
    load_strict,
    read_state_dict,
    resolve_weights,
    sha256_file,
)
from segbench.models.heads import HEADS
from segbench.models.registry import register_model

PAPERS = {
    "fcn": "Long et al. 2015, arXiv 1411.4038",
    "pspnet": "Zhao et al. 2017, arXiv 1612.01105",
    "deeplabv3": "Chen et al. 2017, arXiv 1706.05587",
    "deeplabv3plus": "Chen et al. 2018, arXiv 1802.02611",
    "upernet": "Xiao et al. 2018, arXiv 1807.10221",
    "mlp": "Xie et al. 2021, arXiv 2105.15203 (All-MLP decoder)",
}
DILATED_HEADS = ("fcn", "pspnet", "deeplabv3", "deeplabv3plus")  # context heads that want a dilated, fine last level
WHOLE_IMAGE = (1024, 2048)  # Cityscapes frame, (H, W)
PROBE_SIZE = (65, 97)  # odd sizes reveal backbones that floor instead of ceil


@dataclass(frozen=True)
class BackboneSpec:
    """A short backbone key: which network, and its output stride under the dilated heads."""

    network: str  # timm model name or `mit-bN`
    dilated_stride: int = 32


BACKBONES: dict[str, BackboneSpec] = {
    "r50": BackboneSpec("resnet50c", 8),
    "r101": BackboneSpec("resnet101c", 8),
    "mobilenetv2": BackboneSpec("mobilenetv2_100", 8),
    "xception41": BackboneSpec("xception41", 16),
    "xception65": BackboneSpec("xception65", 16),
    "xception71": BackboneSpec("xception71", 16),
    **{f"{MIT_PREFIX}{v}": BackboneSpec(f"{MIT_PREFIX}{v}", 32) for v in ("b0", "b1", "b2", "b3", "b4", "b5", "tiny")},
}

TINY_HEAD_WIDTH = 16


class EncoderDecoder(nn.Module):
    """Backbone + decode head. Input: a normalised float tensor (B, 3, H, W). Output: logits (B, num_classes,
    ceil(H/s), ceil(W/s)) with s = `meta.output_stride`, at the head's native stride (not upsampled).

    Backbones that floor odd sizes (patchify stems such as ConvNeXt's) get the input zero-padded at the bottom/right
    to a multiple of `pad_to` and the logits cropped back; backbones that already give ceil sizes run unpadded.
    """

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, meta: ModelMeta, pad_to: int = 1):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.meta = meta
        self.pad_to = pad_to
        self.weights_info = WeightsInfo()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        if self.pad_to > 1 and (h % self.pad_to or w % self.pad_to):
            x = F.pad(x, (0, -w % self.pad_to, 0, -h % self.pad_to))
        logits = self.decode_head(self.backbone(x))
        s = self.meta.output_stride
        return logits[:, :, : math.ceil(h / s), : math.ceil(w / s)]


def _needed_padding(backbone: nn.Module) -> int:
    """1 if the backbone's maps are ceil(H / stride) on an odd-sized input, else the multiple to pad inputs to."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.inference_mode():
            for pad_to in (1, max(backbone.strides)):
                h, w = (math.ceil(n / pad_to) * pad_to for n in PROBE_SIZE)
                try:
                    feats = backbone(torch.zeros(1, 3, h, w))
                except RuntimeError as e:
                    raise ValueError(f"backbone cannot run on a {h}x{w} input: {str(e).splitlines()[0]}") from None
                sizes = [tuple(f.shape[2:]) for f in feats]
                if sizes == [(math.ceil(h / s), math.ceil(w / s)) for s in backbone.strides]:
                    return pad_to
    finally:
        backbone.train(was_training)
    raise ValueError(
        f"backbone feature sizes {sizes} do not match its declared strides {backbone.strides} on a {h}x{w} input"
    )


def _make_head(head: str, backbone: nn.Module, num_classes: int, options: dict[str, Any]) -> nn.Module:
    cls = HEADS[head]
    valid = [
        p
        for p in inspect.signature(cls.__init__).parameters
        if p not in ("self", "in_channels", "strides", "num_classes")
    ]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for the {head} head; valid: {', '.join(valid)}")
    return cls(backbone.out_channels, backbone.strides, num_classes, **options)


def build(
    head: str,
    backbone: str,
    name: str,
    num_classes: int = 19,
    weights: str | Path | None = None,
    backbone_weights: str | Path | None = None,
    output_stride: int | None = None,
    **head_kwargs: Any,
) -> EncoderDecoder:
    """Build `head` on `backbone` (a key of `BACKBONES`, `mit-bN`, or a timm name) and optionally load weights.

    Args:
        name: the model's name in its metadata.
        output_stride: backbone output stride; default 8/16 (per backbone) under FCN/PSPNet/DeepLab heads where the
            backbone can dilate, else 32.
        **head_kwargs: head hyper-parameters (`channels`, `rates`, `bins`, `embed_dim`, ...).
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
    spec = BACKBONES.get(backbone, BackboneSpec(backbone, 8))
    if output_stride is not None:
        net, info = create_backbone(spec.network, output_stride, backbone_weights)
    elif head in DILATED_HEADS and spec.dilated_stride != 32 and not spec.network.startswith(MIT_PREFIX):
        try:
            net, info = create_backbone(spec.network, spec.dilated_stride, backbone_weights)
        except DilationUnsupported:  # the timm model cannot dilate: use it at its native stride
            net, info = create_backbone(spec.network, 32, backbone_weights)
    else:
        net, info = create_backbone(spec.network, 32, backbone_weights)
    mit = spec.network.startswith(MIT_PREFIX)
    if mit:
        from segbench.models.segformer import DECODER_WIDTH

        variant = spec.network[len(MIT_PREFIX) :]
        if variant == "tiny":
            head_kwargs.setdefault("embed_dim" if head == "mlp" else "channels", TINY_HEAD_WIDTH)
        elif head == "mlp":
            head_kwargs.setdefault("embed_dim", DECODER_WIDTH[variant])
    decode_head = _make_head(head, net, num_classes, head_kwargs)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if not mit:
        cfg = net.body.pretrained_cfg
        mean, std = tuple(cfg.get("mean", mean)), tuple(cfg.get("std", std))
    meta = ModelMeta(
        name=name,
        family=head,
        backbone=spec.network if backbone == spec.network else f"{backbone} ({spec.network})",
        head=head,
        num_classes=num_classes,
        mean=mean,
        std=std,
        output_stride=decode_head.output_stride,
        eval_crop=(1024, 1024) if mit else WHOLE_IMAGE,
        eval_stride=(768, 768) if mit else WHOLE_IMAGE,
        paper=PAPERS[head],
    )
    model = EncoderDecoder(net, decode_head, meta, pad_to=1 if mit else _needed_padding(net))
    if info:
        model.weights_info = WeightsInfo(
            source=info["source"],
            path=info["path"],
            format=info["format"],
            sha256=info["sha256"],
            random=True,
            notes=["backbone-only weights: the decode head is randomly initialised"],
        )
    if weights is not None:
        load_baseline_weights(model, weights)
    return model.eval()


def create_composed(name: str, **kwargs: Any) -> EncoderDecoder:
    """Build `<head>:<backbone>`, e.g. `deeplabv3plus:convnext_tiny`, `upernet:mit-b2`, `pspnet:r50`.

    The backbone is a timm model name, `mit-b0`..`mit-b5`, or a registered short key (`r50`, `mobilenetv2`, ...).
    Unknown heads or backbones raise a ValueError listing the valid ones (close timm names for timm).
    """
    head, sep, backbone = name.partition(":")
    if not sep or not head or not backbone or ":" in backbone:
        raise ValueError(f"composed model name {name!r} must read '<head>:<backbone>', e.g. 'deeplabv3plus:resnet50'")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r} in {name!r}; valid heads: {', '.join(HEADS)}")
    return build(head, backbone, name, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints: this suite's own files, and mmseg releases (ResNetV1c backbones)
# --------------------------------------------------------------------------------------------------------------------

# mmseg ResNetV1c stem (conv-BN-ReLU x3, the last BN outside the Sequential in timm) -> timm `resnet*c`.
_MMSEG_STEM = {"0": "conv1.0", "1": "conv1.1", "3": "conv1.3", "4": "conv1.4", "6": "conv1.6", "7": "bn1"}
# (pattern on the key after `decode_head.`, replacement); the PSP-style vs ASPP-style `bottleneck` is decided below.
_MMSEG_HEAD_RULES = [
    (r"^conv_seg\.", "classifier."),
    (r"^psp_modules\.(\d+)\.1\.", r"psp.ppm.\1.proj."),
    (r"^image_pool\.1\.", "aspp.image_pool.proj."),
    (r"^aspp_modules\.(\d+)\.", r"aspp.branches.\1."),
    (r"^(convs|conv_cat|c1_bottleneck|sep_bottleneck|lateral_convs|fpn_convs|fpn_bottleneck)\.", r"\1."),
]
MMSEG_RESNETS = ("resnet50c", "resnet101c")
ACCEPTED = (
    "a whole-model checkpoint saved by segbench (safetensors or a weights-only torch file), or an mmseg release "
    "checkpoint of FCN / PSPNet / DeepLabV3 / DeepLabV3+ / UPerNet on ResNetV1c-50/101"
)


def is_mmseg(sd: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict has mmseg's layout (ResNetV1c `backbone.stem.*`, `decode_head.conv_seg.*`)."""
    return any(k.startswith("backbone.stem.") for k in sd) or "decode_head.conv_seg.weight" in sd


def convert_mmseg(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map an mmseg ResNetV1c + classic-head state dict to this module's keys (pure; idempotent on native input).

    Returns the converted dict and the keys deliberately dropped (the training-only auxiliary head).

    Raises:
        CheckpointError: a key that no rule maps, named.
    """
    if not is_mmseg(sd):
        return dict(sd), []
    sd = dict(sd)
    out: dict[str, torch.Tensor] = {}
    dropped = sorted(k for k in sd if k.startswith("auxiliary_head."))
    for k in dropped:
        sd.pop(k)
    aspp_style = any(k.startswith("decode_head.image_pool.") for k in sd)
    for key in list(sd):
        new = None
        if m := re.match(r"backbone\.stem\.(\d+)\.(.+)$", key):
            if m.group(1) in _MMSEG_STEM:
                new = f"backbone.body.{_MMSEG_STEM[m.group(1)]}.{m.group(2)}"
        elif re.match(r"backbone\.layer\d\.", key):
            new = "backbone.body." + key[len("backbone.") :]
        elif key.startswith("decode_head."):
            rest = key[len("decode_head.") :]
            if rest.startswith("bottleneck."):
                new = "decode_head." + ("aspp." if aspp_style else "psp.") + rest
            for pattern, repl in _MMSEG_HEAD_RULES:
                if re.match(pattern, rest):
                    new = "decode_head." + re.sub(pattern, repl, rest)
                    break
        if new is not None:
            out[new] = sd.pop(key)
    if sd:
        raise CheckpointError(f"mmseg checkpoint: keys with no mapping: {', '.join(sorted(sd)[:5])}")
    return out, dropped


def load_baseline_weights(model: EncoderDecoder, weights: str | Path) -> None:
    """Load a whole-model checkpoint into `model` strictly (in place) and record its provenance."""
    resolved = resolve_weights(weights)
    sd = read_state_dict(resolved.file)
    notes: list[str] = []
    fmt = "segbench"
    if is_mmseg(sd):
        network = getattr(model.backbone, "name", "")
        if network not in MMSEG_RESNETS:
            raise CheckpointError(
                f"{resolved.file}: an mmseg checkpoint, which maps only onto ResNetV1c models "
                f"({', '.join(MMSEG_RESNETS)} backbones), not {model.meta.name}; accepted: {ACCEPTED}"
            )
        sd, dropped = convert_mmseg(sd)
        fmt = "mmseg"
        if dropped:
            notes.append(f"dropped {len(dropped)} auxiliary-head tensors (training only)")
    elif not any(k.startswith(("backbone.", "decode_head.")) for k in sd):
        raise CheckpointError(f"{resolved.file}: not a whole segmentation-model checkpoint; accepted: {ACCEPTED}")
    check_class_count(sd, "decode_head.classifier.weight", model, str(weights))
    load_strict(model, sd, str(resolved.file))
    model.weights_info = WeightsInfo(
        source=str(weights),
        path=str(resolved.file),
        format=fmt,
        sha256=sha256_file(resolved.file),
        random=False,
        notes=notes,
    )


# --------------------------------------------------------------------------------------------------------------------
# Registered variants
# --------------------------------------------------------------------------------------------------------------------


@register_model("fcn-r50", group="fcn")
def fcn_r50(**kwargs: Any) -> EncoderDecoder:
    """FCN on ResNetV1c-50, dilated to output stride 8."""
    return build("fcn", "r50", "fcn-r50", **kwargs)


@register_model("fcn-r101", group="fcn")
def fcn_r101(**kwargs: Any) -> EncoderDecoder:
    """FCN on ResNetV1c-101, dilated to output stride 8."""
    return build("fcn", "r101", "fcn-r101", **kwargs)


@register_model("fcn-mobilenetv2", group="fcn")
def fcn_mobilenetv2(**kwargs: Any) -> EncoderDecoder:
    """FCN on MobileNetV2, dilated to output stride 8."""
    return build("fcn", "mobilenetv2", "fcn-mobilenetv2", **kwargs)


@register_model("fcn-mit-tiny", group="fcn")
def fcn_mit_tiny(**kwargs: Any) -> EncoderDecoder:
    """FCN, 16 wide, on the tiny MiT (widths 8-16), for tests."""
    return build("fcn", "mit-tiny", "fcn-mit-tiny", **kwargs)


@register_model("pspnet-r50", group="pspnet")
def pspnet_r50(**kwargs: Any) -> EncoderDecoder:
    """PSPNet on ResNetV1c-50, dilated to output stride 8."""
    return build("pspnet", "r50", "pspnet-r50", **kwargs)


@register_model("pspnet-r101", group="pspnet")
def pspnet_r101(**kwargs: Any) -> EncoderDecoder:
    """PSPNet on ResNetV1c-101, dilated to output stride 8."""
    return build("pspnet", "r101", "pspnet-r101", **kwargs)


@register_model("pspnet-mobilenetv2", group="pspnet")
def pspnet_mobilenetv2(**kwargs: Any) -> EncoderDecoder:
    """PSPNet on MobileNetV2, dilated to output stride 8."""
    return build("pspnet", "mobilenetv2", "pspnet-mobilenetv2", **kwargs)


@register_model("pspnet-mit-tiny", group="pspnet")
def pspnet_mit_tiny(**kwargs: Any) -> EncoderDecoder:
    """PSPNet, 16 wide, on the tiny MiT (widths 8-16), for tests."""
    return build("pspnet", "mit-tiny", "pspnet-mit-tiny", **kwargs)


@register_model("deeplabv3-r50", group="deeplabv3")
def deeplabv3_r50(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3 on ResNetV1c-50, dilated to output stride 8."""
    return build("deeplabv3", "r50", "deeplabv3-r50", **kwargs)


@register_model("deeplabv3-r101", group="deeplabv3")
def deeplabv3_r101(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3 on ResNetV1c-101, dilated to output stride 8."""
    return build("deeplabv3", "r101", "deeplabv3-r101", **kwargs)


@register_model("deeplabv3-mit-tiny", group="deeplabv3")
def deeplabv3_mit_tiny(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3, 16 wide, on the tiny MiT (widths 8-16), for tests."""
    return build("deeplabv3", "mit-tiny", "deeplabv3-mit-tiny", **kwargs)


@register_model("deeplabv3plus-r50", group="deeplabv3plus")
def deeplabv3plus_r50(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on ResNetV1c-50, dilated to output stride 8."""
    return build("deeplabv3plus", "r50", "deeplabv3plus-r50", **kwargs)


@register_model("deeplabv3plus-r101", group="deeplabv3plus")
def deeplabv3plus_r101(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on ResNetV1c-101, dilated to output stride 8."""
    return build("deeplabv3plus", "r101", "deeplabv3plus-r101", **kwargs)


@register_model("deeplabv3plus-mobilenetv2", group="deeplabv3plus")
def deeplabv3plus_mobilenetv2(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on MobileNetV2, dilated to output stride 8."""
    return build("deeplabv3plus", "mobilenetv2", "deeplabv3plus-mobilenetv2", **kwargs)


@register_model("deeplabv3plus-xception41", group="deeplabv3plus")
def deeplabv3plus_xception41(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on aligned Xception-41, dilated to output stride 16."""
    return build("deeplabv3plus", "xception41", "deeplabv3plus-xception41", **kwargs)


@register_model("deeplabv3plus-xception65", group="deeplabv3plus")
def deeplabv3plus_xception65(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on aligned Xception-65, dilated to output stride 16."""
    return build("deeplabv3plus", "xception65", "deeplabv3plus-xception65", **kwargs)


@register_model("deeplabv3plus-xception71", group="deeplabv3plus")
def deeplabv3plus_xception71(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on aligned Xception-71, dilated to output stride 16."""
    return build("deeplabv3plus", "xception71", "deeplabv3plus-xception71", **kwargs)


@register_model("deeplabv3plus-mit-b0", group="deeplabv3plus")
def deeplabv3plus_mit_b0(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on MiT-B0."""
    return build("deeplabv3plus", "mit-b0", "deeplabv3plus-mit-b0", **kwargs)


@register_model("deeplabv3plus-mit-b1", group="deeplabv3plus")
def deeplabv3plus_mit_b1(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on MiT-B1."""
    return build("deeplabv3plus", "mit-b1", "deeplabv3plus-mit-b1", **kwargs)


@register_model("deeplabv3plus-mit-b2", group="deeplabv3plus")
def deeplabv3plus_mit_b2(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on MiT-B2."""
    return build("deeplabv3plus", "mit-b2", "deeplabv3plus-mit-b2", **kwargs)


@register_model("deeplabv3plus-mit-b3", group="deeplabv3plus")
def deeplabv3plus_mit_b3(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on MiT-B3."""
    return build("deeplabv3plus", "mit-b3", "deeplabv3plus-mit-b3", **kwargs)


@register_model("deeplabv3plus-mit-b4", group="deeplabv3plus")
def deeplabv3plus_mit_b4(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on MiT-B4."""
    return build("deeplabv3plus", "mit-b4", "deeplabv3plus-mit-b4", **kwargs)


@register_model("deeplabv3plus-mit-b5", group="deeplabv3plus")
def deeplabv3plus_mit_b5(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+ on MiT-B5."""
    return build("deeplabv3plus", "mit-b5", "deeplabv3plus-mit-b5", **kwargs)


@register_model("deeplabv3plus-mit-tiny", group="deeplabv3plus")
def deeplabv3plus_mit_tiny(**kwargs: Any) -> EncoderDecoder:
    """DeepLabV3+, 16 wide, on the tiny MiT (widths 8-16), for tests."""
    return build("deeplabv3plus", "mit-tiny", "deeplabv3plus-mit-tiny", **kwargs)


@register_model("upernet-r50", group="upernet")
def upernet_r50(**kwargs: Any) -> EncoderDecoder:
    """UPerNet on ResNetV1c-50."""
    return build("upernet", "r50", "upernet-r50", **kwargs)


@register_model("upernet-r101", group="upernet")
def upernet_r101(**kwargs: Any) -> EncoderDecoder:
    """UPerNet on ResNetV1c-101."""
    return build("upernet", "r101", "upernet-r101", **kwargs)


@register_model("upernet-mit-tiny", group="upernet")
def upernet_mit_tiny(**kwargs: Any) -> EncoderDecoder:
    """UPerNet, 16 wide, on the tiny MiT (widths 8-16), for tests."""
    return build("upernet", "mit-tiny", "upernet-mit-tiny", **kwargs)


@register_model("mlp-r50", group="mlp")
def mlp_r50(**kwargs: Any) -> EncoderDecoder:
    """SegFormer's All-MLP decoder on ResNetV1c-50."""
    return build("mlp", "r50", "mlp-r50", **kwargs)


@register_model("mlp-r101", group="mlp")
def mlp_r101(**kwargs: Any) -> EncoderDecoder:
    """SegFormer's All-MLP decoder on ResNetV1c-101."""
    return build("mlp", "r101", "mlp-r101", **kwargs)


@register_model("mlp-mit-tiny", group="mlp")
def mlp_mit_tiny(**kwargs: Any) -> EncoderDecoder:
    """SegFormer's All-MLP decoder, 16 wide, on the tiny MiT (widths 8-16), for tests."""
    return build("mlp", "mit-tiny", "mlp-mit-tiny", **kwargs)
