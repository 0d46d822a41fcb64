"""The fast path's fused CPU kernels: oneDNN primitives that do in one pass what the plain blocks do in two or three.

`banded_block` (`models/segformer_fast.py`) calls these on each band of rows; each computes exactly what the plain
code next to it in the docstring computes, in the tensors' dtype with the same operations (oneDNN's post-ops apply the
activation or the addition to each output element as it is written, instead of in a second pass over memory):

============================ ============================================== ========================================
kernel                       plain code                                     the memory pass it saves
============================ ============================================== ========================================
`linear`                     ``F.linear(x, w, b)``                          ATen's addmm first copies the broadcast
                                                                            bias into the output, then accumulates
                                                                            (not with `out`: addmm into a kept buffer)
`linear_add_`                ``out += F.linear(x, w, b)``                   the product's temporary and the add pass
`dwconv_gelu`                ``F.gelu(dwconv(x))``                          the GELU pass over the hidden map
`conv1x1_add_relu_`          ``out.add_(conv(x)).relu_()``                  the conv's output, the add and the ReLU
                                                                            passes (the folded decoder's last sum)
============================ ============================================== ========================================

They are taken only where oneDNN runs them as written: CPU tensors in float32, or in bfloat16 where oneDNN has bf16
kernels (a bf16 copy of the model: the deploy grid's fast bf16), outside autocast (`fused_ok`). Elsewhere (under
autocast, another device, a torch built without oneDNN) each falls back to the plain code, so the fast path computes
the same function everywhere. `tests/test_fast_kernels.py` checks every kernel against its plain code.
Inference only: none of the ops has a backward.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

_MKLDNN = torch.ops.mkldnn


@functools.cache
def onednn_bf16() -> bool:
    """Whether this torch's oneDNN runs bf16 on this CPU (what its bf16 primitives check before they run; the deploy
    grid's `cpu_has_native_bf16` asks this too)."""
    try:
        return bool(_MKLDNN._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without that query
        return False


def cpu_inference(x: torch.Tensor) -> bool:
    """Whether `x` is a CPU tensor in plain eager inference, where the fast path's own kernels may replace the plain
    ops: no autocast, no autograd, no trace or compilation (those record or transform the plain operators)."""
    return (
        not torch.jit.is_tracing()  # a trace (FLOP counters, exports) records the plain operators it knows
        and not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
    )


def fused_ok(x: torch.Tensor) -> bool:
    """Whether the fused kernels run for `x`: CPU inference (`cpu_inference`) in float32 (or bfloat16 where oneDNN
    has bf16), oneDNN built in."""
    return (
        cpu_inference(x)
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and onednn_bf16()))
        and torch.backends.mkldnn.is_available()
    )


def linear(layer: nn.Linear, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``layer(x)`` for contiguous `x` (..., in channels): into a new tensor as one oneDNN matmul with its bias, or,
    where `out` is given (a contiguous tensor of the result's size and dtype, e.g. a kept workspace), into `out`
    through ATen's addmm, which copies the bias in first: one more pass over a buffer that is already mapped, where a
    new tensor may be fresh pages the kernel zeroes."""
    if not (fused_ok(x) and x.is_contiguous()):
        return layer(x)
    rows = x.view(-1, x.shape[-1])
    if out is not None:
        target = out.view(rows.shape[0], layer.out_features)
        if layer.bias is None:
            torch.mm(rows, layer.weight.t(), out=target)
        else:
            torch.addmm(layer.bias, rows, layer.weight.t(), out=target)
        return target.view(*x.shape[:-1], layer.out_features)
    result = _MKLDNN._linear_pointwise(rows, layer.weight, layer.bias, "none", [], "")
    return result.view(*x.shape[:-1], result.shape[-1])


def linear_add_(out: torch.Tensor, layer: nn.Linear, x: torch.Tensor, rows: int, width: int) -> torch.Tensor:
    """``out += layer(x)`` in place, for `out` (1, tokens, out channels) and `x` (1, tokens, in channels), contiguous,
    holding `rows` x `width` tokens in row order: a 1x1 convolution over their NHWC maps with oneDNN's binary-add
    post-op writing into `out`. A batch of several images takes the plain code."""
    if not (fused_ok(x) and out.shape[0] == 1 and out.is_contiguous() and x.is_contiguous()):
        return out.add_(layer(x))
    # NHWC views of the same memory; the weight (out, in) viewed as a 1x1 kernel is contiguous as it is
    out_map = out.view(1, rows, width, out.shape[-1]).permute(0, 3, 1, 2)
    x_map = x.view(1, rows, width, x.shape[-1]).permute(0, 3, 1, 2)
    weight = layer.weight[:, :, None, None]
    _MKLDNN._convolution_pointwise_.binary(
        out_map, x_map, weight, layer.bias, [0, 0], [1, 1], [1, 1], 1, "add", 1.0, None, [], None
    )
    return out


def dwconv_gelu(conv: nn.Conv2d, act: nn.GELU, x: torch.Tensor) -> torch.Tensor:
    """``act(conv(x))`` for the Mix-FFN's depthwise conv and its GELU (exact or tanh), as one oneDNN convolution
    with an eltwise post-op; `x` is an NCHW-shaped map (NHWC in memory), so is the result."""
    if not fused_ok(x) or not isinstance(act, nn.GELU):
        return act(conv(x))
    return _MKLDNN._convolution_pointwise(
        x,
        conv.weight,
        conv.bias,
        list(conv.padding),
        list(conv.stride),
        list(conv.dilation),
        conv.groups,
        "gelu",
        [],
        act.approximate,  # "none" (erf) or "tanh", as oneDNN names them
    )


def conv1x1_add_relu_(out: torch.Tensor, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``out.add_(conv(x)).relu_()`` in place, for a 1x1 `conv` and one image's NCHW-shaped maps `out` and `x`, both
    NHWC in memory: one oneDNN convolution whose binary-add post-op reads `out` and whose ReLU post-op follows it."""
    nhwc = torch.channels_last
    if not (
        fused_ok(x)
        and out.shape[0] == 1
        and (conv.kernel_size, conv.stride, conv.padding, conv.groups) == ((1, 1), (1, 1), (0, 0), 1)
        and out.is_contiguous(memory_format=nhwc)
        and x.is_contiguous(memory_format=nhwc)
    ):
        return out.add_(conv(x)).relu_()
    _MKLDNN._convolution_pointwise_.binary(
        out, x, conv.weight, conv.bias, [0, 0], [1, 1], [1, 1], 1, "add", 1.0, "relu", [], None
    )
    return out


__all__ = ["conv1x1_add_relu_", "cpu_inference", "dwconv_gelu", "fused_ok", "linear", "linear_add_", "onednn_bf16"]
