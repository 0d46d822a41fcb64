"""Shared fixtures."""

import gc
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
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


@pytest.fixture(scope="session")
def torchrun():
    """`torchrun(args, cwd, env=None, nproc=2)`: see `_torchrun`."""
    return _torchrun


def _torchrun(args: list[str], cwd: Path, env: dict[str, str] | None = None, nproc: int = 2) -> None:
    """Run `args` (what follows torchrun's options: a script or `-m module`, and its arguments) with `nproc` CPU
    processes under torchrun, with this checkout first on the path; fails the test with the tail of stderr
    otherwise."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _torchrun_runner(config: dict, path: Path, nproc: int = 2) -> None:
    """Write `config` (RunConfig fields plus `conditions`) to `path` and run it with `nproc` CPU processes under
    torchrun (`python -m segbench.bench.run.runner --config`)."""
    path.write_text(json.dumps(config))
    _torchrun(
        ["-m", "segbench.bench.run.runner", "--config", str(path)], Path(__file__).resolve().parents[1], None, nproc
    )


DATASET_VARIABLES = (
    "CITYSCAPES_DATASET",
    "ADE20K_DATASET",
    "VOC_DATASET",
    "COCO_STUFF_DATASET",
    "ACDC_DATASET",
    "DARK_ZURICH_DATASET",
)
"""The environment variables of the datasets' roots, unset for an in-process command line."""

HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
"""What a fresh interpreter's default warning filters do not print (outside `__main__`)."""


def _cli_here(
    monkeypatch: pytest.MonkeyPatch, home: Path, capsys: pytest.CaptureFixture | None = None
) -> Callable[..., tuple[int, str, str]]:
    """`call(*args)`: `segbench.cli.main(args)` in this process, set up as a fresh interpreter started in `home`
    (its own cache folders, no Cityscapes variable, no debug, no step summary, this process's allocator left alone).
    Returns (exit code, stdout, stderr), stderr followed by each warning such an interpreter would print. Without
    `capsys` (a module-scoped fixture) the output is not captured and comes back empty."""
    from segbench.bench.run import allocator
    from segbench.cli import main

    monkeypatch.chdir(home)
    monkeypatch.setenv("SEGBENCH_CACHE", str(home / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf"))
    monkeypatch.setenv("SEGBENCH_DEBUG", "0")  # and restored after: `--debug` sets it in this process
    monkeypatch.setenv("SEGBENCH_MALLOC", "system")
    for name in (*DATASET_VARIABLES, "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator, "_state", allocator.describe())

    def call(*args: object) -> tuple[int, str, str]:
        if capsys is not None:
            capsys.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = main([str(a) for a in args])
        shown = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, HIDDEN_WARNINGS)]
        out = capsys.readouterr() if capsys is not None else None
        return code, out.out if out else "", (out.err if out else "") + "".join(f"{line}\n" for line in shown)

    return call


@pytest.fixture(scope="session")
def cli_here() -> Callable[..., Callable[..., tuple[int, str, str]]]:
    """`cli_here(monkeypatch, home, capsys=None)` -> `call(*args)`: the command line in this process (`_cli_here`)."""
    return _cli_here


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every object alive once the tests are collected (the imported libraries, mostly) goes to the garbage collector's
    permanent generation: the runner's and the tests' `gc.collect()` calls then walk only what the tests made."""
    gc.freeze()
