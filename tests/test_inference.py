"""Inference: whole vs sliding window, flip averaging, precision, shapes, non-finite logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import segbench.bench.measure.inference as inference_module
from segbench.bench.measure.inference import (
    NonFiniteLogitsError,
    normalize,
    predict,
    predict_logits,
    resize_argmax,
    window_starts,
)
from segbench.bench.run.config import InferenceSpec
from segbench.models.base import ModelMeta


class Pointwise(nn.Module):
    """Per-pixel model (translation-equivariant): logits = 1x1 conv of the input, output stride 1."""

    def __init__(self, num_classes: int = 5, identity: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)
        if identity:
            assert num_classes == 3
            with torch.no_grad():
                self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
                self.conv.bias.zero_()
        self.meta = ModelMeta("pointwise", "test", "none", "conv1x1", num_classes, output_stride=1)

    def forward(self, x):
        return self.conv(x)


class Strided(nn.Module):
    """Not translation-equivariant: 3x3 conv at stride 4 (ceil output size), like a real encoder's stem."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 5, stride=4, padding=2)
        self.meta = ModelMeta("strided", "test", "none", "conv", num_classes, output_stride=4, eval_crop=(16, 16))

    def forward(self, x):
        return self.conv(x)


class NaNModel(Pointwise):
    def forward(self, x):
        out = super().forward(x)
        out[:, :, 0, 0] = float("nan")
        return out


