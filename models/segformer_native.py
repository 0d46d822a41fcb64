"""segbench's compiled CPU kernels for SegFormer's fast path: attention in fp32 with AVX-512 (`segformer_attention.c`)
and in bf16 with AMX (`segformer_attention_amx.c`), the folded decoder's sum of upsampled maps
(`segformer_upsample.c`) and LayerNorm (`segformer_layernorm.c`) in fp32 or bf16, built into one library.

- **Attention.** The fast path (`banded_block` in `models/segformer_fast.py`) spends most of its CPU time in
  attention: in SegFormer-B0 at 1024x2048, 60% of it in PyTorch's flash-attention kernel, which runs SegFormer's shapes
  (heads of 32 or 64, up to 2,048 keys) at 81-108 GMAC/s on the 2-core AVX-512 machine this was written on (GEMM peak
  about 150 GMAC/s). The kernel here computes the same softmax(q k^T / sqrt(d)) v without online rescaling, with the
  keys transposed in cache-sized tiles and eight query rows per register block, at 100-115 GMAC/s on the same shapes;
  it hands out work to its threads dynamically (a thread slowed by another process takes fewer rows instead of holding
  the others up), and it reads the query projection's (tokens, channels) output as it is and writes the output
  projection's input, so the transposes around PyTorch's (batch, heads, tokens, dim) layout go too. The exponentials
  and the score passes, about a quarter of its work at a head of 32, are what keep it from the GEMM peak.
- **Attention in bf16.** A bf16 model (the deploy grid's fast bf16) on a CPU with AMX-BF16: the two products run on
  AMX tiles and the softmax in fp32 with a degree-3 exp2 (bf16 rounds its weights far coarser), at 260-320 GMAC/s at
  a head of 32 and 440-550 at a head of 64 on the same machine, against 185-205 and 330-355 for PyTorch's bf16
  flash attention (B0 bf16 at 1024x2048: 0.40 s instead of 0.63 s). Without AMX, bf16 takes PyTorch's.
- **Upsampled sum.** `FoldedMLPDecoder` adds three coarse maps, each bilinearly upsampled to quarter resolution, band
  by band. PyTorch upsamples each into a buffer that is then added: the band is written and read once per map. The
  kernel blends each map's two source rows once per output row and writes every output pixel once, from all maps
  (B0 at 1024x2048: 13 ms against 53 ms; B2: 54 ms against 300 ms, on the same machine). bf16 maps are summed in fp32
  and rounded once.
- **LayerNorm.** PyTorch's kernel is made for wide rows; at MiT's 32 and 64 channels it ran at 5-20 GB/s here. The
  kernel keeps each row in registers and runs at about twice its speed (bf16: widened, normed in fp32, rounded once).

They are C with AVX-512 intrinsics and OpenMP, whose threads are torch's own (the library's libgomp.so.1 resolves to
the one torch loaded; a second set of threads would compete with torch's while those spin after each of its ops). The
library is compiled on first use by the system's C compiler (`$CC`, else `cc` or `gcc`) into `$SEGBENCH_CACHE/kernels/`
under a name hashing the sources, flags and compiler, atomically (a partly written library is never loaded), checked
once against PyTorch (`scaled_dot_product_attention`, `interpolate`) on small ragged cases, then loaded with ctypes
(which releases the GIL during each call). Where any of that is not possible (no AVX-512 in
`torch.backends.cpu.get_cpu_capability()`, no compiler, a failed build or check, `SEGBENCH_NATIVE_KERNELS=0`),
`prepare` returns None, `upsampled_sum` returns False and the fast path uses PyTorch's operators: the same functions,
slower. `status()` says which run and why (env.json records it).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import math
import os
import secrets
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from segbench.models import segformer_kernels as kernels
from segbench.paths import cache_dir, make_folder

SOURCES = tuple(
    Path(__file__).with_name(name)
    for name in ("segformer_attention.c", "segformer_attention_amx.c", "segformer_upsample.c", "segformer_layernorm.c")
)
"""Compiled together into one library."""
HEADERS = tuple(Path(__file__).with_name(name) for name in ("segformer_attention.h", "segformer_simd.h"))
"""Included by the sources (found through -I with their folder); part of the library's hash."""
COMPILE_FLAGS = ("-O3", "-mavx512f", "-mavx512dq", "-mfma", "-fopenmp", "-fPIC", "-shared")
SWITCH_ENV = "SEGBENCH_NATIVE_KERNELS"
"""Set to 0 to keep the fast path on PyTorch's operators (its attention, upsampling and LayerNorm)."""
_FORMER_SWITCH_ENV = "SEGBENCH_NATIVE_ATTENTION"
"""The switch's name while the attention was the only kernel: 0 still turns the kernels off, with a warning."""
LIBRARY = "segformer_native"
"""The library's file name stem in the cache."""
KEY_TILE = 32
"""Keys per tile of the transposed keys (`segformer_attention.c` reads them so)."""
_ATTENTION, _UPSAMPLE = "segbench_attention_f32", "segbench_upsample_sum_f32"
_ATTENTION_BF16, _AMX_READY, _UPSAMPLE_BF16 = (
    "segbench_attention_bf16",
    "segbench_amx_ready",
    "segbench_upsample_sum_bf16",
)
_LAYER_NORM, _LAYER_NORM_BF16 = "segbench_layer_norm_f32", "segbench_layer_norm_bf16"
_P, _L, _I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int


