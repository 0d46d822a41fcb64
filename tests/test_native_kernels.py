"""segbench's CPU kernels (`models/segformer_native.py`; `segformer_attention.c`, `segformer_attention_amx.c`,
`segformer_upsample.c`, `segformer_layernorm.c`): PyTorch's attention, upsampled sum and LayerNorm to float rounding
(fp32) or to bf16's rounding (bf16), their build cache, and PyTorch's operators wherever they cannot run."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from segbench import models
from segbench.bench.measure.latency import cpu_isa_flags
from segbench.models import segformer_native as native
from segbench.models.segformer_fast import banded_block

# skipped only where the kernel cannot be built; a kernel that fails its build or its check fails these tests
needs_kernel = pytest.mark.skipif(
    native.missing_requirement() is not None,
    reason=f"segbench's kernels cannot be built here: {native.missing_requirement()}",
)
# the bf16 attention needs AMX besides (a CPU with it whose kernel fails its check fails these tests)
needs_amx = pytest.mark.skipif(
    native.missing_requirement() is not None or not {"amx_tile", "amx_bf16", "avx512_bf16"} <= set(cpu_isa_flags()),
    reason="segbench's bf16 attention needs AMX-BF16 and AVX512-BF16, which this CPU lacks (or no kernels here)",
)


def _sdpa(q: torch.Tensor, kv: torch.Tensor, heads: int) -> torch.Tensor:
    """What `MiTBlock`'s attention computes from the projected queries (B, N, C) and keys/values (B, M, 2C)."""
    b, n, c = q.shape
    k, v = kv.reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q.reshape(b, n, heads, c // heads).transpose(1, 2), k, v)
    return out.transpose(1, 2).reshape(b, n, c)


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """The kernel decided again under a fresh cache (and decided again afterwards for the other tests)."""
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path))
    native._load.cache_clear()
    yield tmp_path / "kernels"
    native._load.cache_clear()


@needs_kernel
@pytest.mark.parametrize(
    ("batch", "heads", "dim", "queries", "keys"),
    [
        (1, 1, 32, 300, 2048),  # stage 1 of every MiT: one head of 32; queries not a multiple of the row blocks
        (2, 2, 32, 129, 64),  # a batch of two; one query past a work item of 128 rows
        (1, 5, 32, 7, 315),  # fewer queries than a register block; keys not a multiple of the tile
        (1, 8, 64, 40, 1),  # MiT-B1..B5's head of 64; a single key
        (1, 1, 96, 17, 33),  # a head size without its own unrolled code
    ],
)
def test_the_kernel_is_pytorchs_attention(batch, heads, dim, queries, keys) -> None:
    torch.manual_seed(queries)
    q = torch.randn(batch, queries, heads * dim)
    kv = torch.randn(batch, keys, 2 * heads * dim)
    with torch.inference_mode():
        prepared = native.prepare(kv, heads)
        assert prepared is not None, native.status().detail
        got = native.attend(prepared, q)
    torch.testing.assert_close(got, _sdpa(q, kv, heads), rtol=1e-5, atol=1e-6)


@needs_kernel
def test_peaked_scores_neither_overflow_nor_lose_the_maximum() -> None:
    """Scores in the hundreds: e^s overflows fp32 unless the row's maximum is subtracted; most keys underflow to 0."""
    torch.manual_seed(0)
    q, kv = torch.randn(1, 50, 32) * 20, torch.randn(1, 100, 64) * 20
    with torch.inference_mode():
        got = native.attend(native.prepare(kv, 1), q)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, _sdpa(q, kv, 1), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_a_nan_spreads_as_in_pytorchs_attention() -> None:
    """A NaN query spoils its row, a NaN key every row: a broken model's NaN is not hidden by the fast path."""
    torch.manual_seed(0)
    q, kv = torch.randn(1, 20, 32), torch.randn(1, 40, 64)
    q[0, 3, 5] = float("nan")
    with torch.inference_mode():
        got = native.attend(native.prepare(kv, 1), q)
    assert got[0, 3].isnan().all() and not got[0, torch.arange(20) != 3].isnan().any()
    kv[0, 7, 2] = float("nan")  # a key's channel
    with torch.inference_mode():
        got = native.attend(native.prepare(kv, 1), q)
    assert got.isnan().all()
    torch.testing.assert_close(got, _sdpa(q, kv, 1), equal_nan=True)


