"""Deployment backends side by side in one process: latency, build time, file size and agreement with eager fp32.

    python -m benchmarks.bench_deploy                                   # SegFormer-B0 at 512x1024, batch 1, CPU
    python -m benchmarks.bench_deploy --size 1024x2048 --iters 5
    python -m benchmarks.bench_deploy --model deeplabv3plus-mobilenetv2 --cells eager:fp32,onnxruntime:int8
    python -m benchmarks.bench_deploy --weights none                    # random init

Each cell (backend:precision) is built through `segbench.bench.deploy` into a fresh cache folder (so the build time is
a cold build: export, quantisation, engine or compilation), timed by `bench.measure.latency.measure_latency` at batch 1
(the built module applies its own precision, so the timer runs it as given), and compared with eager fp32 on synthetic
street scenes (`bench.data.synthetic.draw_scene`, normalised with the model's mean and std): max |d|, max |d| / max
|eager| and argmax agreement, judged against `bench.deploy.agreement.TOLERANCES`. int8 is calibrated on other scenes.

Weights: the suite's demo weights where the model has some (trained on synthetic scenes only: agreement on a trained
model's logits means something), else random init; `--weights none` forces random init, `--weights PATH` loads a
checkpoint. A cell this machine cannot run prints its one line instead of numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.common import parse_size, table  # noqa: E402
from segbench import models  # noqa: E402
from segbench.bench.data.synthetic import model_scenes  # noqa: E402
from segbench.bench.deploy import ArtifactCache, check_deployment, reference_logits  # noqa: E402
from segbench.bench.measure.latency import cpu_model_name, measure_latency  # noqa: E402
from segbench.bench.run.allocator import describe, retain_freed_memory  # noqa: E402

DEFAULT_CELLS = "eager:fp32,fast:fp32,onnxruntime:fp32,onnxruntime:int8,eager:bf16"
DEMO_WEIGHTS = ROOT / "suites" / "demo_weights"


def scenes(model: torch.nn.Module, size: tuple[int, int], count: int, seed: int) -> list[torch.Tensor]:
    """`count` synthetic street scenes (1, 3, H, W), normalised with the model's mean and std."""
    return model_scenes(model, size, count, seed)


def weights_for(model: str, text: str) -> str | None:
    if text == "none":
        return None
    if text == "demo":
        demo = DEMO_WEIGHTS / f"{model}.safetensors"
        return str(demo) if demo.is_file() else None
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="segformer-b0")
    ap.add_argument("--weights", default="demo", help="demo (the suite's demo weights, if any), none, or a path")
    ap.add_argument("--size", type=parse_size, default=(512, 1024), help="HxW (default 512x1024; 1024x2048 works)")
    ap.add_argument("--cells", default=DEFAULT_CELLS, help=f"backend:precision list (default {DEFAULT_CELLS})")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--images", type=int, default=2, help="scenes compared with eager fp32")
    ap.add_argument("--calibration", type=int, default=4, help="scenes int8 is calibrated on")
    ap.add_argument("--cache", default=None, help="deployment cache folder (default: a fresh temporary one)")
    ap.add_argument("--retain-freed-memory", action="store_true", help="glibc malloc keeps freed memory (run_bench.py)")
    args = ap.parse_args()

    if args.retain_freed_memory:
        retain_freed_memory()
    weights = weights_for(args.model, args.weights)
    model = models.create_model(args.model, weights=weights)
    h, w = args.size
    images = scenes(model, args.size, args.images, seed=1)
    calibration = scenes(model, args.size, args.calibration, seed=2)
    print(
        f"# {args.model} ({'weights ' + Path(weights).name if weights else 'random init'}), input 1x3x{h}x{w}, "
        f"device {args.device} ({cpu_model_name()}), {torch.get_num_threads()} threads, torch {torch.__version__}\n"
        f"# allocator: {describe()}; warm-up {args.warmup}, {args.iters} timed calls; agreement on {args.images} "
        f"scene(s), int8 calibrated on {args.calibration}"
    )
    with tempfile.TemporaryDirectory(prefix="segbench-deploy-") as tmp:
        cache = ArtifactCache(args.cache or tmp)
        references = reference_logits(model, images, args.device)
        header = [
            "backend",
            "precision",
            "median ms",
            "p90 ms",
            "CV",
            "vs eager fp32",
            "build s",
            "file MB",
            "max|d|",
            "rel",
            "argmax %",
            "verdict",
        ]
        rows, notes, base = [], [], None
        for cell in args.cells.split(","):
            backend, _, precision = cell.partition(":")
            start = time.perf_counter()
            check = check_deployment(
                backend,
                model,
                images,
                precision or "fp32",
                cache,
                device=args.device,
                references=references,
                calibration=calibration,
            )
            if check.built is None:
                notes.append(f"{backend} {precision}: {check.status}: {check.reason}")
                rows.append([backend, precision, *["-"] * 9, check.status])
                continue
            built, agreement = check.built, check.agreement
            stats = measure_latency(
                built.module, (h, w), 1, args.device, "fp32", args.warmup, args.iters, max_retries=1
            )
            if (backend, precision) == ("eager", "fp32"):
                base = stats.median_ms
            size = f"{built.artifact_bytes / 1e6:.1f}" if built.artifact_bytes else "-"
            rows.append(
                [
                    backend,
                    precision,
                    f"{stats.median_ms:.1f}",
                    f"{stats.p90_ms:.1f}",
                    f"{stats.cv:.2f}",
                    f"{base / stats.median_ms:.2f}x" if base else "-",
                    f"{built.build_s:.1f}",
                    size,
                    f"{agreement.max_abs:.2e}",
                    f"{agreement.max_rel:.2e}",
                    f"{agreement.argmax_agreement:.2f}",
                    agreement.verdict,
                ]
            )
            print(f"  done {cell} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            del check, built
    print(table(header, rows))
    for note in notes:
        print(f"# {note}")
    print("# rel = max|d| / max|eager fp32 logit|; build s = a cold build (fresh cache); vs eager fp32 = speed-up")


if __name__ == "__main__":
    main()
