"""SegFormer's fast inference path (`SegFormer.fast_path()`, `create_model(..., fast=True)`, `--fast`).

Not part of the published network (`models/segformer.py` holds that): two rewrites that compute the same function up
to float rounding, with fewer FLOPs and less memory traffic, for inference only.

- `banded_block`: on the CPU, a MiT block computed in bands of rows, so that its largest buffers stay band-sized:
  they are reused from band to band and from image to image instead of fresh pages the kernel zeroes for every image
  (what ONNX Runtime's arena gives it), and they stay in cache.
- `FoldedMLPDecoder`: the decoder with its quarter-resolution fuse conv folded into per-stage 1x1 convs run before
  upsampling; on the CPU it computes its quarter-resolution sum, ReLU and classifier in bands of rows, in buffers it
  keeps (`DECODER_BAND_ROWS`), the sum of upsampled maps (fp32 or bf16) on an AVX-512 CPU in one pass through
  segbench's kernel (`models/segformer_native.py`).

`models/segformer.py` calls into this module; this module takes its blocks and decoders by their attributes and
imports nothing from it. `tests/test_fast_path.py` and `tests/test_segformer.py` check both against the published
network.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models import segformer_kernels as kernels
from segbench.models import segformer_native

# --------------------------------------------------------------------------------------------------------------------
# Encoder blocks in bands of rows
# --------------------------------------------------------------------------------------------------------------------


BAND_BYTES = 16 * 2**20
"""The fast path's band size: rows of a block are processed so that a band's Mix-FFN hidden map (fp32) stays under
this many bytes. Below glibc's largest mmap threshold (32 MiB) such buffers come from the heap and are reused from
band to band and from image to image, instead of fresh pages the kernel must zero for every image; and a band stays
in the last-level cache between the Mix-FFN's four operations."""


def layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, through segbench's kernel where it runs (`segformer_native.layer_norm`: contiguous fp32 or bf16 CPU
    tokens at inference, about twice PyTorch's speed at MiT's widths of 32 and 64 channels)."""
    out = None
    if len(norm.normalized_shape) == 1:
        out = segformer_native.layer_norm(x, norm.weight, norm.bias, norm.eps)
    return norm(x) if out is None else out


def embed_patches(embed: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``embed(x)`` for an `OverlapPatchEmbed`: its conv, then its LayerNorm over the tokens (B, N, C), contiguous."""
    x = embed.proj(x)
    h, w = x.shape[2:]
    return layer_norm(embed.norm, x.flatten(2).transpose(1, 2).contiguous()), h, w


_workspaces = threading.local()


def _workspace(tokens: int, like: torch.Tensor, mlp: nn.Module) -> torch.Tensor:
    """The calling thread's kept buffer for a band's fc1 output, `tokens` tokens by the Mix-FFN's hidden width, in
    `like`'s dtype and device: made again only when too small or of another dtype or device. One per thread, so that
    two threads running fast models never share it; a band's fc1 output is the block's largest buffer (up to
    `BAND_BYTES` plus two halo rows), which would otherwise be fresh pages from the C library for every band."""
    return _kept(_workspaces.__dict__, "fc1", tokens * mlp.fc1.out_features, like)  # this thread's own attributes


def _kept(store: dict[str, torch.Tensor], tag: str, numel: int, like: torch.Tensor) -> torch.Tensor:
    """The first `numel` elements of the flat buffer `tag` in `store`, made again only when too small or of another
    dtype or device than `like`. Made as a normal tensor even under `torch.inference_mode` (an inference tensor could
    not be written again under plain `torch.no_grad`)."""
    flat = store.get(tag)
    if flat is None or flat.numel() < numel or flat.dtype != like.dtype or flat.device != like.device:
        with torch.inference_mode(False):
            flat = torch.empty(numel, dtype=like.dtype, device=like.device)
        store[tag] = flat
    return flat[:numel]