@dataclass(frozen=True)
class KernelStatus:
    """Whether segbench's kernels run here (`available`) and, in words, which the fast path uses and why."""

    available: bool
    detail: str


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _build(compiler: str, version: str) -> Path:
    """The compiled library in the cache, built now unless one of the same sources, flags and compiler is there."""
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in (*SOURCES, *HEADERS)))
    digest.update(" ".join((*COMPILE_FLAGS, compiler, version)).encode())
    target = cache_dir() / "kernels" / f"{LIBRARY}-{digest.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    make_folder(target.parent)
    _remove_stale_partials(target.parent)
    partial = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        subprocess.run(
            [compiler, *COMPILE_FLAGS, f"-I{HEADERS[0].parent}", *map(str, SOURCES), "-o", str(partial)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        os.replace(partial, target)  # atomic: another process sees no library or a whole one
    finally:
        partial.unlink(missing_ok=True)
    return target


STALE_PARTIAL_S = 600
"""A `.partial` library older than this (a build takes about a second) was left by a killed build: removed."""


def _remove_stale_partials(folder: Path) -> None:
    now = time.time()
    for left in folder.glob(f".{LIBRARY}-*.partial"):
        with contextlib.suppress(OSError):  # another process removed it first
            if now - left.stat().st_mtime > STALE_PARTIAL_S:
                left.unlink()


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    attention, upsample = getattr(lib, _ATTENTION), getattr(lib, _UPSAMPLE)
    attention_bf16, upsample_bf16 = getattr(lib, _ATTENTION_BF16), getattr(lib, _UPSAMPLE_BF16)
    amx_ready = getattr(lib, _AMX_READY)
    attention.argtypes = attention_bf16.argtypes = [_P, _L, _P, _P, _P, _L, _L, _L, _I, _I, ctypes.c_float, _I]
    upsample.argtypes = upsample_bf16.argtypes = [_P, _L, _L, _L, _L, _L, _P, _P, _P, _I, _I]
    amx_ready.argtypes = []
    layer_norm, layer_norm_bf16 = getattr(lib, _LAYER_NORM), getattr(lib, _LAYER_NORM_BF16)
    layer_norm.argtypes = layer_norm_bf16.argtypes = [_P, _P, _L, _L, _P, _P, ctypes.c_float, _I]
    for fn in (attention, attention_bf16, upsample, upsample_bf16, amx_ready, layer_norm, layer_norm_bf16):
        fn.restype = _I
    return lib


def missing_requirement() -> str | None:
    """Why the kernels cannot be built here (switched off, no AVX-512, no C compiler), or None when they can be."""
    if os.environ.get(SWITCH_ENV, "1").strip() == "0":
        return f"{SWITCH_ENV}=0"
    if os.environ.get(_FORMER_SWITCH_ENV, "1").strip() == "0":
        warnings.warn(f"segbench: {_FORMER_SWITCH_ENV} is now {SWITCH_ENV}; set that instead", FutureWarning, 2)
        return f"{_FORMER_SWITCH_ENV}=0"
    if (capability := torch.backends.cpu.get_cpu_capability()) not in ("AVX512", "AMX"):
        return f"this CPU runs ATen at {capability}, not AVX512"
    if _compiler() is None:
        return "no C compiler: set CC or install gcc to build segbench's kernels"
    return None


class _Loaded(NamedTuple):
    lib: ctypes.CDLL | None
    detail: str
    bf16: bool  # whether the bf16 attention kernel (AMX) runs here too


@functools.cache
def _load() -> _Loaded:
    """The loaded library, or None and why not, and whether its bf16 attention runs (decided once per process)."""
    compiler = _compiler()
    if (missing := missing_requirement()) is not None or compiler is None:
        return _Loaded(None, f"PyTorch's operators ({missing})", False)
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60, check=True)
        version_line = (version.stdout.splitlines() or ["unknown version"])[0]
        path = _build(compiler, version_line)
        try:
            lib = _open(path)
        except (OSError, AttributeError):  # a damaged cached library: build it again once
            path.unlink(missing_ok=True)
            lib = _open(_build(compiler, version_line))
    except (OSError, AttributeError, subprocess.SubprocessError) as exc:
        said = getattr(exc, "stderr", None)  # the compiler's own message where it ran (its first 500 characters)
        reason = said.decode(errors="replace").strip()[:500] if isinstance(said, bytes) and said else str(exc)
        detail = f"PyTorch's operators (building segbench's kernels with {compiler} failed: {reason})"
        warnings.warn(f"segbench fast path: {detail}", RuntimeWarning, stacklevel=2)
        return _Loaded(None, detail, False)
    if not _agrees(lib):
        detail = (
            f"PyTorch's operators (segbench's kernels {path}, built by {version_line}, disagreed with PyTorch on their "
            f"check; try another compiler through CC, or set {SWITCH_ENV}=0 to skip them)"
        )
        warnings.warn(f"segbench fast path: {detail}", RuntimeWarning, stacklevel=2)
        return _Loaded(None, detail, False)
    bf16, bf16_detail = _bf16_attention(lib, path)
    detail = (
        f"segbench's AVX-512 kernels: attention (fp32; {bf16_detail}), upsampled sum and LayerNorm (fp32, bf16) "
        f"({version_line}; {path})"
    )
    return _Loaded(lib, detail, bf16)


def _bf16_attention(lib: ctypes.CDLL, path: Path) -> tuple[bool, str]:
    """Whether the library's bf16 attention runs here (AMX, allowed by the OS, and right on its check), in words."""
    if getattr(lib, _AMX_READY)() != 1:
        return False, "bf16 takes PyTorch's: no AMX-BF16 on this CPU, or the OS does not allow it"
    if not _attention_agrees(lib, torch.bfloat16, BF16_CHECK_TOLERANCE, BF16_CHECK_TOLERANCE):
        warnings.warn(
            f"segbench fast path: the bf16 attention kernel in {path} disagreed with PyTorch on its check; bf16 "
            "models take PyTorch's attention",
            RuntimeWarning,
            stacklevel=3,
        )
        return False, "bf16 takes PyTorch's: the AMX kernel disagreed with PyTorch on its check"
    return True, "bf16 with AMX"


def _agrees(lib: ctypes.CDLL) -> bool:
    """Each kernel against PyTorch on small ragged cases: the fp32 attention, the upsampled sum and LayerNorm (fp32 and
    bf16). The bf16 attention has its own check (`_bf16_attention`): it needs AMX."""
    return _attention_agrees(lib, torch.float32, 1e-4, 1e-5) and _upsampled_sum_agrees(lib) and _layer_norm_agrees(lib)


def _attention_agrees(lib: ctypes.CDLL, dtype: torch.dtype, rtol: float, atol: float) -> bool:
    """The attention kernel for `dtype` against PyTorch's in fp32 on the same inputs: heads of 32, 64 and 96 channels
    (each unrolled size and another), queries past a block and keys past a tile."""
    gen = torch.Generator().manual_seed(0)
    for heads, dim, nq, nk in ((2, 32, 37, 45), (1, 64, 9, 64), (1, 96, 3, 7)):
        q = torch.randn(1, nq, heads * dim, generator=gen).to(dtype)
        kv = torch.randn(1, nk, 2 * heads * dim, generator=gen).to(dtype)
        got = _run(lib, KeysValues.of(kv, heads), q)
        ref = pytorch_attend(q.float(), kv.float(), heads)
        if got is None or not torch.allclose(got.float(), ref, rtol=rtol, atol=atol):
            return False
    return True


def _upsampled_sum_agrees(lib: ctypes.CDLL) -> bool:
    """The upsampled sum against PyTorch's in fp32 on the same maps, in fp32 and bf16 (summed in fp32, rounded once):
    a channel count past its blocks and factors that are not integers."""
    gen = torch.Generator().manual_seed(0)
    nhwc = torch.channels_last
    maps = [torch.randn(1, 144, h, w, generator=gen) for h, w in ((3, 5), (7, 4), (2, 2))]
    bf16 = BF16_CHECK_TOLERANCE
    for dtype, rtol, atol in ((torch.float32, 1e-4, 1e-5), (torch.bfloat16, bf16, bf16)):
        typed = [m.to(dtype).contiguous(memory_format=nhwc) for m in maps]
        out = torch.empty(1, 144, 5, 13, dtype=dtype).contiguous(memory_format=nhwc)
        ref = pytorch_upsampled_sum([m.float() for m in typed], (11, 13))[:, :, 4:9]
        if not (_upsample(lib, out, typed, 11, 4) and torch.allclose(out.float(), ref, rtol=rtol, atol=atol)):
            return False
    return True


def _layer_norm_agrees(lib: ctypes.CDLL) -> bool:
    """LayerNorm against PyTorch's at an unrolled width (160) and another (48), rows offset from 0, in fp32 and bf16."""
    gen = torch.Generator().manual_seed(0)
    for channels in (160, 48):
        x = torch.randn(7, channels, generator=gen) * 3 + 5
        weight, bias = torch.randn(channels, generator=gen), torch.randn(channels, generator=gen)
        for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, BF16_CHECK_TOLERANCE)):
            xd, wd, bd = x.to(dtype), weight.to(dtype), bias.to(dtype)
            ref = F.layer_norm(xd.float(), (channels,), wd.float(), bd.float(), 1e-6)
            got = _layer_norm(lib, xd, wd, bd, 1e-6)
            if got is None or not torch.allclose(got.float(), ref, rtol=tolerance, atol=tolerance):
                return False
    return True


