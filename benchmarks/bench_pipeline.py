"""End-to-end evaluation throughput against pure model-forward throughput, in one process, on the same images.

    python benchmarks/bench_pipeline.py --model segformer-b0 --size 512x1024 --images 8 --workers 2
    python benchmarks/bench_pipeline.py --fast                 # B0's fast path, workers as run_bench.py picks them

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
from bench.allocator import retain_freed_memory  # noqa: E402
from bench.config import InferenceSpec, RunConfig, default_workers  # noqa: E402
from bench.data import CityscapesDataset  # noqa: E402
from bench.inference import normalize, predict  # noqa: E402
from bench.runner import run  # noqa: E402
from bench.synthetic import write_synthetic_cityscapes  # noqa: E402


def _time_model(model, xs, device: str) -> tuple[float, float]:
    """Images per second of `model(x)` alone and of the whole `predict` (resize to labels + argmax).

    The two alternate image by image, so a drift of the machine's speed hits both alike.
    """
    spec = InferenceSpec(mode="whole")
    times: tuple[list[float], list[float]] = ([], [])
    with torch.inference_mode():
        for x in xs:
            for full, out in ((False, times[0]), (True, times[1])):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                if full:
                    predict(model, x, spec)
                else:
                    model(normalize(x, model.meta.mean, model.meta.std))
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                out.append(time.perf_counter() - t0)
    return 1 / statistics.mean(times[0]), 1 / statistics.mean(times[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="segformer-b0")
    ap.add_argument("--size", default="512x1024")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--workers", type=int, help="DataLoader workers (default: run_bench.py's auto, 0 on CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--conditions",
        default="clean,fog-3,gaussian_noise-3,glass_blur-1",
        help="comma list of conditions (cells) to time",
    )
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the table shows medians")
    args = ap.parse_args()
    malloc = retain_freed_memory()  # as run_bench.py does, before the DataLoader forks; SEGBENCH_MALLOC=system: off
    if args.workers is None:
        args.workers = default_workers(args.device)
    h, w = (int(v) for v in args.size.split("x"))
    print(
        f"# model={args.model} fast={args.fast} size={h}x{w} images={args.images} workers={args.workers} "
        f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__}\n# allocator: {malloc}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_synthetic_cityscapes(root, num_images=args.images, size=(h, w))
        model = models.create_model(args.model, fast=args.fast) if args.fast else models.create_model(args.model)
        model = model.to(args.device).eval()
        dataset = CityscapesDataset(root)
        xs = [dataset[i]["image"][None].to(args.device) for i in range(len(dataset))]
        with torch.inference_mode():
            model(normalize(xs[0], model.meta.mean, model.meta.std))  # warm-up
            predict(model, xs[0], InferenceSpec(mode="whole"))  # and the label kernel's first (compiling) call

        def factory(name, **kw):
            return model

        conditions = [c.strip() for c in args.conditions.split(",")]
        ratios: dict[str, list[tuple[float, float, float, dict]]] = {}
        forward_all, full_all = [], []
        # Each repeat's cells are compared with the forward-only speed
        # measured right around them, so slow drifts of the machine's speed cancel out of the ratios.
        for rep in range(args.repeats):
            forward, full = _time_model(model, xs, args.device)
            forward = [forward]
            config = RunConfig(
                models=(args.model,),
                data_root=str(root),
                out_dir=str(Path(tmp) / f"runs{rep}"),
                device=args.device,
                workers=args.workers,
                allow_random_weights=True,
                quiet=True,
            )
            result = run(config, conditions, InferenceSpec(mode="whole"), model_factory=factory)
            forward.append(_time_model(model, xs, args.device)[0])
            ref = statistics.mean(forward)
            forward_all += forward
            full_all.append(full)
            for cell, t in result.timing.items():
                e2e = args.images / t["total"]
                ratios.setdefault(cell, []).append((e2e, e2e / ref, e2e / full, t))
        print(
            f"forward-only (model(x) on decoded, normalised images, {args.device}): "
            f"median {statistics.median(forward_all):.3f} img/s over {len(forward_all)} passes "
            f"(min {min(forward_all):.3f}, max {max(forward_all):.3f})"
        )
        print(
            f"inference-only (predict: normalise, forward, resize to labels, argmax): "
            f"median {statistics.median(full_all):.3f} img/s (min {min(full_all):.3f}, max {max(full_all):.3f})"
        )
        print(
            f"medians over {args.repeats} repeats; each ratio is against the forward-only speed measured around "
            "its own block"
        )
        print(
            "cell | end-to-end img/s | ratio to forward-only (min-max) | ratio to inference-only | "
            "split of the median run (model / data / metric s)"
        )
        for cell, values in ratios.items():
            by_ratio = sorted(values, key=lambda v: v[1])
            mid = by_ratio[len(by_ratio) // 2]
            t = mid[3]
            print(
                f"{cell} | {mid[0]:.3f} | {mid[1]:.3f} ({by_ratio[0][1]:.3f}-{by_ratio[-1][1]:.3f}) | "
                f"{statistics.median(v[2] for v in values):.3f} | "
                f"{t['model']:.2f} / {t['data']:.2f} / {t['metric']:.2f}"
            )


if __name__ == "__main__":
    main()
