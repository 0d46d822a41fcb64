"""White-box adversarial attacks on segmentation models: PGD, SegPGD and CosPGD, under an L-inf or L2 budget.

Every attack runs in [0, 1] pixel space before normalisation: the model's mean/std (`normalize`) are applied inside
the differentiable graph, and the loss is taken on the logits the metric sees: the scores `predict` makes (whole or
sliding window, flip, precision; `image_scores`), resized (bilinear, `align_corners=False`) to the label size as
`predict(out_size=...)` does. Pixels labelled `ignore_index` are left out of every loss.

Losses, with `CE_i` the cross-entropy of labelled pixel `i` (summed, not averaged: a positive factor changes neither
the sign of the gradient nor its L2 direction, so the steps are those of the papers' means):

* **pgd** (Madry et al., ICLR 2018): `L = sum_i CE_i`.
* **segpgd** (Gu et al., ECCV 2022): `L = (1 - l) sum_{i correct} CE_i + l sum_{i wrong} CE_i`,
  `l = t / (2T)` at step `t = 0..T-1`; a pixel is correct when the argmax of its logits is its label.
* **cospgd** (Agnihotri et al., ICML 2024): `L = sum_i cos(softmax(f_i), onehot(y_i)) CE_i`, the cosine detached.

Steps (those of the `cospgd` package's `step_inf` / `step_l2`, the authors' code):

* **linf**: `x <- clip01(x0 + clip_eps(x + a sign(grad) - x0))`.
* **l2**: `x <- clip01(x0 + proj_eps(x + a grad / ||grad|| - x0))`, norms per image over all pixels and channels;
  `proj_eps` scales a perturbation longer than `eps` back onto the sphere.

The default step size is `2.5 eps / steps`, the widespread rule of thumb from the Madry lab's adversarial-training
work (Madry et al., ICLR 2018, and their `robustness` library): the steps could cross the budget 2.5 times, so steps
that the projection or the [0, 1] clip cut short are made up for. Papers' settings (SegPGD, CosPGD: a fixed step such
as 0.01) are given as `step_size`.

The random start is uniform in the L-inf ball (linf) or a uniform draw in [-1, 1] scaled onto the L2 sphere (l2,
the `cospgd` package's `init_l2`), then clipped to [0, 1]. It is drawn on the CPU per image from the run's seed, the
image's id and the attack's condition name (`attack_seed`), so an image gets the same start in any batch.

**Sliding window.** Slide inference stitches crop logits: `logits = (sum_k pad_k(f(crop_k(x)))) / count`. Its input
gradient is the sum over windows of each crop's vector-Jacobian product with `(dL/dlogits)[window_k] / count`. The
forward (`_SlideVJP.forward`) runs `inference._slide` itself without autograd, so the attack's loss sees exactly
the evaluation's numbers; the backward re-runs the crops in evaluation's batches (`InferenceSpec.batch_size` crops)
with autograd, each batch's graph freed before the next, so memory stays at about one batch of crops instead of a
graph over the whole image. Each step then costs two forwards and one backward per crop.

Model parameters are frozen for the attack (`requires_grad_(False)`, restored afterwards) and the model runs in eval
mode (its mode is restored afterwards). The step loop makes no host syncs. Precision follows the `InferenceSpec`
(fp32 unless it asks for autocast); gradients under fp16/bf16 autocast are coarser, which the caller reports.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segbench.bench.measure.inference import _forward, _slide, image_scores, normalize, slide_windows, window_count
from segbench.bench.results.axes import ATTACKS, NORMS, AttackSpec

__all__ = ["ATTACKS", "NORMS", "AttackSpec", "attack", "attack_logits", "attack_loss", "input_gradient", "random_start"]
from segbench.bench.run.config import InferenceSpec

SEED_PROTOCOL = "attack-v1"
"""Version of the random start's seed derivation (`attack_seed`): a change of derivation changes this."""