def _on_1_and_3_threads(compute):
    """`compute()` under torch's thread count 1, then 3 (the kernels take torch's count), the count restored after."""
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            one = compute()
            torch.set_num_threads(3)
            return one, compute()
    finally:
        torch.set_num_threads(threads)


@needs_kernel
def test_the_result_does_not_depend_on_the_thread_count() -> None:
    """Each query row is computed by one thread in one order, so the work's split over threads changes no bit."""
    torch.manual_seed(0)
    q, kv = torch.randn(1, 1000, 64), torch.randn(1, 256, 128)
    with torch.inference_mode():
        prepared = native.prepare(kv, 2)
    one, three = _on_1_and_3_threads(lambda: native.attend(prepared, q))
    assert torch.equal(one, three)


@needs_amx
@pytest.mark.parametrize(
    ("batch", "heads", "dim", "queries", "keys"),
    [
        (1, 1, 32, 300, 2048),  # stage 1 of every MiT; queries not a multiple of the blocks of 16
        (2, 2, 32, 129, 64),  # a batch of two; one query past a work item of 64 rows
        (1, 5, 32, 7, 315),  # fewer queries than a block; keys not a multiple of the tile
        (1, 8, 64, 40, 1),  # MiT-B1..B5's head of 64; a single key
        (1, 1, 96, 17, 33),  # a head of 96: one tile pass of 64 channels and one of 32
    ],
)
def test_the_bf16_kernel_is_pytorchs_attention_to_bf16_rounding(batch, heads, dim, queries, keys) -> None:
    """Against PyTorch's fp32 attention on the same bf16 inputs; values about 1 (their mean), so that a padding key
    given weight, or a key left out, shifts every output by far more than bf16's rounding."""
    torch.manual_seed(queries)
    q = torch.randn(batch, queries, heads * dim).bfloat16()
    kv = torch.randn(batch, keys, 2 * heads * dim)
    kv[..., heads * dim :] += 1.0
    kv = kv.bfloat16()
    with torch.inference_mode():
        prepared = native.prepare(kv, heads)
        assert prepared is not None, native.status().detail
        got = native.attend(prepared, q)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), _sdpa(q.float(), kv.float(), heads), rtol=1e-2, atol=1e-3)


@needs_amx
def test_the_bf16_kernel_neither_overflows_nor_depends_on_the_thread_count() -> None:
    torch.manual_seed(0)
    q, kv = (torch.randn(1, 1000, 64) * 20).bfloat16(), (torch.randn(1, 256, 128) * 20).bfloat16()
    with torch.inference_mode():
        prepared = native.prepare(kv, 2)
    one, three = _on_1_and_3_threads(lambda: native.attend(prepared, q))
    assert torch.equal(one, three) and torch.isfinite(one).all()
    torch.testing.assert_close(one.float(), _sdpa(q.float(), kv.float(), 2), rtol=2e-2, atol=2e-1)  # values ~20


