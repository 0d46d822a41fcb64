"""Attacks: PGD, SegPGD and CosPGD against the `cospgd` package's reference steps, budgets, seeding, ignored pixels,
the sliding window's crop-by-crop backward, and the model left as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cospgd import functions as cospgd_ref
from torch import nn

from segbench.bench.measure.attacks import (
    AttackSpec,
    attack,
    attack_logits,
    attack_loss,
    input_gradient,
    random_start,
)
from segbench.bench.measure.inference import _slide, normalize, predict_logits
from segbench.bench.run.config import InferenceSpec
from segbench.models.base import ModelMeta

NUM_CLASSES = 4
WHOLE = InferenceSpec()
SLIDE = InferenceSpec(mode="slide", crop=(32, 32), stride=(16, 16), batch_size=3)  # 2 windows x 2 images: 3 + 1


class Tiny(nn.Module):
    """conv - batch norm - tanh - strided conv: output stride 2, so the logits are resized; smooth, so no gradient
    is exactly zero."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, NUM_CLASSES, 3, stride=2, padding=1)
        self.meta = ModelMeta(
            "tiny", "test", "none", "conv", NUM_CLASSES, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), output_stride=2
        )

    def forward(self, x):
        return self.conv2(torch.tanh(self.bn(self.conv1(x))))


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = Tiny()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (2, 3, 32, 48), generator=g, dtype=torch.uint8)


@pytest.fixture
def labels():
    g = torch.Generator().manual_seed(2)
    return torch.randint(0, NUM_CLASSES, (2, 32, 48), generator=g)


def reference_attack(model, images, labels, name, norm, eps, alpha, steps):
    """The attack written with the `cospgd` package's scales and steps, autograd through the whole model."""
    x0 = images.float() / 255
    x = x0.clone()
    for t in range(steps):
        x.requires_grad_(True)
        logits = model(normalize(x * 255, model.meta.mean, model.meta.std))
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        ce = F.cross_entropy(logits, labels, reduction="none")
        if name == "pgd":
            loss = ce.sum()
        elif name == "segpgd":
            loss = cospgd_ref.segpgd_scale(logits, labels, ce, t, steps)
        else:
            loss = cospgd_ref.cospgd_scale(logits, labels, ce, num_classes=NUM_CLASSES).sum()
        (grad,) = torch.autograd.grad(loss, x)
        step = cospgd_ref.step_inf if norm == "linf" else cospgd_ref.step_l2
        x = step(x.detach(), eps, grad, x0, alpha, targeted=False)
    return x


@pytest.mark.parametrize(
    ("name", "norm", "eps", "alpha"),
    [
        ("pgd", "linf", 4 / 255, 1 / 255),
        ("segpgd", "linf", 4 / 255, 1 / 255),
        ("cospgd", "linf", 4 / 255, 1 / 255),
        ("pgd", "l2", 0.5, 0.2),
        ("segpgd", "l2", 0.5, 0.2),
        ("cospgd", "l2", 0.5, 0.2),
    ],
)
def test_attack_equals_the_cospgd_package_reference_loop(model, images, labels, name, norm, eps, alpha):
    spec = AttackSpec(name, norm, eps, steps=5, step_size=alpha, random_start=False)
    adv = attack(model, images, labels, spec, WHOLE)
    ref = reference_attack(model, images, labels, name, norm, eps, alpha, 5)
    torch.testing.assert_close(adv / 255, ref, atol=2e-6, rtol=0)
    assert (adv != images.float()).any()


def test_the_attack_sees_the_metrics_scores(model, images):
    for inference in (WHOLE, SLIDE, InferenceSpec(mode="slide", crop=(32, 32), stride=(16, 16), flip=True)):
        want = F.interpolate(predict_logits(model, images, inference), size=(16, 24), mode="bilinear")
        got = attack_logits(model, images.float() / 255, inference.resolve(model.meta), (16, 24))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["pgd", "segpgd", "cospgd"])
@pytest.mark.parametrize("flip", [False, True])
def test_slide_gradient_equals_autograd_through_the_stitched_forward(model, images, labels, name, flip):
    spec = AttackSpec(name, steps=4)
    inference = InferenceSpec(mode="slide", crop=(32, 32), stride=(16, 16), batch_size=3, flip=flip)
    small = labels[:, ::2, ::2]  # the scores are resized to the labels
    x = (images.float() / 255).requires_grad_(True)
    xn = normalize(x * 255, model.meta.mean, model.meta.std)
    logits = _slide(model, xn, None, inference)
    if flip:
        flipped = _slide(model, xn.flip(-1), None, inference).flip(-1)
        logits = torch.logaddexp(logits.log_softmax(1), flipped.log_softmax(1)) - torch.log(torch.tensor(2.0))
    logits = F.interpolate(logits, size=small.shape[-2:], mode="bilinear", align_corners=False)
    (want,) = torch.autograd.grad(attack_loss(logits, small, name, 1, 4), x)
    got = input_gradient(model, x, small, spec, inference, step=1)
    assert want.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))


