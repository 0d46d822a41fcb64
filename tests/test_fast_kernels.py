"""The fast path's fused CPU kernels (`models/segformer_kernels.py`): each equals the plain code it replaces at fp32
(and at bf16 within bf16's rounding), writes where it says, and falls back to that code where oneDNN does not run it
as written."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segbench.models import segformer_kernels as kernels

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def _linear(cin: int, cout: int) -> nn.Linear:
    torch.manual_seed(cin * 100 + cout)
    return nn.Linear(cin, cout).eval()


def test_fused_kernels_run_for_fp32_cpu_inference_only() -> None:
    x = torch.randn(4, 8)
    with torch.inference_mode():
        assert kernels.fused_ok(x)
        assert not kernels.fused_ok(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not kernels.fused_ok(x)
    assert not kernels.fused_ok(x)  # autograd on: the oneDNN ops have no backward


@pytest.mark.parametrize("shape", [(37, 32), (1, 37, 32), (2, 5, 7, 32)])
def test_linear_is_the_layer(shape: tuple[int, ...]) -> None:
    layer = _linear(32, 64)
    x = torch.randn(shape)
    out = torch.full((x.numel() // 32 * 64 + 10,), float("nan"))[: x.numel() // 32 * 64]  # a kept buffer's front
    with torch.inference_mode():
        got = kernels.linear(layer, x)
        into = kernels.linear(layer, x, out=out)
        torch.testing.assert_close(got, F.linear(x, layer.weight, layer.bias), rtol=1e-6, atol=1e-5)
    assert got.shape == into.shape == (*shape[:-1], 64)
    assert into.data_ptr() == out.data_ptr()  # written where asked, over what was there
    torch.testing.assert_close(into, got, rtol=1e-6, atol=1e-5)
    unbiased = torch.nn.Linear(32, 64, bias=False)
    with torch.inference_mode():
        into = kernels.linear(unbiased, x, out=out)
    assert into.data_ptr() == out.data_ptr()
    torch.testing.assert_close(into, F.linear(x, unbiased.weight), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(("rows", "width", "cin", "cout"), [(3, 5, 32, 16), (1, 7, 128, 32), (4, 4, 16, 16)])
def test_linear_add_adds_the_layer_in_place(rows: int, width: int, cin: int, cout: int) -> None:
    layer = _linear(cin, cout)
    x = torch.randn(1, rows * width, cin)
    tokens = torch.randn(1, 2 * rows * width, cout)  # the band is the second half of a larger map
    band = tokens[:, rows * width :]
    expected = tokens.clone()
    with torch.inference_mode():
        expected[:, rows * width :] += F.linear(x, layer.weight, layer.bias)
        out = kernels.linear_add_(band, layer, x, rows, width)
    assert out.data_ptr() == band.data_ptr()
    torch.testing.assert_close(tokens, expected, rtol=1e-6, atol=1e-5)


def test_linear_add_takes_the_plain_add_for_a_batch_or_under_autocast() -> None:
    layer = _linear(8, 8)
    for batch, autocast in ((2, False), (1, True)):
        x, out = torch.randn(batch, 6, 8), torch.randn(batch, 6, 8)
        expected = out.clone()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            expected.add_(layer(x))
            kernels.linear_add_(out, layer, x, 2, 3)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_conv1x1_add_relu_sums_and_rectifies_in_place() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(12, 20, 1).eval()
    x = torch.randn(1, 5, 7, 12).permute(0, 3, 1, 2)  # NHWC maps, as the decoder's bands
    rows = torch.randn(1, 9, 7, 20).permute(0, 3, 1, 2)
    out = rows[:, :, 2:7]  # a band of a larger map
    expected = rows.clone()
    with torch.inference_mode():
        expected[:, :, 2:7] = (expected[:, :, 2:7] + conv(x)).relu()
        assert kernels.conv1x1_add_relu_(out, conv, x).data_ptr() == out.data_ptr()
    torch.testing.assert_close(rows, expected, rtol=1e-6, atol=1e-5)
    assert (rows[:, :, 2:7] == 0).any() and (rows[:, :, :2] < 0).any()  # rectified in the band only


def test_conv1x1_add_relu_takes_the_plain_code_for_a_batch_or_nchw() -> None:
    conv = nn.Conv2d(4, 4, 1).eval()
    for x, out in (
        (torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)),
        (torch.randn(1, 4, 3, 5), torch.randn(1, 4, 3, 5)),
    ):
        expected = out.clone()
        with torch.inference_mode():
            expected = (expected + conv(x)).relu()
            kernels.conv1x1_add_relu_(out, conv, x)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_dwconv_gelu_is_the_conv_then_gelu(approximate: str) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 24, 3, padding=1, groups=24).eval()
    act = nn.GELU(approximate=approximate)
    x = torch.randn(1, 6, 9, 24).permute(0, 3, 1, 2)  # NHWC in memory, as the Mix-FFN hands it over
    with torch.inference_mode():
        got = kernels.dwconv_gelu(conv, act, x)
        torch.testing.assert_close(got, act(conv(x)), rtol=1e-5, atol=1e-6)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_dwconv_gelu_another_activation_takes_the_plain_code() -> None:
    conv, act = nn.Conv2d(4, 4, 3, padding=1, groups=4).eval(), nn.ReLU()
    x = torch.randn(1, 4, 5, 5)
    with torch.inference_mode():
        torch.testing.assert_close(kernels.dwconv_gelu(conv, act, x), act(conv(x)), rtol=0, atol=0)


BF16 = pytest.mark.skipif(not kernels.onednn_bf16(), reason="this CPU's oneDNN has no bf16 kernels")


def _bf16_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """bf16 against the same inputs' fp32 result: within a few of bf16's roundings (8-bit mantissa, 2^-8)."""
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, rtol=2e-2, atol=2e-2 * expected.abs().max().item())


@BF16
def test_the_kernels_run_in_bf16_and_compute_the_plain_code() -> None:
    """A bf16 copy of the model (the deploy grid's fast bf16) takes the fused kernels too; each result is the plain
    code's on the same bf16 inputs, computed in fp32, to bf16's rounding."""
    layer, wide = _linear(32, 64).bfloat16(), _linear(64, 32).bfloat16()
    conv, act = nn.Conv2d(24, 24, 3, padding=1, groups=24).eval().bfloat16(), nn.GELU()
    x = torch.randn(1, 12, 32).bfloat16()
    hidden = torch.randn(1, 12, 64).bfloat16()
    tokens = torch.randn(1, 12, 32).bfloat16()
    fmap = torch.randn(1, 6, 9, 24).bfloat16().permute(0, 3, 1, 2)
    with torch.inference_mode():
        assert kernels.fused_ok(x)
        _bf16_close(kernels.linear(layer, x), F.linear(x.float(), layer.weight.float(), layer.bias.float()))
        expected = tokens.float() + F.linear(hidden.float(), wide.weight.float(), wide.bias.float())
        out = tokens.clone()
        assert kernels.linear_add_(out, wide, hidden, 3, 4).data_ptr() == out.data_ptr()
        _bf16_close(out, expected)
        plain = act(F.conv2d(fmap.float(), conv.weight.float(), conv.bias.float(), padding=1, groups=24))
        _bf16_close(kernels.dwconv_gelu(conv, act, fmap), plain)
        point = nn.Conv2d(24, 16, 1).eval().bfloat16()
        summed = torch.randn(1, 6, 9, 16).bfloat16().permute(0, 3, 1, 2)
        expected = (summed.float() + F.conv2d(fmap.float(), point.weight.float(), point.bias.float())).relu()
        _bf16_close(kernels.conv1x1_add_relu_(summed, point, fmap), expected)
