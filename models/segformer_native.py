"""segbench's compiled CPU kernels for SegFormer's fast path: attention (`segformer_attention.c`) and the folded
decoder's sum of upsampled maps (`segformer_upsample.c`), fp32 with AVX-512, built into one library.

- **Attention.** The fast path (`banded_block` in `models/segformer_fast.py`) spends most of its CPU time in
  attention: in SegFormer-B0 at 1024x2048, 60% of it in PyTorch's flash-attention kernel, which runs SegFormer's shapes
  (heads of 32 or 64, up to 2,048 keys) at 81-108 GMAC/s on the 2-core AVX-512 machine this was written on (GEMM peak
  about 150 GMAC/s). The kernel here computes the same softmax(q k^T / sqrt(d)) v without online rescaling, with the
  keys transposed in cache-sized tiles and eight query rows per register block, at 100-115 GMAC/s on the same shapes;
  it hands out work to its threads dynamically (a thread slowed by another process takes fewer rows instead of holding
  the others up), and it reads the query projection's (tokens, channels) output as it is and writes the output
  projection's input, so the transposes around PyTorch's (batch, heads, tokens, dim) layout go too. The exponentials
  and the score passes, about a quarter of its work at a head of 32, are what keep it from the GEMM peak.
- **Upsampled sum.** `FoldedMLPDecoder` adds three coarse maps, each bilinearly upsampled to quarter resolution, band
  by band. PyTorch upsamples each into a buffer that is then added: the band is written and read once per map. The
  kernel blends each map's two source rows once per output row and writes every output pixel once, from all maps
  (B0 at 1024x2048: 13 ms against 53 ms; B2: 54 ms against 300 ms, on the same machine).

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

import torch
import torch.nn.functional as F

from segbench.models import segformer_kernels as kernels
from segbench.paths import cache_dir, make_folder

SOURCES = tuple(Path(__file__).with_name(name) for name in ("segformer_attention.c", "segformer_upsample.c"))
"""Compiled together into one library."""
COMPILE_FLAGS = ("-O3", "-mavx512f", "-mavx512dq", "-mfma", "-fopenmp", "-fPIC", "-shared")
SWITCH_ENV = "SEGBENCH_NATIVE_KERNELS"
"""Set to 0 to keep the fast path on PyTorch's operators (its attention and upsampling)."""
_FORMER_SWITCH_ENV = "SEGBENCH_NATIVE_ATTENTION"
"""The switch's name while the attention was the only kernel: 0 still turns the kernels off, with a warning."""
LIBRARY = "segformer_native"
"""The library's file name stem in the cache."""
KEY_TILE = 32
"""Keys per tile of the transposed keys (`segformer_attention.c` reads them so)."""
_ATTENTION, _UPSAMPLE = "segbench_attention_f32", "segbench_upsample_sum_f32"
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
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in SOURCES))
    digest.update(" ".join((*COMPILE_FLAGS, compiler, version)).encode())
    target = cache_dir() / "kernels" / f"{LIBRARY}-{digest.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    make_folder(target.parent)
    _remove_stale_partials(target.parent)
    partial = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        subprocess.run(
            [compiler, *COMPILE_FLAGS, *map(str, SOURCES), "-o", str(partial)],
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
    attention.argtypes = [_P, _L, _P, _P, _P, _L, _L, _L, _I, _I, ctypes.c_float, _I]
    upsample.argtypes = [_P, _L, _L, _L, _L, _L, _P, _P, _P, _I, _I]
    attention.restype = upsample.restype = _I
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


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str]:
    """The loaded library, or None and why not (decided once per process)."""
    compiler = _compiler()
    if (missing := missing_requirement()) is not None or compiler is None:
        return None, f"PyTorch's operators ({missing})"
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
        return None, detail
    if not _agrees(lib):
        detail = (
            f"PyTorch's operators (segbench's kernels {path}, built by {version_line}, disagreed with PyTorch on their "
            f"check; try another compiler through CC, or set {SWITCH_ENV}=0 to skip them)"
        )
        warnings.warn(f"segbench fast path: {detail}", RuntimeWarning, stacklevel=2)
        return None, detail
    return lib, f"segbench's AVX-512 kernels: attention, upsampled sum ({version_line}; {path})"


