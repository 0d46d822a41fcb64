"""Parameters, FLOPs (fvcore and the paper's convention) and latency of segmentation models, as plain tables.

    python -m benchmarks.bench_efficiency                                  # SegFormer B0-B5 at 512x1024, CPU fp32
    python -m benchmarks.bench_efficiency --models segformer-b0 --device cuda --precision fp16 --iters 50
    python -m benchmarks.bench_efficiency --no-latency                     # counts only (fast)

The second table counts every SegFormer variant the way the paper did (ADE20K: 150 classes at 512x512, B5 at
640x640; Cityscapes: 19 classes on a whole 1024x2048 image) and divides by the published figure
(tests/data/segformer_paper_table1.csv, from Table 1 of Xie et al. 2021). It also gives the cost of the 1024x1024 /
stride 768 sliding windows that Cityscapes evaluation actually runs.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.common import parse_size, table  # noqa: E402
from segbench import models  # noqa: E402
from segbench.bench.measure.efficiency import (  # noqa: E402
    count_flops,
    count_params,
    hardware_info,
    measure_latency,
    sliding_window_flops,
)

PAPER_TABLE = ROOT / "tests" / "data" / "segformer_paper_table1.csv"
DEFAULT_MODELS = [f"segformer-b{i}" for i in range(6)]


def paper_figures() -> dict[str, dict[str, str]]:
    """The paper's Table 1 rows by model name."""
    with open(PAPER_TABLE, newline="", encoding="utf-8") as f:
        return {row["variant"]: row for row in csv.DictReader(f)}


def ratio_to_paper(name: str, size: tuple[int, int], num_classes: int, gmacs: float, paper: dict) -> str:
    """gmacs / published figure, where the setting matches one of the paper's columns."""
    row = paper.get(name)
    if row is None:
        return "-"
    side = int(row["ade20k_input"].split("x")[0])
    if size == (side, side) and num_classes == 150:
        return f"{gmacs / float(row['ade20k_gflops']):.4f}"
    if size == (1024, 2048) and num_classes == 19:
        return f"{gmacs / float(row['cityscapes_gflops']):.4f}"
    return "-"


def main_table(args: argparse.Namespace, paper: dict) -> str:
    header = ["model", "params M", "fvcore GMACs", "fvcore GFLOPs", "paper GMACs", "/ paper"]
    if args.latency:
        header += ["median ms", "p90 ms", "img/s", "CV", "runs", "noisy", "peak MiB"]
    rows = []
    for name in args.models:
        model = models.create_model(name, num_classes=args.num_classes)
        params = count_params(model)
        fv = count_flops(model, args.resolution, "fvcore")
        pp = count_flops(model, args.resolution, "paper")
        row = [name, f"{params.millions():.2f}", f"{fv.gmacs:.2f}", f"{fv.gflops:.2f}", f"{pp.gmacs:.2f}"]
        row.append(ratio_to_paper(name, args.resolution, args.num_classes, pp.gmacs, paper))
        if args.latency:
            stats = measure_latency(
                model,
                args.resolution,
                batch_size=args.batch_size,
                device=args.device,
                precision=args.precision,
                warmup=args.warmup,
                iters=args.iters,
                channels_last=args.channels_last,
                compile=args.compile,
                cv_threshold=args.cv_threshold,
                max_retries=args.max_retries,
            )
            row += [
                f"{stats.median_ms:.1f}",
                f"{stats.p90_ms:.1f}",
                f"{stats.images_per_s:.2f}",
                f"{stats.cv:.3f}",
                str(stats.attempts),
                "yes" if stats.noisy else "no",
                f"{stats.peak_memory_mib:.0f}",
            ]
        rows.append(row)
        print(f"  done {name}", file=sys.stderr, flush=True)
    return table(header, rows)


def paper_table(names: list[str], paper: dict) -> str:
    header = ["model", "ADE20K in", "GMACs", "paper", "ratio", "City 1024x2048", "paper", "ratio", "3 windows", "ratio"]
    rows = []
    for name in names:
        row = paper.get(name)
        if row is None:
            continue
        side = int(row["ade20k_input"].split("x")[0])
        ade = count_flops(models.create_model(name, num_classes=150), (side, side), "paper").gmacs
        city_model = models.create_model(name, num_classes=19)
        city = count_flops(city_model, (1024, 2048), "paper").gmacs
        slide = sliding_window_flops(city_model, (1024, 2048), (1024, 1024), (768, 768), "paper").gmacs
        ade_paper, city_paper = float(row["ade20k_gflops"]), float(row["cityscapes_gflops"])
        rows.append(
            [
                name,
                row["ade20k_input"],
                f"{ade:.2f}",
                f"{ade_paper:.1f}",
                f"{ade / ade_paper:.4f}",
                f"{city:.1f}",
                f"{city_paper:.1f}",
                f"{city / city_paper:.4f}",
                f"{slide:.1f}",
                f"{slide / city_paper:.3f}",
            ]
        )
    return table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registered names")
    parser.add_argument("--resolution", type=parse_size, default=(512, 1024), help="input HxW (default 512x1024)")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--cv-threshold", type=float, default=0.1, help="re-measure while CV is above this")
    parser.add_argument("--max-retries", type=int, default=2, help="re-measurements allowed when noisy")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for this run")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-latency", dest="latency", action="store_false", help="counts only")
    parser.add_argument("--no-paper-table", dest="paper_table", action="store_false")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)

    hw = hardware_info()
    device_name = hw["gpu_name"] if args.device.startswith("cuda") else hw["cpu_model"]
    print(f"# device: {args.device} ({device_name}); precision: {args.precision}; threads: {torch.get_num_threads()}")
    print(
        f"# cores: {hw['cpu_count']} (usable {hw['cpu_affinity']}); torch {hw['torch_version']}; "
        f"CUDA {hw['cuda_version']}; cuDNN {hw['cudnn_version']}; driver {hw['gpu_driver']}"
    )
    print(
        f"# input: {args.resolution[0]}x{args.resolution[1]}, batch {args.batch_size}, {args.num_classes} classes; "
        f"latency: warmup {args.warmup}, iters {args.iters}, re-measured up to {args.max_retries}x while "
        f"CV > {args.cv_threshold} (steadiest run kept)"
    )
    if hasattr(os, "getloadavg"):
        print("# load average at start (1/5/15 min): " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("# GMACs: 1 multiply-add = 1; GFLOPs = 2 x GMACs. fvcore: FlopCountAnalysis + SDPA handle.")
    print("# paper: mmcv get_model_complexity_info rules + SegFormer's hand-added attention term.")
    print("# peak MiB on CPU: process peak RSS (high-water mark of the whole run so far).")
    paper = paper_figures()
    print(main_table(args, paper))
    if args.paper_table:
        print()
        print("# Paper convention vs SegFormer Table 1 (ADE20K: 150 classes; Cityscapes: 19 classes, whole image;")
        print("# '3 windows': the 1024x1024 / stride 768 sliding windows of Cityscapes evaluation)")
        print(paper_table(args.models, paper))


if __name__ == "__main__":
    main()
