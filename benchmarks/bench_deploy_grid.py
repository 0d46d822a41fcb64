"""The deploy suite's grid on this machine, end to end through `segbench.run`, and what its own bookkeeping costs.

Runs the `deploy` suite (every backend x precision this machine offers, each checked against eager fp32, then
timed and re-measured for accuracy) on synthetic scenes in the Cityscapes layout, with the demo checkpoints (trained
on synthetic scenes only: the accuracy deltas are those of these weights on these scenes, not Cityscapes numbers).

    python -m benchmarks.bench_deploy_grid                                   # 512x1024, 2 images, both demo models
    python -m benchmarks.bench_deploy_grid --size 1024x2048 --backends eager,fast,onnxruntime
    python -m benchmarks.bench_deploy_grid --full      # also the suite's batch sweep, latency curve, end-to-end split

Prints one table per model (status, latency median / p90 / p99 at batch 1, speed-up over eager fp32, build time,
file size, agreement with eager fp32, clean mIoU and mPC deltas), then the overhead: the run's wall time minus the
time inside its cells (deployment checks, accuracy and efficiency cells), as a share of the wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import parse_size
from segbench import suites
from segbench.bench.api import run_suite
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.schema import (
    AGREEMENT_MAX_REL,
    ARGMAX_AGREEMENT,
    ARTIFACT_SIZE,
    BUILD_TIME,
    DELTA_MIOU,
    DELTA_MPC,
    LATENCY_MEDIAN,
    LATENCY_P90,
    LATENCY_P99,
    LATENCY_STAGE,
    MIOU,
    deploy_variant,
)
from segbench.bench.results.store import RunFolder
from segbench.bench.run.config import RunConfig
from segbench.suites.builtin import DEMO_WEIGHTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=(512, 1024), help="HxW of the scenes (default 512x1024)")
    parser.add_argument("--images", type=int, default=2, help="images per condition (default 2)")
    parser.add_argument("--models", default="segformer-b0,deeplabv3plus-mobilenetv2")
    parser.add_argument("--backends", default="eager,fast,onnxruntime,tensorrt")
    parser.add_argument("--precisions", default="fp32,bf16,fp16,int8")
    parser.add_argument("--iters", type=int, default=10, help="timed calls per latency measurement (suite: 20)")
    parser.add_argument("--full", action="store_true", help="the suite's batch sizes, curve and end-to-end timing too")
    args = parser.parse_args()
    h, w = args.size
    models = tuple(args.models.split(","))
    suite = suites.get_suite("deploy")  # timed at the scenes' size here, not the suite's 1024x2048
    timing = {"resolutions": ((h, w),), "warmup": 2, "iters": args.iters}
    if not args.full:  # batch 1 at the scenes' size only: the grid's table (a 2-core CPU needs minutes per variant)
        timing.update(batch_sizes=(1,), curve=(), end_to_end=False)
    suite = dataclasses.replace(suite, efficiency=dataclasses.replace(suite.efficiency, **timing))
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_cityscapes(Path(tmp) / "cityscapes", num_images=max(args.images, 2), size=(h, w))
        config = RunConfig(
            models=models,
            weights={m: str(DEMO_WEIGHTS / f"{m}.safetensors") for m in models},
            data_root=str(data),
            max_images=args.images,
            backends=args.backends,
            deploy_precisions=args.precisions,
            out_dir=str(Path(tmp) / "runs"),
            quiet=True,
        )
        start = time.perf_counter()
        result = run_suite(suite, config)
        wall = time.perf_counter() - start
        folder = RunFolder(result.run_dir)
        frame, summary, cells = folder.frame(), folder.summary(), folder.cells()
    inside = _inside_cells(cells)
    print(
        f"# deploy suite v{suite.version}, synthetic scenes {h}x{w}, {args.images} image(s) per condition, demo weights"
    )
    grid = f"{config.backends} x {config.deploy_precisions}"
    print(f"# device cpu, {grid}; latency at batch 1 on {h}x{w}, {args.iters} calls")
    for model in models:
        print(f"\n## {model}")
        print(_table(frame, summary, model).to_string(index=False))
    print(
        f"\nwall {wall:.1f} s; inside the cells {inside:.1f} s; bookkeeping {wall - inside:.1f} s "
        f"({100 * (wall - inside) / wall:.1f}% of the wall time)"
    )
    return 0


def _inside_cells(cells: list[dict]) -> float:
    """Seconds inside the cells: each deployment check and efficiency cell, and each condition's accuracy pass once
    (the models of a condition run together and share its wall time)."""
    alone = sum(float(c["timing"]["total"]) for c in cells if c.get("kind") != "accuracy")
    passes: dict[str, float] = {}
    for c in cells:
        if c.get("kind") == "accuracy":
            passes[c["condition"]] = max(passes.get(c["condition"], 0.0), float(c["timing"]["total"]))
    return alone + sum(passes.values())


def frame_size(frame: pd.DataFrame, model: str) -> str | None:
    """The resolution the grid's latency columns are read at: the largest timed for the model's eager fp32."""
    rows = frame[(frame["model"] == f"{model}@eager-fp32") & (frame["metric"] == LATENCY_MEDIAN)]
    sizes = [str(r) for r in rows.get("resolution", pd.Series(dtype=object)).dropna().unique()]
    return max(sizes, key=lambda r: int(r.split("x")[0]) * int(r.split("x")[1]), default=None)


def _table(frame: pd.DataFrame, summary: pd.DataFrame, model: str) -> pd.DataFrame:
    rows = []
    variants = [m for m in dict.fromkeys(frame["model"]) if (deploy_variant(m) or ("",))[0] == model]
    at = (frame["condition"] != "efficiency") | (
        (frame.get("resolution") == frame_size(frame, model)) & (frame.get("batch_size") == 1)
    )  # latency at batch 1 on the scenes' size, not the batch sweep's or the curve's rows
    at &= ~frame["metric"].isin([LATENCY_STAGE])  # one row per stage: not a grid column
    value = frame[at].drop_duplicates(["model", "condition", "metric"]).set_index(["model", "condition", "metric"])
    value = value["value"]
    deltas = summary.set_index(["model", "metric"])["value"] if len(summary) else pd.Series(dtype=float)
    base = value.get((f"{model}@eager-fp32", "efficiency", LATENCY_MEDIAN))
    for variant in variants:
        _, backend, precision = deploy_variant(variant)
        status = frame.loc[(frame["model"] == variant) & (frame["condition"] == "deploy"), "status"].iloc[0]

        def get(condition, metric, variant=variant):
            return value.get((variant, condition, metric), float("nan"))

        median = get("efficiency", LATENCY_MEDIAN)
        rows.append(
            {
                "backend": backend,
                "precision": precision,
                "status": status,
                "p50 ms": median,
                "p90 ms": get("efficiency", LATENCY_P90),
                "p99 ms": get("efficiency", LATENCY_P99),
                "x eager": base / median if status == "agrees" and base else float("nan"),
                "build s": get("deploy", BUILD_TIME),
                "MiB": get("deploy", ARTIFACT_SIZE),
                "argmax %": get("deploy", ARGMAX_AGREEMENT),
                "rel diff": get("deploy", AGREEMENT_MAX_REL),
                "clean mIoU": get("clean", MIOU),
                "d mIoU pp": deltas.get((variant, DELTA_MIOU), float("nan")),
                "d mPC pp": deltas.get((variant, DELTA_MPC), float("nan")),
            }
        )
    return pd.DataFrame(rows).round(3)


if __name__ == "__main__":
    sys.exit(main())
