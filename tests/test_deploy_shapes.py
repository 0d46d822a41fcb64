"""A deployment variant on shapes other than the one it was built for: batch sizes, resolutions, sliding crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segbench import models
from segbench.bench.data.synthetic import draw_scene
from segbench.bench.deploy import ArtifactCache
from segbench.bench.deploy.grid import DeployedModel, _calibration_for, prepare_grid
from segbench.bench.measure.inference import predict_logits
from segbench.bench.run.config import InferenceSpec

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SIZE = (64, 128)


def scene(model: nn.Module, index: int, size: tuple[int, int] = SIZE) -> torch.Tensor:
    mean = torch.tensor(model.meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.meta.std).view(1, 3, 1, 1)
    image = torch.from_numpy(draw_scene(size, seed=3, index=index)[0].astype(np.float32) / 255.0)
    return (image.permute(2, 0, 1)[None] - mean) / std


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = models.create_model("segformer-b0", num_classes=5).eval()

    def build(name: str) -> nn.Module:
        return model

    def images(m: nn.Module) -> list[torch.Tensor]:
        return [scene(m, i) for i in range(3)]

    cache = ArtifactCache(tmp_path_factory.mktemp("cache"))
    made = prepare_grid(
        ["b0"], build, images, ["onnxruntime"], ["fp32", "int8"], calibration=2, quiet=True, cache=cache
    )
    return model, made


def test_a_static_variant_rebuilds_itself_for_another_batch_and_resolution(grid) -> None:
    model, made = grid
    variant = made.variants["b0@onnxruntime-fp32"]
    assert isinstance(variant, DeployedModel)
    assert variant.deployment.built.dynamic is False
    with torch.inference_mode():
        for shape in ((2, 3, *SIZE), (1, 3, 32, 64)):
            x = torch.randn(shape)
            out = variant(x)
            expected = model(x)
            assert out.shape == expected.shape
            torch.testing.assert_close(out, expected, rtol=1e-3, atol=1e-3)
    assert [r["shape"] for r in variant.rebuilds] == [[2, 3, *SIZE], [1, 3, 32, 64]]
    assert variant._other is not None and variant._other[0] == (1, 3, 32, 64)  # only the last other shape is kept
    with torch.inference_mode():
        variant(torch.randn(1, 3, *SIZE))  # the suite's shape runs the module built and checked before the run
    assert len(variant.rebuilds) == 2


def test_a_static_variant_slides_over_an_image_larger_than_its_crop(grid) -> None:
    model, made = grid
    variant = made.variants["b0@onnxruntime-fp32"]
    image = torch.from_numpy(draw_scene((64, 192), seed=3, index=0)[0]).permute(2, 0, 1)[None]
    spec = InferenceSpec(mode="slide", crop=(64, 128), stride=(64, 64))
    with torch.inference_mode():
        slid = predict_logits(variant, image, spec)
        expected = predict_logits(model, image, spec)
    torch.testing.assert_close(slid, expected, rtol=1e-3, atol=1e-3)


def test_int8_rebuilds_with_its_calibration_resized_and_repeated(grid) -> None:
    _, made = grid
    variant = made.variants["b0@onnxruntime-int8"]
    with torch.inference_mode():
        out = variant(torch.randn(4, 3, 32, 64))  # batch 4 > the 2 calibration images: repeated to fill the batch
    assert out.shape == (4, 5, 8, 16)  # stride-4 logits
    assert torch.isfinite(out).all()


def test_calibration_for_another_shape() -> None:
    images = [torch.randn(1, 3, 8, 16), torch.randn(1, 3, 8, 16)]
    same = _calibration_for(images, (1, 3, 8, 16))
    assert all(a is b for a, b in zip(same, images))
    grown = _calibration_for(images, (5, 3, 4, 8))
    assert len(grown) == 6 and all(t.shape == (1, 3, 4, 8) for t in grown)  # 2 images, repeated 3 times: >= 5
    with pytest.raises(ValueError, match="calibration images"):
        _calibration_for([], (1, 3, 4, 8))


def test_a_new_shape_builds_under_a_timer(grid) -> None:
    """`measure_latency` calls the model under inference mode and a dispatch mode (its SDPA-kernel probe); the export
    that a new shape needs traces the model outside both."""
    from segbench.bench.measure.latency import measure_latency

    _, made = grid
    variant = made.variants["b0@onnxruntime-fp32"]
    stats = measure_latency(variant, SIZE, batch_size=3, warmup=1, iters=2, max_retries=0)
    assert stats.batch_size == 3 and stats.median_ms > 0
    assert variant.rebuilds[-1]["shape"] == [3, 3, *SIZE]
