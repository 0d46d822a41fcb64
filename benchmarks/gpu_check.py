"""The GPU check: the tests in tests/gpu, at most 5 minutes on one GPU, ending in one PASS/FAIL table with figures.

    python -m benchmarks.gpu_check --device cuda --json gpu_check.json   # everything, on the current GPU
    python -m benchmarks.gpu_check --device cuda:1 -k "clock or latency"  # pytest's own options pass through
    python -m benchmarks.gpu_check --device cpu                          # the CPU-meaningful tests; the rest skip

It prints what to carry to a bare GPU machine (`CARRY`), then runs

    python -m pytest -m gpu tests/gpu --gpu-device DEVICE [--gpu-json FILE] [--gpu-budget-scale S] [pytest options]

from the checkout and returns pytest's exit code (0: every test passed or skipped; 1: a test failed), or 2 when
CUDA is asked for and torch sees no GPU. What each test measures and judges is in its docstring (`--collect-only -q`
lists them); tests/gpu/conftest.py says how rows, budgets and the table work.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CARRY = """\
# Carrying this check to a bare GPU machine (a copy of the working tree, a CUDA PyTorch, maybe no package registry):
#   with a registry there:  pip install -e ".[test]"
#   without one: runs need two pure-Python wheels that such an image lacks. Here, with the registry:
#     python -m pip download --no-deps --only-binary=:all: -d wheels imagecorruptions-imaug cityscapesScripts
#   and for the energy test's NVML rows (energy, power, clocks) the same with nvidia-ml-py; where the image has no
#   pytest, the same with pytest pluggy iniconfig packaging pygments;
#   carry wheels/ with the tree (an untracked folder travels with a copy of the working tree), and there:
#     python -m pip install --no-index --no-deps --target /tmp/site wheels/*.whl && export PYTHONPATH=/tmp/site
#     python -m benchmarks.gpu_check --device cuda --json gpu_check.json
#   segbench itself needs no install: pytest imports it from the checkout (pyproject.toml's pythonpath)."""


def check_json_target(path: Path, flag: str = "--json") -> Path:
    """Where the rows go: nothing there yet, or an earlier GPU check's JSON (replaced); anything else is refused,
    untouched (`TargetError`, one line)."""
    from segbench.bench.results.targets import check_target, json_object

    def earlier_check(path: Path) -> bool:
        return {"rows", "counts"} <= set(json_object(path) or {})

    return check_target(path, flag, "a GPU check's JSON", "give a new .json file", earlier_check)


def pytest_command(device: str, json_path: Path | None, budget_scale: float | None, extra: Sequence[str]) -> list[str]:
    """The pytest command line that runs the GPU check on `device`, with pytest options `extra` after it."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "--gpu-device", device]
    if json_path is not None:
        command += ["--gpu-json", str(json_path.resolve())]
    if budget_scale is not None:
        command += ["--gpu-budget-scale", str(budget_scale)]
    return [*command, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the carry note, run the GPU check under pytest, and return its exit code (2: no GPU for a CUDA device,
    or a --json path that holds something else).

    Args:
        argv: command-line arguments (None: `sys.argv[1:]`); those it does not know are pytest's.
    """
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (default: cuda)")
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    ap.add_argument("--budget-scale", type=float, help="multiply every time budget (default: 1 on a GPU, 4 on a CPU)")
    args, extra = ap.parse_known_args(argv)
    if args.json is not None:
        from segbench.bench.results.targets import TargetError

        try:
            check_json_target(args.json)
        except TargetError as e:
            print(f"gpu_check: {e}", file=sys.stderr)
            return 2
    print(CARRY, flush=True)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"gpu_check: --device {args.device}, but torch {torch.__version__} sees no GPU", file=sys.stderr)
            return 2
    command = pytest_command(args.device, args.json, args.budget_scale, extra)
    print(f"# {shlex.join(command)}\n", flush=True)
    return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