def _gelu_rows(mlp: nn.Module, hid: torch.Tensor, first: int, count: int) -> torch.Tensor:
    """GELU(dwconv(`hid`)) for a band's fc1 output `hid` (B, rows with halo, W, hidden), as tokens (B, count * W,
    hidden) of its rows first..first + count (the halo rows saw the band edge's zero padding: dropped)."""
    act = kernels.dwconv_gelu(mlp.dwconv, mlp.act, hid.permute(0, 3, 1, 2))  # an NCHW-shaped view of NHWC memory
    return act[:, :, first : first + count].permute(0, 2, 3, 1).reshape(hid.shape[0], -1, hid.shape[3])


def _band_rows(batch: int, width: int, hidden: int, element: int, band_bytes: int) -> int:
    return max(1, band_bytes // max(1, batch * width * hidden * element))


def banded_block(block: nn.Module, x: torch.Tensor, h: int, w: int, band_bytes: int = BAND_BYTES) -> torch.Tensor:
    """`block(x, h, w)` for a `MiTBlock` computed in bands of rows, updating `x` in place (inference only; `x` must be
    the caller's own contiguous (B, N, C) tokens). The same function as `MiTBlock.forward` up to float rounding:

    - keys and values: the reduction conv (kernel = stride = sr) runs over bands whose row counts are multiples of sr,
      which is the whole-map conv cut at window boundaries; they are concatenated and normalised as a whole;
    - attention: each band's queries against all keys, its residual added to its rows right away (a band reads only
      its own rows); through segbench's kernels (`models/segformer_native.py`) in fp32 on an AVX-512 CPU and in
      bf16 on one with AMX, else PyTorch's;
    - Mix-FFN: each band's 3x3 depthwise conv reads one row above and below, so fc1 runs on the band plus that halo,
      and the band's output is added to `x` only after the next band has read its halo from the rows before the add.
      fc1 writes into the calling thread's kept workspace, and the band above's fc2 runs before this band's GELU
      output is made, so one band-sized GELU output is alive at a time.

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
            t = layer_norm(block.norm1, tokens(r0, r1)).reshape(b, r1 - r0, w, c).permute(0, 3, 1, 2)  # NHWC
            parts.append(attn.sr(t).flatten(2).transpose(1, 2))
        reduced = layer_norm(attn.sr_norm, torch.cat(parts, dim=1) if len(parts) > 1 else parts[0].contiguous())
    else:
        reduced = layer_norm(block.norm1, x)
    kv = kernels.linear(attn.kv, reduced)
    native = segformer_native.prepare(kv, heads)  # None: PyTorch's kernel (bf16 without AMX, autocast, ...)
    # attention, band by band, each band's residual added into its rows as the projection writes them
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        band = tokens(r0, r1)
        q = kernels.linear(attn.q, layer_norm(block.norm1, band))
        if native is not None:
            out = segformer_native.attend(native, q)
        else:
            out = segformer_native.pytorch_attend(q, kv, heads)
        kernels.linear_add_(band, attn.proj, out, r1 - r0, w)
    # Mix-FFN, band by band. A band's fc1 reads one row above and below it before the band above's fc2 adds its
    # residual into those rows; that fc2 then runs and frees its GELU output before this band's is made, so that one
    # band-sized GELU output is alive at a time (and the heap reuses its memory), and fc1 writes into a kept workspace
    pending: tuple[torch.Tensor, torch.Tensor, int] | None = None  # the band's tokens, its GELU output, its rows
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        lo, hi = max(r0 - 1, 0), min(r1 + 1, h)
        kept = _workspace(b * (hi - lo) * w, x, mlp)
        hid = kernels.linear(mlp.fc1, layer_norm(block.norm2, tokens(lo, hi)), out=kept)
        if pending is not None:
            kernels.linear_add_(pending[0], mlp.fc2, pending[1], pending[2], w)
            pending = None  # its GELU output freed before this band's is made
        pending = (tokens(r0, r1), _gelu_rows(mlp, hid.reshape(b, hi - lo, w, hidden), r0 - lo, r1 - r0), r1 - r0)
    if pending is not None:
        kernels.linear_add_(pending[0], mlp.fc2, pending[1], pending[2], w)
    return x


# --------------------------------------------------------------------------------------------------------------------
# The folded decoder
# --------------------------------------------------------------------------------------------------------------------


DECODER_BAND_ROWS = 32
"""Rows of the decoder's output (quarter resolution) per band on the CPU, rounded up to a multiple of every coarser
map's factor. A band's upsampled sum stays cache-sized (B0, 1024x2048: 16 MiB). Where PyTorch upsamples (not fp32 on
an AVX-512 CPU), each coarser map's slice brings one halo row above and below, whose upsampled rows are computed and
dropped (at factor 8, 16 of 48 rows). Measured on the 2-core machine this was written on, B0 and B2 at 1024x2048:
with PyTorch's upsampling, 16, 32 and 64 rows gave the decoder 85-125 ms and 448-485 ms, against 152-167 ms and
506-515 ms whole-map, 32 best for B0 and 128 already slower; with segbench's kernel, 8 to 64 rows gave 63-75 ms and
262-304 ms, within the machine's noise of each other."""


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
        if self._bands_fit(features):
            return self._forward_banded(features)
        size = tuple(features[0].shape[2:])
        # On the CPU at inference, the quarter-resolution maps (B0 at 1024x2048: 128 MiB each) go into buffers the
        # decoder keeps: a fresh one per image would be pages the kernel zeroes first (an upsampling then takes 66 ms
        # instead of 14 ms on the 2-core machine this was written on).
        reuse = features[0].device.type == "cpu" and not torch.is_grad_enabled()
        out = None
        for i, feat in enumerate(features):
            feat = self._stage_input(i, feat)
            if out is None:  # the first map is at the decoder's resolution: its 1x1 conv starts the sum
                out = self._conv1x1_into(self.branch[i], feat, "sum") if reuse else self.branch[i](feat)
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

    def _stage_input(self, i: int, feat: torch.Tensor) -> torch.Tensor:
        """What stage `i`'s folded conv reads: the encoder's map, or for the mmseg decoder its per-stage conv + BN
        (folded) and ReLU of it."""
        return F.relu(self.branch_pre[i](feat)) if self.mmseg else feat

    def _bands_fit(self, features: list[torch.Tensor]) -> bool:
        """Whether the decoder runs in bands of rows (`_forward_banded`): CPU inference where the fused kernels run,
        NHWC maps, and every coarser map's height dividing the first's (an integer upsampling factor)."""
        first = features[0]
        return (
            len(features) > 1
            and kernels.fused_ok(first)
            and self.classifier.kernel_size == (1, 1)
            and all(f.is_contiguous(memory_format=torch.channels_last) for f in features)
            and all(0 < f.shape[2] and first.shape[2] % f.shape[2] == 0 for f in features[1:])
        )

    def _forward_banded(self, features: list[torch.Tensor]) -> torch.Tensor:
        """`forward` one image and one band of output rows at a time, so that the upsampled sum, its ReLU and the
        classifier read and write band-sized buffers the decoder keeps, instead of three full-size maps.

        Bilinear upsampling by an integer factor s (align_corners False) computes output row r from input rows
        floor((r + 0.5) / s - 0.5) and the next, clamped to the map. Rows [r0, r1), both multiples of s, thus read
        only input rows [r0 / s - 1, r1 / s + 1); upsampling that slice to s times its rows gives the same source
        coordinates shifted by the slice's first row, so its middle rows are the whole map's rows r0..r1. The width is
        upsampled whole. Each band's sum is the whole-map sum's up to rounding; `tests/test_fast_path.py` checks it.
        """
        first = features[0]
        b, _, h, w = first.shape
        coarse = []  # coarsest first: each stage's map after its folded conv, at its own resolution, and its factor
        for i in range(len(features) - 1, 0, -1):  # into kept buffers: B0's stage 2 map at 1024x2048 is 32 MiB
            feat = self._stage_input(i, features[i])
            coarse.append((self._conv1x1_into(self.branch[i], feat, f"coarse{i}"), h // feat.shape[2]))
        align = math.lcm(*(s for _, s in coarse))
        step = -(-DECODER_BAND_ROWS // align) * align
        logits = torch.empty(b, self.classifier.out_channels, h, w, dtype=first.dtype, device=first.device)
        for n in range(b):
            for r0 in range(0, h, step):
                r1 = min(r0 + step, h)
                acc = self._upsampled_sum(coarse, n, r0, r1, (h, w))
                f0 = self._stage_input(0, first[n : n + 1, :, r0:r1])
                kernels.conv1x1_add_relu_(acc, self.branch[0], f0)
                self._classify_into(logits[n, :, r0:r1], acc)
        return logits

    def _upsampled_sum(
        self, coarse: list[tuple[torch.Tensor, int]], n: int, r0: int, r1: int, size: tuple[int, int]
    ) -> torch.Tensor:
        """Image `n`'s rows [r0, r1) of the sum of the `coarse` maps upsampled to the decoder's resolution `size`, in a
        kept NHWC buffer: in one pass through segbench's kernel (fp32 or bf16) on an AVX-512 CPU
        (`models/segformer_native.py`), else each map's slice upsampled by PyTorch and added (see `_forward_banded`)."""
        h, w = size
        band = self._buffer("band", (1, coarse[0][0].shape[1], r1 - r0, w), coarse[0][0])
        if segformer_native.upsampled_sum(band, [y[n : n + 1] for y, _ in coarse], h, r0):
            return band
        acc = None
        for k, (y, s) in enumerate(coarse):
            lo, hi = max(r0 // s - 1, 0), min(r1 // s + 1, y.shape[2])
            slice_size = [(hi - lo) * s, w]
            up = self._buffer("band" if k == 0 else "upsampled", (1, y.shape[1], *slice_size), y)
            torch.ops.aten.upsample_bilinear2d.out(y[n : n + 1, :, lo:hi], slice_size, False, None, None, out=up)
            rows = up[:, :, r0 - lo * s : r1 - lo * s]
            acc = rows if acc is None else acc.add_(rows)
        return acc

    def _classify_into(self, out: torch.Tensor, acc: torch.Tensor) -> None:
        """The 1x1 classifier over the NHWC band `acc` (1, C, rows, W), written into `out`, a (classes, rows, W) slice
        of the NCHW logits, as one matrix product (classes x C) @ (C x pixels)."""
        weight = self.classifier.weight.view(self.classifier.out_channels, -1)
        pixels = acc[0].permute(1, 2, 0).reshape(-1, weight.shape[1]).t()  # a view: C x pixels over NHWC memory
        target = out.view(out.shape[0], -1)
        bias = self.classifier.bias
        if bias is None:
            torch.mm(weight, pixels, out=target)
        else:
            torch.addmm(bias[:, None], weight, pixels, out=target)

    def _buffer(self, tag: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An NHWC tensor of the NCHW `shape`, `like`'s dtype and device, over the decoder's kept flat buffer `tag`,
        which is made again only when it is too small or of another dtype or device. Not thread-safe: one model, one
        caller at a time (as every inference loop here)."""
        buffers: dict[str, torch.Tensor] = self.__dict__.setdefault("_buffers_kept", {})  # not module state
        b, c, h, w = shape
        return _kept(buffers, tag, b * c * h * w, like).view(b, h, w, c).permute(0, 3, 1, 2)

    def _conv1x1_into(self, conv: nn.Conv2d, feat: torch.Tensor, tag: str) -> torch.Tensor:
        """`conv(feat)` for a 1x1 conv, written into the kept buffer `tag` as a matrix product over the NHWC pixels
        (falls back to the conv under autocast, where out= products are not cast)."""
        if torch.is_autocast_enabled(feat.device.type) or not feat.is_contiguous(memory_format=torch.channels_last):
            return conv(feat)
        b, cin, h, w = feat.shape
        out = self._buffer(tag, (b, conv.out_channels, h, w), feat)
        pixels = feat.permute(0, 2, 3, 1).reshape(-1, cin)  # a view: NHWC memory
        weight = conv.weight.view(conv.out_channels, cin).t()
        torch.addmm(conv.bias, pixels, weight, out=out.permute(0, 2, 3, 1).view(-1, conv.out_channels))
        return out
