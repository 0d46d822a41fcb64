"""The distribution: the wheel holds the code under one `segbench` namespace, and it runs from outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("models", "bench", "suites", "reports")


def test_rooms_are_symlinks_that_package_discovery_follows():
    """segbench/<room> is a relative link to the root folder, so that static tools and setuptools see the package
    where Python imports it; discovery then finds every sub-package without a hand-kept list."""
    from setuptools import find_packages

    found = set(find_packages(str(ROOT), include=["segbench", "segbench.*"]))
    for room in ROOMS:
        link = ROOT / "segbench" / room
        assert link.is_symlink() and os.readlink(link) == f"../{room}"
        for init in (ROOT / room).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                assert ".".join(("segbench", room, *init.parent.relative_to(ROOT / room).parts)) in found


def test_rooms_are_reached_through_the_namespace():
    import segbench
    import segbench.bench.run.config
    import segbench.models

    assert Path(segbench.models.__file__).resolve().parent == ROOT / "models"
    assert segbench.__path__ == [str(ROOT / "segbench")]  # no second search path, so no segbench.segbench
    assert segbench.RunConfig is segbench.bench.run.config.RunConfig
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        segbench.nope  # noqa: B018


@pytest.mark.parametrize("statement", ["import models", "from bench.results import schema", "import reports"])
def test_a_flat_room_import_fails_at_once_with_one_line(statement: str):
    """In a checkout the root is on sys.path; `import models` would be a second copy with an empty registry."""
    proc = subprocess.run([sys.executable, "-c", statement], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    room = statement.split()[1].split(".")[0]
    assert f"ImportError: import segbench.{room}, not {room}" in proc.stderr.splitlines()[-1]


def test_a_checkout_without_symlinks_still_imports(tmp_path: Path):
    """git with core.symlinks=false writes a link as a small text file: the package then finds the rooms in the
    root."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    shutil.copytree(ROOT / "segbench", copy / "segbench", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for room in ROOMS:
        (copy / "segbench" / room).unlink()
        (copy / "segbench" / room).write_text(f"../{room}")
        shutil.copytree(ROOT / room, copy / room, ignore=shutil.ignore_patterns("__pycache__"))
    code = "import segbench.bench.results.store as s, segbench.suites as su; print(s.__file__); print(su.list_suites())"
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONSAFEPATH": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(copy / "bench" / "results" / "store.py")
    assert "cityscapes-c" in proc.stdout


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from this checkout and install it alone (no dependencies, no checkout) into a fresh folder."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy, so that no stale build/ folder of the checkout can end up in the wheel
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", "build", "dist", "runs", "*.egg-info", "__pycache__", ".*_cache"),
    )
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    wheels = list((work / "dist").glob("segbench-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    for expected in (
        "segbench/__init__.py",
        "segbench/cli.py",
        "segbench/bench/run/runner.py",
        "segbench/bench/results/store.py",
        "segbench/models/segformer.py",
        "segbench/models/segformer_attention.c",  # the fast path's kernel sources, compiled on first use
        "segbench/models/segformer_upsample.c",
        "segbench/paths.py",
        "segbench/suites/builtin.py",
        "segbench/reports/render.py",
        "segbench/reports/sections/deployment.py",
        "segbench/reports/templates/report.html.j2",
        "segbench/reports/reference/cityscapes_c_table5.csv",
        "segbench/suites/demo_weights/segformer-b0.safetensors",
    ):
        assert expected in names, f"{expected} missing from the wheel"
    assert not [n for n in names if n.split("/")[0] in ROOMS], "a room installed as a top-level package"
    target = work / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheels[0])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    return target


def _outside(target: Path, tmp_path: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command in a folder outside the checkout, with the installed wheel first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CITYSCAPES_DATASET")}
    env.update(
        PYTHONPATH=str(target),
        PATH=f"{target / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        SEGBENCH_CACHE=str(tmp_path / "cache"),
        HF_HUB_CACHE=str(tmp_path / "hf"),
        PYTHONSAFEPATH="1",
    )
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_wheel_runs_outside_the_checkout(wheel_install: Path, tmp_path: Path):
    where = _outside(
        wheel_install,
        tmp_path,
        sys.executable,
        "-c",
        "import segbench, segbench.bench.run.runner as r, segbench.reports as p; print(segbench.__file__, r.__file__, "
        "p.__file__)",
    )
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():
        assert Path(path).is_relative_to(wheel_install), where.stdout

    # the fast path's kernels build from the wheel's own sources into the cache
    code = "from segbench.models import segformer_native as a; print(a.SOURCES[1], a.missing_requirement(), sep='\\n')"
    kernel = _outside(wheel_install, tmp_path, sys.executable, "-c", code + "; print(a.status().detail)")
    assert kernel.returncode == 0, kernel.stderr
    source, missing, detail = kernel.stdout.splitlines()
    assert Path(source).is_relative_to(wheel_install)
    if missing == "None":  # AVX-512 and a C compiler here
        assert str(tmp_path / "cache" / "kernels") in detail, detail

    listing = _outside(wheel_install, tmp_path, "segbench", "list")
    assert listing.returncode == 0, listing.stderr
    assert "segformer-b5" in listing.stdout and "ci (v" in listing.stdout

    run = _outside(wheel_install, tmp_path, "segbench", "--suite", "ci", "--quiet", "--out", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "results.csv").is_file()
    assert (tmp_path / "run" / "index.html").is_file()
    assert "report:" in run.stdout


@pytest.mark.slow
def test_wheel_under_torchrun_no_python(wheel_install: Path, tmp_path: Path):
    """`torchrun --no-python segbench ...`: the console command is an executable torchrun can launch."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    out = _outside(
        wheel_install,
        tmp_path,
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "1",
        "--no-python",
        "segbench",
        "list",
        "suites",
    )
    assert out.returncode == 0, out.stderr
    assert "cityscapes-c (v" in out.stdout
