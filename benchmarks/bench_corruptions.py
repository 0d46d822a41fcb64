"""Cityscapes-C corruption throughput (images/s) at 1024x2048, per corruption, with 1 and with N worker processes.

    python -m benchmarks.bench_corruptions                                   # all 16, 1 and os.cpu_count() workers
    python -m benchmarks.bench_corruptions --corruptions fog,frost --repeats 10 --workers 4
    python -m benchmarks.bench_corruptions --size 512x1024 --png             # smaller images, PNG encoding included

What is timed is :func:`bench.data.corruptions.corrupt` (the seeded imagecorruptions call, uint8 in and out) on
synthetic street scenes, severities cycling 1-5 over the repeats, so each row averages the severities. With ``--png``
each image is also PNG-encoded in memory at generate-c's compression level, which is what generate-c does per file
(without the disk write). The N-worker column runs N forked processes on N x repeats images and divides that count by
the wall time; workers receive image indices and return a checksum, so no pixels cross process boundaries. Before any
clock starts, the parent calls every corruption at every severity once (numba compiles glass_blur per argument types;
lazy imports), and the forked workers inherit that (fork start method, i.e. Linux).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks.common import parse_size as _parse_size


def parse_size(text: str) -> tuple[int, int]:
    return _parse_size(text, minimum=32)  # the corruptions need 32 px per side


from segbench.bench.data.corruptions import condition_seed, corrupt  # noqa: E402
from segbench.bench.data.generate_c import PNG_COMPRESS_LEVEL, library_versions  # noqa: E402
from segbench.bench.data.synthetic import draw_scene  # noqa: E402
from segbench.bench.results.axes import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES, category_of  # noqa: E402
from segbench.bench.run.allocator import retain_freed_memory  # noqa: E402

_IMAGES: list[np.ndarray] = []  # filled before the workers fork; they read it, nothing is pickled
_ENCODE_PNG = False


def _one(name: str, index: int) -> int:
    image = _IMAGES[index % len(_IMAGES)]
    severity = SEVERITIES[index % len(SEVERITIES)]
    out = corrupt(image, name, severity, condition_seed(f"bench_{index:06d}_000019", name, severity, 0))
    if _ENCODE_PNG:
        from PIL import Image

        Image.fromarray(out).save(io.BytesIO(), format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return int(out[::64, ::64].sum())


def _batch(name: str, indices: list[int]) -> int:
    return sum(_one(name, i) for i in indices)


def measure(name: str, repeats: int, workers: int, pool: ProcessPoolExecutor | None) -> tuple[float, float]:
    """Returns (images/s with 1 process, images/s with ``workers`` processes; NaN when workers == 1)."""
    start = time.perf_counter()
    _batch(name, list(range(repeats)))
    serial = repeats / (time.perf_counter() - start)
    if pool is None:
        return serial, float("nan")
    total = repeats * workers
    chunks = [list(range(k, total, workers)) for k in range(workers)]  # one chunk per worker, severities mixed
    start = time.perf_counter()
    sum(pool.map(_batch, [name] * workers, chunks))
    return serial, total / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    global _ENCODE_PNG
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=parse_size, default=(1024, 2048), help="HxW (default 1024x2048)")
    p.add_argument("--corruptions", help="comma list (default: the 16 Cityscapes-C corruptions)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="N for the parallel column (default: cores)"
    )
    p.add_argument("--repeats", type=int, default=5, help="images per process per corruption (default 5)")
    p.add_argument("--png", action="store_true", help="include in-memory PNG encoding, as generate-c does")
    args = p.parse_args(argv)
    names = args.corruptions.split(",") if args.corruptions else list(CORRUPTIONS)
    for name in names:
        if name not in CORRUPTIONS + EXTRA_CORRUPTIONS:
            p.error(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS + EXTRA_CORRUPTIONS)}")
    if args.workers < 1 or args.repeats < 1:
        p.error("--workers and --repeats must be >= 1")
    _ENCODE_PNG = args.png
    malloc = retain_freed_memory()  # as run_bench.py does, before the workers fork; SEGBENCH_MALLOC=system: off

    h, w = args.size
    _IMAGES.extend(draw_scene((h, w), seed=0, index=i)[0] for i in range(min(args.repeats * args.workers, 4)))
    small = np.ascontiguousarray(_IMAGES[0][:64, :64])
    for name in names:  # warm-up at every severity: numba compiles glass_blur per argument types; lazy imports
        for severity in SEVERITIES:
            corrupt(small, name, severity, 0)
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    print(f"# corruption throughput at {h}x{w}, severities 1-5 cycled, {args.repeats} images/process/corruption")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, {versions}")
    png = f"PNG encoding (level {PNG_COMPRESS_LEVEL}) included" if args.png else "corruption only, no PNG"
    print(f"# {png}; allocator: {malloc}")
    n = args.workers
    header = (
        f"{'corruption':<18} {'category':<8} {'1 proc img/s':>12} {'s/img':>7} {f'{n} procs img/s':>14} {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    pool = None
    if n > 1:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(n, multiprocessing.get_context(method))
        sum(pool.map(_batch, names[:1] * n, [[0]] * n))  # start the processes before any clock
    totals = [0.0, 0.0]
    try:
        for name in names:
            serial, parallel = measure(name, args.repeats, n, pool)
            totals[0] += 1 / serial
            totals[1] += 1 / parallel if pool else 0.0
            speedup = f"{parallel / serial:8.2f}" if pool else f"{'-':>8}"
            par = f"{parallel:14.2f}" if pool else f"{'-':>14}"
            print(f"{name:<18} {category_of(name):<8} {serial:12.2f} {1 / serial:7.2f} {par} {speedup}", flush=True)
    finally:
        if pool is not None:
            pool.shutdown()
    all_serial = len(names) / totals[0]
    all_par = f"{len(names) / totals[1]:14.2f}" if pool else f"{'-':>14}"
    speedup = f"{totals[0] / totals[1]:8.2f}" if pool else f"{'-':>8}"
    print("-" * len(header))
    print(f"{'all (one each)':<18} {'':<8} {all_serial:12.2f} {1 / all_serial:7.2f} {all_par} {speedup}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
