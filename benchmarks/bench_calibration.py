"""What calibration (ECE, NLL, Brier) adds to an accuracy cell: `predict` with and without a `CalibrationCounter`.

    python -m benchmarks.bench_calibration                         # SegFormer-B0, 512x1024 and 1024x2048
    python -m benchmarks.bench_calibration --model deeplabv3plus-mobilenetv2 --sizes 512x1024 --reps 5

Each repetition runs the same image through `predict` (the accuracy cell's call: forward, resize to the label size,
argmax) twice, once plain and once adding the calibration sums, alternating which goes first so a drift of the
machine's speed hits both alike. The overhead is the median of the paired differences over the plain call's median.
Those differences are noisy (a whole forward each); the last columns time the one step calibration changes, the
resize and argmax of the model's own logits, with and without the calibration sums, many times.
Random weights (the cost does not depend on them); CPU, fp32, whole image. Run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from segbench import models
from segbench.bench.measure.calibration import CalibrationCounter
from segbench.bench.measure.inference import normalize, predict, resize_argmax
from segbench.bench.run.config import InferenceSpec


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(model_name: str, size: tuple[int, int], reps: int, fast: bool) -> dict:
    model = models.create_model(model_name, num_classes=19).eval()
    if fast and hasattr(model, "fast_path"):
        model = model.fast_path()
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 3, *size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 19, (1, *size), generator=g, dtype=torch.uint8)
    spec = InferenceSpec(mode="whole")
    plain = lambda: predict(model, image, spec, out_size=size)  # noqa: E731
    counter = CalibrationCounter()
    calibrated = lambda: predict(model, image, spec, out_size=size, calibration=counter, labels=labels)  # noqa: E731
    plain(), calibrated()  # warm-up (and numba's compile)
    base, diffs = [], []
    for rep in range(reps):
        order = (plain, calibrated) if rep % 2 == 0 else (calibrated, plain)
        t = {fn: _time(fn) for fn in order}
        base.append(t[plain])
        diffs.append(t[calibrated] - t[plain])
    median = statistics.median(base)
    # the step calibration changes alone, on the model's own logits: far less noisy than two whole predict calls
    with torch.inference_mode():
        logits = model(normalize(image, model.meta.mean, model.meta.std))
    step = {False: [], True: []}
    for rep in range(reps * 3):
        for with_cal in (rep % 2 == 0, rep % 2 == 1):
            cal = CalibrationCounter() if with_cal else None
            step[with_cal].append(_time(lambda c=cal: resize_argmax(logits, size, calibration=c, labels=labels)))
    resize = statistics.median(step[False])
    extra = statistics.median(step[True]) - resize
    return {"model": model_name, "size": size, "plain_s": median, "extra_s": statistics.median(diffs), "reps": reps,
            "resize_s": resize, "step_extra_s": extra}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="segformer-b0")
    p.add_argument("--sizes", default="512x1024,1024x2048", help="H x W, comma list")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--fast", action="store_true", help="SegFormer's fast path (what --fast runs)")
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32, whole image, batch 1, 19 classes")
    print("| model | size | predict s | calibration adds s (pairs of predict) | overhead | resize+argmax s | "
          "calibration adds s (resize step alone) | overhead of predict |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for text in args.sizes.split(","):
        size = tuple(int(v) for v in text.lower().split("x"))
        r = measure(args.model, size, args.reps, args.fast)
        share, step = 100 * r["extra_s"] / r["plain_s"], 100 * r["step_extra_s"] / r["plain_s"]
        print(
            f"| {r['model']} | {text} | {r['plain_s']:.3f} | {r['extra_s']:.4f} | {share:.1f}% | {r['resize_s']:.4f} "
            f"| {r['step_extra_s']:.4f} | {step:.1f}% |"
        )


if __name__ == "__main__":
    main()
