"""bench.run.allocator: freed memory is kept for the next image, in the process and in the workers it forks."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt"
)

# Page faults taken by a 256 MiB buffer allocated and written after an equal one was freed: with the setting, the
# freed pages are reused (almost no faults); with glibc's default the block is unmapped and mapped again (at least
# 128 faults even with 2 MiB transparent huge pages, 65536 with 4 KiB pages). Measured here and in a forked child.
CHILD = """
import json, multiprocessing, resource, sys
import numpy as np
from segbench.bench.run.allocator import describe, retain_freed_memory

def faults():
    np.ones(2**25)  # allocated, written, freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(2**25)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

state = retain_freed_memory()
with multiprocessing.get_context("fork").Pool(1) as pool:
    child = pool.apply(faults)
print(json.dumps({"state": state, "describe": describe(), "faults": faults(), "child": child}))
"""


def run_child(**env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_freed_memory_is_reused_in_the_process_and_its_forked_workers():
    kept = run_child(SEGBENCH_MALLOC="", LD_PRELOAD="")
    assert kept["state"] == kept["describe"] and kept["state"].startswith("glibc malloc, heap only")
    assert kept["faults"] < 32 and kept["child"] < 32, kept
    default = run_child(SEGBENCH_MALLOC="system", LD_PRELOAD="")
    assert default["state"] == "system default (SEGBENCH_MALLOC=system)"
    assert default["faults"] >= 100 and default["child"] >= 100, default


def test_a_preloaded_allocator_is_left_alone():
    libc = "libc.so.6"  # preloading the C library itself changes nothing, but counts as a preloaded allocator
    state = run_child(SEGBENCH_MALLOC="", LD_PRELOAD=libc)["state"]
    assert state == f"system default with LD_PRELOAD={libc}"
