"""The run folder: one atomic file per finished cell, run.json (checked on resume), env.json, and the reader the
report and the regression check use."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segbench.bench.results.classes import ClassTable, class_table
from segbench.bench.results.io import atomic_write_json, json_safe, read_rows, write_csv
from segbench.bench.results.schema import COLUMNS, SCHEMA_VERSION
from segbench.bench.results.summaries import default_reference, summary_rows


class RunMismatchError(ValueError):
    """A resume was asked against a run folder made with other settings."""


def cell_filename(cell_id: str) -> str:
    """File name of a cell: the id with unsafe characters replaced, plus a short hash when anything was replaced."""
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", cell_id)
    if safe != cell_id:
        safe += "-" + hashlib.sha1(cell_id.encode()).hexdigest()[:8]
    return safe + ".json"


class RunStore:
    """A run folder: cells, manifest, provenance and the gathered tables."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.cells_dir = self.dir / "cells"

    @property
    def results_csv(self) -> Path:
        return self.dir / "results.csv"

    @property
    def summary_csv(self) -> Path:
        return self.dir / "summary.csv"

    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / cell_filename(cell_id)

    def write_cell(self, record: Mapping[str, Any]) -> Path:
        """Store a finished cell (atomically). `record` needs `cell` (its id) and `rows`."""
        return atomic_write_json(self.cell_path(record["cell"]), {"schema": SCHEMA_VERSION, **record})

    def finished(self) -> dict[str, dict]:
        """Finished cells by id. A file that does not parse (not written by this code) is reported and skipped."""
        out = {}
        if not self.cells_dir.is_dir():
            return out
        for path in sorted(self.cells_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                out[record["cell"]] = record
            except (OSError, ValueError, KeyError) as exc:
                print(f"warning: ignoring unreadable cell file {path} ({exc}); it will be recomputed", file=sys.stderr)
        return out

    def read_manifest(self) -> dict | None:
        path = self.dir / "run.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.dir / "run.json", manifest)

    def write_env(self, env: Mapping[str, Any]) -> Path:
        """Write env.json; earlier sessions of a resumed run are kept under `sessions`."""
        path = self.dir / "env.json"
        sessions = []
        if path.is_file():
            try:
                old = json.loads(path.read_text())
                sessions = old.pop("sessions", []) + [old]
            except ValueError:
                pass
        return atomic_write_json(path, {**env, "sessions": sessions})

    def gather(self, order: Sequence[str] | None = None, reference_model: str | None = None, suite: str = "") -> Path:
        """Write results.csv (and summary.csv when there are corrupted cells) from the finished cells.

        Args:
            order: cell ids in plan order (others follow, sorted); makes the CSV independent of finishing order.
            reference_model: reference of CE / mCE in summary.csv (None: `default_reference`).
            suite: suite name for the summary rows.
        """
        cells = self.finished()
        rank = {cell: i for i, cell in enumerate(order or [])}
        ids = sorted(cells, key=lambda c: (rank.get(c, len(rank)), c))
        rows = [r for c in ids for r in cells[c]["rows"]]
        write_csv(rows, self.results_csv)
        self.write_summary(rows, suite, reference_model)
        return self.results_csv

    def write_summary(self, rows: Sequence[Mapping[str, Any]], suite: str, reference_model: str | None) -> list[dict]:
        """Write summary.csv (robustness scores against `default_reference(rows, reference_model)`); returns it."""
        summary = summary_rows(rows, suite, default_reference(rows, reference_model))
        if summary:
            write_csv(summary, self.summary_csv)
        else:
            self.summary_csv.unlink(missing_ok=True)
        return summary


class RunFolder:
    """A finished (or running) run folder, read through the contract: what the report and the regression check use.

    Attributes:
        dir: the folder.
        problems: unreadable files met while reading (one line each), for the report to show.
    """

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir}: run folder not found")
        self.problems: list[str] = []
        self._cells: list[dict] | None = None

    def read_json(self, name: str) -> Any:
        """A JSON file of the folder (`name` relative to it); None when missing (noted in problems when unreadable)."""
        path = self.dir / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.problems.append(f"{name}: unreadable ({exc.__class__.__name__}: {exc})")
            return None

    @property
    def manifest(self) -> dict:
        """run.json (what the run is), or {}."""
        data = self.read_json("run.json")
        return data if isinstance(data, dict) else {}

    @property
    def classes(self) -> ClassTable | None:
        """The class table the run scored with (run.json's `classes`). A run written before run.json recorded it has
        its number of classes only: Cityscapes' table for 19, placeholder names otherwise (`class_table`, what such
        a run scored with). None without run.json or either key."""
        manifest = self.manifest
        if isinstance(manifest.get("classes"), Mapping):
            return ClassTable.from_dict(manifest["classes"])
        num_classes = manifest.get("num_classes")
        return class_table(num_classes) if isinstance(num_classes, int) else None

    @property
    def env(self) -> dict | None:
        """env.json (provenance), or None when missing or unreadable."""
        data = self.read_json("env.json")
        return data if isinstance(data, dict) else None

    def cells(self) -> list[dict]:
        """The cell records of `cells/*.json`, each with its file name under `_file` (unreadable ones in problems)."""
        if self._cells is None:
            self._cells = []
            for path in sorted((self.dir / "cells").glob("*.json")):
                record = self.read_json(f"cells/{path.name}")
                if isinstance(record, dict):
                    self._cells.append({**record, "_file": path.name})
                elif record is not None:
                    self.problems.append(f"cells/{path.name}: not a JSON object")
        return self._cells

    def rows(self) -> tuple[Any, str]:
        """(DataFrame of the tidy rows, where they came from): results.csv, else the cells' rows (a running run)."""
        import pandas as pd

        csv = self.dir / "results.csv"
        if csv.is_file():
            return read_rows(csv), "results.csv"
        cells = self.cells()
        if not cells:
            raise FileNotFoundError(
                f"{self.dir}: neither results.csv nor cells/*.json found; is this a run folder (runs/<suite>-<time>)?"
            )
        rows = [r for c in cells for r in c.get("rows", []) if isinstance(r, dict)]
        frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(COLUMNS))
        return frame, "cells/*.json (results.csv not gathered yet)"

    def frame(self):
        """The tidy rows as a DataFrame (one value per row; see `COLUMNS`)."""
        return self.rows()[0]

    def summary(self, reference_model: str | None = None):
        """summary.csv as a DataFrame, against `reference_model` (None: the one the run used).

        When another reference is asked for (or the file is missing), summary.csv is rewritten first with the
        contract's own `summary_rows`, so the file always holds what a report built from it shows.
        """
        import pandas as pd

        path = self.dir / "summary.csv"
        current = read_rows(path) if path.is_file() else None
        if current is not None and "reference" in current.columns:
            used = current["reference"].dropna()
            used = used.iloc[0] if len(used) else None
            if reference_model is None or reference_model == used:
                return current
        frame, _ = self.rows()
        rows = frame.to_dict("records")
        suite = str(
            self.manifest.get("suite") or next((r["suite"] for r in rows if isinstance(r.get("suite"), str)), "")
        )
        summary = RunStore(self.dir).write_summary(rows, suite, reference_model)
        return pd.DataFrame(summary) if summary else pd.DataFrame(columns=[*COLUMNS, "reference"])


