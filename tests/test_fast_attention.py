"""segbench's CPU attention kernel (`models/segformer_attention.py`, `.c`): PyTorch's attention to float rounding, its
build cache, and PyTorch's kernel wherever it cannot run."""

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
from segbench.models import segformer_attention as attention
from segbench.models.segformer_fast import banded_block

# skipped only where the kernel cannot be built; a kernel that fails its build or its check fails these tests
needs_kernel = pytest.mark.skipif(
    attention.missing_requirement() is not None,
    reason=f"segbench's attention kernel cannot be built here: {attention.missing_requirement()}",
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
    attention._load.cache_clear()
    yield tmp_path / "kernels"
    attention._load.cache_clear()


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
        prepared = attention.prepare(kv, heads)
        assert prepared is not None, attention.status().detail
        got = attention.attend(prepared, q)
    torch.testing.assert_close(got, _sdpa(q, kv, heads), rtol=1e-5, atol=1e-6)


@needs_kernel
def test_peaked_scores_neither_overflow_nor_lose_the_maximum() -> None:
    """Scores in the hundreds: e^s overflows fp32 unless the row's maximum is subtracted; most keys underflow to 0."""
    torch.manual_seed(0)
    q, kv = torch.randn(1, 50, 32) * 20, torch.randn(1, 100, 64) * 20
    with torch.inference_mode():
        got = attention.attend(attention.prepare(kv, 1), q)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, _sdpa(q, kv, 1), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_the_result_does_not_depend_on_the_thread_count() -> None:
    """Each query row is computed by one thread in one order, so the work's split over threads changes no bit."""
    torch.manual_seed(0)
    q, kv = torch.randn(1, 1000, 64), torch.randn(1, 256, 128)
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            prepared = attention.prepare(kv, 2)
            torch.set_num_threads(1)
            one = attention.attend(prepared, q)
            torch.set_num_threads(3)
            three = attention.attend(prepared, q)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


@needs_kernel
def test_the_fast_blocks_run_the_kernel_in_fp32_only(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(attention, "attend", lambda kv, q: calls.append(q.dtype) or _sdpa(q, kv.source, kv.heads))
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
    assert calls == [torch.float32, torch.float32]  # bf16 weights and autocast take PyTorch's kernel


def test_prepare_declines_what_the_kernel_does_not_compute() -> None:
    kv = torch.randn(1, 10, 2 * 48)
    with torch.inference_mode():
        assert attention.prepare(kv, 1) is None  # a head of 48 channels
        assert attention.prepare(kv.double(), 2) is None
        assert attention.prepare(torch.randn(1, 10, 128).bfloat16(), 2) is None
    assert attention.prepare(torch.randn(1, 10, 128), 2) is None  # autograd on
    with torch.inference_mode(), attention.without_kernel():
        assert attention.prepare(torch.randn(1, 10, 128), 2) is None  # asked for PyTorch's


@needs_kernel
def test_the_kernel_is_built_once_into_the_cache(fresh_kernel) -> None:
    status = attention.status()
    assert status.available, status.detail
    built = list(fresh_kernel.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no partial file left beside it
    assert str(built[0]) in status.detail
    stamp = built[0].stat().st_mtime_ns
    attention._load.cache_clear()
    assert attention.status().available and built[0].stat().st_mtime_ns == stamp  # loaded, not built again


@needs_kernel
def test_a_killed_builds_partial_library_is_removed_by_the_next_build(fresh_kernel) -> None:
    fresh_kernel.mkdir(parents=True)
    stale = fresh_kernel / ".segformer_attention-0123456789abcdef.so.99-dead.partial"
    recent = fresh_kernel / ".segformer_attention-0123456789abcdef.so.98-beef.partial"  # a build under way elsewhere
    for left in (stale, recent):
        left.write_bytes(b"half a library")
    old = time.time() - attention.STALE_PARTIAL_S - 60
    os.utime(stale, (old, old))
    assert attention.status().available
    assert not stale.exists() and recent.exists()


@needs_kernel
def test_a_damaged_cached_kernel_is_built_again(fresh_kernel) -> None:
    """In a new process: this one keeps the library it loaded under that name (dlopen matches loaded names)."""
    assert attention.status().available, attention.status().detail
    (built,) = fresh_kernel.iterdir()
    damaged = built.with_name("damaged")
    damaged.write_bytes(b"not a shared library")
    damaged.replace(built)  # a new file: writing into the loaded one would take this process down with SIGBUS
    code = "from segbench.models import segformer_attention as a; s = a.status(); print(s.available, s.detail)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.startswith("True") and str(built) in done.stdout
    assert built.read_bytes()[:4] == b"\x7fELF"


def test_without_a_compiler_the_fast_path_uses_pytorchs_attention(fresh_kernel, monkeypatch) -> None:
    monkeypatch.setenv("CC", os.fspath(fresh_kernel.parent / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="no-such-compiler"):
        status = attention.status()
    assert not status.available and "PyTorch's attention" in status.detail
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
        status = attention.status()
    assert not status.available and status.detail.endswith("failed: fake-cc: no AVX-512 here)")
    assert not fresh_kernel.exists() or not list(fresh_kernel.iterdir())  # no partial library left


@needs_kernel
def test_a_kernel_that_computes_wrong_is_never_used(fresh_kernel, monkeypatch) -> None:
    """A compiler whose build of the kernel is wrong (here: the padding keys left unmasked) fails the check."""
    real = attention._compiler()
    script = (
        'if [ "$1" = --version ]; then echo miscompiling-cc; exit 0; fi\n'
        "for last; do :; done\n"  # the output file; the source is the argument before "-o"
        'src=$(dirname "$last")/broken.c\n'
        f"sed 's/_mm512_mask_mov_ps(minus_inf, ma, acc\\[i\\]\\[0\\])/acc[i][0]/' {attention.SOURCE} > \"$src\"\n"
        f'exec {real} {" ".join(attention.COMPILE_FLAGS)} "$src" -o "$last"\n'
    )
    monkeypatch.setenv("CC", _fake_compiler(fresh_kernel.parent, script))
    with pytest.warns(RuntimeWarning, match="disagreed with PyTorch's"):
        status = attention.status()
    assert not status.available and "miscompiling-cc" in status.detail
    with torch.inference_mode():
        assert attention.prepare(torch.randn(1, 8, 64), 1) is None


@needs_kernel
def test_an_unusable_cache_leaves_pytorchs_attention_and_says_why(monkeypatch, tmp_path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "a-file"))
    attention._load.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="set SEGBENCH_CACHE to a writable folder"):
            status = attention.status()
    finally:
        attention._load.cache_clear()
    assert not status.available and "cannot create the folder" in status.detail


def test_the_switch_turns_the_kernel_off(fresh_kernel, monkeypatch) -> None:
    monkeypatch.setenv(attention.SWITCH_ENV, "0")
    status = attention.status()
    assert not status.available and f"{attention.SWITCH_ENV}=0" in status.detail
    assert not fresh_kernel.exists()  # nothing built
    _check_the_fast_path_without_the_kernel()


def _check_the_fast_path_without_the_kernel() -> None:
    torch.manual_seed(0)
    model = models.create_model("segformer-b0", num_classes=5).eval()
    fast = copy.deepcopy(model).fast_path()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        assert attention.prepare(torch.randn(1, 8, 64), 1) is None
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
