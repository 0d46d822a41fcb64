"""SegFormer's fast inference path (`SegFormer.fast_path()`, `create_model(..., fast=True)`, `--fast`).

Not part of the published network (`models/segformer.py` holds that): two rewrites that compute the same function up
to float rounding, with fewer FLOPs and less memory traffic, for inference only.

- `banded_block`: on the CPU, a MiT block computed in bands of rows, so that its largest buffers stay band-sized:
  they are reused from band to band and from image to image instead of fresh pages the kernel zeroes for every image
  (what ONNX Runtime's arena gives it), and they stay in cache.
- `FoldedMLPDecoder`: the decoder with its quarter-resolution fuse conv folded into per-stage 1x1 convs run before
  upsampling; on the CPU it writes its quarter-resolution maps into buffers it keeps.

`models/segformer.py` calls into this module; this module takes its blocks and decoders by their attributes and
imports nothing from it. `tests/test_fast_path.py` and `tests/test_segformer.py` check both against the published
network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models import segformer_kernels as kernels

# --------------------------------------------------------------------------------------------------------------------
# Encoder blocks in bands of rows
# --------------------------------------------------------------------------------------------------------------------


BAND_BYTES = 16 * 2**20
"""The fast path's band size: rows of a block are processed so that a band's Mix-FFN hidden map (fp32) stays under
this many bytes. Below glibc's largest mmap threshold (32 MiB) such buffers come from the heap and are reused from
band to band and from image to image, instead of fresh pages the kernel must zero for every image; and a band stays
in the last-level cache between the Mix-FFN's four operations."""


