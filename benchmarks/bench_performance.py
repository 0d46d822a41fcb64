"""Every performance pair of the suite in one run, each measured side by side in its own process:

1. SegFormer: transformers' reference vs the faithful path vs the fast path (1024x2048, round-robin timing).
2. Evaluation pipeline: end-to-end cell throughput vs forward-only, faithful and fast.
3. Corruptions: 1 process vs N processes at 1024x2048, the corruption call alone and the whole generate-c command.
4. Metrics: the confusion-matrix mIoU vs the official Cityscapes evaluator on 20 pairs.

    python -m benchmarks.bench_performance            # everything (about 15 minutes on 2 CPU cores)
    python -m benchmarks.bench_performance --quick    # smaller sizes, for a smoke check
    python -m benchmarks.bench_performance --device cuda --parts segformer,pipeline   # the GPU's share

On CUDA the pipeline parts run at Cityscapes' 1024x2048 on 32 images (a GPU is fast enough, and the 512x1024 default
would measure launch overheads more than the model). The corruption parts are CPU work whatever the device.

Each part is one of the scripts beside this one; their outputs are printed in order, with the ratios they compute.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("segformer", "pipeline", "corruptions", "generate-c", "metrics")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: checks that every part runs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2, help="processes for the corruption parts (the pipeline: auto)")
    ap.add_argument("--parts", help=f"comma list of parts to run (default: all): {', '.join(PARTS)}")
    args = ap.parse_args()
    chosen = PARTS if args.parts is None else tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    cuda = args.device.startswith("cuda")
    big = "256x512" if args.quick else "1024x2048"
    mid = "128x256" if args.quick else big if cuda else "512x1024"
    pipeline = ["--size", mid, "--device", args.device] + ([] if args.quick or not cuda else ["--images", "32"])
    parts = [
        (
            "segformer",
            "SegFormer: reference vs faithful vs fast",
            "bench_fast_segformer.py",
            ["--variants", "b0" if args.quick else "b0,b2", "--size", big, "--iters", "2", "--device", args.device],
        ),
        ("pipeline", "Pipeline: end-to-end vs forward-only (faithful)", "bench_pipeline.py", pipeline),
        ("pipeline", "Pipeline: end-to-end vs forward-only (fast)", "bench_pipeline.py", [*pipeline, "--fast"]),
        (
            "corruptions",
            "Corruptions: 1 vs N processes",
            "bench_corruptions.py",
            ["--size", big, "--repeats", "1" if args.quick else "3", "--workers", str(args.workers)],
        ),
        (
            "generate-c",
            "generate-c: 1 vs N processes, end to end",
            "bench_generate_c.py",
            ["--size", big, "--images", "2" if args.quick else "8", "--workers", str(args.workers)],
        ),
        (
            "metrics",
            "Metrics: ours vs the official evaluator",
            "bench_metrics.py",
            ["--pairs", "4" if args.quick else "20", "--device", args.device],
        ),
    ]
    failed = 0
    for part, title, script, extra in parts:
        if part not in chosen:
            continue
        print(f"\n## {title}\n$ python -m benchmarks.{Path(script).stem} {' '.join(extra)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{Path(script).stem}", *extra], cwd=HERE.parent)
        print(f"({time.perf_counter() - start:.0f} s, exit {code})", flush=True)
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