def _agrees(lib: ctypes.CDLL) -> bool:
    """Each kernel against PyTorch on small ragged cases: attention with a head of each unrolled size, the upsampled
    sum with a channel count past its blocks and factors that are not integers."""
    gen = torch.Generator().manual_seed(0)
    for heads, dim, nq, nk in ((2, 32, 37, 45), (1, 64, 9, 64), (1, 96, 3, 7)):
        q = torch.randn(1, nq, heads * dim, generator=gen)
        kv = torch.randn(1, nk, 2 * heads * dim, generator=gen)
        got = _run(lib, KeysValues.of(kv, heads), q)
        ref = pytorch_attend(q, kv, heads)
        if got is None or not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
            return False
    nhwc = torch.channels_last
    sizes = ((3, 5), (7, 4), (2, 2))
    maps = [torch.randn(1, 144, h, w, generator=gen).contiguous(memory_format=nhwc) for h, w in sizes]
    out = torch.empty(1, 144, 5, 13).contiguous(memory_format=nhwc)
    ref = pytorch_upsampled_sum(maps, (11, 13))[:, :, 4:9]
    return _upsample(lib, out, maps, 11, 4) and torch.allclose(out, ref, rtol=1e-4, atol=1e-5)


def pytorch_attend(q: torch.Tensor, kv: torch.Tensor, heads: int) -> torch.Tensor:
    """PyTorch's kernel on what `MiTBlock`'s attention computes from the projected queries (B, N, C) and keys/values
    (B, M, 2C): the same (B, N, C) as `attend`."""
    b, n, c = q.shape
    k, v = kv.reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    qh = q.reshape(b, n, heads, c // heads).transpose(1, 2)
    return F.scaled_dot_product_attention(qh, k, v).transpose(1, 2).reshape(b, n, c)


def status() -> KernelStatus:
    """Which kernels the fast path's fp32 CPU blocks and decoder use, building and checking segbench's if not yet."""
    lib, detail = _load()
    return KernelStatus(lib is not None, detail)


@dataclass(frozen=True)
class KeysValues:
    """A block's keys and values in the kernel's layout: keys transposed in tiles of `KEY_TILE` (B, heads, tiles, D,
    KEY_TILE) and values (B, heads, tiles * KEY_TILE, D), zero beyond the `keys` real ones."""

    keys_t: torch.Tensor
    values: torch.Tensor
    keys: int
    heads: int
    source: torch.Tensor  # the projection's output it was made from (for PyTorch's kernel, should the call fail)

    @classmethod
    def of(cls, kv: torch.Tensor, heads: int) -> KeysValues:
        """From the key/value projection's output (B, M, 2C): keys in its first C channels, values in the last C,
        each head's D = C / heads channels together."""
        b, m, c2 = kv.shape
        d = c2 // 2 // heads
        padded = math.ceil(m / KEY_TILE) * KEY_TILE
        both = kv.new_zeros(b, padded, 2, heads, d)
        both[:, :m] = kv.view(b, m, 2, heads, d)
        keys_t = both[:, :, 0].view(b, padded // KEY_TILE, KEY_TILE, heads, d).permute(0, 3, 1, 4, 2).contiguous()
        values = both[:, :, 1].permute(0, 2, 1, 3).contiguous()
        return cls(keys_t, values, m, heads, kv)


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
    """The keys and values for `attend`, or None where the kernel does not run for them (then use PyTorch's): fp32 CPU
    tensors outside autograd, autocast, tracing and compilation, a head dimension that is a multiple of 32, the
    kernel built here, and no `without_kernel` block."""
    if not (
        not _declined
        and kernels.cpu_inference(kv)
        and kv.dtype == torch.float32
        and kv.dim() == 3
        and (kv.shape[2] // 2) % (heads * 32) == 0
    ):
        return None
    lib, _ = _load()
    return None if lib is None else KeysValues.of(kv, heads)


def attend(kv: KeysValues, q: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head for the projected queries `q` (B, N, C), as (B, N, C): what `MiTBlock`'s
    attention gives its output projection. Falls back to PyTorch's kernel if the call fails."""
    lib, _ = _load()
    out = _run(lib, kv, q) if lib is not None else None
    return pytorch_attend(q, kv.source, kv.heads) if out is None else out


def _run(lib: ctypes.CDLL, kv: KeysValues, q: torch.Tensor) -> torch.Tensor | None:
    """The kernel on each image of `q`, or None if it refused (a count it does not take, no memory)."""
    q = q.contiguous()
    b, n, c = q.shape
    d = c // kv.heads
    out = torch.empty_like(q)
    fn = getattr(lib, _ATTENTION)
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


def pytorch_upsampled_sum(maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """PyTorch's operators on what `upsampled_sum` computes: the sum of `maps` (B, C, h_k, w_k), each bilinearly
    upsampled to `size` (align_corners False), as (B, C, *size)."""
    total = F.interpolate(maps[0], size=size, mode="bilinear", align_corners=False)
    for m in maps[1:]:
        total.add_(F.interpolate(m, size=size, mode="bilinear", align_corners=False))
    return total


def upsampled_sum(out: torch.Tensor, maps: list[torch.Tensor], height: int, r0: int) -> bool:
    """Rows [r0, r0 + rows) of `pytorch_upsampled_sum(maps, (height, W))` written into `out` (1, C, rows, W) through
    the kernel, for one image of fp32 CPU maps (1, C, h_k, w_k), NHWC in memory like `out`, at inference. Returns False,
    writing nothing, where the kernel does not run for them (then use PyTorch's operators): another dtype, device or
    layout, a channel count that is not a multiple of 16, autograd, tracing, or the kernel not built here."""
    nhwc = torch.channels_last
    tensors = [out, *maps]
    if not (
        out.dim() == 4
        and 0 < len(maps) <= _MAX_MAPS
        and out.shape[1] % 16 == 0
        and 0 <= r0 <= height - out.shape[2]
        and all(kernels.cpu_inference(t) and t.dtype == torch.float32 for t in tensors)
        and all(t.dim() == 4 and t.shape[:2] == out.shape[:2] and t.shape[0] == 1 for t in tensors)
        and all(t.is_contiguous(memory_format=nhwc) for t in tensors)
    ):
        return False
    lib, _ = _load()
    return lib is not None and _upsample(lib, out, maps, height, r0)


_MAX_MAPS = 8
"""Maps one call of the upsampled sum takes (`MAX_MAPS` in `segformer_upsample.c`)."""


def _upsample(lib: ctypes.CDLL, out: torch.Tensor, maps: list[torch.Tensor], height: int, r0: int) -> bool:
    n = len(maps)
    pointers = (ctypes.c_void_p * n)(*(m.data_ptr() for m in maps))
    heights = (ctypes.c_long * n)(*(m.shape[2] for m in maps))
    widths = (ctypes.c_long * n)(*(m.shape[3] for m in maps))
    _, c, rows, w = out.shape
    fn = getattr(lib, _UPSAMPLE)
    rc = fn(out.data_ptr(), r0, r0 + rows, height, w, c, pointers, heights, widths, n, torch.get_num_threads())
    return rc == 0


__all__ = [
    "COMPILE_FLAGS",
    "KEY_TILE",
    "LIBRARY",
    "SOURCES",
    "SWITCH_ENV",
    "KeysValues",
    "KernelStatus",
    "attend",
    "missing_requirement",
    "prepare",
    "pytorch_attend",
    "pytorch_upsampled_sum",
    "status",
    "upsampled_sum",
    "without_kernel",
]
