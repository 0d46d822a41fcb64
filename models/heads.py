"""Decode heads for the classic segmentation baselines. Every head works on every backbone.

A head is built from the backbone's declared `in_channels` and `strides` (see `models/backbones.py`), picks the levels
it reads, and returns logits at its native stride (`head.output_stride`); nothing is upsampled to the input size here.

Hyper-parameters follow the papers and the mmsegmentation configurations that produced the widely used Cityscapes
checkpoints (`configs/_base_/models/{fcn,pspnet,deeplabv3,deeplabv3plus}_r50-d8.py`, `upernet_r50.py`):

- **FCN** (Long et al., CVPR 2015; mmseg `FCNHead`): on the last level, two 3x3 conv-BN-ReLU of 512 channels, then the
  input concatenated back (`concat_input=True`) through a third 3x3 conv-BN-ReLU, dropout 0.1, 1x1 classifier.
- **PSPNet** (Zhao et al., CVPR 2017): pyramid pooling on the last level with bins 1, 2, 3, 6 (Sec. 3.2), each bin a
  1x1 conv-BN-ReLU to 512 channels (mmseg `channels=512`; the paper reduces to 1/N of 2048), upsampled and concatenated
  with the input, a 3x3 conv-BN-ReLU bottleneck to 512, dropout 0.1, classifier.
- **DeepLabV3** (Chen et al., arXiv 1706.05587): ASPP on the last level = image pooling + 1x1 conv + three 3x3 atrous
  convs. Rates 6/12/18 at output stride 16 and doubled to 12/24/36 at output stride 8 (Sec. 4.1, 4.3); for other
  strides the rates scale as 16/stride. Width 512 as in mmseg (the paper uses 256), 3x3 bottleneck, dropout 0.1.
- **DeepLabV3+** (Chen et al., ECCV 2018; mmseg `DepthwiseSeparableASPPHead`): ASPP with depthwise-separable atrous
  branches, upsampled to the stride-4 level ("low-level features", Sec. 3.1), which is projected to 48 channels
  (Table 1) and concatenated; then two 3x3 depthwise-separable conv-BN-ReLU of 512 and the classifier. Output stride 4.
- **UPerNet** (Xiao et al., ECCV 2018; mmseg `UPerHead`): PPM (bins 1, 2, 3, 6) on the last level + FPN laterals (1x1)
  and 3x3 output convs on the others, all 512 wide, fused by a 3x3 conv at the finest level (the output stride).
- **All-MLP** (Xie et al., SegFormer, NeurIPS 2021): `models.segformer.AllMLPDecoder`, used as is on any backbone.

Every conv-BN-ReLU has a bias-free conv (mmcv `ConvModule` with BN); dropout before the classifier is the identity at
inference. **Auxiliary heads** (mmseg's FCN head on stage 3, loss weight 0.4) are training-only and not built here, so
parameter counts are lower than figures that include them (mmcv's counter counts every module of the model).

Submodule names follow mmseg's where they are descriptive (`convs`, `conv_cat`, `bottleneck`, `image_pool`,
`c1_bottleneck`, `sep_bottleneck`, `lateral_convs`, `fpn_convs`, `fpn_bottleneck`); pyramid pooling and ASPP are
submodules (`psp.ppm.{i}.{pool,proj}`, `psp.bottleneck`, `aspp.image_pool.proj`, `aspp.branches.{i}`, `aspp.bottleneck`)
and `classifier` replaces `conv_seg`. `models/baselines.py` maps mmseg checkpoints onto these names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.segformer import AllMLPDecoder, ConvBNReLU

DEFAULT_CHANNELS = 512  # mmseg `channels` of every classic head at R50/R101
LOW_LEVEL_CHANNELS = 48  # DeepLabV3+ low-level projection (Chen et al. 2018, Table 1)
PPM_BINS = (1, 2, 3, 6)  # PSPNet pyramid bins (Zhao et al. 2017, Sec. 3.2)
DROPOUT = 0.1


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize (align_corners=False, as mmseg), skipped when the size already matches."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def aspp_rates(stride: int) -> tuple[int, int, int]:
    """ASPP atrous rates at `stride`: (6, 12, 18) at 16, doubled at 8, scaled as 16/stride otherwise."""
    scale = 16 / stride
    return tuple(max(1, round(r * scale)) for r in (6, 12, 18))  # type: ignore[return-value]


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise kxk conv-BN-ReLU then pointwise 1x1 conv-BN-ReLU (mmcv's DepthwiseSeparableConvModule)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        self.depthwise_conv = ConvBNReLU(cin, cin, kernel_size, dilation=dilation, groups=cin)
        self.pointwise_conv = ConvBNReLU(cin, cout, 1)


class PoolBranch(nn.Module):
    """Adaptive average pooling to `bins` x `bins`, 1x1 conv-BN-ReLU, upsampled back to the input size."""

    def __init__(self, bins: int, cin: int, cout: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(bins)
        self.proj = ConvBNReLU(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(self.proj(self.pool(x)), x.shape[2:])


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: the input concatenated with one pooled branch per bin, then a 3x3 bottleneck."""

    def __init__(self, cin: int, channels: int, bins: tuple[int, ...] = PPM_BINS):
        super().__init__()
        self.ppm = nn.ModuleList(PoolBranch(b, cin, channels) for b in bins)
        self.bottleneck = ConvBNReLU(cin + len(bins) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([x, *(branch(x) for branch in self.ppm)], dim=1))


