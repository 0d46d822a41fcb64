"""SegFormer: Mix Transformer (MiT) encoder + All-MLP decoder.

Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with Transformers", NeurIPS 2021
(arXiv 2105.15203). The network follows the authors' release (NVlabs/SegFormer, `mix_transformer.py` and
`segformer_head.py`), which the Hugging Face port reproduces; where the release and the paper disagree, the release
wins, because the checkpoints people benchmark come from it:

- MLP expansion 4 in every stage (the paper's appendix says 8 for early stages);
- B2/B3 stage-2 depth 4 (the paper says 3);
- the reduction conv has stride 8/4/2/1, i.e. the paper's R (Eq. 2) is the square of that;
- LayerNorm eps 1e-6 in blocks and stage norms, 1e-5 in the patch-embedding and reduction norms (the Hugging Face
  port uses 1e-5 everywhere; pass `ln_eps=1e-5` to match it bit for bit).

Two decoder flavours are registered:

- `segformer-b0` .. `segformer-b5`: the original All-MLP decoder, one Linear per stage (width 256 for B0/B1, 768 for
  B2-B5), upsampled to 1/4, concatenated c4, c3, c2, c1, then a 1x1 conv + BN + ReLU, dropout and a 1x1 classifier.
- `segformer-b0-mmseg` .. `segformer-b5-mmseg`: the mmsegmentation re-implementation (`SegformerHead`), whose
  Cityscapes checkpoints are the most used: a 1x1 conv + BN + ReLU per stage, width 256 for every variant, upsampled
  and concatenated c1..c4, then a 1x1 fusion conv + BN + ReLU. Its encoder is the same computation (mmseg writes
  Mix-FFN as 1x1 convs and attention as `nn.MultiheadAttention`; the checkpoint converter maps those tensors) with
  LayerNorm eps 1e-6 everywhere.

Checkpoints: Hugging Face folders / hub ids in the local cache, the NVlabs `.pth` release, mmseg `.pth` files, and
ImageNet encoder-only checkpoints. Conversion functions are pure (`state_dict -> state_dict`), pop every key they
map and fail on leftovers; loading is strict. The fast inference path (`SegFormer.fast_path()`: blocks in bands of
rows, a folded decoder) is in `models/segformer_fast.py`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.base import ModelMeta, WeightsInfo
from segbench.models.checkpoint import CheckpointError, load_strict, read_state_dict, resolve_weights, sha256_file
from segbench.models.registry import register_model
from segbench.models.segformer_fast import FoldedMLPDecoder, banded_block, embed_patches, layer_norm

MIN_INPUT_SIZE = 32  # four stride-2+ stages and the 8x8 reduction conv of stage 1 need at least 32 px


# --------------------------------------------------------------------------------------------------------------------
# Encoder blocks
# --------------------------------------------------------------------------------------------------------------------


class OverlapPatchEmbed(nn.Module):
    """Overlapped patch merging (Sec. 3.1): a strided conv with kernel > stride, then LayerNorm.

    Stage 1 uses K=7, S=4, P=3; later stages K=3, S=2, P=1, so an H-pixel side becomes ceil(H / S).
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int, stride: int, eps: float):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[2:]
        x = self.norm(x.flatten(2).transpose(1, 2))  # B, C, H, W -> B, N, C
        return x, h, w


