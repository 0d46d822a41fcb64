"""Attacks on the GPU: a step costs what a training step costs, and the step loop never waits for the device."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F

from segbench.bench.measure.attacks import attack
from segbench.bench.measure.clock import Clock
from segbench.bench.measure.inference import normalize
from segbench.bench.results.axes import AttackSpec
from segbench.bench.run.config import InferenceSpec
from segbench.models.user import first_line

WHOLE = InferenceSpec(mode="whole")
SLIDE = InferenceSpec(mode="slide", crop=(512, 512), stride=(384, 384))
SIZE = (512, 1024)


def _inputs(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1, 3, *SIZE), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 19, (1, *SIZE), generator=g)
    labels[:, :16] = 255  # some ignored pixels
    return images.to(device), labels.to(device)


@pytest.mark.gpu(budget_s=30)
def test_attack_steps_make_no_host_sync_cuda(cuda, rows, seeded):
    """Every attack, whole image and sliding window, under `torch.cuda.set_sync_debug_mode("error")`: any operation
    that waits for the device inside `attack` raises (the random start, drawn on the host per image, is left out)."""
    model = seeded("segformer-b0").to(cuda)
    images, labels = _inputs(cuda)
    for inference in (WHOLE, SLIDE):
        for name in ("pgd", "segpgd", "cospgd"):
            spec = AttackSpec(name, "linf", 4 / 255, steps=2, random_start=False)
            attack(model, images, labels, spec, inference)  # warm: cuDNN/cuBLAS set-up may sync once
            torch.cuda.synchronize(cuda)
            torch.cuda.set_sync_debug_mode("error")
            try:
                attack(model, images, labels, spec, inference)
                ok, detail = True, "no synchronising call"
            except RuntimeError as e:
                ok, detail = False, first_line(str(e))
            finally:
                torch.cuda.set_sync_debug_mode(0)
            rows.judged(ok, f"no host sync: {name} {inference.mode}", "0 syncs" if ok else "sync", detail)


def _training_step(model, x, labels) -> None:
    loss = F.cross_entropy(F.interpolate(model(x), size=SIZE, mode="bilinear"), labels, ignore_index=255)
    loss.backward()


@pytest.mark.gpu(budget_s=30)
def test_attack_step_costs_a_training_step_cuda(cuda, rows, seeded):
    """One PGD step (forward, backward to the input, projection) against one training step of the same model at the
    same input (forward, loss, backward to the parameters; eval mode for both, so the same kernels run), fp32, B0 at
    512x1024, median of 10 each, CUDA events: the attack step within 1.25x."""
    model = seeded("segformer-b0").to(cuda)
    images, labels = _inputs(cuda)
    clock = Clock(cuda)
    spec = AttackSpec("pgd", "linf", 4 / 255, steps=1, random_start=False)
    x = normalize(images, model.meta.mean, model.meta.std)
    for _ in range(3):
        attack(model, images, labels, spec, WHOLE)
        _training_step(model, x, labels)
        model.zero_grad(set_to_none=True)
    step, train = [], []
    for _ in range(10):
        step.append(clock.time_ms(lambda: attack(model, images, labels, spec, WHOLE)))
        train.append(clock.time_ms(lambda: _training_step(model, x, labels)))
        model.zero_grad(set_to_none=True)
    a, t = statistics.median(step), statistics.median(train)
    rows.judged(
        a <= 1.25 * t,
        "attack step vs training step",
        f"{a:.2f} ms vs {t:.2f} ms ({a / t:.2f}x)",
        f"B0 fp32 {SIZE[0]}x{SIZE[1]}, whole image, median of 10; bound 1.25x",
    )