class DecodeHead(nn.Module):
    """Base: remembers which levels it reads and its output stride; ends in dropout + 1x1 classifier."""

    def __init__(self, strides: list[int], out_level: int, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.output_stride = strides[out_level]
        self.dropout = nn.Dropout2d(dropout)  # identity at inference
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(x))


def low_level_index(strides: list[int]) -> int:
    """The level DeepLabV3+ takes its low-level features from: stride 4 if the backbone has it, else the finest."""
    return strides.index(4) if 4 in strides else 0


class FCNHead(DecodeHead):
    """FCN head on the last level: `num_convs` 3x3 conv-BN-ReLU, input concatenated back through `conv_cat`."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int,
        channels: int = DEFAULT_CHANNELS,
        num_convs: int = 2,
        concat_input: bool = True,
        dropout: float = DROPOUT,
    ):
        super().__init__(strides, -1, channels, num_classes, dropout)
        cin = in_channels[-1]
        self.convs = nn.Sequential(*(ConvBNReLU(cin if i == 0 else channels, channels, 3) for i in range(num_convs)))
        self.conv_cat = ConvBNReLU(cin + channels, channels, 3) if concat_input else None

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.classify(out)


class PSPHead(DecodeHead):
    """PSPNet head: pyramid pooling (bins 1, 2, 3, 6) on the last level."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int,
        channels: int = DEFAULT_CHANNELS,
        bins: tuple[int, ...] = PPM_BINS,
        dropout: float = DROPOUT,
    ):
        super().__init__(strides, -1, channels, num_classes, dropout)
        self.psp = PyramidPooling(in_channels[-1], channels, bins)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classify(self.psp(features[-1]))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: image pooling, a 1x1 conv and one 3x3 atrous conv per rate, then a 3x3
    bottleneck. `separable=True` makes the atrous branches depthwise-separable (DeepLabV3+)."""

    def __init__(self, cin: int, channels: int, rates: tuple[int, ...], separable: bool = False):
        super().__init__()
        self.rates = tuple(rates)
        self.image_pool = PoolBranch(1, cin, channels)
        atrous = SeparableConvBNReLU if separable else ConvBNReLU
        self.branches = nn.ModuleList(
            [ConvBNReLU(cin, channels, 1), *(atrous(cin, channels, 3, dilation=r) for r in rates)]
        )
        self.bottleneck = ConvBNReLU((len(rates) + 2) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([self.image_pool(x), *(branch(x) for branch in self.branches)], dim=1))


class ASPPHead(DecodeHead):
    """DeepLabV3 head: ASPP on the last level; rates from its stride unless given."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int,
        channels: int = DEFAULT_CHANNELS,
        rates: tuple[int, ...] | None = None,
        dropout: float = DROPOUT,
    ):
        super().__init__(strides, -1, channels, num_classes, dropout)
        self.aspp = ASPP(in_channels[-1], channels, rates or aspp_rates(strides[-1]))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classify(self.aspp(features[-1]))


class DeepLabV3PlusHead(DecodeHead):
    """DeepLabV3+ head: separable ASPP on the last level, decoded with 48-channel low-level features (stride 4)."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int,
        channels: int = DEFAULT_CHANNELS,
        c1_channels: int = LOW_LEVEL_CHANNELS,
        rates: tuple[int, ...] | None = None,
        dropout: float = DROPOUT,
    ):
        c1 = low_level_index(strides)
        super().__init__(strides, c1, channels, num_classes, dropout)
        self.c1_index = c1
        self.aspp = ASPP(in_channels[-1], channels, rates or aspp_rates(strides[-1]), separable=True)
        self.c1_bottleneck = ConvBNReLU(in_channels[c1], c1_channels, 1)
        self.sep_bottleneck = nn.Sequential(
            SeparableConvBNReLU(channels + c1_channels, channels, 3), SeparableConvBNReLU(channels, channels, 3)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low = self.c1_bottleneck(features[self.c1_index])
        x = resize(self.aspp(features[-1]), low.shape[2:])
        return self.classify(self.sep_bottleneck(torch.cat([x, low], dim=1)))


class UPerHead(DecodeHead):
    """UPerNet head: PPM on the last level, FPN top-down over all levels, fused at the finest level."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int,
        channels: int = DEFAULT_CHANNELS,
        bins: tuple[int, ...] = PPM_BINS,
        dropout: float = DROPOUT,
    ):
        super().__init__(strides, 0, channels, num_classes, dropout)
        self.psp = PyramidPooling(in_channels[-1], channels, bins)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features)] + [self.psp(features[-1])]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: add the coarser level, upsampled
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[2:]
        return self.classify(self.fpn_bottleneck(torch.cat([resize(o, size) for o in outs], dim=1)))


class MLPHead(AllMLPDecoder):
    """SegFormer's All-MLP decoder on any backbone; output at the first level's stride."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int,
        embed_dim: int = 768,
        dropout: float = DROPOUT,
    ):
        super().__init__(in_channels, embed_dim, num_classes, dropout)
        self.output_stride = strides[0]


HEADS: dict[str, type[nn.Module]] = {
    "fcn": FCNHead,
    "pspnet": PSPHead,
    "deeplabv3": ASPPHead,
    "deeplabv3plus": DeepLabV3PlusHead,
    "upernet": UPerHead,
    "mlp": MLPHead,
}