@needs_kernel
def test_the_fast_blocks_run_the_kernel_in_fp32_and_with_amx_in_bf16(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(native, "attend", lambda kv, q: calls.append(q.dtype) or _sdpa(q, kv.source, kv.heads))
    torch.manual_seed(0)
    model = models.create_model("segformer-b0").eval()
    block = model.backbone.stages[1].blocks[0]  # two heads
    x = torch.randn(1, 16 * 24, 64)
    with torch.inference_mode():
        banded_block(block, x.clone(), 16, 24)
        assert calls == [torch.float32]
        banded_block(copy.deepcopy(block).bfloat16(), x.bfloat16(), 16, 24)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            banded_block(block, x.clone(), 16, 24)
    with torch.no_grad():
        banded_block(block, x.clone(), 16, 24)
    bf16 = [torch.bfloat16] if native._load().bf16 else []  # bf16 weights: the AMX kernel where it runs
    assert calls == [torch.float32, *bf16, torch.float32]  # autocast takes PyTorch's kernel


def test_prepare_declines_what_the_kernel_does_not_compute() -> None:
    kv = torch.randn(1, 10, 2 * 48)
    with torch.inference_mode():
        assert native.prepare(kv, 1) is None  # a head of 48 channels
        assert native.prepare(kv.double(), 2) is None
        assert native.prepare(torch.randn(1, 10, 128).half(), 2) is None
    assert native.prepare(torch.randn(1, 10, 128), 2) is None  # autograd on
    with torch.inference_mode(), native.without_kernel():
        assert native.prepare(torch.randn(1, 10, 128), 2) is None  # asked for PyTorch's


@needs_kernel
def test_the_kernel_is_built_once_into_the_cache(fresh_kernel) -> None:
    status = native.status()
    assert status.available, status.detail
    built = list(fresh_kernel.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no partial file left beside it
    assert str(built[0]) in status.detail
    stamp = built[0].stat().st_mtime_ns
    native._load.cache_clear()
    assert native.status().available and built[0].stat().st_mtime_ns == stamp  # loaded, not built again


@needs_kernel
def test_a_killed_builds_partial_library_is_removed_by_the_next_build(fresh_kernel) -> None:
    fresh_kernel.mkdir(parents=True)
    stale = fresh_kernel / ".segformer_native-0123456789abcdef.so.99-dead.partial"
    recent = fresh_kernel / ".segformer_native-0123456789abcdef.so.98-beef.partial"  # a build under way elsewhere
    for left in (stale, recent):
        left.write_bytes(b"half a library")
    old = time.time() - native.STALE_PARTIAL_S - 60
    os.utime(stale, (old, old))
    assert native.status().available
    assert not stale.exists() and recent.exists()


@needs_kernel
def test_a_damaged_cached_kernel_is_built_again(fresh_kernel) -> None:
    """In a new process: this one keeps the library it loaded under that name (dlopen matches loaded names)."""
    assert native.status().available, native.status().detail
    (built,) = fresh_kernel.iterdir()
    damaged = built.with_name("damaged")
    damaged.write_bytes(b"not a shared library")
    damaged.replace(built)  # a new file: writing into the loaded one would take this process down with SIGBUS
    code = "from segbench.models import segformer_native as a; s = a.status(); print(s.available, s.detail)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.startswith("True") and str(built) in done.stdout
    assert built.read_bytes()[:4] == b"\x7fELF"


def test_without_a_compiler_the_fast_path_uses_pytorchs_attention(fresh_kernel, monkeypatch) -> None:
    monkeypatch.setenv("CC", os.fspath(fresh_kernel.parent / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="no-such-compiler"):
        status = native.status()
    assert not status.available and "PyTorch's operators" in status.detail
    _check_the_fast_path_without_the_kernel()


def _fake_compiler(folder, script: str) -> str:
    path = folder / "fake-cc"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_a_failed_build_says_what_the_compiler_said(fresh_kernel, monkeypatch) -> None:
    script = 'if [ "$1" = --version ]; then echo fake-cc 1.0; exit 0; fi\necho "fake-cc: no AVX-512 here" >&2; exit 1\n'
    monkeypatch.setenv("CC", _fake_compiler(fresh_kernel.parent, script))
    with pytest.warns(RuntimeWarning, match="fake-cc: no AVX-512 here"):
        status = native.status()
    assert not status.available and status.detail.endswith("failed: fake-cc: no AVX-512 here)")
    assert not fresh_kernel.exists() or not list(fresh_kernel.iterdir())  # no partial library left


def _miscompiling_compiler(folder, source: int, edit: str) -> str:
    """A compiler that builds the library with `sed` `edit` applied to `native.SOURCES[source]`."""
    real = native._compiler()
    broken = native.SOURCES[source]
    kept = " ".join(str(path) for path in native.SOURCES if path != broken)
    script = (
        'if [ "$1" = --version ]; then echo miscompiling-cc; exit 0; fi\n'
        "for last; do :; done\n"  # the output file
        'src=$(dirname "$last")/broken.c\n'
        f"sed '{edit}' {broken} > \"$src\"\n"
        'cmp -s "$src" ' + str(broken) + " && exit 3\n"  # the edit must change the source
        f'exec {real} {" ".join(native.COMPILE_FLAGS)} -I{broken.parent} "$src" {kept} -o "$last"\n'
    )
    return _fake_compiler(folder, script)


@needs_kernel
@pytest.mark.parametrize(
    ("source", "edit"),
    [
        (0, "s/_mm512_mask_mov_ps(minus_inf, ma, acc\\[i\\]\\[0\\])/acc[i][0]/"),  # attention: padding keys unmasked
        (2, "s/if (src < 0.0f) src = 0.0f;//"),  # upsampled sum: the first rows' source coordinate not clamped
        (3, "s/_mm512_set1_ps((float)C)/_mm512_set1_ps((float)(C + 1))/"),  # LayerNorm: mean and variance off
    ],
)
def test_a_kernel_that_computes_wrong_is_never_used(fresh_kernel, monkeypatch, source, edit) -> None:
    """A compiler whose build of either kernel is wrong fails the check, and neither kernel is used."""
    monkeypatch.setenv("CC", _miscompiling_compiler(fresh_kernel.parent, source, edit))
    with pytest.warns(RuntimeWarning, match="disagreed with PyTorch"):
        status = native.status()
    assert not status.available and "miscompiling-cc" in status.detail
    nhwc = torch.channels_last
    with torch.inference_mode():
        assert native.prepare(torch.randn(1, 8, 64), 1) is None
        maps = [torch.randn(1, 16, 2, 2).contiguous(memory_format=nhwc)]
        assert not native.upsampled_sum(torch.empty(1, 16, 4, 4).contiguous(memory_format=nhwc), maps, 4, 0)


@needs_amx
def test_a_wrong_bf16_attention_leaves_bf16_to_pytorch_and_keeps_the_rest(fresh_kernel, monkeypatch) -> None:
    edit = "s|return 1.0f / _mm512_reduce_add_ps|return 0.5f / _mm512_reduce_add_ps|"  # weights off by half
    monkeypatch.setenv("CC", _miscompiling_compiler(fresh_kernel.parent, 1, edit))
    with pytest.warns(RuntimeWarning, match="bf16 attention kernel .* disagreed with PyTorch"):
        status = native.status()
    assert status.available and "bf16 takes PyTorch's: the AMX kernel disagreed" in status.detail
    with torch.inference_mode():
        assert native.prepare(torch.randn(1, 8, 64).bfloat16(), 1) is None
        assert native.prepare(torch.randn(1, 8, 64), 1) is not None


@needs_kernel
def test_without_amx_bf16_takes_pytorchs_attention_and_says_so(fresh_kernel, monkeypatch) -> None:
    monkeypatch.setattr(native, "_bf16_attention", lambda lib, path: (False, "bf16 takes PyTorch's: no AMX-BF16"))
    status = native.status()
    assert status.available and "bf16 takes PyTorch's: no AMX-BF16" in status.detail
    with torch.inference_mode():
        assert native.prepare(torch.randn(1, 8, 64).bfloat16(), 1) is None
        assert native.prepare(torch.randn(1, 8, 64), 1) is not None  # fp32 keeps its kernel


@needs_kernel
def test_an_unusable_cache_leaves_pytorchs_attention_and_says_why(monkeypatch, tmp_path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "a-file"))
    native._load.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="set SEGBENCH_CACHE to a writable folder"):
            status = native.status()
    finally:
        native._load.cache_clear()
    assert not status.available and "cannot create the folder" in status.detail


def test_the_switch_turns_the_kernel_off(fresh_kernel, monkeypatch) -> None:
    monkeypatch.setenv(native.SWITCH_ENV, "0")
    status = native.status()
    assert not status.available and f"{native.SWITCH_ENV}=0" in status.detail
    assert not fresh_kernel.exists()  # nothing built
    _check_the_fast_path_without_the_kernel()


def test_the_switchs_former_name_still_turns_the_kernels_off_and_says_its_new_one(fresh_kernel, monkeypatch) -> None:
    monkeypatch.setenv("SEGBENCH_NATIVE_ATTENTION", "0")
    with pytest.warns(FutureWarning, match=f"now {native.SWITCH_ENV}"):
        status = native.status()
    assert not status.available and "SEGBENCH_NATIVE_ATTENTION=0" in status.detail
    assert not fresh_kernel.exists()


def _check_the_fast_path_without_the_kernel() -> None:
    torch.manual_seed(0)
    model = models.create_model("segformer-b0", num_classes=5).eval()
    fast = copy.deepcopy(model).fast_path()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        assert native.prepare(torch.randn(1, 8, 64), 1) is None
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------------------------------
# the upsampled sum
# --------------------------------------------------------------------------------------------------------------------


def _nhwc(*shape: int) -> torch.Tensor:
    return torch.randn(*shape).contiguous(memory_format=torch.channels_last)


@needs_kernel
@pytest.mark.parametrize(
    ("channels", "out_size", "sizes", "r0", "rows"),
    [
        (256, (64, 96), ((8, 12), (16, 24), (32, 48)), 0, 64),  # the decoder's factors 8, 4, 2, the whole map
        (256, (64, 96), ((8, 12), (16, 24), (32, 48)), 24, 16),  # a band in the middle: rows from the whole map's
        (144, (11, 13), ((3, 5), (7, 4), (2, 2)), 4, 7),  # channels past a block of 128; factors not integers
        (16, (5, 9), ((5, 9),), 1, 4),  # one map at the output's size: a copy
        (32, (40, 3), ((1, 1), (40, 3)), 38, 2),  # a single pixel broadcast; the last rows
    ],
)
def test_the_upsampled_sum_is_pytorchs(channels, out_size, sizes, r0, rows) -> None:
    torch.manual_seed(channels + r0)
    maps = [_nhwc(1, channels, h, w) for h, w in sizes]
    out = _nhwc(1, channels, rows, out_size[1])
    with torch.inference_mode():
        assert native.upsampled_sum(out, maps, out_size[0], r0), native.status().detail
    expected = native.pytorch_upsampled_sum(maps, out_size)[:, :, r0 : r0 + rows]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_the_bf16_upsampled_sum_is_the_fp32_sum_rounded_once() -> None:
    """bf16 maps widened, summed in fp32 and rounded once: within half a bf16 step of the fp32 sum of the same values
    (the blend's order moves it by fp32 ulps); a NaN where PyTorch's is."""
    torch.manual_seed(0)
    maps = [_nhwc(1, 144, 3, 5).bfloat16(), _nhwc(1, 144, 7, 4).bfloat16(), _nhwc(1, 144, 11, 13).bfloat16()]
    maps[0][0, 17, 1, 2] = float("nan")
    out = _nhwc(1, 144, 7, 13).bfloat16()
    with torch.inference_mode():
        assert native.upsampled_sum(out, maps, 11, 4), native.status().detail
    expected = native.pytorch_upsampled_sum([m.float() for m in maps], (11, 13))[:, :, 4:11]
    assert torch.equal(out.isnan(), expected.isnan()) and out.isnan().any()
    torch.testing.assert_close(out.float(), expected, rtol=2**-8, atol=1e-6, equal_nan=True)


@needs_kernel
def test_the_upsampled_sum_does_not_depend_on_the_thread_count() -> None:
    torch.manual_seed(0)
    maps = [_nhwc(1, 128, 4, 6), _nhwc(1, 128, 8, 12)]

    def compute() -> torch.Tensor:
        out = _nhwc(1, 128, 32, 48)
        assert native.upsampled_sum(out, maps, 32, 0)
        return out

    one, three = _on_1_and_3_threads(compute)
    assert torch.equal(one, three)


def test_the_upsampled_sum_declines_what_it_does_not_compute() -> None:
    maps = [_nhwc(1, 32, 4, 4)]
    out = _nhwc(1, 32, 8, 8)
    with torch.inference_mode():
        assert not native.upsampled_sum(out, [torch.randn(1, 32, 4, 4)], 8, 0)  # NCHW in memory
        assert not native.upsampled_sum(torch.randn(1, 32, 8, 8), maps, 8, 0)
        assert not native.upsampled_sum(out.half(), [m.half() for m in maps], 8, 0)
        assert not native.upsampled_sum(out.bfloat16(), maps, 8, 0)  # dtypes differ
        assert not native.upsampled_sum(_nhwc(1, 24, 8, 8), [_nhwc(1, 24, 4, 4)], 8, 0)  # not a multiple of 16
        assert not native.upsampled_sum(_nhwc(2, 32, 8, 8), [_nhwc(2, 32, 4, 4)], 8, 0)  # one image at a time
        assert not native.upsampled_sum(out, [_nhwc(1, 16, 4, 4)], 8, 0)  # channels differ
        assert not native.upsampled_sum(out, maps, 12, 6)  # rows past the map
        assert not native.upsampled_sum(out, [], 8, 0)
    assert not native.upsampled_sum(out, [maps[0].requires_grad_()], 8, 0)  # autograd


def _fast_b0_equals_plain() -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """A random B0, its fast path and an image, the fast path's fp32 logits checked against the plain network's."""
    torch.manual_seed(0)
    model = models.create_model("segformer-b0", num_classes=5).eval()
    fast = copy.deepcopy(model).fast_path()
    x = torch.randn(1, 3, 128, 128)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
    return model, fast, x


@needs_kernel
def test_the_fast_decoder_runs_the_upsampled_sum_in_fp32_and_bf16(monkeypatch) -> None:
    calls = []  # (the band's dtype, whether the kernel ran)

    def recorded(out, *args):
        calls.append((out.dtype, ran := real(out, *args)))
        return ran

    real = native.upsampled_sum
    monkeypatch.setattr(native, "upsampled_sum", recorded)
    model, fast, x = _fast_b0_equals_plain()
    assert calls and set(calls) == {(torch.float32, True)}  # one call per band
    count = len(calls)
    with torch.inference_mode():
        fast_bf16 = copy.deepcopy(fast).bfloat16()(x.bfloat16()).float()
        plain_bf16 = copy.deepcopy(model).bfloat16()(x.bfloat16()).float()
    assert len(calls) > count and set(calls[count:]) == {(torch.bfloat16, True)}
    scale = plain_bf16.abs().max().item()
    torch.testing.assert_close(fast_bf16, plain_bf16, rtol=0, atol=0.03 * scale)  # bf16's rounding, not a wrong sum


# --------------------------------------------------------------------------------------------------------------------
# LayerNorm
# --------------------------------------------------------------------------------------------------------------------


@needs_kernel
@pytest.mark.parametrize(
    ("rows", "channels"),
    [(300, 32), (65, 64), (7, 160), (3, 256), (130, 48), (5, 512), (2, 1024)],  # MiT's widths; others; one past
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_layer_norm_is_pytorchs(rows, channels, dtype) -> None:
    """fp32 to float rounding; bf16 computed in fp32 from the same bf16 values and rounded once (half a bf16 step)."""
    torch.manual_seed(rows + channels)
    x = (torch.randn(1, rows, channels) * 3 + 5).to(dtype)  # a mean far from 0: the variance is taken around it
    weight, bias = torch.randn(channels).to(dtype), torch.randn(channels).to(dtype)
    with torch.inference_mode():
        got = native.layer_norm(x, weight, bias, 1e-6)
    assert got is not None and got.dtype == dtype, native.status().detail
    expected = F.layer_norm(x.float(), (channels,), weight.float(), bias.float(), 1e-6)
    if dtype == torch.float32:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    else:
        torch.testing.assert_close(got.float(), expected, rtol=2**-8, atol=1e-3)


@needs_kernel
def test_the_layer_norm_does_not_depend_on_the_thread_count() -> None:
    torch.manual_seed(0)
    x, weight, bias = torch.randn(5000, 64), torch.randn(64), torch.randn(64)
    one, three = _on_1_and_3_threads(lambda: native.layer_norm(x, weight, bias, 1e-5))
    assert one is not None and torch.equal(one, three)


def test_the_layer_norm_declines_what_it_does_not_compute() -> None:
    x, weight, bias = torch.randn(4, 32), torch.randn(32), torch.randn(32)
    with torch.inference_mode():
        assert native.layer_norm(torch.randn(32, 4).t(), weight, bias, 1e-5) is None  # not contiguous
        assert native.layer_norm(torch.randn(4, 24), torch.randn(24), torch.randn(24), 1e-5) is None  # width
        assert native.layer_norm(x.half(), weight.half(), bias.half(), 1e-5) is None
        assert native.layer_norm(x, weight.bfloat16(), bias, 1e-5) is None  # dtypes differ
        assert native.layer_norm(x, None, bias, 1e-5) is None  # no affine map
    assert native.layer_norm(x, weight, bias, 1e-5) is None  # autograd on


@needs_kernel
def test_the_fast_path_runs_its_layer_norms_through_the_kernel(monkeypatch) -> None:
    calls = []
    real = native.layer_norm
    monkeypatch.setattr(native, "layer_norm", lambda x, *a: calls.append(out := real(x, *a)) or out)
    _fast_b0_equals_plain()
    # per stage: its patch embedding's and its own norm; per block: norm1 (keys and queries), norm2 (and sr_norm)
    assert len(calls) >= 4 * 2 + 8 * 3 and all(out is not None for out in calls)