BF16_CHECK_TOLERANCE = 1e-2
"""The bf16 kernels' checks against PyTorch's fp32 on the same bf16 inputs: outputs of about 1 differ by up to one
bf16 step (2^-8) where right, by tenths where a layout or a coordinate is wrong."""


def pytorch_attend(q: torch.Tensor, kv: torch.Tensor, heads: int) -> torch.Tensor:
    """PyTorch's kernel on what `MiTBlock`'s attention computes from the projected queries (B, N, C) and keys/values
    (B, M, 2C): the same (B, N, C) as `attend`."""
    b, n, c = q.shape
    k, v = kv.reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    qh = q.reshape(b, n, heads, c // heads).transpose(1, 2)
    return F.scaled_dot_product_attention(qh, k, v).transpose(1, 2).reshape(b, n, c)


def status() -> KernelStatus:
    """Which kernels the fast path's fp32 CPU blocks and decoder use, building and checking segbench's if not yet."""
    loaded = _load()
    return KernelStatus(loaded.lib is not None, loaded.detail)


@dataclass(frozen=True)
class KeysValues:
    """A block's keys and values in the kernel's layout, zero beyond the `keys` real ones, padded to a multiple of
    `KEY_TILE` keys. fp32 (`segformer_attention.c`): keys transposed in tiles (B, heads, tiles, D, KEY_TILE), values
    (B, heads, tiles * KEY_TILE, D). bf16 (`segformer_attention_amx.c`): AMX's pair-interleaved tiles, keys
    (B, heads, keys / 16, D / 32, 16, 16, 2) and values (B, heads, keys / 32, D / 16, 16, 16, 2)."""

    keys_t: torch.Tensor
    values: torch.Tensor
    keys: int
    heads: int
    source: torch.Tensor  # the projection's output it was made from (for PyTorch's kernel, should the call fail)

    @classmethod
    def of(cls, kv: torch.Tensor, heads: int) -> KeysValues:
        """From the key/value projection's output (B, M, 2C), fp32 or bf16: keys in its first C channels, values in the
        last C, each head's D = C / heads channels together."""
        b, m, c2 = kv.shape
        d = c2 // 2 // heads
        padded = math.ceil(m / KEY_TILE) * KEY_TILE
        both = kv.new_zeros(b, padded, 2, heads, d)
        both[:, :m] = kv.view(b, m, 2, heads, d)
        keys, values = both[:, :, 0], both[:, :, 1]  # (B, padded, heads, D)
        if kv.dtype == torch.bfloat16:
            keys_t = keys.reshape(b, padded // 16, 16, heads, d // 32, 16, 2).permute(0, 3, 1, 4, 5, 2, 6)
            values = values.reshape(b, padded // 32, 16, 2, heads, d // 16, 16).permute(0, 4, 1, 5, 2, 6, 3)
        else:
            keys_t = keys.view(b, padded // KEY_TILE, KEY_TILE, heads, d).permute(0, 3, 1, 4, 2)
            values = values.permute(0, 2, 1, 3)
        return cls(keys_t.contiguous(), values.contiguous(), m, heads, kv)


_declined = 0  # depth of `without_kernel` blocks


@contextlib.contextmanager
def without_kernel() -> Iterator[None]:
    """Within the block, the fast path runs PyTorch's attention kernel instead of segbench's (for timing both in one
    process, `benchmarks/bench_cpu_runtimes.py`'s `fast-sdpa`). Process-wide, not per thread."""
    global _declined
    _declined += 1
    try:
        yield
    finally:
        _declined -= 1


def prepare(kv: torch.Tensor, heads: int) -> KeysValues | None:
    """The keys and values for `attend`, or None where the kernel does not run for them (then use PyTorch's): CPU
    tensors in fp32 (or bf16 where the AMX kernel runs) outside autograd, autocast, tracing and compilation, a head
    dimension that is a multiple of 32, the kernels built here, and no `without_kernel` block."""
    if not (
        not _declined
        and kernels.cpu_inference(kv)
        and kv.dtype in (torch.float32, torch.bfloat16)
        and kv.dim() == 3
        and (kv.shape[2] // 2) % (heads * 32) == 0
    ):
        return None
    loaded = _load()
    if loaded.lib is None or (kv.dtype == torch.bfloat16 and not loaded.bf16):
        return None
    return KeysValues.of(kv, heads)


def attend(kv: KeysValues, q: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head for the projected queries `q` (B, N, C), as (B, N, C): what `MiTBlock`'s
    attention gives its output projection. Falls back to PyTorch's kernel if the call fails."""
    lib = _load().lib
    out = _run(lib, kv, q) if lib is not None else None
    return pytorch_attend(q, kv.source, kv.heads) if out is None else out


def _run(lib: ctypes.CDLL, kv: KeysValues, q: torch.Tensor) -> torch.Tensor | None:
    """The kernel for `q`'s dtype on each image of `q`, or None if it refused (a count it does not take, no memory, a
    dtype that is not the keys')."""
    if q.dtype != kv.source.dtype:
        return None
    q = q.contiguous()
    b, n, c = q.shape
    d = c // kv.heads
    out = torch.empty_like(q)
    fn = getattr(lib, _ATTENTION_BF16 if q.dtype == torch.bfloat16 else _ATTENTION)
    for i in range(b):
        rc = fn(
            q[i].data_ptr(),
            c,
            kv.keys_t[i].data_ptr(),
            kv.values[i].data_ptr(),
            out[i].data_ptr(),
            c,
            n,
            kv.keys,
            kv.heads,
            d,
            1.0 / math.sqrt(d),
            torch.get_num_threads(),
        )
        if rc != 0:
            return None
    return out


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor | None:
    """``F.layer_norm(x, (C,), weight, bias, eps)`` over the last dimension C through the kernel, for contiguous CPU
    tokens in fp32 or bf16 (computed in fp32, rounded once) at inference; None where the kernel does not run for them
    (then use PyTorch's): another dtype or device, a width that is not a multiple of 16, autograd, tracing, weight or
    bias missing or not of `x`'s dtype, or the kernel not built here."""
    c = x.shape[-1] if x.dim() else 0
    if not (
        x.dtype in (torch.float32, torch.bfloat16)
        and kernels.cpu_inference(x)
        and x.is_contiguous()
        and c % 16 == 0
        and c > 0
        and all(
            t is not None and t.shape == (c,) and t.dtype == x.dtype and t.device == x.device for t in (weight, bias)
        )
    ):
        return None
    lib = _load().lib
    return None if lib is None else _layer_norm(lib, x, weight, bias, eps)


def _layer_norm(
    lib: ctypes.CDLL, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor | None:
    out = torch.empty_like(x)
    w, b = weight.contiguous(), bias.contiguous()
    fn = getattr(lib, _LAYER_NORM_BF16 if x.dtype == torch.bfloat16 else _LAYER_NORM)
    c = x.shape[-1]
    rc = fn(x.data_ptr(), out.data_ptr(), x.numel() // c, c, w.data_ptr(), b.data_ptr(), eps, torch.get_num_threads())
    return out if rc == 0 else None


def pytorch_upsampled_sum(maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """PyTorch's operators on what `upsampled_sum` computes: the sum of `maps` (B, C, h_k, w_k), each bilinearly
    upsampled to `size` (align_corners False), as (B, C, *size)."""
    total = F.interpolate(maps[0], size=size, mode="bilinear", align_corners=False)
    for m in maps[1:]:
        total.add_(F.interpolate(m, size=size, mode="bilinear", align_corners=False))
    return total


def upsampled_sum(out: torch.Tensor, maps: list[torch.Tensor], height: int, r0: int) -> bool:
    """Rows [r0, r0 + rows) of `pytorch_upsampled_sum(maps, (height, W))` written into `out` (1, C, rows, W) through
    the kernel, for one image of CPU maps (1, C, h_k, w_k) in fp32 or bf16 (summed in fp32, rounded once), NHWC in
    memory like `out` and of its dtype, at inference. Returns False, writing nothing, where the kernel does not run for
    them (then use PyTorch's operators): another dtype, device or layout, a channel count that is not a multiple of
    16, autograd, tracing, or the kernel not built here."""
    nhwc = torch.channels_last
    tensors = [out, *maps]
    if not (
        out.dim() == 4
        and 0 < len(maps) <= _MAX_MAPS
        and out.shape[1] % 16 == 0
        and 0 <= r0 <= height - out.shape[2]
        and out.dtype in (torch.float32, torch.bfloat16)
        and all(kernels.cpu_inference(t) and t.dtype == out.dtype for t in tensors)
        and all(t.dim() == 4 and t.shape[:2] == out.shape[:2] and t.shape[0] == 1 for t in tensors)
        and all(t.is_contiguous(memory_format=nhwc) for t in tensors)
    ):
        return False
    lib = _load().lib
    return lib is not None and _upsample(lib, out, maps, height, r0)


_MAX_MAPS = 8
"""Maps one call of the upsampled sum takes (`MAX_MAPS` in `segformer_upsample.c`)."""


def _upsample(lib: ctypes.CDLL, out: torch.Tensor, maps: list[torch.Tensor], height: int, r0: int) -> bool:
    n = len(maps)
    pointers = (ctypes.c_void_p * n)(*(m.data_ptr() for m in maps))
    heights = (ctypes.c_long * n)(*(m.shape[2] for m in maps))
    widths = (ctypes.c_long * n)(*(m.shape[3] for m in maps))
    _, c, rows, w = out.shape
    fn = getattr(lib, _UPSAMPLE_BF16 if out.dtype == torch.bfloat16 else _UPSAMPLE)
    rc = fn(out.data_ptr(), r0, r0 + rows, height, w, c, pointers, heights, widths, n, torch.get_num_threads())
    return rc == 0


__all__ = [
    "COMPILE_FLAGS",
    "HEADERS",
    "KEY_TILE",
    "LIBRARY",
    "SOURCES",
    "SWITCH_ENV",
    "KeysValues",
    "KernelStatus",
    "attend",
    "layer_norm",
    "missing_requirement",
    "prepare",
    "pytorch_attend",
    "pytorch_upsampled_sum",
    "status",
    "upsampled_sum",
    "without_kernel",
]
