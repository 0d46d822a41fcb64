"""Train the demo suite's small checkpoints on synthetic scenes, on a CPU, from scratch (seeded).

The demo must show real robustness behaviour (clean accuracy, then degradation under corruption) rather than the
noise of random weights, without Cityscapes or downloaded weights. These checkpoints are trained only on synthetic
scenes in the Cityscapes layout: the report labels them as synthetic-data demo weights, and their numbers say
nothing about Cityscapes.

    python -m scripts.train_demo --model segformer-b0 --iters 1500
    python -m scripts.train_demo --model deeplabv3plus-mobilenetv2 --iters 1500

Writes `suites/demo_weights/<model>.safetensors` (fp16 tensors; loaded strictly like any checkpoint) and
`<model>.json` with the command, seed, data and the mIoU reached on the demo suite's validation scenes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]

from segbench import models  # noqa: E402
from segbench.bench.data.cityscapes import CityscapesDataset  # noqa: E402
from segbench.bench.data.synthetic import write_synthetic_cityscapes  # noqa: E402
from segbench.bench.measure.inference import normalize  # noqa: E402
from segbench.bench.measure.metrics import confusion_matrix, mean_iou  # noqa: E402
from segbench.bench.results.targets import TargetError, check_target  # noqa: E402

OUT = ROOT / "suites" / "demo_weights"


def _batches(dataset, batch_size: int, generator: torch.Generator, crop: tuple[int, int] | None = None):
    while True:
        order = torch.randperm(len(dataset), generator=generator).tolist()
        for i in range(0, len(order) - batch_size + 1, batch_size):
            items = [dataset[j] for j in order[i : i + batch_size]]
            images = torch.stack([it["image"] for it in items])
            labels = torch.stack([it["label"] for it in items]).long()
            if crop is not None:  # one random crop per batch keeps the step cheap on a CPU
                h, w = images.shape[2:]
                top = int(torch.randint(0, h - crop[0] + 1, (1,), generator=generator))
                left = int(torch.randint(0, w - crop[1] + 1, (1,), generator=generator))
                images = images[:, :, top : top + crop[0], left : left + crop[1]]
                labels = labels[:, top : top + crop[0], left : left + crop[1]]
            flip = torch.rand(len(items), generator=generator) < 0.5  # horizontal flip
            images[flip] = images[flip].flip(-1)
            labels[flip] = labels[flip].flip(-1)
            yield images, labels


def evaluate(model, dataset) -> float:
    model.eval()
    cm = torch.zeros(19, 19, dtype=torch.int64)
    with torch.inference_mode():
        for item in dataset:
            x = normalize(item["image"][None], model.meta.mean, model.meta.std)
            logits = F.interpolate(model(x), size=item["label"].shape, mode="bilinear", align_corners=False)
            cm += confusion_matrix(logits.argmax(1)[0], item["label"].long())
    return float(mean_iou(cm))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train-images", type=int, default=192)
    ap.add_argument("--size", default="128x256", help="HxW of the synthetic scenes (the demo suite's size)")
    ap.add_argument("--crop", default="96x192", help="HxW random training crop ('none' for whole scenes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT), help="folder of checkpoints to write <model>.safetensors and .json to")
    args = ap.parse_args()
    try:  # before training: a file named as the folder is refused, untouched
        check_target(args.out, "--out", "a folder of checkpoints", "give a folder", Path.is_dir)
    except TargetError as e:
        raise SystemExit(f"error: {e}") from None
    h, w = (int(v) for v in args.size.split("x"))
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        # train scenes use a different scene seed than the demo suite's validation scenes (seed 0)
        write_synthetic_cityscapes(tmp, num_images=args.train_images, size=(h, w), split="train", seed=1000 + args.seed)
        write_synthetic_cityscapes(tmp, num_images=8, size=(h, w), split="val", seed=0)
        train = CityscapesDataset(tmp, split="train")
        val = CityscapesDataset(tmp, split="val")
        train_items = [train[i] for i in range(len(train))]  # small: keep decoded scenes in memory

        model = models.create_model(args.model, num_classes=19).train()
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 - it / args.iters) ** 0.9)  # poly, as mmseg
        t0 = time.time()
        losses = []
        crop = None if args.crop == "none" else tuple(int(v) for v in args.crop.split("x"))
        for it, (images, labels) in enumerate(_batches(train_items, args.batch_size, gen, crop)):
            if it == args.iters:
                break
            x = normalize(images, model.meta.mean, model.meta.std)
            logits = F.interpolate(model(x), size=labels.shape[1:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, labels, ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if it % 50 == 0 or it == args.iters - 1:
                recent = sum(losses[-50:]) / len(losses[-50:])
                print(f"iter {it:5d}  loss {recent:.3f}  {time.time() - t0:.0f}s", flush=True)
            if not math.isfinite(loss.item()):
                raise SystemExit(f"training diverged at iteration {it}: loss {loss.item()}")
        miou = evaluate(model, val)
        print(f"{args.model}: val mIoU on the demo scenes {100 * miou:.1f}% after {args.iters} iterations")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    tmp_file = out / f"{args.model}.safetensors.tmp"
    save_file(sd, str(tmp_file), metadata={"format": "segbench", "source": "synthetic-demo"})
    tmp_file.replace(out / f"{args.model}.safetensors")
    info = {
        "model": args.model,
        "source": "synthetic-demo",
        "note": "trained from scratch on synthetic scenes only; not Cityscapes weights",
        "command": " ".join(["python", "scripts/train_demo.py", *sys.argv[1:]]),
        "iterations": args.iters,
        "batch_size": args.batch_size,
        "train_images": args.train_images,
        "size": [h, w],
        "crop": args.crop,
        "seed": args.seed,
        "final_train_loss": sum(losses[-50:]) / len(losses[-50:]),
        "val_miou_demo_scenes": miou,
        "train_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
    }
    (out / f"{args.model}.json").write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
