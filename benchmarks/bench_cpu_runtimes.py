"""The CPU runtimes side by side in one plain Python process: eager, SegFormer's fast path (`fast`; `fast-sdpa`: with
PyTorch's attention kernel instead of segbench's), ONNX Runtime, OpenVINO.

    python -m benchmarks.bench_cpu_runtimes                          # B0 and B2 at 1024x2048, B0 at 512x1024, fp32
    python -m benchmarks.bench_cpu_runtimes --precision bf16         # the bf16 of each backend that offers it
    python -m benchmarks.bench_cpu_runtimes --contention             # with a second busy process on the machine
    python -m benchmarks.bench_cpu_runtimes --configs segformer-b0@512x1024 --iters 5

Per configuration (model@HxW, batch 1, random init seeded: latency does not depend on the weights), every backend is
built through `segbench.bench.deploy.check_deployment` into a fresh cache (ONNX export, OpenVINO compilation with the
LATENCY hint and torch's thread count), compared with eager fp32 on the timed image (max |d| / max |eager|, argmax
agreement), then timed *interleaved*: one untimed call each, then `--iters` rounds of one call per backend, each after
`--pause` seconds idle, so that drift and other load hit them alike and no runtime's spinning threads slow the next
one; the median is reported. The fast path's lead over a backend is that backend's median over the fast path's.

Closeness to the hardware: the machine's GEMM peak in the run's precision (`bench.measure.peak`, a 4096^3 product,
measured before the first and after each configuration's timings; the highest so far is used) and each backend's
achieved GMAC/s under the SegFormer paper's MAC convention (`bench.measure.flops`, the published network's count for
every backend), as a percentage of the peak (2 FLOPs per MAC).

The process runs with glibc's default allocator unless `--retain-freed-memory` gives it the policy the `segbench`
command sets for itself (`bench.run.allocator`: every block from the heap, freed memory kept), which spares the
eager and fast paths the fresh pages the kernel zeroes for every image; the header says which.

`--contention` first times every backend idle, then starts a second process doing matrix products on
`--contention-threads` threads (default: torch's thread count) for the whole second timing, as another job on a shared
machine would, and stops it afterwards; the table gives each backend's busy median, its idle median from the same
process, and the slowdown between the two.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch

from benchmarks.common import parse_size, table
from segbench import models
from segbench.bench.deploy import ArtifactCache, check_deployment, reference_logits
from segbench.bench.measure.flops import count_flops
from segbench.bench.measure.latency import cpu_model_name
from segbench.bench.measure.peak import GemmPeak, achieved_gmacs_per_s, measure_gemm_peak, percent_of_peak
from segbench.bench.run import allocator
from segbench.models import segformer_native

DEFAULT_CONFIGS = "segformer-b0@1024x2048,segformer-b2@1024x2048,segformer-b0@512x1024"
BACKENDS = ("eager", "fast", "fast-sdpa", "onnxruntime", "openvino")
"""`fast-sdpa` is not a deployment backend: the fast path with PyTorch's attention kernel instead of segbench's
(`models.segformer_native.without_kernel`), to show that kernel's effect within one process."""
BUSY = (
    "import torch, sys\n"
    "torch.set_num_threads(int(sys.argv[1]))\n"
    "a = torch.randn(1024, 1024)\n"
    "while True:\n"
    "    a = (a @ a).clamp_(-1, 1)\n"
)


def parse_config(text: str) -> tuple[str, tuple[int, int]]:
    name, sep, size = text.partition("@")
    if not sep:
        raise argparse.ArgumentTypeError(f"config {text!r}: expected model@HxW, e.g. segformer-b0@1024x2048")
    return name, parse_size(size, minimum=32)


class Contention:
    """A second busy process for the block (`--contention`), or nothing."""

    def __init__(self, threads: int | None):
        self.threads, self.process = threads, None

    def __enter__(self) -> Contention:
        if self.threads:
            self.process = subprocess.Popen([sys.executable, "-c", BUSY, str(self.threads)])
            time.sleep(2.0)  # it is busy before the first timed call
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


