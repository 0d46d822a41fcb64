"""Run time of each dataset's corrupted suite on a demo-sized synthetic set, through the command line.

    python -m benchmarks.bench_datasets                              # every dataset, 8 images, severity 3
    python -m benchmarks.bench_datasets --datasets ade20k,voc --images 4 --severities 1,3,5

Each dataset's synthetic writer makes `--images` images near `--size` (H, W; the writers vary the size and aspect of
ADE20K, VOC, COCO-Stuff and folder images around it) in a temporary folder; then `segbench run --suite <name>-c` runs
`--models` (random init) on clean plus the 16 corruptions at `--severities`, in a fresh process, timed from start to
exit. ADE20K, VOC and COCO-Stuff images are resized to short side 512 by their protocol (mmseg's), so a forward pass
there costs what one at 512 px does; Cityscapes and folder images keep their size. Run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from segbench.bench.data.datasets import get_dataset
from segbench.bench.data.folder import write_synthetic_folder

SUITES = {"cityscapes": "cityscapes-c", "ade20k": "ade20k-c", "voc": "voc-c", "coco_stuff": "coco-stuff-c"}
SUITES["folder"] = "folder-c"


def _write(name: str, root: Path, images: int, size: tuple[int, int]) -> Path:
    if name == "folder":
        return write_synthetic_folder(root, num_images=images, size=size, seed=0)
    return get_dataset(name).write_synthetic(root, num_images=images, size=size, seed=0)


def _time_suite(name: str, root: Path, out: Path, args: argparse.Namespace) -> dict:
    """One `segbench run` of the dataset's -c suite in a fresh process: wall seconds and what it measured."""
    cmd = [sys.executable, "-m", "segbench", "run", "--suite", SUITES[name], "--data", f"{name}={root}"]
    cmd += ["--models", args.models, "--allow-random-weights", "--severities", args.severities]
    cmd += ["--only", "accuracy", "--out", str(out), "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
    manifest = json.loads((out / "run.json").read_text())
    conditions = len(manifest["settings"]["conditions"])
    return {"dataset": name, "suite": SUITES[name], "conditions": conditions, "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(SUITES), help="comma list (default: all)")
    p.add_argument("--images", type=int, default=8, help="images per dataset (default 8, the demo's)")
    p.add_argument("--size", default="128x256", help="H x W the writers aim at (default 128x256, the demo's)")
    p.add_argument("--models", default="segformer-b0")
    p.add_argument("--severities", default="3")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.replace("-", "_").split(","):
            root = _write(name, Path(tmp) / name, args.images, size)
            rows.append(_time_suite(name, root, Path(tmp) / "runs" / name, args))
            print(f"{name}: {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    print(f"\n{args.images} synthetic images near {args.size}, models {args.models}, severities {args.severities}\n")
    print("| dataset | suite | conditions | images | wall s (start to exit) | s per image-condition |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        per = r["seconds"] / (r["conditions"] * args.images)
        print(f"| {r['dataset']} | {r['suite']} | {r['conditions']} | {args.images} | {r['seconds']:.1f} | {per:.3f} |")


if __name__ == "__main__":
    main()
