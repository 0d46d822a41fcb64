"""SegFormer's fast path on the CPU: blocks in bands of rows (`banded_block`) and a decoder that keeps its buffers."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

from segbench import models
from segbench.models import segformer_fast
from segbench.models import segformer_native as native
from segbench.models.segformer_fast import banded_block


def _random_block_inputs(model: torch.nn.Module, stage: int, batch: int, h: int, w: int) -> tuple:
    block = model.backbone.stages[stage].blocks[0]
    return block, torch.randn(batch, h * w, block.norm1.normalized_shape[0])


@pytest.mark.parametrize("stage", [0, 1, 2, 3])  # sr 8, 4, 2, 1; heads 1, 2, 5, 8
@pytest.mark.parametrize(("h", "w", "band_bytes"), [(33, 20, 1), (40, 24, 2**14), (17, 9, 2**30)])
@pytest.mark.parametrize("batch", [1, 2])  # one image takes the fused kernels' in-place adds, two the plain adds
def test_a_banded_block_computes_the_block(stage: int, h: int, w: int, band_bytes: int, batch: int) -> None:
    """One-row bands, several rows, one band; sides that the reduction conv does not divide (its last rows dropped, as
    the whole-map conv drops them); one image and a batch of two."""
    torch.manual_seed(stage)
    model = models.create_model("segformer-b0").eval()
    block, x = _random_block_inputs(model, stage, batch, h, w)
    with torch.inference_mode():
        expected = block(x, h, w)
        got = banded_block(block, x.clone(), h, w, band_bytes)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_banded_block_updates_its_tokens_in_place() -> None:
    torch.manual_seed(0)
    block, x = _random_block_inputs(models.create_model("segformer-b0").eval(), 0, 1, 16, 16)
    with torch.inference_mode():
        out = banded_block(block, x, 16, 16, 2**12)
    assert out.data_ptr() == x.data_ptr()


@pytest.mark.parametrize("name", ["segformer-b0", "segformer-b1-mmseg"])
def test_the_fast_path_is_the_model(name: str) -> None:
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=7).eval()
    fast = copy.deepcopy(model).fast_path()
    assert fast.banded and not model.banded
    x = torch.randn(2, 3, 75, 130)
    with torch.inference_mode():
        expected = model(x)
        first, second = fast(x), fast(x * 0.5)
        torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(second, model(x * 0.5), rtol=1e-4, atol=1e-4)
    assert first.data_ptr() != second.data_ptr()  # the logits are the caller's, not a kept buffer
    assert first.is_contiguous()


@pytest.mark.parametrize("name", ["segformer-b0", "segformer-b1-mmseg"])
@pytest.mark.parametrize(
    ("size", "band_rows", "banded"), [((256, 96), 8, True), ((128, 64), 32, True), ((75, 130), 8, False)]
)
def test_the_decoder_in_bands_is_the_whole_map_decoder(name, size, band_rows, banded, monkeypatch) -> None:
    """Several bands of 8 output rows (halo rows at factors 2, 4 and 8, top and bottom edges), one band, and sizes
    whose maps do not divide (the whole-map code); one image takes the fused sum, and so does each of a batch."""
    monkeypatch.setattr(segformer_fast, "DECODER_BAND_ROWS", band_rows)
    calls = []
    real = segformer_fast.FoldedMLPDecoder._forward_banded
    monkeypatch.setattr(segformer_fast.FoldedMLPDecoder, "_forward_banded", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=7).eval()
    fast = copy.deepcopy(model).fast_path()
    x = torch.randn(2, 3, *size)
    with torch.inference_mode():
        expected, got = model(x), fast(x)
    assert bool(calls) == banded
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_the_fast_decoder_keeps_its_buffers_between_images() -> None:
    torch.manual_seed(0)
    fast = models.create_model("segformer-b0", num_classes=5, fast=True)
    with torch.inference_mode():
        fast(torch.randn(1, 3, 64, 128))
        kept = {k: v.data_ptr() for k, v in fast.decode_head._buffers_kept.items()}
        fast(torch.randn(1, 3, 64, 128))
        assert {k: v.data_ptr() for k, v in fast.decode_head._buffers_kept.items()} == kept
        # the banded decoder's coarser maps and band, and where PyTorch upsamples, the buffer each is upsampled into
        coarse_and_band = {"coarse1", "coarse2", "coarse3", "band"}
        assert set(kept) == (coarse_and_band if native.status().available else coarse_and_band | {"upsampled"})
        small = fast.decode_head._buffers_kept["band"].numel()
        fast(torch.randn(1, 3, 96, 256))  # a wider band: made again, larger
        assert fast.decode_head._buffers_kept["band"].numel() > small
        fast(torch.randn(1, 3, 75, 130))  # maps that do not divide: the whole-map sum in its own buffers
        assert {"sum", "upsampled"} <= set(fast.decode_head._buffers_kept)
    assert "_buffers_kept" not in fast.decode_head.state_dict()


def test_the_kept_buffers_serve_inference_mode_and_no_grad_alike() -> None:
    """Buffers made under inference_mode are written again under no_grad, and the other way round: the blocks' fc1
    workspace, and the decoder's buffers both banded (64x128) and whole-map (75x130, maps that do not divide)."""
    torch.manual_seed(0)
    model = models.create_model("segformer-b0", num_classes=5).eval()
    for size in ((64, 128), (75, 130)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = model(x)
        for first, then in ((torch.inference_mode, torch.no_grad), (torch.no_grad, torch.inference_mode)):
            fast = copy.deepcopy(model).fast_path()
            with first():
                fast(x)
            with then():
                torch.testing.assert_close(fast(x), expected, rtol=1e-4, atol=1e-4)


def test_the_fc1_workspace_is_the_calling_threads_own() -> None:
    """Two threads running banded blocks at once each write their own fc1 workspace, and both get the block."""
    torch.manual_seed(0)
    block = models.create_model("segformer-b0").eval().backbone.stages[0].blocks[0]
    x = torch.randn(1, 40 * 24, 32)
    with torch.no_grad():
        expected = block(x.clone(), 40, 24)
    results, pointers = {}, {}

    def run(name: str) -> None:
        with torch.inference_mode():
            for _ in range(3):
                results[name] = banded_block(block, x.clone(), 40, 24, band_bytes=2**14)
            pointers[name] = segformer_fast._workspaces.fc1.data_ptr()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pointers["a"] != pointers["b"]
    for name in ("a", "b"):
        torch.testing.assert_close(results[name], expected, rtol=1e-5, atol=1e-5)


def test_with_autograd_the_fast_path_takes_the_plain_blocks() -> None:
    """The bands update tokens in place, which autograd cannot differentiate: with gradients on, the encoder runs its
    blocks as written, and a backward pass works."""
    torch.manual_seed(0)
    fast = models.create_model("segformer-b0", num_classes=5, fast=True)
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    fast(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_under_bf16_autocast_the_fast_path_stays_close() -> None:
    torch.manual_seed(0)
    model = models.create_model("segformer-b0", num_classes=5).eval()
    fast = copy.deepcopy(model).fast_path()
    x = torch.randn(1, 3, 64, 128)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = model(x).float(), fast(x).float()
    assert (got - expected).abs().max() <= 0.05 * expected.abs().max()