def interleaved(calls: dict[str, Callable[[], object]], iters: int, pause: float) -> dict[str, list[float]]:
    """Seconds per call of each entry: one untimed call each, then `iters` rounds of one call each, in turn, each
    after `pause` seconds idle (the previous runtime's threads spin for a while after a call: ONNX Runtime's and TBB's
    do, and would take cores from the next one)."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(iters):
        for name, call in calls.items():
            time.sleep(pause)
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def _attention_for(backend: str) -> contextlib.AbstractContextManager:
    """`fast-sdpa` runs under `without_kernel`; every other backend as it is."""
    return segformer_native.without_kernel() if backend == "fast-sdpa" else contextlib.nullcontext()


def _call(backend: str, module: torch.nn.Module, x: torch.Tensor) -> object:
    with _attention_for(backend):
        return module(x)


def run_config(name: str, size: tuple[int, int], args: argparse.Namespace, peaks: list[GemmPeak]) -> None:
    """Build, check and time every backend for one model and size; print its table. `peaks`: the GEMM peaks measured
    so far (one more is measured after the timings; the highest is used)."""
    torch.manual_seed(0)
    model = models.create_model(name).eval()
    h, w = size
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    gmacs = count_flops(model, size, convention="paper").gmacs
    references = reference_logits(model, [x], "cpu")
    cells, notes = {}, []
    with tempfile.TemporaryDirectory(prefix="segbench-runtimes-") as tmp:
        for backend in args.backends.split(","):
            with _attention_for(backend):
                runtime, cache = backend.removesuffix("-sdpa"), ArtifactCache(tmp)
                check = check_deployment(runtime, model, [x], args.precision, cache, references=references, name=name)
            if check.built is None:
                notes.append(f"{backend} {args.precision}: {check.status}: {check.reason}")
                continue
            cells[backend] = check
        calls = {b: (lambda m=c.built.module, b=b: _call(b, m, x)) for b, c in cells.items()}
        with torch.inference_mode():
            idle = interleaved(calls, args.iters, args.pause) if args.contention else None
            with Contention(args.contention_threads if args.contention else None):
                times = interleaved(calls, args.iters, args.pause)
    peaks.append(measure_gemm_peak(args.precision))
    gemm = max(peaks, key=lambda p: p.gflops)
    median = {b: statistics.median(t) for b, t in times.items()}
    fast = median.get("fast")
    rows = []
    for backend, check in cells.items():
        ms = median[backend] * 1e3
        row = [backend, f"{median[backend]:.3f}", f"{min(times[backend]):.3f}"]
        if idle is not None:  # the same process's idle timings, just before the busy process started
            calm = statistics.median(idle[backend])
            row += [f"{calm:.3f}", f"{median[backend] / calm:.2f}x"]
        row += [
            f"{median[backend] / fast:.2f}x" if fast else "-",
            f"{check.agreement.max_rel:.1e}",
            f"{check.agreement.argmax_agreement:.2f}",
            f"{achieved_gmacs_per_s(gmacs, ms):.1f}",
            f"{percent_of_peak(gmacs, ms, gemm):.1f}",
        ]
        rows.append(row)
    load = f", with a busy process on {args.contention_threads} thread(s)" if args.contention else ", idle"
    print(f"\n## {name} at {h}x{w}, batch 1, {args.precision}{load}: {gmacs:.1f} GMACs (paper convention)")
    header = ["backend", "median s", "min s"] + (["idle s", "slowdown"] if idle is not None else [])
    print(table(header + ["/ fast", "rel err", "argmax %", "GMAC/s", "% of peak"], rows))
    for note in notes:
        print(f"# {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"model@HxW list (default {DEFAULT_CONFIGS})")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--iters", type=int, default=3, help="timed rounds (default 3; the median is reported)")
    ap.add_argument("--pause", type=float, default=0.5, help="idle seconds before each timed call (default 0.5)")
    ap.add_argument("--contention", action="store_true", help="a second busy process during the timings")
    ap.add_argument("--contention-threads", type=int, default=torch.get_num_threads())
    ap.add_argument(
        "--retain-freed-memory", action="store_true", help="the segbench command's allocator policy (default: glibc's)"
    )
    args = ap.parse_args()
    try:
        configs = [parse_config(c) for c in args.configs.split(",")]
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    malloc = allocator.retain_freed_memory() if args.retain_freed_memory else allocator.describe()
    before = measure_gemm_peak(args.precision)
    print(
        f"# {cpu_model_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; interleaved, "
        f"{args.iters} rounds, median; GEMM peak ({args.precision}, {before.size}^3): {before.gflops:.0f} GFLOP/s; "
        f"allocator: {malloc}\n# fast path's kernels: {segformer_native.status().detail}"
    )
    peaks = [before]
    for name, size in configs:
        run_config(name, size, args, peaks)
    print(
        f"\n# GEMM peaks measured ({args.precision}, GFLOP/s): {', '.join(f'{p.gflops:.0f}' for p in peaks)}; each "
        "table's % of peak uses the highest measured up to it. / fast = the backend's median over the fast path's."
    )


if __name__ == "__main__":
    main()