def images(b=2, h=37, w=53, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def test_window_starts_follow_mmseg_grid():
    assert window_starts(2048, 1024, 768) == [0, 768, 1024]  # Cityscapes: 3 windows, last aligned to the border
    assert window_starts(1024, 1024, 768) == [0]
    assert window_starts(500, 1024, 768) == [0]  # smaller than the crop: one (smaller) window
    assert window_starts(10, 4, 3) == [0, 3, 6]


def test_normalize_uses_meta_mean_std():
    img = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(img, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert out[0, :, 0, 0].tolist() == pytest.approx([2.0, 1.0, 0.5])


def test_normalize_makes_its_mean_and_std_tensors_once(monkeypatch):
    """Making the mean/std tensors is a host-to-device copy, which on a GPU waits for the device: the second call with
    the same values, device and dtype reuses them, so a GPU loop never waits in `normalize`."""
    made = []
    real_tensor = torch.tensor

    def counting_tensor(*args, **kwargs):
        made.append(args)
        return real_tensor(*args, **kwargs)

    monkeypatch.setattr(torch, "tensor", counting_tensor)
    mean, std = (0.125, 0.25, 0.375), (0.5, 0.625, 0.75)  # values no other test uses: nothing cached before
    img = images(b=1, h=3, w=4)
    first = normalize(img, mean, std)
    made_first = len(made)
    again = normalize(img, list(mean), list(std))  # a list of the same values is the same key
    assert made_first > 0 and len(made) == made_first  # no new tensor the second time
    assert torch.equal(first, again)
    expected = (img.float() / 255 - real_tensor(mean).view(1, 3, 1, 1)) / real_tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(first, expected, atol=1e-5)
    normalize(img, mean, (0.5, 0.625, 0.5))  # other values get their own pair
    assert len(made) > made_first


def test_normalize_serves_code_that_records_autograd():
    """Tensors cached inside `predict` (inference mode) also work in a training loop (scripts/train_demo.py)."""
    mean, std = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)
    img = images(b=1, h=3, w=4).float().requires_grad_()
    with torch.inference_mode():
        normalize(img.detach(), mean, std)
    normalize(img, mean, std).sum().backward()
    assert img.grad is not None


def test_slide_with_one_window_equals_whole():
    torch.manual_seed(0)
    model = Strided().eval()
    x = images(h=16, w=16)
    whole = predict_logits(model, x, InferenceSpec(mode="whole"))
    slide = predict_logits(model, x, InferenceSpec(mode="slide", crop=(32, 32), stride=(8, 8)))
    assert torch.equal(whole, slide)


def test_slide_equals_whole_for_translation_equivariant_model():
    model = Pointwise(3, identity=True).eval()
    x = images(h=37, w=53)
    whole = predict_logits(model, x, InferenceSpec(mode="whole"))
    assert torch.allclose(whole, normalize(x, model.meta.mean, model.meta.std), atol=1e-6)
    for crop, stride in [((16, 16), (8, 12)), ((20, 64), (7, 5)), ((37, 10), (37, 10))]:
        slide = predict_logits(model, x, InferenceSpec(mode="slide", crop=crop, stride=stride, batch_size=3))
        assert torch.allclose(slide, whole, atol=1e-5), (crop, stride)


def test_slide_averages_overlaps_and_differs_from_whole_for_strided_model():
    torch.manual_seed(0)
    model = Strided().eval()
    x = images(b=1, h=24, w=24)
    spec = InferenceSpec(mode="slide", crop=(16, 16), stride=(8, 8))
    out = predict_logits(model, x, spec)
    # independent re-computation: 2 x 2 windows at 0 and 8, averaged where they overlap
    xn = normalize(x, model.meta.mean, model.meta.std)
    acc, cnt = torch.zeros(1, 4, 24, 24), torch.zeros(1, 1, 24, 24)
    for y in (0, 8):
        for x0 in (0, 8):
            logit = F.interpolate(model(xn[:, :, y : y + 16, x0 : x0 + 16]), (16, 16), mode="bilinear")
            acc[:, :, y : y + 16, x0 : x0 + 16] += logit
            cnt[:, :, y : y + 16, x0 : x0 + 16] += 1
    assert torch.allclose(out, acc / cnt, atol=1e-6)
    assert not torch.allclose(out, predict_logits(model, x, InferenceSpec(mode="whole")), atol=1e-3)


def test_flip_averages_probabilities():
    torch.manual_seed(0)
    model = Strided().eval()
    x = images(b=2, h=32, w=40)
    plain = predict_logits(model, x, InferenceSpec())
    flipped = predict_logits(model, x.flip(-1), InferenceSpec()).flip(-1)
    both = predict_logits(model, x, InferenceSpec(flip=True))
    expected = ((plain.softmax(1) + flipped.softmax(1)) / 2).log()
    assert torch.allclose(both, expected, atol=1e-5)
    assert torch.allclose(both.exp().sum(1), torch.ones(2, 32, 40), atol=1e-5)
    # a per-pixel model is flip-equivariant: flipping changes nothing
    pw = Pointwise().eval()
    assert torch.equal(predict(pw, x, InferenceSpec(flip=True)), predict(pw, x, InferenceSpec()))


@pytest.mark.parametrize("size", [(50, 70), (33, 97), (64, 64)])
def test_label_shape_on_odd_sizes(size):
    from segbench import models

    torch.manual_seed(0)
    model = models.create_model("segformer-tiny")
    x = images(b=2, h=size[0], w=size[1])
    labels = predict(model, x, InferenceSpec(mode="slide", crop=(32, 48), stride=(24, 24)))
    assert labels.shape == (2, *size) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < 19
    upsampled = predict(model, x, InferenceSpec(), out_size=(size[0] * 2, size[1] * 2))
    assert upsampled.shape == (2, size[0] * 2, size[1] * 2)


def test_bf16_on_cpu_close_to_fp32():
    torch.manual_seed(0)
    model = Strided().eval()
    x = images(b=1, h=64, w=64)
    fp32 = predict_logits(model, x, InferenceSpec())
    bf16 = predict_logits(model, x, InferenceSpec(precision="bf16"))
    assert bf16.dtype == torch.float32 and torch.allclose(fp32, bf16, atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        InferenceSpec(precision="fp16", device="cpu")


def test_non_finite_logits_raise():
    with pytest.raises(NonFiniteLogitsError, match="NaN or inf"):
        predict(NaNModel().eval(), images(), InferenceSpec())
    for spec in (InferenceSpec(mode="slide", crop=(16, 16), stride=(8, 8)), InferenceSpec(flip=True)):
        with pytest.raises(NonFiniteLogitsError, match="NaN or inf"):
            predict(NaNModel().eval(), images(), spec)
    predict(NaNModel().eval(), images(), InferenceSpec(), check_finite=False)  # the caller may opt out


class Coarse(Strided):
    """Integer logits at stride 4: upsampled, many pixels tie between classes."""

    def forward(self, x):
        return super().forward(x).round()


@pytest.mark.parametrize("spec", [InferenceSpec(), InferenceSpec(mode="slide", crop=(16, 16), stride=(8, 8))])
def test_labels_are_argmax_of_resized_logits_ties_included(spec):
    model = Coarse().eval()
    x = images(h=41, w=67)
    logits = torch.nn.functional.interpolate(
        predict_logits(model, x, spec), size=(50, 80), mode="bilinear", align_corners=False
    )
    assert torch.equal(predict(model, x, spec, out_size=(50, 80)), logits.argmax(1))


def scores_with_ties_and_non_finite(b, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g) * 3
    x[:, :, : h // 2] = x[:, :, : h // 2].round()  # integer scores in the top half: many exact ties after resizing
    x[0, 1, h // 3, w // 2] = float("nan")  # a NaN spreads to its neighbours and must win there, as in torch.max
    x[-1, 0, h - 1, 0] = float("inf")
    x[-1, c - 1, 0, w - 1] = float("-inf")
    return x


@pytest.mark.parametrize(
    "b, h, w, size, band_rows",
    [
        (2, 16, 24, (64, 96), 3),  # SegFormer's x4, bands not dividing the height
        (1, 16, 24, (128, 50), 5),  # x8 in height, the width shrinks by a non-integer factor
        (2, 9, 7, (36, 28), 1),  # one source row per band
        (1, 10, 24, (10, 40), 3),  # x1 in height: only the width is resized
        (2, 16, 24, (16, 24), 4),  # nothing to resize
        (1, 16, 24, (48, 96), 4),  # x3: not a power of two, plain path
        (1, 17, 33, (67, 130), 8),  # not a multiple, plain path
    ],
)
def test_resize_argmax_equals_resizing_everything_then_argmax(b, h, w, size, band_rows):
    x = scores_with_ties_and_non_finite(b, 5, h, w)
    full = x if (h, w) == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    expected = full.max(1).indices
    assert expected[:, : size[0] // 2].ne(expected[:, : size[0] // 2].roll(1, -1)).any()  # not a constant map
    got = resize_argmax(x, size, band_rows=band_rows)
    assert got.dtype == torch.int64 and got.shape == (b, *size)
    assert torch.equal(got, expected)


def test_resize_argmax_leaves_channels_last_and_cuda_layouts_to_torch():
    x = scores_with_ties_and_non_finite(2, 5, 16, 24).contiguous(memory_format=torch.channels_last)
    expected = F.interpolate(x, size=(64, 96), mode="bilinear", align_corners=False).max(1).indices
    assert torch.equal(resize_argmax(x, (64, 96)), expected)


@pytest.mark.parametrize("model", [Coarse(), NaNModel()], ids=["ties", "nan"])
def test_predict_takes_labels_band_by_band_with_the_same_result(model, monkeypatch):
    kernels = []

    def record(fn):  # run the kernel as plain Python, and see that the banded path was taken
        kernels.append(fn.__name__)
        return fn

    monkeypatch.setattr(inference_module, "compiled", record)
    monkeypatch.setattr(inference_module, "BAND_ROWS", 3)
    x = images(h=40, w=64)
    expected = predict_logits(model.eval(), x, InferenceSpec()).max(1).indices
    for out_size in (None, (40, 64)):
        assert torch.equal(predict(model, x, InferenceSpec(), out_size=out_size, check_finite=False), expected)
    assert kernels == ["_argmax_rows_kernel"] * 2


def test_spec_validation_and_meta_defaults():
    with pytest.raises(ValueError, match="mode"):
        InferenceSpec(mode="tile")
    with pytest.raises(ValueError, match="crop"):
        InferenceSpec(crop=(0, 4))
    meta = Strided().meta  # eval_crop (16, 16), eval_stride (768, 768)
    assert InferenceSpec(mode="slide").resolve(meta).crop == (16, 16)
    spec = InferenceSpec(mode="slide", crop=512).resolve(meta)
    assert spec.crop == (512, 512) and spec.stride == (768, 768)