class _SlideVJP(torch.autograd.Function):
    """`inference._slide` whose backward runs crop by crop (see "Sliding window" in the module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, model: nn.Module, spec: InferenceSpec) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.model, ctx.spec = model, spec
        return _slide(model, x, None, spec)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        model, spec = ctx.model, ctx.spec
        b, _, h, w = x.shape
        boxes = slide_windows(h, w, spec)
        crop_size = (boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1])
        grad = grad / window_count(boxes, h, w, grad.device)  # the stitched logits' division by the count
        rows = [(boxes[k], i) for k in range(len(boxes)) for i in range(b)]  # window-major, as `_slide` batches
        x_grad = torch.zeros_like(x)
        for start in range(0, len(rows), spec.batch_size):
            chunk = rows[start : start + spec.batch_size]
            crops = torch.stack([x[i, :, y1:y2, x1:x2] for (y1, x1, y2, x2), i in chunk]).requires_grad_(True)
            with torch.enable_grad():
                out = _forward(model, crops, crop_size, spec)
            out_grad = torch.stack([grad[i, :, y1:y2, x1:x2] for (y1, x1, y2, x2), i in chunk])
            (crop_grad,) = torch.autograd.grad(out, crops, out_grad)
            for j, ((y1, x1, y2, x2), i) in enumerate(chunk):
                x_grad[i, :, y1:y2, x1:x2] += crop_grad[j]
        return x_grad, None, None


def _differentiable_single(
    model: nn.Module, x: torch.Tensor, spec: InferenceSpec, check_finite: bool = False
) -> torch.Tensor:
    """`inference._single` for autograd: whole mode as it is, slide mode through `_SlideVJP`."""
    if spec.mode == "whole":
        return _forward(model, x, tuple(x.shape[-2:]), spec, check_finite)
    return _SlideVJP.apply(x, model, spec)


def attack_logits(model: nn.Module, x: torch.Tensor, inference: InferenceSpec, size: tuple[int, int]) -> torch.Tensor:
    """The scores the metric sees for `x` in [0, 1], differentiable in `x`.

    Args:
        model: segmentation model with `.meta`.
        x: float `(B, 3, H, W)` in [0, 1].
        inference: inference settings, resolved (`InferenceSpec.resolve`).
        size: (H, W) of the labels: the scores are resized to it as `predict(out_size=size)` resizes them.

    Returns:
        float32 `(B, C, *size)`.
    """
    x = normalize(x * 255.0, model.meta.mean, model.meta.std)
    scores = image_scores(model, x, inference, single=_differentiable_single)
    if tuple(scores.shape[-2:]) != tuple(size):
        scores = F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)
    return scores


def attack_loss(
    logits: torch.Tensor, labels: torch.Tensor, name: str, step: int, steps: int, ignore_index: int = 255
) -> torch.Tensor:
    """The attack's objective (to be maximised) summed over the labelled pixels of the batch.

    Args:
        logits: `(B, C, H, W)` scores.
        labels: int `(B, H, W)` train ids, `ignore_index` where unlabelled.
        name: one of `ATTACKS`.
        step: the step `t` (0-based), for SegPGD's weight `t / (2T)`.
        steps: the number of steps `T`.
        ignore_index: the label of unlabelled pixels.

    Returns:
        A scalar.
    """
    valid = labels != ignore_index
    target = labels.masked_fill(~valid, 0)
    ce = torch.where(valid, F.cross_entropy(logits, target, reduction="none"), 0.0)  # ignored pixels: no gradient
    if name == "pgd":
        return ce.sum()
    if name == "segpgd":
        lam = step / (2 * steps)
        correct = logits.argmax(1) == target
        return torch.where(correct, (1 - lam) * ce, lam * ce).sum()
    if name == "cospgd":
        # cos(p, onehot(y)) = p_y / ||p||: no one-hot tensor, and no host sync (`F.one_hot` checks its labels' range)
        with torch.no_grad():
            p = logits.softmax(1)
            cos = p.gather(1, target[:, None]).squeeze(1) / p.norm(dim=1)
        return (cos * ce).sum()
    raise ValueError(f"name: attack {name!r} unknown; choose one of {', '.join(ATTACKS)}")


def input_gradient(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    spec: AttackSpec,
    inference: InferenceSpec,
    step: int = 0,
    ignore_index: int = 255,
) -> torch.Tensor:
    """`d attack_loss / d x` at `x` in [0, 1] (`inference` resolved), the model's parameters left as they are."""
    x = x.detach().requires_grad_(True)
    logits = attack_logits(model, x, inference, tuple(labels.shape[-2:]))
    loss = attack_loss(logits, labels, spec.name, step, spec.steps, ignore_index)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def attack_seed(seed: int, image_id: object, condition: str) -> int:
    """The 64-bit seed of one image's random start: from the run's seed, the image's id and the condition name."""
    key = f"{SEED_PROTOCOL}/{int(seed)}/{image_id}/{condition}"
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def random_start(x0: torch.Tensor, spec: AttackSpec, seed: int, ids: Sequence[object]) -> torch.Tensor:
    """`x0` in [0, 1] moved to a random point of the budget, image `k` drawn from `attack_seed(seed, ids[k], ...)`."""
    noise = []
    for image_id in ids:
        gen = torch.Generator().manual_seed(attack_seed(seed, image_id, spec.condition_name()))
        u = torch.rand(tuple(x0.shape[1:]), generator=gen, dtype=torch.float32) * 2 - 1
        noise.append(u * spec.eps if spec.norm == "linf" else u * (spec.eps / u.norm().clamp_min(1e-12)))
    return (x0 + torch.stack(noise).to(x0.device)).clamp(0, 1)