@pytest.mark.parametrize("name", ["pgd", "segpgd", "cospgd"])
def test_ignored_pixels_take_no_part(model, images, labels, name):
    ignored = labels.clone()
    ignored[:, :12] = 255
    ignored[1, :, 30:] = 255
    x = (images.float() / 255).requires_grad_(True)
    # reference: the package's scales on the cross-entropy with the pixels left out (its cospgd_scale clamps 255 into
    # the last class, its segpgd_scale takes the mean: harmless, the left-out pixels weigh zero)
    logits = model(normalize(x * 255, model.meta.mean, model.meta.std))
    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(logits, ignored, reduction="none", ignore_index=255)
    if name == "pgd":
        loss = ce.sum()
    elif name == "segpgd":
        loss = cospgd_ref.segpgd_scale(logits, ignored, ce, 3, 10) * (32 * 48)
    else:
        loss = cospgd_ref.cospgd_scale(logits, ignored, ce, num_classes=NUM_CLASSES).sum()
    (want,) = torch.autograd.grad(loss, x)
    spec = AttackSpec(name, steps=10)
    got = input_gradient(model, x, ignored, spec, WHOLE, step=3)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))
    # another ignore label, the same gradient; nothing labelled, no gradient and no perturbation
    other = input_gradient(model, x, ignored.masked_fill(ignored == 255, 9), spec, WHOLE, step=3, ignore_index=9)
    torch.testing.assert_close(other, got, rtol=0, atol=0)
    nothing = torch.full_like(labels, 255)
    assert not input_gradient(model, x, nothing, spec, WHOLE).any()
    no_start = AttackSpec(name, eps=8 / 255, steps=2, random_start=False)
    assert torch.equal(attack(model, images, nothing, no_start, WHOLE), images.float())


def test_seeded_random_start_is_reproducible_and_per_image(model, images, labels):
    spec = AttackSpec("pgd", eps=8 / 255, steps=2)
    a = attack(model, images, labels, spec, WHOLE, seed=3, ids=[10, 11])
    assert torch.equal(a, attack(model, images, labels, spec, WHOLE, seed=3, ids=[10, 11]))
    assert not torch.equal(a, attack(model, images, labels, spec, WHOLE, seed=4, ids=[10, 11]))
    for inference in (WHOLE, SLIDE):  # slide: the crops of both images share forward batches
        both = attack(model, images, labels, spec, inference, seed=3, ids=[10, 11])
        alone = attack(model, images[:1], labels[:1], spec, inference, seed=3, ids=[10])
        torch.testing.assert_close(alone[0], both[0], rtol=0, atol=1e-4)  # up to a batch-size-dependent rounding
    x0 = images.float() / 255
    assert torch.equal(random_start(x0[1:], spec, 3, [11])[0], random_start(x0, spec, 3, [10, 11])[1])
    assert not torch.equal(random_start(x0[:1], spec, 3, [11]), random_start(x0[:1], spec, 3, [10]))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_zero_budget_gives_the_clean_images_exactly(model, images, labels, norm):
    for given in (images, images.float()):
        for name in ("pgd", "segpgd", "cospgd"):
            out = attack(model, given, labels, AttackSpec(name, norm, eps=0.0, steps=1), SLIDE, seed=1)
            assert out.dtype == torch.float32
            assert torch.equal(out, images.float())


@pytest.mark.parametrize(("norm", "eps"), [("linf", 8 / 255), ("l2", 0.3)])
def test_perturbation_stays_in_budget_and_pixel_range(model, images, labels, norm, eps):
    images = images.clone()
    images[:, :, :4] = 255  # saturated pixels: the [0, 1] clip has work to do
    images[:, :, -4:] = 0
    for name in ("pgd", "segpgd", "cospgd"):
        spec = AttackSpec(name, norm, eps, steps=4, step_size=eps)  # big steps push against the budget
        adv = attack(model, images, labels, spec, SLIDE, seed=0)
        delta = (adv - images.float()) / 255
        assert adv.min() >= 0 and adv.max() <= 255
        if norm == "linf":
            assert delta.abs().max() <= eps + 1e-6
            assert delta.abs().max() >= eps - 1e-6  # the budget is used
        else:
            norms = delta.flatten(1).norm(dim=1)
            assert (norms <= eps * (1 + 1e-5)).all() and (norms >= eps * 0.9).all()


def test_the_attack_raises_the_loss(model, images, labels):
    x0 = images.float() / 255
    for name in ("pgd", "segpgd", "cospgd"):
        adv = attack(model, images, labels, AttackSpec(name, eps=8 / 255, steps=5), WHOLE)
        clean_loss = attack_loss(attack_logits(model, x0, WHOLE, (32, 48)), labels, "pgd", 0, 1)
        adv_loss = attack_loss(attack_logits(model, adv / 255, WHOLE, (32, 48)), labels, "pgd", 0, 1)
        assert adv_loss > clean_loss


def test_model_left_as_it_was(model, images, labels):
    model.train()
    model.conv1.bias.requires_grad_(False)
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(module.training))
    attack(model, images, labels, AttackSpec("segpgd", steps=2), SLIDE)
    assert seen and not any(seen)  # the attack ran the model in eval mode
    assert model.training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == {
        n: n != "conv1.bias" for n, _ in model.named_parameters()
    }
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "fgsm"}, "name"),
        ({"norm": "l1"}, "norm"),
        ({"eps": -0.1}, "eps"),
        ({"eps": 8.0}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"step_size": 0.0}, "step_size"),
        ({"random_start": 1}, "random_start"),
    ],
)
def test_spec_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        AttackSpec(**kwargs)


def test_spec_step_size_and_condition_name():
    assert AttackSpec(eps=8 / 255, steps=10).alpha == pytest.approx(2.5 * 8 / 255 / 10)
    assert AttackSpec(step_size=0.01).alpha == 0.01
    assert AttackSpec("pgd", "linf", 0.25 / 255).condition_name() == "pgd-linf-0.25/255"
    assert (
        AttackSpec("cospgd", "l2", 0.5, steps=20, random_start=False).condition_name()
        == "cospgd-l2-0.5-20steps-nostart"
    )
