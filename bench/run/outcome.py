"""What became of the cells of a run: finished (a record), failed (a `CellError`), and the run's `RunResult`."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segbench.bench.results.schema import LATENCY_MEDIAN
from segbench.models.sources import first_line

DEBUG_ENV = "SEGBENCH_DEBUG"
"""Set (to anything but "" or "0") by `--debug`: every error shows its full traceback, user mistakes included."""


class CellError(RuntimeError):
    """A cell could not be evaluated (non-finite logits, out of memory, ...).

    Attributes:
        out_of_memory: on some rank the device ran out of memory (the run may retry such a cell with no other model
            loaded).
        loading: it ran out of memory while loading the cell's models, before any work.
    """

    def __init__(self, message: str, out_of_memory: bool = False, loading: bool = False):
        super().__init__(message)
        self.out_of_memory, self.loading = out_of_memory, loading


@dataclass
class RunResult:
    """What a run produced. `computed` and `skipped` are cell ids; `failed` maps cell id -> error message.

    `cells` is the whole plan; `skipped` were finished by an earlier session; `computed` and `failed` are this
    session's, in the order they settled. `is_main`: this process is the rank that wrote the run's files (rank 0, or
    the only process), the one that renders the report and compares against a baseline.
    """

    run_dir: Path
    results_csv: Path | None
    cells: list[str]
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    timing: dict[str, dict[str, float]] = field(default_factory=dict)
    is_main: bool = True

    def frame(self):
        """The run's tidy rows as a pandas DataFrame, read back from its folder (`bench.results.RunFolder`)."""
        from segbench.bench.results.store import RunFolder

        return RunFolder(self.run_dir).frame()

    def summary(self, reference_model: str | None = None):
        """The run's robustness scores (summary.csv) as a DataFrame; see `bench.results.RunFolder.summary`."""
        from segbench.bench.results.store import RunFolder

        return RunFolder(self.run_dir).summary(reference_model)

    def add_computed(self, cell: str, timing: dict[str, float]) -> None:
        """Record `cell` as finished in this session, with its timing."""
        self.computed.append(cell)
        self.timing[cell] = timing

    @property
    def settled(self) -> int:
        """Cells of the plan that are no longer to run: finished before, finished now, or failed now."""
        return len(self.skipped) + len(self.computed) + len(self.failed)


class RunFailed(RuntimeError):
    """Some cells failed; the others are stored. `.result` holds the `RunResult`."""

    def __init__(self, message: str, result: RunResult):
        super().__init__(message)
        self.result = result


def warning_text(w: warnings.WarningMessage) -> str:
    """One caught warning as a cell records it: `Category: message`."""
    return f"{w.category.__name__}: {w.message}"


def cell_warnings(caught: list[warnings.WarningMessage], record: dict[str, Any]) -> list[str]:
    """What a reader of the report should know about a cell: Python warnings raised while it ran (weights notes,
    library deprecations), those its own model raised when models shared batches (already in `record["warnings"]`),
    and latency measurements whose spread stayed high."""
    out = [*map(warning_text, caught), *record.get("warnings", [])]
    for row in record.get("rows", []):
        if row.get("noisy") and str(row.get("metric", "")).startswith(LATENCY_MEDIAN):
            out.append(f"noisy timing: {row['metric']} at {row.get('resolution')} stayed above the CV threshold")
    return list(dict.fromkeys(out))


def debug_enabled() -> bool:
    """Whether `--debug` (or `SEGBENCH_DEBUG=1`) asked for full tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def user_source(model: Any) -> str | None:
    """The source of a model that runs a user's code (`hf:`, `py:`, `torchscript:`, `onnx:`, an in-memory module),
    as `kind:target`; None for a registry model, whose errors are segbench's own."""
    info = getattr(model, "source_info", None)
    if info is None or getattr(info, "kind", "registry") == "registry":
        return None
    return f"{info.kind}:{info.target}"


def user_code_failed(cell_id: str, source: str, error: BaseException) -> str:
    """The one line a cell says when a user's model raised inside its forward (`--debug` prints the traceback)."""
    if debug_enabled():
        traceback.print_exception(error, file=sys.stderr)
    hint = "" if debug_enabled() else " (--debug shows the traceback)"
    return f"cell {cell_id}: the model ({source}) raised {first_line(error)}{hint}"