def _per_image_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


def project_step(x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor, spec: AttackSpec) -> torch.Tensor:
    """One ascent step from `x` along `grad`, projected onto `x0`'s budget and clipped to [0, 1]."""
    if spec.norm == "linf":
        delta = (x + spec.alpha * grad.sign() - x0).clamp(-spec.eps, spec.eps)
    else:
        delta = x + spec.alpha * (grad / _per_image_norm(grad)) - x0
        delta = delta / torch.maximum(_per_image_norm(delta) / spec.eps, torch.ones((), device=x.device))
    return (x0 + delta).clamp(0, 1)


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode with every parameter's `requires_grad` off; both restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


def attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: AttackSpec,
    inference: InferenceSpec,
    seed: int = 0,
    ids: Sequence[object] | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Adversarial versions of `images` (see the module docstring for the attacks).

    Args:
        model: segmentation model with `.meta`, on the images' device.
        images: uint8 RGB `(B, 3, H, W)`, or float in [0, 255], as `predict` takes them.
        labels: int `(B, H', W')` train ids (`ignore_index` where unlabelled); the scores are resized to `(H', W')`.
        spec: the attack.
        inference: inference settings (a missing crop/stride is taken from `model.meta`).
        seed: the run's seed, for the random start.
        ids: one id per image (e.g. its dataset index or file stem) for the random start; None: 0..B-1. Pass real
            ids to make an image's attack independent of the batch it is in.
        ignore_index: the label of unlabelled pixels.

    Returns:
        float32 `(B, 3, H, W)` in [0, 255]: `images + 255 * delta` with `delta` the perturbation in [0, 1] units, so
        `eps = 0` gives the images back exactly.
    """
    if spec.is_worst:
        raise ValueError("spec: the worst case is chosen per image among attacks; it is not an attack to run")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if labels.ndim != 3 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"expected labels of shape (B, H, W) for {images.shape[0]} images, got {tuple(labels.shape)}")
    ids = range(images.shape[0]) if ids is None else ids
    if len(ids) != images.shape[0]:
        raise ValueError(f"ids: {len(ids)} ids for {images.shape[0]} images")
    inference = inference.resolve(model.meta)
    clean = images.float()
    x0 = clean / 255.0
    labels = labels.long()
    with frozen(model):
        x = random_start(x0, spec, seed, ids) if spec.random_start else x0
        for t in range(spec.steps):
            grad = input_gradient(model, x, labels, spec, inference, t, ignore_index)
            x = project_step(x, x0, grad, spec).detach()
    return (clean + (x - x0) * 255.0).clamp(0, 255)
