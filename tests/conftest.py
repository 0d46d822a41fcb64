"""Shared fixtures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segbench.bench.data.synthetic import write_synthetic_cityscapes


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic Cityscapes (4 val images of 64x128, official layout) shared by the whole session.

    Read-only: tests that modify data must copy it first.
    """
    return write_synthetic_cityscapes(tmp_path_factory.mktemp("cityscapes"), num_images=4, size=(64, 128), seed=0)


@pytest.fixture()
def torchrun_runner():
    """`torchrun_runner(config, path, nproc=2)`: see `_torchrun_runner`."""
    return _torchrun_runner


def _torchrun_runner(config: dict, path: Path, nproc: int = 2) -> None:
    """Write `config` (RunConfig fields plus `conditions`) to `path` and run it with `nproc` CPU processes under
    torchrun (`python -m segbench.bench.run.runner --config`); fails the test with the tail of stderr otherwise."""
    repo = Path(__file__).resolve().parents[1]
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "segbench.bench.run.runner",
        "--config",
        str(path),
    ]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
