"""`generate-c` end to end with 1 and with N worker processes, on the same synthetic Cityscapes images.

    python -m benchmarks.bench_generate_c                      # 8 images at 1024x2048, 16 corruptions, severity 3
    python -m benchmarks.bench_generate_c --images 4 --severities 1,2,3,4,5 --workers 2

Unlike `bench_corruptions.py` (the corruption call alone), this times the real command: reading and checking each PNG,
corrupting it, encoding the PNG and writing it atomically, the manifest, the process pool. The allocator is set as
`run_bench.py` sets it (see `bench.run.allocator`). Before the clock, one image per condition is generated into a
scratch folder in this process, so the timed runs see the steady state of a long run (modules imported, numba's
glass_blur compiled; forked workers inherit that) rather than one-off start-up costs. The two outputs must be
byte-identical; the script checks that and prints the speed-up.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from segbench.bench.data.generate_c import generate_c
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.axes import CORRUPTIONS
from segbench.bench.run.allocator import retain_freed_memory
from segbench.bench.run.config import usable_cores


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.png")):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1024x2048", help="HxW (default 1024x2048)")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--corruptions", default=",".join(CORRUPTIONS))
    ap.add_argument("--severities", default="3")
    ap.add_argument("--workers", type=int, default=usable_cores(), help="processes (default: as generate-c's auto)")
    args = ap.parse_args()
    malloc = retain_freed_memory()
    h, w = (int(v) for v in args.size.lower().split("x"))
    corruptions = args.corruptions.split(",")
    severities = [int(s) for s in args.severities.split(",")]
    files = args.images * len(corruptions) * len(severities)
    print(
        f"# generate-c at {h}x{w}: {args.images} images x {len(corruptions)} corruptions x severities {severities} "
        f"= {files} PNGs; {os.cpu_count()} cores; allocator: {malloc}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_synthetic_cityscapes(root, num_images=args.images, size=(h, w))
        generate_c(root, Path(tmp) / "warm", corruptions, severities, workers=1, max_images=1, quiet=True)
        speeds, digests = {}, {}
        for workers in (1, args.workers):
            out = Path(tmp) / f"out{workers}"
            start = time.perf_counter()
            report = generate_c(root, out, corruptions, severities, workers=workers, quiet=True)
            seconds = time.perf_counter() - start
            assert report.written == files, report
            speeds[workers] = files / seconds
            digests[workers] = _digest(out)
            print(f"{workers} process(es): {seconds:7.2f} s, {speeds[workers]:6.2f} img/s", flush=True)
    same = "byte-identical" if digests[1] == digests[args.workers] else "DIFFERENT (a bug)"
    print(f"speed-up {args.workers} vs 1: {speeds[args.workers] / speeds[1]:.2f}x; outputs {same}")
    return 0 if digests[1] == digests[args.workers] else 1


if __name__ == "__main__":
    sys.exit(main())