def _tokens_as_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Contiguous tokens (B, N, C) as a (B, C, H, W) map without a copy: the view is NHWC (channels_last) in memory.

    The convolutions inside a block (reduction conv, depthwise conv) then run in channels_last and return
    channels_last maps, whose `flatten(2).transpose(1, 2)` is again contiguous tokens. Transposing to a contiguous
    NCHW map and back instead copies the block's largest tensors twice: 20% of MiT-B0's time at 1024x2048 on CPU.
    """
    b, _, c = x.shape
    return x.view(b, h, w, c).permute(0, 3, 1, 2)


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention with sequence reduction (Sec. 3.1, Eq. 2).

    Keys and values come from the sequence shrunk by a `sr_ratio` x `sr_ratio` strided conv (sr_ratio = 8/4/2/1 by
    stage; the paper's reduction ratio R is sr_ratio**2), so attention costs O(N^2 / R) instead of O(N^2).
    Key and value share one fused linear `kv`, as in the original release.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, sr_eps: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(dim, eps=sr_eps)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)  # B, heads, N, d
        if self.sr_ratio > 1:
            x = self.sr(_tokens_as_map(x, h, w)).flatten(2).transpose(1, 2)  # -> B, N/R, C (a view: NHWC in memory)
            x = self.sr_norm(x)
        kv = self.kv(x).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)  # 2, B, heads, N/R, d
        x = F.scaled_dot_product_attention(q, kv[0], kv[1])  # softmax(q k^T / sqrt(d)) v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    """Mix-FFN (Eq. 3): linear -> 3x3 depthwise conv -> GELU -> linear. The depthwise conv leaks enough zero-padding
    information to replace positional encodings."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.dwconv(_tokens_as_map(self.fc1(x), h, w)).flatten(2).transpose(1, 2)  # a view: NHWC in memory
        return self.fc2(self.act(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MixFFN(LN(x)). (Stochastic depth is training-only.)"""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: int, eps: float, sr_eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio, sr_eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class MiTStage(nn.Module):
    """Encoder stage `i` of `cfg`: overlapped patch embedding, its blocks, LayerNorm; returns a B, C, H, W map."""

    def __init__(self, in_chans: int, cfg: MiTConfig, i: int):
        super().__init__()
        dim = cfg.embed_dims[i]
        self.patch_embed = OverlapPatchEmbed(in_chans, dim, cfg.patch_sizes[i], cfg.strides[i], cfg.aux_eps)
        self.blocks = nn.ModuleList(
            MiTBlock(dim, cfg.num_heads[i], cfg.sr_ratios[i], cfg.mlp_ratio, cfg.eps, cfg.aux_eps)
            for _ in range(cfg.depths[i])
        )
        self.norm = nn.LayerNorm(dim, eps=cfg.eps)

    def forward(self, x: torch.Tensor, banded: bool = False) -> torch.Tensor:
        """The stage's map (B, C, H, W): contiguous NCHW, or with `banded` (the fast path: blocks in bands, see
        `segformer_fast.banded_block`; inference only) the NHWC view of the tokens, which the next stage and the folded
        decoder's convs take without converting."""
        if banded:
            x, h, w = embed_patches(self.patch_embed, x)  # contiguous: the blocks update these tokens in place
            for block in self.blocks:
                x = banded_block(block, x, h, w)
            return _tokens_as_map(layer_norm(self.norm, x), h, w)
        x, h, w = self.patch_embed(x)
        for block in self.blocks:
            x = block(x, h, w)
        x = self.norm(x)
        return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)  # B, N, C -> B, C, H, W