def _band_rows(batch: int, width: int, hidden: int, element: int, band_bytes: int) -> int:
    return max(1, band_bytes // max(1, batch * width * hidden * element))


def banded_block(block: nn.Module, x: torch.Tensor, h: int, w: int, band_bytes: int = BAND_BYTES) -> torch.Tensor:
    """`block(x, h, w)` for a `MiTBlock` computed in bands of rows, updating `x` in place (inference only; `x` must be
    the caller's own contiguous (B, N, C) tokens). The same function as `MiTBlock.forward` up to float rounding:

    - keys and values: the reduction conv (kernel = stride = sr) runs over bands whose row counts are multiples of sr,
      which is the whole-map conv cut at window boundaries; they are concatenated and normalised as a whole;
    - attention: each band's queries against all keys, its residual added to its rows right away (a band reads only
      its own rows);
    - Mix-FFN: each band's 3x3 depthwise conv reads one row above and below, so fc1 runs on the band plus that halo,
      and the band's output is added to `x` only after the next band has read its halo from the rows before the add.

    No tensor of the block's full size is allocated besides the keys and values (1/sr^2 of the tokens).
    """
    attn, mlp = block.attn, block.mlp
    b, n, c = x.shape
    heads, hidden = attn.num_heads, mlp.fc1.out_features
    rows = _band_rows(b, w, hidden, x.element_size(), band_bytes)

    def tokens(r0: int, r1: int) -> torch.Tensor:
        return x[:, r0 * w : r1 * w]

    # keys and values
    if attn.sr_ratio > 1:
        r = attn.sr_ratio
        usable, step = (h // r) * r, max(r, rows // r * r)
        parts = []
        for r0 in range(0, usable, step):
            r1 = min(r0 + step, usable)
            t = block.norm1(tokens(r0, r1)).reshape(b, r1 - r0, w, c).permute(0, 3, 1, 2)  # NHWC in memory
            parts.append(attn.sr(t).flatten(2).transpose(1, 2))
        reduced = attn.sr_norm(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
    else:
        reduced = block.norm1(x)
    kv = kernels.linear(attn.kv, reduced).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    # attention, band by band, each band's residual added into its rows as the projection writes them
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        band = tokens(r0, r1)
        q = kernels.linear(attn.q, block.norm1(band)).reshape(b, -1, heads, c // heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1]).transpose(1, 2).reshape(b, -1, c)
        kernels.linear_add_(band, attn.proj, out, r1 - r0, w)
    # Mix-FFN, band by band: a band's fc2 (with its residual add) runs once the next band has read its halo row
    pending: tuple[torch.Tensor, torch.Tensor, int] | None = None  # the band's tokens, its GELU output, its rows
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        lo, hi = max(r0 - 1, 0), min(r1 + 1, h)
        hid = kernels.linear(mlp.fc1, block.norm2(tokens(lo, hi))).reshape(b, hi - lo, w, hidden).permute(0, 3, 1, 2)
        act = kernels.dwconv_gelu(mlp.dwconv, mlp.act, hid)
        act = act[:, :, r0 - lo : r0 - lo + (r1 - r0)]  # rows next to a band edge saw zero padding
        if pending is not None:
            kernels.linear_add_(pending[0], mlp.fc2, pending[1], pending[2], w)
        pending = (tokens(r0, r1), act.permute(0, 2, 3, 1).reshape(b, -1, hidden), r1 - r0)
    if pending is not None:
        kernels.linear_add_(pending[0], mlp.fc2, pending[1], pending[2], w)
    return x


# --------------------------------------------------------------------------------------------------------------------
# The folded decoder
# --------------------------------------------------------------------------------------------------------------------


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = s * x + t per channel."""
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return s, bn.bias - bn.running_mean * s


class FoldedMLPDecoder(nn.Module):
    """Inference-only rewrite of the All-MLP decoder with the quarter-resolution fuse conv folded away.

    The fuse conv over the concatenation is a sum of per-stage blocks: W [u(p_1); ..; u(p_4)] = sum_i W_i u(p_i),
    where u is the bilinear upsampling to 1/4. u is linear and maps a constant map to the same constant, so
    W_i u(p_i) = u(W_i p_i): each block runs at its stage's own resolution, before upsampling. Eval-mode BN is a
    per-channel affine map and folds into the same weights.

    - original decoder: p_i = A_i f_i + b_i is itself linear, so the stage projection, its fuse block and BN become one
      1x1 conv C_i -> C per stage; at 1/4 only the sum, ReLU and the classifier remain.
    - mmseg decoder: p_i = ReLU(BN(conv(f_i))) is not linear; its conv + BN fold into one conv with bias, and only the
      fuse block W_i (with the fuse BN) moves below the upsampling.

    Exact up to float rounding (the summation order changes); `tests/test_segformer.py` checks it.
    """

    def __init__(self, head: nn.Module):
        """Fold `head`, an `AllMLPDecoder` or an `MMSegMLPDecoder` (told apart by the latter's per-stage `convs`)."""
        super().__init__()
        c = head.embed_dim
        n = len(head.in_channels)
        s, t = _bn_affine(head.fuse.bn)
        w_fuse = head.fuse.conv.weight.detach()[:, :, 0, 0]  # C, n*C
        like = {"device": w_fuse.device, "dtype": w_fuse.dtype}  # the new convs live where the decoder does
        self.mmseg = hasattr(head, "convs")
        self.branch_pre = nn.ModuleList()  # mmseg only: the per-stage conv + BN (+ ReLU in forward)
        self.branch = nn.ModuleList()
        with torch.no_grad():
            for i, cin in enumerate(head.in_channels):
                if self.mmseg:
                    block = w_fuse[:, i * c : (i + 1) * c]  # concatenated c1..c4
                    bs, bt = _bn_affine(head.convs[i].bn)
                    pre = nn.Conv2d(cin, c, 1, **like)
                    pre.weight.copy_(head.convs[i].conv.weight * bs[:, None, None, None])
                    pre.bias.copy_(bt)
                    self.branch_pre.append(pre)
                    weight, bias = s[:, None] * block, torch.zeros(c, **like)
                else:
                    block = w_fuse[:, (n - 1 - i) * c : (n - i) * c]  # concatenated c4, c3, c2, c1
                    proj = head.proj[i]
                    weight, bias = s[:, None] * (block @ proj.weight), s * (block @ proj.bias)
                if i == 0:
                    bias = bias + t  # the BN shift is a constant: add it once, at full decoder resolution
                conv = nn.Conv2d(cin if not self.mmseg else c, c, 1, **like)
                conv.weight.copy_(weight[:, :, None, None])
                conv.bias.copy_(bias)
                self.branch.append(conv)
        self.classifier = head.classifier
        self.in_channels, self.embed_dim = head.in_channels, c
        # NHWC convs: the encoder's maps are NHWC already, and bilinear upsampling of a wide NHWC map is about twice
        # as fast as of the same map NCHW (B0 at 1024x2048 on CPU: the decoder takes 115 ms instead of 200 ms)
        self.branch_pre.to(memory_format=torch.channels_last)
        self.branch.to(memory_format=torch.channels_last)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = tuple(features[0].shape[2:])
        # On the CPU at inference, the quarter-resolution maps (B0 at 1024x2048: 128 MiB each) go into buffers the
        # decoder keeps: a fresh one per image would be pages the kernel zeroes first (an upsampling then takes 66 ms
        # instead of 14 ms on the 2-core machine this was written on).
        reuse = features[0].device.type == "cpu" and not torch.is_grad_enabled()
        out = None
        for i, feat in enumerate(features):
            if self.mmseg:
                feat = F.relu(self.branch_pre[i](feat))
            if out is None:  # the first map is at the decoder's resolution: its 1x1 conv starts the sum
                out = self._conv1x1_into(self.branch[i], feat) if reuse else self.branch[i](feat)
                continue
            y = self.branch[i](feat)
            if tuple(y.shape[2:]) == size:
                out.add_(y)
            elif reuse:
                scratch = self._buffer("upsampled", (y.shape[0], y.shape[1], *size), y)
                out.add_(torch.ops.aten.upsample_bilinear2d.out(y, list(size), False, None, None, out=scratch))
            else:
                out.add_(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        return self.classifier(out.relu_()).contiguous()  # NCHW logits, as the other decoders give

    def _buffer(self, tag: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """The decoder's NHWC buffer `tag` of `shape`, `like`'s dtype and device, made again only when those change.
        Not thread-safe: one model, one caller at a time (as every inference loop here)."""
        buffers: dict[str, torch.Tensor] = self.__dict__.setdefault("_buffers_kept", {})  # not module state
        buf = buffers.get(tag)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=torch.channels_last)
            buffers[tag] = buf
        return buf

    def _conv1x1_into(self, conv: nn.Conv2d, feat: torch.Tensor) -> torch.Tensor:
        """`conv(feat)` for a 1x1 conv, written into the kept buffer ``"sum"`` as a matrix product over the NHWC
        pixels (falls back to the conv under autocast, where out= products are not cast)."""
        if torch.is_autocast_enabled(feat.device.type) or not feat.is_contiguous(memory_format=torch.channels_last):
            return conv(feat)
        b, cin, h, w = feat.shape
        out = self._buffer("sum", (b, conv.out_channels, h, w), feat)
        pixels = feat.permute(0, 2, 3, 1).reshape(-1, cin)  # a view: NHWC memory
        weight = conv.weight.view(conv.out_channels, cin).t()
        torch.addmm(conv.bias, pixels, weight, out=out.permute(0, 2, 3, 1).view(-1, conv.out_channels))
        return out
