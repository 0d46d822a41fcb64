"""A run, or generate-c, stopped at a random point by SIGTERM, SIGINT or SIGKILL, then resumed: every cell exactly once,
and the results of an uninterrupted run. SIGTERM and SIGINT stop cleanly (tables gathered, lock released, one line on
how to resume, exit 143 / 130)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from segbench.bench.data.generate_c import generate_c
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.cli import main

REPO = Path(__file__).resolve().parents[2]
SEED = 20261207  # the kill points are random, and reproducible

SLOW = """
import time
from torch import nn

segbench_meta = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "trained": True}


class Slow(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.head = nn.Conv2d(3, num_classes, 1)

    def forward(self, x):
        time.sleep(0.25)  # slow enough to be stopped between cells at a chosen point
        return self.head(x)


def build(num_classes):
    return Slow(num_classes)
"""
CONDITIONS = ("fog", "snow", "contrast")  # x severities 1, 2 and clean: 7 cells


def _argv(tmp_path: Path, out: Path) -> list[str]:
    (tmp_path / "slow.py").write_text(SLOW)
    return [
        "--suite",
        "ci",
        "--models",
        f"slow=py:{tmp_path}/slow.py:build",
        "--only",
        "accuracy",
        "--corruptions",
        ",".join(CONDITIONS),
        "--severities",
        "1,2",
        "--max-images",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SEGBENCH_DEBUG"}
    return {**env, "PYTHONPATH": str(REPO), "SEGBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def _stop_after(argv: list[str], cells: Path, finished: int, sig: int, env: dict) -> subprocess.CompletedProcess:
    """Start the CLI, wait for `finished` cell files, send `sig`, and return the finished process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "segbench.cli", *argv], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while len(list(cells.glob("*.json"))) < finished and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be stopped: {proc.stderr.read()[-2000:]}"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def _accuracy(path: Path) -> pd.DataFrame:
    rows = pd.read_csv(path)
    keep = ~rows["metric"].str.startswith("time_") & (rows["metric"] != "throughput")  # timings differ
    return (
        rows[keep]
        .sort_values(["model", "condition", "metric"])
        .reset_index(drop=True)[["condition", "metric", "value"]]
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cli_here) -> pd.DataFrame:
    """The uninterrupted run's results."""
    tmp = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, _, _ = cli_here(monkeypatch, tmp)(*_argv(tmp, tmp / "run"))
    assert code == 0
    return _accuracy(tmp / "run" / "results.csv")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_a_stopped_run_resumes_to_the_uninterrupted_results(sig, code, tmp_path, reference, monkeypatch, cli_here):
    """(Ctrl-C takes the same path in the process: `test_runner`'s KeyboardInterrupt test, and the handler's own test
    below.)"""
    out = tmp_path / "run"
    argv, env = _argv(tmp_path, out), _env(tmp_path)
    finished = random.Random(SEED + sig).randint(1, 4)
    stopped = _stop_after(argv, out / "cells", finished, sig, env)
    assert stopped.returncode == code, stopped.stderr[-2000:]
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    if sig != signal.SIGKILL:  # a clean stop: the tables, the lock note gone, one line on how to resume
        assert "Traceback" not in stopped.stderr
        assert f"stopped by {signal.Signals(sig).name}" in stopped.stderr
        assert f"Resume: the same command with --out {out} --resume" in stopped.stderr
        assert (out / "results.csv").is_file() and not (out / ".segbench.lock.json").exists()
        assert len(pd.read_csv(out / "results.csv").query("metric == 'miou'")) == len(kept)
    code, _, err = cli_here(monkeypatch, tmp_path)(*argv, "--resume")
    assert code == 0, err[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(after) == 7 and all(after[name] == t for name, t in kept.items())  # none computed twice
    pd.testing.assert_frame_equal(_accuracy(out / "results.csv"), reference)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_generate_c_stopped_then_run_again_writes_the_same_bytes(sig, tmp_path):
    data = write_synthetic_cityscapes(tmp_path / "data", num_images=3, size=(64, 128), seed=1)
    corruptions = ("gaussian_noise", "snow", "spatter", "fog", "frost", "motion_blur", "glass_blur")
    reference = generate_c(data, tmp_path / "ref", corruptions, workers=1, base_seed=2, quiet=True)
    out = tmp_path / "out"
    argv = ["generate-c", "--data", str(data), "--out", str(out), "--corruptions", ",".join(corruptions)]
    argv += ["--workers", "1", "--seed", "2", "--quiet"]
    env = _env(tmp_path)
    cmd = [sys.executable, "-m", "segbench.cli", *argv]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    target = random.Random(SEED + sig).randint(4, 20)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*_leftImg8bit.png"))) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "generate-c finished before it could be stopped"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "Traceback" not in err and "run the same command again" in err, err
    assert main(argv) == 0
    files = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    assert len(files) == reference.written
    for rel in files:
        assert (out / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_stop_on_signals_turns_sigterm_into_a_stop_and_restores_the_handler():
    from segbench.bench.run.stop import Stopped, exit_code, stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as caught, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next bytecode
    assert exit_code(caught.value) == 143 and exit_code(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) is before
