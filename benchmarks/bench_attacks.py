"""The adversarial-demo suite as a benchmark: mIoU against the L-inf budget for PGD, SegPGD, CosPGD and the per-image
worst case, the robustness area, the attack's cost per step and per image, and ECE clean, corrupted and attacked.

    python -m benchmarks.bench_attacks            # SegFormer-B0 and DeepLabV3+ (MobileNetV2), demo weights
    python -m benchmarks.bench_attacks --images 2 --steps 3 --eps 1/255,4/255 --out /tmp/adv

It runs the `adversarial-demo` suite through the Python API (`segbench.bench.api.run_suite`), widened by the 16
corruptions at severity 3 (for corrupted ECE), and prints the tables from the run's own results.csv and summary.csv:
the figures a user's run writes. Scenes are the demo's (synthetic Cityscapes layout, 128x256, seed 0), the weights
the demo's, trained on such scenes (not Cityscapes numbers); whole-image inference, fp32, on this machine's device.
The attack's milliseconds per step and image are its wall time (forwards, backwards, projections) over steps x images.
Run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from segbench import suites
from segbench.bench.api import run_suite
from segbench.bench.results.axes import CORRUPTIONS, Condition
from segbench.bench.results.schema import ADV_AREA, ATTACK_STEP_TIME, ECE, MIOU
from segbench.bench.run.config import RunConfig


def _attack_table(results: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    miou = results[results.metric == MIOU]
    lines = ["| model | attack | " + " | ".join(["clean", *_budgets(miou)]) + " | area |", ""]
    lines[1] = "|---|---|" + "---|" * (len(_budgets(miou)) + 2)
    for model, rows in miou.groupby("model", sort=False):
        clean = rows[rows.condition == "clean"].value.iloc[0]
        attacked = rows[rows.category == "adversarial"]
        for name, group in attacked.groupby("corruption", sort=False):
            by_eps = {Condition.parse(c).attack.budget_name(): v for c, v in zip(group.condition, group.value)}
            area = summary[(summary.model == model) & (summary.metric == ADV_AREA) & (summary.corruption == name)]
            cells = [f"{clean:.2f}", *(f"{by_eps[b]:.2f}" if b in by_eps else "" for b in _budgets(miou))]
            lines.append(f"| {model} | {name} | " + " | ".join(cells) + f" | {area.value.iloc[0]:.2f} |")
    return lines


def _budgets(miou: pd.DataFrame) -> list[str]:
    names = [Condition.parse(c).attack for c in miou[miou.category == "adversarial"].condition]
    return list(dict.fromkeys(a.budget_name() for a in sorted(names, key=lambda a: a.eps)))


def _cost_and_ece(results: pd.DataFrame, steps: int) -> list[str]:
    lines = ["| model | attack | ms per step and image | s per image (all steps) | ECE clean | ECE corrupted (mean) |"]
    lines.append("|---|---|---|---|---|---|")
    for model, rows in results.groupby("model", sort=False):
        ece = rows[rows.metric == ECE]
        clean = ece[ece.condition == "clean"].value.iloc[0]
        corrupted = ece[ece.severity.fillna(0) > 0].value.mean()
        cost = rows[rows.metric == ATTACK_STEP_TIME]
        for name, group in cost.groupby("corruption", sort=False):
            ms = group.value.mean()
            lines.append(f"| {model} | {name} | {ms:.1f} | {ms * steps / 1000:.3f} | {clean:.2f} | {corrupted:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="segformer-b0,deeplabv3plus-mobilenetv2")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--steps", type=int, default=None, help="attack steps (default: the suite's, 10)")
    p.add_argument("--eps", default=None, help="L-inf budgets, e.g. 1/255,4/255 (default: the suite's)")
    p.add_argument("--out", default=None, help="keep the run folder here (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "adversarial-demo")
        config = RunConfig(
            models=args.models,
            out_dir=str(out.parent),
            run_id=out.name,
            max_images=args.images,
            corruptions=CORRUPTIONS,
            severities=(3,),
            eps=args.eps or (),
            attack_steps=args.steps,
            quiet=True,
        )
        result = run_suite(suites.get_suite("adversarial-demo"), config)
        results = pd.read_csv(result.results_csv)
        summary = pd.read_csv(Path(result.run_dir) / "summary.csv")
    steps = args.steps or 10
    print(f"adversarial-demo: {args.images} synthetic scenes 128x256, demo weights, L-inf, {steps} steps, fp32, whole")
    print("image; mIoU (%) per budget (eps in /255 grey levels), area = mean mIoU over 0 to the largest budget\n")
    print("\n".join(_attack_table(results, summary)))
    print("\n" + "\n".join(_cost_and_ece(results, steps)))


if __name__ == "__main__":
    main()
