"""End-to-end evaluation throughput against pure model-forward throughput, in one process, on the same images.

    python benchmarks/bench_pipeline.py --model segformer-b0 --size 512x1024 --images 8 --workers 2

The end-to-end figure is a real runner cell (PNG decoding, the corruption, DataLoader workers, host-to-device copies,
inference with resize and argmax, the confusion matrix); the forward-only figure runs the same model on the same
images already decoded, normalised and on the device. Their ratio is the share of the model's throughput the
pipeline keeps (the performance issue asks for at least 90%).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from bench.config import InferenceSpec, RunConfig  # noqa: E402
from bench.data import CityscapesDataset  # noqa: E402
from bench.inference import normalize  # noqa: E402
from bench.runner import run  # noqa: E402
from bench.synthetic import write_synthetic_cityscapes  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="segformer-b0")
    ap.add_argument("--size", default="512x1024")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--conditions", default="clean,fog-3", help="comma list of conditions (cells) to time")
    ap.add_argument("--fast", action="store_true")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    print(f"# model={args.model} fast={args.fast} size={h}x{w} images={args.images} workers={args.workers} "
          f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_synthetic_cityscapes(root, num_images=args.images, size=(h, w))
        model = models.create_model(args.model, fast=args.fast) if args.fast else models.create_model(args.model)
        model = model.to(args.device).eval()
        dataset = CityscapesDataset(root)
        images = [dataset[i]["image"][None].to(args.device) for i in range(len(dataset))]
        xs = [normalize(im, model.meta.mean, model.meta.std) for im in images]
        with torch.inference_mode():
            model(xs[0])  # warm-up
            times = []
            for x in xs:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(x)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        forward_ips = 1 / statistics.mean(times)

        def factory(name, **kw):
            return model

        config = RunConfig(models=(args.model,), data_root=str(root), out_dir=str(Path(tmp) / "runs"),
                           device=args.device, workers=args.workers, allow_random_weights=True, quiet=True)  # fmt: skip
        conditions = [c.strip() for c in args.conditions.split(",")]
        result = run(config, conditions, InferenceSpec(mode="whole"), model_factory=factory)
        print("cell | end-to-end img/s | forward-only img/s | ratio | split (model / data / metric s)")
        for cell, t in result.timing.items():
            e2e = args.images / t["total"]
            print(f"{cell} | {e2e:.2f} | {forward_ips:.2f} | {e2e / forward_ips:.2f} | "
                  f"{t['model']:.2f} / {t['data']:.2f} / {t['metric']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
