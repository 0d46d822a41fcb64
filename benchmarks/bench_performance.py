"""Every performance pair of the suite in one run, each measured side by side in its own process:

1. SegFormer: transformers' reference vs the faithful path vs the fast path (1024x2048, round-robin timing).
2. Evaluation pipeline: end-to-end cell throughput vs forward-only, faithful and fast.
3. Corruptions: 1 process vs N processes at 1024x2048, the corruption call alone and the whole generate-c command.
4. Metrics: the confusion-matrix mIoU vs the official Cityscapes evaluator on 20 pairs.

    python benchmarks/bench_performance.py            # everything (about 15 minutes on 2 CPU cores)
    python benchmarks/bench_performance.py --quick    # smaller sizes, for a smoke check
    python benchmarks/bench_performance.py --device cuda

Each part is one of the scripts beside this one; their outputs are printed in order, with the ratios they compute.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: checks that every part runs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2, help="processes for the corruption parts (the pipeline: auto)")
    args = ap.parse_args()
    big = "256x512" if args.quick else "1024x2048"
    mid = "128x256" if args.quick else "512x1024"
    parts = [
        ("SegFormer: reference vs faithful vs fast", "bench_fast_segformer.py",
         ["--variants", "b0" if args.quick else "b0,b2", "--size", big, "--iters", "2", "--device", args.device]),
        ("Pipeline: end-to-end vs forward-only (faithful)", "bench_pipeline.py",
         ["--size", mid, "--device", args.device]),
        ("Pipeline: end-to-end vs forward-only (fast)", "bench_pipeline.py",
         ["--size", mid, "--device", args.device, "--fast"]),
        ("Corruptions: 1 vs N processes", "bench_corruptions.py",
         ["--size", big, "--repeats", "1" if args.quick else "3", "--workers", str(args.workers)]),
        ("generate-c: 1 vs N processes, end to end", "bench_generate_c.py",
         ["--size", big, "--images", "2" if args.quick else "8", "--workers", str(args.workers)]),
        ("Metrics: ours vs the official evaluator", "bench_metrics.py",
         ["--pairs", "4" if args.quick else "20", "--device", args.device]),
    ]  # fmt: skip
    failed = 0
    for title, script, extra in parts:
        print(f"\n## {title}\n$ python benchmarks/{script} {' '.join(extra)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / script), *extra])
        print(f"({time.perf_counter() - start:.0f} s, exit {code})", flush=True)
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