@dataclass(frozen=True)
class MiTConfig:
    """Hyper-parameters of one Mix Transformer (Table 6 of the paper, corrected by the release; see module doc)."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)
    eps: float = 1e-6  # blocks and stage norms
    aux_eps: float = 1e-5  # patch-embedding and reduction norms


class MixTransformer(nn.Module):
    """The hierarchical MiT encoder: four stages at strides 4, 8, 16, 32; returns the four feature maps."""

    def __init__(self, cfg: MiTConfig, in_chans: int = 3):
        super().__init__()
        self.cfg = cfg
        chans = (in_chans, *cfg.embed_dims[:-1])
        self.stages = nn.ModuleList(MiTStage(chans[i], cfg, i) for i in range(4))
        self.out_channels = list(cfg.embed_dims)
        self.strides = [math.prod(cfg.strides[: i + 1]) for i in range(4)]

    def forward(self, x: torch.Tensor, banded: bool = False) -> list[torch.Tensor]:
        """The four maps; `banded`: the fast path's blocks in bands of rows (`segformer_fast.banded_block`), taken on
        the CPU without autograd only (the bands update tokens in place)."""
        h, w = x.shape[2:]
        if min(h, w) < MIN_INPUT_SIZE:
            raise ValueError(f"input {h}x{w} is too small for MiT: both sides must be at least {MIN_INPUT_SIZE} px")
        banded = banded and x.device.type == "cpu" and not torch.is_grad_enabled()
        features = []
        for stage in self.stages:
            x = stage(x, banded)
            features.append(x)
        return features


# --------------------------------------------------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------------------------------------------------


class ConvBNReLU(nn.Sequential):
    """Bias-free conv, BatchNorm, ReLU: mmcv's ConvModule with a BN norm. Padding keeps the size for odd kernels.
    (The baseline heads in `models/heads.py` use it too.)"""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, dilation: int = 1, groups: int = 1):
        super().__init__()
        pad = dilation * (kernel_size // 2)
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=pad, dilation=dilation, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x  # bilinear resize to the same size (align_corners=False) is the identity
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class AllMLPDecoder(nn.Module):
    """All-MLP decoder (Sec. 3.2, Eq. 4), as released.

    For each stage i: F_i' = Linear(C_i, C)(F_i), upsampled to 1/4; F = Linear(4C, C)(concat(F_4', F_3', F_2', F_1'))
    (a 1x1 conv + BN + ReLU); M = Linear(C, N_cls)(F) after dropout. Returns logits at the first map's stride.
    """

    def __init__(self, in_channels: list[int], embed_dim: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.in_channels = list(in_channels)
        self.embed_dim = embed_dim
        self.proj = nn.ModuleList(nn.Linear(c, embed_dim) for c in in_channels)  # one per stage, c1 first
        self.fuse = ConvBNReLU(embed_dim * len(in_channels), embed_dim)
        self.dropout = nn.Dropout2d(dropout)  # identity at inference
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[2:]
        outs = []
        for feat, proj in zip(features, self.proj):
            b, _, h, w = feat.shape
            x = proj(feat.flatten(2).transpose(1, 2))  # B, C_i, H, W -> B, N, C
            x = x.transpose(1, 2).reshape(b, -1, h, w)  # -> B, C, H, W
            outs.append(_resize(x, size).contiguous())  # stage 1 skips the resize and would stay NHWC-strided
        x = self.fuse(torch.cat(outs[::-1], dim=1))  # concatenated c4, c3, c2, c1
        return self.classifier(self.dropout(x))


class MMSegMLPDecoder(nn.Module):
    """mmsegmentation's `SegformerHead`: 1x1 conv + BN + ReLU per stage at its own resolution, upsampled to 1/4,
    concatenated c1..c4, fused by a 1x1 conv + BN + ReLU, dropout, 1x1 classifier. Width 256 for every variant."""

    def __init__(self, in_channels: list[int], embed_dim: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.in_channels = list(in_channels)
        self.embed_dim = embed_dim
        self.convs = nn.ModuleList(ConvBNReLU(c, embed_dim) for c in in_channels)
        self.fuse = ConvBNReLU(embed_dim * len(in_channels), embed_dim)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[2:]
        outs = [_resize(conv(feat), size) for feat, conv in zip(features, self.convs)]
        return self.classifier(self.dropout(self.fuse(torch.cat(outs, dim=1))))


# --------------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------------


class SegFormer(nn.Module):
    """MiT encoder + decoder. Input: a normalised float tensor (B, 3, H, W), H, W >= 32. Output: logits
    (B, num_classes, ceil(H/4), ceil(W/4))."""

    def __init__(self, encoder: MixTransformer, decode_head: nn.Module, meta: ModelMeta):
        super().__init__()
        self.backbone = encoder
        self.decode_head = decode_head
        self.meta = meta
        self.weights_info = WeightsInfo()
        self.banded = False  # the fast path's encoder (`fast_path`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self.backbone(x, self.banded))

    def architecture(self) -> SegFormer:
        """The model as published, for counting FLOPs and parameters comparable with papers.

        Itself unless the decoder is folded (`fold_decoder`); then a model sharing this encoder with an unfolded
        decoder of the same shapes (fresh weights: counts do not depend on them). Not for inference.
        """
        folded = self.decode_head
        if not isinstance(folded, FoldedMLPDecoder):
            return self
        published = MMSegMLPDecoder if folded.mmseg else AllMLPDecoder
        head = published(folded.in_channels, folded.embed_dim, folded.classifier.out_channels)
        arch = SegFormer(self.backbone, head.to(folded.classifier.weight.device).eval(), self.meta)
        arch.weights_info = self.weights_info
        return arch.eval()

    def fast_path(self) -> SegFormer:
        """Switch to segbench's fast inference path (`models/segformer_fast.py`), in place; weights must be loaded
        first. Inference only.

        - the decoder folded (`fold_decoder`): fewer FLOPs, the same function;
        - on the CPU, the encoder's blocks run in bands of rows (`banded_block`) and hand NHWC maps on: the largest
          buffers stay band-sized, so they are reused from band to band and image to image instead of fresh pages
          the kernel zeroes for every image (what ONNX Runtime's arena gives it), and stay in cache.
        """
        self.banded = True
        return self.fold_decoder()

    def fold_decoder(self) -> SegFormer:
        """Switch to the fast inference decoder (`FoldedMLPDecoder`), in place; weights must be loaded first.

        The folded model computes the same function (up to rounding) but is inference-only: its state dict is no
        longer the checkpoint layout, so save the model before folding.
        """
        if not isinstance(self.decode_head, FoldedMLPDecoder):
            self.decode_head = FoldedMLPDecoder(self.decode_head.eval()).eval()
        return self


# --------------------------------------------------------------------------------------------------------------------
# Checkpoint conversion: pure functions, state_dict in -> state_dict out (this module's key names)
# --------------------------------------------------------------------------------------------------------------------

# Native key layout, for reference:
#   backbone.stages.{i}.patch_embed.{proj,norm}.*
#   backbone.stages.{i}.blocks.{j}.{norm1,norm2}.*, .attn.{q,kv,sr,sr_norm,proj}.*, .mlp.{fc1,dwconv,fc2}.*
#   backbone.stages.{i}.norm.*
#   decode_head.{proj.{i},fuse.{conv,bn},classifier}.*          (original)
#   decode_head.{convs.{i}.{conv,bn},fuse.{conv,bn},classifier}.* (mmseg)


def detect_format(sd: dict[str, torch.Tensor]) -> str:
    """Name the key layout of a SegFormer / MiT state dict.

    Returns one of `native`, `hf`, `hf-encoder`, `nvlabs`, `nvlabs-encoder`, `mmseg`, `mmseg-encoder`, `unknown`.
    """
    keys = list(sd)

    def has(pattern: str) -> bool:
        return any(re.search(pattern, k) for k in keys)

    if has(r"^backbone\.stages\.\d+\.") or has(r"^decode_head\.(proj|convs)\.\d+\.") and has(r"^decode_head\.fuse\."):
        return "native"
    if has(r"^segformer\.(encoder|stages)\."):
        return "hf" if has(r"^decode_head\.") else "hf-encoder"
    if has(r"^(backbone\.)?block1\.\d+\.attn\.q\."):
        return "nvlabs" if has(r"^decode_head\.") else "nvlabs-encoder"
    if has(r"^(backbone\.)?layers\.\d+\.1\.\d+\.attn\.attn\.in_proj_weight"):
        return "mmseg" if has(r"^decode_head\.") else "mmseg-encoder"
    return "unknown"


# transformers >= 5 names its modules differently in memory (`save_pretrained` still writes the hub's legacy names);
# a `torch.save(model.state_dict())` from it is first brought back to the legacy names.
_HF5_TO_LEGACY = [
    (r"segformer\.stages\.(\d+)\.patch_embeddings\.", r"segformer.encoder.patch_embeddings.\1."),
    (r"segformer\.stages\.(\d+)\.layer_norm\.", r"segformer.encoder.layer_norm.\1."),
    (r"segformer\.stages\.(\d+)\.blocks\.(\d+)\.", r"segformer.encoder.block.\1.\2."),
    (r"\.layernorm_before\.", ".layer_norm_1."),
    (r"\.layernorm_after\.", ".layer_norm_2."),
    (r"\.attention\.q_proj\.", ".attention.self.query."),
    (r"\.attention\.k_proj\.", ".attention.self.key."),
    (r"\.attention\.v_proj\.", ".attention.self.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.attention\.sequence_reduction\.sequence_reduction\.", ".attention.self.sr."),
    (r"\.attention\.sequence_reduction\.layer_norm\.", ".attention.self.layer_norm."),
    (r"\.mlp\.fc(1|2)\.", r".mlp.dense\1."),
    (r"^decode_head\.linear_projections\.", "decode_head.linear_c."),
]


def _hf_legacy_name(key: str) -> str:
    for pattern, repl in _HF5_TO_LEGACY:
        key = re.sub(pattern, repl, key)
    return key


def convert_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face `SegformerForSemanticSegmentation` / `SegformerModel` layout (as `save_pretrained` writes it).

    The port keeps key and value apart (`attention.self.key` / `.value`); they are fused into `kv` ([k; v]).
    """
    if detect_format(sd) == "native":
        return dict(sd)
    sd = {_hf_legacy_name(k): v for k, v in sd.items()}
    enc = r"segformer\.encoder"
    blk = enc + r"\.block\.(\d+)\.(\d+)"

    def stage(m: re.Match) -> str:
        return f"backbone.stages.{m[1]}"

    def base(m: re.Match) -> str:
        return f"backbone.stages.{m[1]}.blocks.{m[2]}"

    rules = [
        (enc + r"\.patch_embeddings\.(\d+)\.proj\.(\w+)", lambda m: f"{stage(m)}.patch_embed.proj.{m[2]}"),
        (enc + r"\.patch_embeddings\.(\d+)\.layer_norm\.(\w+)", lambda m: f"{stage(m)}.patch_embed.norm.{m[2]}"),
        (blk + r"\.layer_norm_(1|2)\.(\w+)", lambda m: f"{base(m)}.norm{m[3]}.{m[4]}"),
        (blk + r"\.attention\.self\.query\.(\w+)", lambda m: f"{base(m)}.attn.q.{m[3]}"),
        (blk + r"\.attention\.self\.key\.(\w+)", lambda m: f"{base(m)}.attn.k.{m[3]}"),
        (blk + r"\.attention\.self\.value\.(\w+)", lambda m: f"{base(m)}.attn.v.{m[3]}"),
        (blk + r"\.attention\.self\.sr\.(\w+)", lambda m: f"{base(m)}.attn.sr.{m[3]}"),
        (blk + r"\.attention\.self\.layer_norm\.(\w+)", lambda m: f"{base(m)}.attn.sr_norm.{m[3]}"),
        (blk + r"\.attention\.output\.dense\.(\w+)", lambda m: f"{base(m)}.attn.proj.{m[3]}"),
        (blk + r"\.mlp\.dense(1|2)\.(\w+)", lambda m: f"{base(m)}.mlp.fc{m[3]}.{m[4]}"),
        (blk + r"\.mlp\.dwconv\.dwconv\.(\w+)", lambda m: f"{base(m)}.mlp.dwconv.{m[3]}"),
        (enc + r"\.layer_norm\.(\d+)\.(\w+)", lambda m: f"backbone.stages.{m[1]}.norm.{m[2]}"),
        (r"decode_head\.linear_c\.(\d+)\.proj\.(\w+)", lambda m: f"decode_head.proj.{m[1]}.{m[2]}"),
        (r"decode_head\.linear_fuse\.weight", lambda m: "decode_head.fuse.conv.weight"),
        (r"decode_head\.batch_norm\.(\w+)", lambda m: f"decode_head.fuse.bn.{m[1]}"),
        (r"decode_head\.classifier\.(\w+)", lambda m: f"decode_head.classifier.{m[1]}"),
        (r"classifier\.(weight|bias)", lambda m: ""),  # ImageNet head of encoder-only (`nvidia/mit-bX`) checkpoints
    ]
    renamed = _apply_rules(sd, rules)
    out = {}
    for k, v in renamed.items():
        if ".attn.k." in k:
            out[k.replace(".attn.k.", ".attn.kv.")] = torch.cat([v, renamed[k.replace(".attn.k.", ".attn.v.")]], dim=0)
        elif ".attn.v." not in k:
            out[k] = v
    return out


def convert_nvlabs(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original NVlabs release (`mit_bX.pth` ImageNet encoders and `segformer.bX.*.pth` segmentation models)."""
    if detect_format(sd) == "native":
        return dict(sd)

    def stage(one_based: str) -> str:  # block1 -> stage 0
        return str(int(one_based) - 1)

    bb = r"(?:backbone\.)?"
    blk = bb + r"block(\d)\.(\d+)"

    def base(m: re.Match) -> str:
        return f"backbone.stages.{stage(m[1])}.blocks.{m[2]}"

    rules = [
        (bb + r"patch_embed(\d)\.proj\.(\w+)", lambda m: f"backbone.stages.{stage(m[1])}.patch_embed.proj.{m[2]}"),
        (bb + r"patch_embed(\d)\.norm\.(\w+)", lambda m: f"backbone.stages.{stage(m[1])}.patch_embed.norm.{m[2]}"),
        (blk + r"\.(norm1|norm2)\.(\w+)", lambda m: f"{base(m)}.{m[3]}.{m[4]}"),
        (blk + r"\.attn\.(q|kv|sr|proj)\.(\w+)", lambda m: f"{base(m)}.attn.{m[3]}.{m[4]}"),
        (blk + r"\.attn\.norm\.(\w+)", lambda m: f"{base(m)}.attn.sr_norm.{m[3]}"),
        (blk + r"\.mlp\.(fc1|fc2)\.(\w+)", lambda m: f"{base(m)}.mlp.{m[3]}.{m[4]}"),
        (blk + r"\.mlp\.dwconv\.dwconv\.(\w+)", lambda m: f"{base(m)}.mlp.dwconv.{m[3]}"),
        (bb + r"norm(\d)\.(\w+)", lambda m: f"backbone.stages.{stage(m[1])}.norm.{m[2]}"),
        (r"decode_head\.linear_c(\d)\.proj\.(\w+)", lambda m: f"decode_head.proj.{stage(m[1])}.{m[2]}"),
        (r"decode_head\.linear_fuse\.conv\.(\w+)", lambda m: f"decode_head.fuse.conv.{m[1]}"),
        (r"decode_head\.linear_fuse\.bn\.(\w+)", lambda m: f"decode_head.fuse.bn.{m[1]}"),
        (r"decode_head\.linear_pred\.(\w+)", lambda m: f"decode_head.classifier.{m[1]}"),
        # BaseDecodeHead's own `conv_seg` is built but never called by the released SegFormerHead (it predicts with
        # `linear_pred`), and the ImageNet encoders carry a classification `head`: neither is part of the network.
        (r"decode_head\.conv_seg\.(\w+)", lambda m: ""),
        (r"head\.(weight|bias)", lambda m: ""),
    ]
    return _apply_rules(sd, rules)


def convert_mmseg(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmsegmentation's MixVisionTransformer + SegformerHead (0.x and 1.x share the layout), into the mmseg flavour.

    `attn.attn.in_proj_weight` stacks q, k, v (3C x C): q goes to `q`, k and v stay fused as `kv`. Mix-FFN's
    1x1 convs (`ffn.layers.0` and `.4`) become linears, its depthwise conv is `ffn.layers.1`.
    """
    if detect_format(sd) == "native":
        return dict(sd)
    bb = r"(?:backbone\.)?layers\.(\d+)"
    blk = bb + r"\.1\.(\d+)"

    def base(m: re.Match) -> str:
        return f"backbone.stages.{m[1]}.blocks.{m[2]}"

    rules = [
        (bb + r"\.0\.projection\.(\w+)", lambda m: f"backbone.stages.{m[1]}.patch_embed.proj.{m[2]}"),
        (bb + r"\.0\.norm\.(\w+)", lambda m: f"backbone.stages.{m[1]}.patch_embed.norm.{m[2]}"),
        (blk + r"\.(norm1|norm2)\.(\w+)", lambda m: f"{base(m)}.{m[3]}.{m[4]}"),
        (blk + r"\.attn\.attn\.in_proj_(weight|bias)", lambda m: f"{base(m)}.attn.in_proj.{m[3]}"),
        (blk + r"\.attn\.attn\.out_proj\.(\w+)", lambda m: f"{base(m)}.attn.proj.{m[3]}"),
        (blk + r"\.attn\.sr\.(\w+)", lambda m: f"{base(m)}.attn.sr.{m[3]}"),
        (blk + r"\.attn\.norm\.(\w+)", lambda m: f"{base(m)}.attn.sr_norm.{m[3]}"),
        (blk + r"\.ffn\.layers\.0\.(\w+)", lambda m: f"{base(m)}.mlp.fc1.{m[3]}"),
        (blk + r"\.ffn\.layers\.1\.(\w+)", lambda m: f"{base(m)}.mlp.dwconv.{m[3]}"),
        (blk + r"\.ffn\.layers\.4\.(\w+)", lambda m: f"{base(m)}.mlp.fc2.{m[3]}"),
        (bb + r"\.2\.(\w+)", lambda m: f"backbone.stages.{m[1]}.norm.{m[2]}"),
        (r"decode_head\.convs\.(\d)\.(conv|bn)\.(\w+)", lambda m: f"decode_head.convs.{m[1]}.{m[2]}.{m[3]}"),
        (r"decode_head\.fusion_conv\.(conv|bn)\.(\w+)", lambda m: f"decode_head.fuse.{m[1]}.{m[2]}"),
        (r"decode_head\.conv_seg\.(\w+)", lambda m: f"decode_head.classifier.{m[1]}"),
    ]
    out = {}
    for k, v in _apply_rules(sd, rules).items():
        if ".attn.in_proj." in k:
            q, kv = v[: v.shape[0] // 3], v[v.shape[0] // 3 :]  # [q; k; v] -> q and [k; v]
            out[k.replace(".in_proj.", ".q.")] = q
            out[k.replace(".in_proj.", ".kv.")] = kv
        elif re.search(r"\.mlp\.fc[12]\.weight$", k) and v.ndim == 4:
            out[k] = v.flatten(1)  # 1x1 conv (out, in, 1, 1) -> linear (out, in)
        else:
            out[k] = v
    return out


def _apply_rules(sd: dict, rules) -> dict:
    out, leftover = {}, []
    for key, value in sd.items():
        for pattern, fn in rules:
            m = re.fullmatch(pattern, key)
            if m:
                new = fn(m)
                if new:
                    out[new] = value
                break
        else:
            leftover.append(key)
    if leftover:
        raise CheckpointError(f"keys not understood by the converter: {', '.join(leftover[:5])}")
    return out


CONVERTERS = {
    "native": dict,
    "hf": convert_hf,
    "hf-encoder": convert_hf,
    "nvlabs": convert_nvlabs,
    "nvlabs-encoder": convert_nvlabs,
    "mmseg": convert_mmseg,
    "mmseg-encoder": convert_mmseg,
}


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------


def _variant_of(sd: dict[str, torch.Tensor]) -> str | None:
    """Which registered size a native state dict has (from stage widths and depths), if any."""
    try:
        dims = tuple(sd[f"backbone.stages.{i}.norm.weight"].shape[0] for i in range(4))
    except KeyError:
        return None
    depths = tuple(len({k.split(".")[4] for k in sd if k.startswith(f"backbone.stages.{i}.blocks.")}) for i in range(4))
    for name, cfg in MIT_CONFIGS.items():
        if cfg.embed_dims == dims and cfg.depths == depths:
            return name
    return None


def _check_hf_config(config: dict | None, model: SegFormer, source: str) -> None:
    if not config:
        return
    if config.get("model_type") not in (None, "segformer"):
        raise CheckpointError(f"{source}: config.json has model_type {config.get('model_type')!r}, not 'segformer'")
    cfg = model.backbone.cfg
    for field_name, ours in (("hidden_sizes", cfg.embed_dims), ("depths", cfg.depths)):
        if field_name in config and tuple(config[field_name]) != tuple(ours):
            raise CheckpointError(
                f"{source}: config.json {field_name}={config[field_name]} does not match "
                f"{model.meta.name} ({list(ours)})"
            )


def load_segformer_weights(model: SegFormer, weights: str, reinit_classifier: bool = False) -> None:
    """Detect a checkpoint's format, convert it and load it strictly into `model` (in place).

    An encoder-only checkpoint loads the encoder and leaves the decoder at random init (recorded in
    `model.weights_info`). A class-count mismatch is an error unless `reinit_classifier=True`.
    """
    resolved = resolve_weights(weights)
    _check_hf_config(resolved.config, model, weights)
    sd = read_state_dict(resolved.file)
    fmt = detect_format(sd)
    if fmt == "unknown":
        raise CheckpointError(
            f"{resolved.file}: not a SegFormer checkpoint this suite knows; accepted: a Hugging Face folder or hub id, "
            "the NVlabs release .pth, an mmseg .pth, an ImageNet MiT encoder, or a file saved by segbench"
        )
    mmseg_model = isinstance(model.decode_head, MMSegMLPDecoder)
    native = CONVERTERS[fmt](sd)
    if fmt == "mmseg" and not mmseg_model:
        raise CheckpointError(f"{resolved.file}: an mmseg SegFormer checkpoint; use {model.meta.name}-mmseg")
    if fmt in ("hf", "nvlabs") and mmseg_model:
        raise CheckpointError(
            f"{resolved.file}: an original-release SegFormer checkpoint ({fmt}); "
            f"use {model.meta.name.removesuffix('-mmseg')}"
        )
    if fmt == "native":
        has_convs = any(k.startswith("decode_head.convs.") for k in native)
        if has_convs != mmseg_model:
            other = model.meta.name.removesuffix("-mmseg") if mmseg_model else model.meta.name + "-mmseg"
            raise CheckpointError(f"{resolved.file}: a checkpoint of the other decoder flavour; use {other}")
    found = _variant_of(native)
    expected = model.meta.name.removeprefix("segformer-").removesuffix("-mmseg")
    if found is not None and found != expected:
        raise CheckpointError(
            f"{resolved.file}: a SegFormer-{found.upper()} checkpoint, but the model is {model.meta.name}"
        )
    encoder_only = fmt.endswith("-encoder")
    notes = []
    cls_key = "decode_head.classifier.weight"
    if not encoder_only and cls_key in native:
        n_ckpt, n_model = native[cls_key].shape[0], model.meta.num_classes
        if n_ckpt != n_model:
            if not reinit_classifier:
                from segbench.models.checkpoint import class_count_message

                raise CheckpointError(
                    class_count_message(weights, n_ckpt, n_model, alternative=", or reinit_classifier=True")
                )
            own = model.state_dict()
            native[cls_key] = own[cls_key]
            native["decode_head.classifier.bias"] = own["decode_head.classifier.bias"]
            notes.append(f"classifier re-initialised ({n_ckpt} -> {n_model} classes)")
    load_strict(model, native, str(resolved.file), ignore_missing="decode_head." if encoder_only else "")
    if encoder_only:
        notes.append("encoder-only checkpoint: the decoder is randomly initialised")
    model.weights_info = WeightsInfo(
        source=weights,
        path=str(resolved.file),
        format=fmt,
        sha256=sha256_file(resolved.file),
        random=encoder_only or bool(notes),
        notes=notes,
    )
    if notes:
        import warnings

        warnings.warn(f"{model.meta.name}: " + "; ".join(notes), stacklevel=3)


# --------------------------------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------------------------------

_WIDE = (64, 128, 320, 512)
MIT_CONFIGS: dict[str, MiTConfig] = {
    "b0": MiTConfig(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    "b1": MiTConfig(embed_dims=_WIDE, depths=(2, 2, 2, 2)),
    "b2": MiTConfig(embed_dims=_WIDE, depths=(3, 4, 6, 3)),
    "b3": MiTConfig(embed_dims=_WIDE, depths=(3, 4, 18, 3)),
    "b4": MiTConfig(embed_dims=_WIDE, depths=(3, 8, 27, 3)),
    "b5": MiTConfig(embed_dims=_WIDE, depths=(3, 6, 40, 3)),
    "tiny": MiTConfig(embed_dims=(8, 16, 16, 16), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 2)),  # for tests
}
DECODER_WIDTH = {"b0": 256, "b1": 256, "b2": 768, "b3": 768, "b4": 768, "b5": 768, "tiny": 16}


def mit_encoder(variant: str, ln_eps: float | None = None, mmseg: bool = False) -> MixTransformer:
    """A MiT encoder `b0`..`b5` or `tiny`. `mmseg=True` uses mmseg's eps (1e-6 everywhere); `ln_eps` overrides all."""
    if variant not in MIT_CONFIGS:
        raise ValueError(f"unknown MiT variant {variant!r}; valid: {', '.join(MIT_CONFIGS)}")
    cfg = MIT_CONFIGS[variant]
    if mmseg:
        cfg = replace(cfg, aux_eps=cfg.eps)
    if ln_eps is not None:
        cfg = replace(cfg, eps=ln_eps, aux_eps=ln_eps)
    return MixTransformer(cfg)


def _build(
    variant: str,
    mmseg: bool,
    num_classes: int = 19,
    weights: str | Path | None = None,
    ln_eps: float | None = None,
    reinit_classifier: bool = False,
    fast: bool = False,
) -> SegFormer:
    encoder = mit_encoder(variant, ln_eps=ln_eps, mmseg=mmseg)
    name = f"segformer-{variant}" + ("-mmseg" if mmseg else "")
    if mmseg:
        head = MMSegMLPDecoder(encoder.out_channels, 16 if variant == "tiny" else 256, num_classes)
    else:
        head = AllMLPDecoder(encoder.out_channels, DECODER_WIDTH[variant], num_classes)
    meta = ModelMeta(
        name=name,
        family="segformer",
        backbone=f"mit-{variant}",
        head="mlp-mmseg" if mmseg else "mlp",
        num_classes=num_classes,
        output_stride=4,
        paper="Xie et al. 2021, arXiv 2105.15203",
    )
    model = SegFormer(encoder, head, meta)
    if weights is not None:
        load_segformer_weights(model, str(weights), reinit_classifier=reinit_classifier)
    if fast:
        model.fast_path()
    return model.eval()


@register_model("segformer-b0", group="segformer")
def segformer_b0(**kwargs: Any) -> SegFormer:
    """SegFormer-B0: MiT-B0 and the original All-MLP decoder (width 256)."""
    return _build("b0", mmseg=False, **kwargs)


@register_model("segformer-b0-mmseg", group="segformer")
def segformer_b0_mmseg(**kwargs: Any) -> SegFormer:
    """SegFormer-B0: MiT-B0 and mmseg's decoder (width 256)."""
    return _build("b0", mmseg=True, **kwargs)


@register_model("segformer-b1", group="segformer")
def segformer_b1(**kwargs: Any) -> SegFormer:
    """SegFormer-B1: MiT-B1 and the original All-MLP decoder (width 256)."""
    return _build("b1", mmseg=False, **kwargs)


@register_model("segformer-b1-mmseg", group="segformer")
def segformer_b1_mmseg(**kwargs: Any) -> SegFormer:
    """SegFormer-B1: MiT-B1 and mmseg's decoder (width 256)."""
    return _build("b1", mmseg=True, **kwargs)


@register_model("segformer-b2", group="segformer")
def segformer_b2(**kwargs: Any) -> SegFormer:
    """SegFormer-B2: MiT-B2 and the original All-MLP decoder (width 768)."""
    return _build("b2", mmseg=False, **kwargs)


@register_model("segformer-b2-mmseg", group="segformer")
def segformer_b2_mmseg(**kwargs: Any) -> SegFormer:
    """SegFormer-B2: MiT-B2 and mmseg's decoder (width 256)."""
    return _build("b2", mmseg=True, **kwargs)


@register_model("segformer-b3", group="segformer")
def segformer_b3(**kwargs: Any) -> SegFormer:
    """SegFormer-B3: MiT-B3 and the original All-MLP decoder (width 768)."""
    return _build("b3", mmseg=False, **kwargs)


@register_model("segformer-b3-mmseg", group="segformer")
def segformer_b3_mmseg(**kwargs: Any) -> SegFormer:
    """SegFormer-B3: MiT-B3 and mmseg's decoder (width 256)."""
    return _build("b3", mmseg=True, **kwargs)


@register_model("segformer-b4", group="segformer")
def segformer_b4(**kwargs: Any) -> SegFormer:
    """SegFormer-B4: MiT-B4 and the original All-MLP decoder (width 768)."""
    return _build("b4", mmseg=False, **kwargs)


@register_model("segformer-b4-mmseg", group="segformer")
def segformer_b4_mmseg(**kwargs: Any) -> SegFormer:
    """SegFormer-B4: MiT-B4 and mmseg's decoder (width 256)."""
    return _build("b4", mmseg=True, **kwargs)


@register_model("segformer-b5", group="segformer")
def segformer_b5(**kwargs: Any) -> SegFormer:
    """SegFormer-B5: MiT-B5 and the original All-MLP decoder (width 768)."""
    return _build("b5", mmseg=False, **kwargs)


@register_model("segformer-b5-mmseg", group="segformer")
def segformer_b5_mmseg(**kwargs: Any) -> SegFormer:
    """SegFormer-B5: MiT-B5 and mmseg's decoder (width 256)."""
    return _build("b5", mmseg=True, **kwargs)


@register_model("segformer-tiny", group="segformer")
def segformer_tiny(**kwargs: Any) -> SegFormer:
    """SegFormer with a tiny MiT (one block per stage, widths 8-16) and the All-MLP decoder, for tests."""
    return _build("tiny", mmseg=False, **kwargs)


@register_model("segformer-tiny-mmseg", group="segformer")
def segformer_tiny_mmseg(**kwargs: Any) -> SegFormer:
    """SegFormer with a tiny MiT (one block per stage, widths 8-16) and mmseg's decoder, for tests."""
    return _build("tiny", mmseg=True, **kwargs)
