"""Decode heads on synthetic multi-scale features: output stride, level choice, hyper-parameters."""

import math

import pytest
import torch

from segbench.models.heads import (
    HEADS,
    ASPPHead,
    DeepLabV3PlusHead,
    FCNHead,
    PSPHead,
    UPerHead,
    aspp_rates,
    low_level_index,
)

CHANNELS = [8, 16, 24, 32]


def features(strides, size=(65, 97), channels=CHANNELS):
    h, w = size
    return [torch.randn(2, c, math.ceil(h / s), math.ceil(w / s)) for c, s in zip(channels, strides)]


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("strides", [[4, 8, 16, 32], [4, 8, 8, 8], [4, 8, 16, 16]])
def test_every_head_returns_logits_at_its_declared_stride(name, strides):
    kwargs = {"embed_dim": 16} if name == "mlp" else {"channels": 16}
    head = HEADS[name](CHANNELS, strides, 5, **kwargs).eval()
    with torch.no_grad():
        out = head(features(strides))
    s = head.output_stride
    assert out.shape == (2, 5, math.ceil(65 / s), math.ceil(97 / s))
    expected = {"fcn": strides[-1], "pspnet": strides[-1], "deeplabv3": strides[-1]}.get(name, 4)
    assert s == expected


def test_aspp_rates_follow_the_deeplab_papers():
    assert aspp_rates(16) == (6, 12, 18)  # DeepLabV3 Sec. 4.1, output stride 16
    assert aspp_rates(8) == (12, 24, 36)  # doubled at output stride 8 (mmseg *-d8 configs)
    assert aspp_rates(32) == (3, 6, 9)
    head = ASPPHead(CHANNELS, [4, 8, 8, 8], 19)
    dilations = [b.conv.dilation[0] for b in head.aspp.branches[1:]]
    assert dilations == [12, 24, 36]
    assert head.aspp.branches[0].conv.kernel_size == (1, 1)


def test_deeplabv3plus_uses_stride4_low_level_features_projected_to_48():
    assert low_level_index([4, 8, 16, 32]) == 0
    assert low_level_index([2, 4, 8, 8]) == 1
    assert low_level_index([8, 16, 32]) == 0  # no stride-4 level: the finest
    head = DeepLabV3PlusHead([8, 16, 24, 32], [2, 4, 8, 8], 19)
    assert head.c1_index == 1 and head.output_stride == 4
    assert head.c1_bottleneck.conv.weight.shape == (48, 16, 1, 1)
    # depthwise-separable atrous branches: a grouped 3x3 then a pointwise 1x1
    branch = head.aspp.branches[1]
    assert branch.depthwise_conv.conv.groups == 32 and branch.pointwise_conv.conv.kernel_size == (1, 1)
    assert head.sep_bottleneck[0].depthwise_conv.conv.in_channels == 512 + 48


def test_psp_bins_and_head_widths():
    head = PSPHead(CHANNELS, [4, 8, 8, 8], 19)
    assert [b.pool.output_size for b in head.psp.ppm] == [1, 2, 3, 6]
    # bottleneck: 3x3 over the input concatenated with four 512-channel branches
    assert head.psp.bottleneck.conv.weight.shape == (512, 32 + 4 * 512, 3, 3)


def test_fcn_parameter_count_matches_hand_arithmetic():
    cin, c, k = 32, 16, 7
    head = FCNHead(CHANNELS, [4, 8, 8, 8], k, channels=c)
    bn = 2 * c  # weight + bias per BatchNorm
    expected = (cin * c * 9 + bn) + (c * c * 9 + bn) + ((cin + c) * c * 9 + bn) + (c * k + k)
    assert sum(p.numel() for p in head.parameters()) == expected
    no_cat = FCNHead(CHANNELS, [4, 8, 8, 8], k, channels=c, concat_input=False)
    assert sum(p.numel() for p in no_cat.parameters()) == expected - ((cin + c) * c * 9 + bn)


def test_upernet_fuses_all_levels():
    head = UPerHead(CHANNELS, [4, 8, 16, 32], 3, channels=16)
    assert len(head.lateral_convs) == len(head.fpn_convs) == 3
    assert head.fpn_bottleneck.conv.in_channels == 4 * 16
    # every level influences the output: zeroing one level changes the logits
    feats = features([4, 8, 16, 32])
    head.eval()
    with torch.no_grad():
        ref = head(feats)
        for i in range(4):
            changed = [torch.zeros_like(f) if j == i else f for j, f in enumerate(feats)]
            assert not torch.allclose(head(changed), ref)
