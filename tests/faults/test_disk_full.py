"""A full disk in the middle of a run: one line that names the file and says how to go on, the lock released, nothing
half-written left looking complete; after space is freed, `--resume` finishes with the uninterrupted results."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from segbench.bench.results import io as results_io
from segbench.cli import main

SUITE = ["--suite", "ci", "--models", "segformer-tiny", "--allow-random-weights", "--only", "accuracy", "--quiet",
         "--corruptions", "fog,snow", "--severities", "1,2", "--max-images", "1"]  # fmt: skip
CELLS = 5  # clean + 2 corruptions x 2 severities


def _accuracy(run: Path) -> pd.DataFrame:
    rows = pd.read_csv(run / "results.csv")
    rows = rows[~rows["metric"].str.startswith("time_") & (rows["metric"] != "throughput")]
    return rows.sort_values(["condition", "metric"]).reset_index(drop=True)[["condition", "metric", "value"]]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEGBENCH_DEBUG", "0")  # restored after the test (--debug sets it in this process)


def _check_stopped(run: Path, err: str) -> None:
    line = next(x for x in err.splitlines() if x.startswith("error: "))
    assert "No space left on device" in line and f"--out {run} --resume" in line, err
    assert "Traceback" not in err and not (run / ".segbench.lock.json").exists()
    assert not [p for p in run.rglob("*") if p.name.endswith(results_io.TEMP_SUFFIX)]  # no half-written file


def test_a_write_that_finds_the_disk_full_is_one_line_and_the_run_resumes(tmp_path, cache, capsys, monkeypatch):
    assert main([*SUITE, "--out", str(tmp_path / "whole")]) == 0
    run = tmp_path / "run"
    real, writes = results_io.atomic_write, []

    def filling(path, write):  # the disk is full from the third cell on
        if "cells" in Path(path).parts:
            writes.append(path)
            if len(writes) > 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    monkeypatch.setattr(results_io, "atomic_write", filling)
    assert main([*SUITE, "--out", str(run)]) == 2
    _check_stopped(run, capsys.readouterr().err)
    assert len(list((run / "cells").glob("*.json"))) == 2
    monkeypatch.setattr(results_io, "atomic_write", real)
    assert main([*SUITE, "--out", str(run), "--resume"]) == 0
    assert len(list((run / "cells").glob("*.json"))) == CELLS
    pd.testing.assert_frame_equal(_accuracy(run), _accuracy(tmp_path / "whole"))


@pytest.fixture()
def small_disk(tmp_path):
    """A real 4 MiB file system (tmpfs), where this machine lets the tests mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.decode().strip()[:80]})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk(tmp_path, cache, capsys, small_disk):
    assert main([*SUITE, "--out", str(tmp_path / "whole")]) == 0
    whole = tmp_path / "whole"
    pages = [-(-p.stat().st_size // 4096) * 4096 for p in (whole / "run.json", whole / "env.json")]
    cell = max(-(-p.stat().st_size // 4096) * 4096 for p in (whole / "cells").glob("*.json"))
    filler = small_disk / "filler"  # room for the run's files, the lock's note and about two and a half cells
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - sum(pages) - 4096 - 5 * cell // 2))
    run = small_disk / "run"
    assert main([*SUITE, "--out", str(run)]) == 2
    _check_stopped(run, capsys.readouterr().err)
    assert 0 < len(list((run / "cells").glob("*.json"))) < CELLS
    filler.unlink()
    assert main([*SUITE, "--out", str(run), "--resume"]) == 0
    pd.testing.assert_frame_equal(_accuracy(run), _accuracy(tmp_path / "whole"))
