"""mIoU against the L-inf budget for PGD, SegPGD and CosPGD, the attack's cost per image, and ECE clean and attacked,
for the demo models on synthetic scenes (`segbench.bench.measure.attacks`, used directly: attacks are not yet
conditions of a run).

    python -m benchmarks.bench_attacks                         # SegFormer-B0 and DeepLabV3+ (MobileNetV2), demo weights
    python -m benchmarks.bench_attacks --images 2 --steps 5 --eps 0,1,4

The scenes are the demo's (synthetic Cityscapes layout, 128x256, seed 0), the models carry the demo's weights trained
on such scenes (not Cityscapes numbers). Each image is attacked at each budget (eps in /255 units, L-inf, `--steps`
steps of 2.5 eps / steps, seeded random start), whole-image inference, fp32, on the CPU; mIoU and ECE are measured on
the attacked images as an accuracy cell measures them. Seconds per image are the attack's wall time (all its steps)
divided by the images. Run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from segbench import models, suites
from segbench.bench.data.cityscapes import CityscapesDataset
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.measure.attacks import ATTACKS, AttackSpec, attack
from segbench.bench.measure.calibration import CalibrationCounter
from segbench.bench.measure.inference import predict
from segbench.bench.measure.metrics import ConfusionCounter, mean_iou
from segbench.bench.run.config import InferenceSpec

SPEC = InferenceSpec(mode="whole")


def _scores(model, images, labels) -> tuple[float, float]:
    """mIoU (%) and ECE (%) of `model` on `images` against `labels`."""
    cm, cal = ConfusionCounter(19, 255, "cpu"), CalibrationCounter()
    pred = predict(model, images, SPEC, out_size=tuple(labels.shape[-2:]), calibration=cal, labels=labels)
    cm.add(pred, labels)
    return 100 * mean_iou(cm.matrix()), cal.values()["ece"]


def run(name: str, images: torch.Tensor, labels: torch.Tensor, eps: list[float], steps: int) -> list[dict]:
    weights = suites.get_suite("demo").weights[name]
    model = models.create_model(name, num_classes=19, weights=weights).eval()
    clean_miou, clean_ece = _scores(model, images, labels)
    rows = [{"model": name, "attack": "clean", "eps": 0.0, "miou": clean_miou, "ece": clean_ece, "s_per_image": 0.0}]
    for attack_name in ATTACKS:
        for e in eps:
            spec = AttackSpec(name=attack_name, norm="linf", eps=e / 255, steps=steps)
            start = time.perf_counter()
            adv = attack(model, images, labels, spec, SPEC, seed=0, ids=list(range(len(images))))
            seconds = (time.perf_counter() - start) / len(images)
            miou, ece = _scores(model, adv, labels)
            rows.append(
                {"model": name, "attack": attack_name, "eps": e, "miou": miou, "ece": ece, "s_per_image": seconds}
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="segformer-b0,deeplabv3plus-mobilenetv2")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--eps", default="0.25,0.5,1,2,4,8", help="L-inf budgets in /255 units")
    args = p.parse_args(argv)
    eps = [float(v) for v in args.eps.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_cityscapes(Path(tmp), num_images=args.images, size=(128, 256), split="val", seed=0)
        data = CityscapesDataset(root, max_images=args.images)
        images = torch.stack([data[i]["image"] for i in range(len(data))])
        labels = torch.stack([data[i]["label"] for i in range(len(data))])
    print(f"{len(images)} synthetic scenes 128x256, demo weights, L-inf, {args.steps} steps, CPU fp32, whole image\n")
    print("| model | attack | eps (/255) | mIoU (%) | ECE (%) | attack s per image |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for r in run(name, images, labels, eps, args.steps):
            print(
                f"| {r['model']} | {r['attack']} | {r['eps']:g} | {r['miou']:.2f} | {r['ece']:.2f} | "
                f"{r['s_per_image']:.3f} |"
            )


if __name__ == "__main__":
    main()