def read_run(run_dir: str | Path) -> RunFolder:
    """Open a finished run folder for reading (`segbench.read_run`): `.frame()`, `.summary()`, `.env`, `.cells()`,
    `.classes`."""
    folder = RunFolder(run_dir)
    if not (folder.dir / "results.csv").is_file() and not (folder.dir / "cells").is_dir():
        raise FileNotFoundError(f"{folder.dir}: no results.csv or cells/ here; give a run folder made by segbench")
    return folder


def check_resume(old: Mapping[str, Any], new: Mapping[str, Any], run_dir: str | Path) -> None:
    """Refuse to resume when what defines the numbers differs between the stored manifest and this run.

    Compared: suite, suite version, seed, split, max_images, number of classes, every entry of `settings` (the fast
    path, precision, channels-last, compile, batch size, the conditions run, ...), and for every model present in
    both its weight hash and inference protocol (mode, crop, stride, flip, precision). Device and worker count may
    change.
    """
    problems = []
    for key in ("suite", "suite_version", "seed", "split", "max_images", "num_classes"):
        if _norm(old.get(key)) != _norm(new.get(key)):
            problems.append(f"{key} was {old.get(key)!r}, now {new.get(key)!r}")
    for model, digest in new.get("weights", {}).items():
        before = old.get("weights", {}).get(model)
        if before is not None and before != digest:
            problems.append(f"weights of {model} changed (sha256 {before[:16]}... -> {digest[:16]}...)")
    old_settings, new_settings = old.get("settings"), new.get("settings") or {}
    if isinstance(old_settings, Mapping):  # runs made before settings were recorded have none to compare
        for key in sorted(set(old_settings) | set(new_settings)):
            if _norm(old_settings.get(key)) != _norm(new_settings.get(key)):
                problems.append(f"{key} was {_short(old_settings.get(key))}, now {_short(new_settings.get(key))}")
    for model, protocol in new.get("protocols", {}).items():
        before = old.get("protocols", {}).get(model)
        if before is not None and _norm(before) != _norm(protocol):
            problems.append(f"inference protocol of {model} was {before}, now {_norm(protocol)}")
    if problems:
        raise RunMismatchError(
            f"cannot resume {run_dir}: " + "; ".join(problems) + ". Start a new run (without resume) or use the "
            "settings the run was made with."
        )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _norm(value: Any) -> str:
    return json.dumps(json_safe(value), sort_keys=True)
