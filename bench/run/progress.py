"""Progress lines on stderr (rank 0; with `quiet` only failures): the plan, each settled cell, and the whole run.

Every count is derived from the `RunResult` (cells finished before, finished now, failed now), never kept beside it,
so a cell that is tried again (out of memory beside the other models) is counted once, when it settles.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from segbench.bench.run.cells import Cell, group_label
from segbench.bench.run.outcome import RunResult


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `2 h 07 min`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Writes the progress of one run's `result` on rank 0 (`main`): failed cells always, the rest unless `quiet`."""

    def __init__(self, result: RunResult, main: bool, quiet: bool = False):
        self.result, self.main, self.quiet = result, main, quiet
        self.start = time.monotonic()

    def _print(self, text: str, always: bool = False) -> None:
        if self.main and (always or not self.quiet):
            print(text, file=sys.stderr)

    def plan(self, run_dir: Path) -> None:
        """The run folder and how many cells there are, are already done, and are to run."""
        r = self.result
        self.start = time.monotonic()
        todo = len(r.cells) - len(r.skipped)
        self._print(f"run {run_dir}: {len(r.cells)} cells, {len(r.skipped)} already done, {todo} to run")

    def label(self, group: Sequence[Cell]) -> str:
        """`[3/10] model__fog-1` or `[3-4/10] fog-1 x 2 models`: the group's place among the run's cells."""
        first = self.result.settled + 1
        last = first + len(group) - 1
        span = str(first) if len(group) == 1 else f"{first}-{last}"
        return f"[{span}/{len(self.result.cells)}] {group_label(group)}"

    def finished(self, label: str, timing: dict[str, float]) -> None:
        split = " ".join(f"{k} {v:.2f}s" for k, v in timing.items() if k != "total")
        self._print(f"{label}: done in {timing['total']:.2f}s {split}")

    def failed(self, message: str) -> None:
        self._print(f"FAILED {message}", always=True)

    def whole_run(self) -> None:
        """`progress: 7/12 cells (2 from before, 1 failed), 1 min 10 s elapsed, ETA 50 s`."""
        r = self.result
        now_settled = len(r.computed) + len(r.failed)
        left = len(r.cells) - r.settled
        elapsed = time.monotonic() - self.start
        notes = [f"{len(r.skipped)} from before"] if r.skipped else []
        notes += [f"{len(r.failed)} failed"] if r.failed else []
        eta = duration(elapsed / now_settled * left) if now_settled else "unknown"
        counts = f"{r.settled}/{len(r.cells)} cells" + (f" ({', '.join(notes)})" if notes else "")
        self._print(f"progress: {counts}, {duration(elapsed)} elapsed, ETA {eta}")
