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
from segbench.bench.results.files import (
    CALIBRATION,
    CELL,
    ENV,
    RUN_INFO,
    RUN_MANIFEST,
    DamagedFileError,
    FileKind,
    set_aside,
)
from segbench.bench.results.io import atomic_write_json, json_safe, read_rows, write_csv
from segbench.bench.results.schema import CALIBRATION_KEY, COLUMNS, SCHEMA_VERSION, stamp_dataset
from segbench.bench.results.summaries import default_reference, summary_rows


class RunMismatchError(ValueError):
    """A resume was asked against a run folder made with other settings."""


def cell_filename(cell_id: str) -> str:
    """File name of a cell: the id with unsafe characters replaced, plus a short hash when anything was replaced."""
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", cell_id)
    if safe != cell_id:
        safe += "-" + hashlib.sha1(cell_id.encode()).hexdigest()[:8]
    return safe + ".json"


def _stored_cell(path: Path) -> dict:
    """A cell file as a resume trusts it: a cell record (`files.CELL`) stored under the file name of its own id (the
    name by which the run decides what is done).

    Raises:
        DamagedFileError: it is not.
    """
    record = CELL.read(path)
    expected = cell_filename(record["cell"])
    if expected != path.name:
        raise DamagedFileError(path, f"holds cell {record['cell']!r}, whose file is {expected}", CELL.remedy)
    return record


def _set_aside(damaged: DamagedFileError, then: str) -> None:
    """Rename a damaged file aside (`files.set_aside`) with one warning line: the file, what is wrong, its new name
    and `then` (what happens next)."""
    moved = set_aside(damaged.path)
    print(f"warning: {damaged.path}: {damaged.problem}; set aside as {moved.name}, {then}", file=sys.stderr)


class RunStore:
    """A run folder: cells, manifest, provenance and the gathered tables. Every row stored gets its `dataset`
    (`schema.stamp_dataset`: a real-world condition's own, else the run's `dataset`)."""

    def __init__(self, run_dir: str | Path, dataset: str = "cityscapes"):
        self.dir = Path(run_dir)
        self.cells_dir = self.dir / "cells"
        self.dataset = dataset

    @property
    def results_csv(self) -> Path:
        return self.dir / "results.csv"

    @property
    def summary_csv(self) -> Path:
        return self.dir / "summary.csv"

    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / cell_filename(cell_id)

    def write_cell(self, record: Mapping[str, Any]) -> Path:
        """Store a finished cell (atomically). `record` needs `cell` (its id) and `rows`.

        Raises:
            DamagedFileError: the record would not read back as a cell (rows without a numeric value, say: an
                efficiency function's mistake); it is not stored, so a resume cannot loop over it.
        """
        path = self.cell_path(record["cell"])
        rows = record.get("rows")
        if isinstance(rows, list) and all(isinstance(r, Mapping) for r in rows):
            record = {**record, "rows": stamp_dataset(rows, self.dataset)}
        data = json_safe({"schema": SCHEMA_VERSION, **record})
        CELL.check(data, path)
        return atomic_write_json(path, data)

    def finished(self) -> dict[str, dict]:
        """Finished cells by id. A damaged cell file (empty, unparsable, not a cell record, or named for another cell:
        `_stored_cell`) is set aside (`files.set_aside`, never deleted) with one warning line, so that the run computes
        the cell again."""
        out = {}
        for path in sorted(self.cells_dir.glob("*.json")) if self.cells_dir.is_dir() else ():
            try:
                record = _stored_cell(path)
            except DamagedFileError as exc:
                _set_aside(exc, "the cell will be recomputed")
                continue
            except OSError as exc:
                print(f"warning: ignoring unreadable cell file {path} ({exc}); it will be recomputed", file=sys.stderr)
                continue
            out[record["cell"]] = record
        return out

    def read_manifest(self) -> dict | None:
        """run.json, checked as a resume compares it (`files.RUN_MANIFEST`); None when there is none.

        Raises:
            DamagedFileError: it is damaged (one line naming it).
        """
        path = self.dir / "run.json"
        return RUN_MANIFEST.read(path) if path.is_file() else None

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.dir / "run.json", manifest)

    def write_env(self, env: Mapping[str, Any]) -> Path:
        """Write env.json; earlier sessions of a resumed run are kept under `sessions` (a damaged env.json is set
        aside, with one warning line)."""
        path = self.dir / "env.json"
        sessions = []
        if path.is_file():
            try:
                old = ENV.read(path)
                sessions = old.pop("sessions", []) + [old]
            except DamagedFileError as exc:
                _set_aside(exc, "a new one is written")
        return atomic_write_json(path, {**env, "sessions": sessions})

    def gather(self, order: Sequence[str] | None = None, reference_model: str | None = None, suite: str = "") -> Path:
        """Write results.csv (and summary.csv when there are corrupted cells) from the finished cells (damaged cell
        files are set aside: `finished`).

        Args:
            order: cell ids in plan order (others follow, sorted); makes the CSV independent of finishing order.
            reference_model: reference of CE / mCE in summary.csv (None: `default_reference`).
            suite: suite name for the summary rows.
        """
        cells = self.finished()
        rank = {cell: i for i, cell in enumerate(order or [])}
        ids = sorted(cells, key=lambda c: (rank.get(c, len(rank)), c))
        rows = stamp_dataset([r for c in ids for r in cells[c]["rows"]], self.dataset)
        write_csv(rows, self.results_csv)
        self.write_summary(rows, suite, reference_model)
        return self.results_csv

    def write_summary(self, rows: Sequence[Mapping[str, Any]], suite: str, reference_model: str | None) -> list[dict]:
        """Write summary.csv (robustness scores against `default_reference(rows, reference_model)`); returns it."""
        summary = stamp_dataset(summary_rows(rows, suite, default_reference(rows, reference_model)), self.dataset)
        if summary:
            write_csv(summary, self.summary_csv)
        else:
            self.summary_csv.unlink(missing_ok=True)
        return summary


class RunFolder:
    """A finished (or running) run folder, read through the contract: what the report and the regression check use.

    Every file is checked against its schema (`bench.results.files`); a damaged one is left out, with one line in
    `problems`, and the folder reads on without it.

    Attributes:
        dir: the folder.
        problems: damaged or unreadable files met while reading (one line each, naming the file relative to the
            folder), for the report to show.
    """

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir}: run folder not found")
        self.problems: list[str] = []
        self._cells: list[dict] | None = None

    def _problem(self, line: str) -> None:
        if line not in self.problems:  # a file read twice is one problem
            self.problems.append(line)

    def read_json(self, name: str, kind: FileKind) -> Any:
        """A JSON file of the folder (`name` relative to it), checked as `kind`; None when missing, or damaged or
        unreadable (then noted in `problems`)."""
        path = self.dir / name
        if not path.is_file():
            return None
        try:
            return kind.read(path, name)
        except DamagedFileError as exc:
            self._problem(str(exc))
        except OSError as exc:
            self._problem(f"{name}: unreadable ({exc.strerror or exc})")
        return None

    @property
    def manifest(self) -> dict:
        """run.json (what the run is), or {}."""
        return self.read_json("run.json", RUN_INFO) or {}

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
    def dataset(self) -> str:
        """The dataset of the run's clean and corrupted conditions (run.json's `dataset`); a run written before
        datasets were named read Cityscapes."""
        named = self.manifest.get("dataset")
        return named if isinstance(named, str) and named else "cityscapes"

    @property
    def env(self) -> dict | None:
        """env.json (provenance), or None when missing or damaged."""
        return self.read_json("env.json", ENV)

    def cells(self) -> list[dict]:
        """The cell records of `cells/*.json`, each with its file name under `_file` (damaged ones in problems)."""
        if self._cells is None:
            self._cells = []
            for path in sorted((self.dir / "cells").glob("*.json")):
                name = f"cells/{path.name}"
                try:
                    self._cells.append({**CELL.read(path, name), "_file": path.name})
                except DamagedFileError as exc:
                    self._problem(str(exc))
                except OSError as exc:
                    self._problem(f"{name}: unreadable ({exc.strerror or exc})")
        return self._cells

    def calibration(self) -> dict[tuple[str, str], dict]:
        """The calibration sums of the accuracy cells (their `CALIBRATION_KEY`), by (model, condition): `bins`,
        per-bin `count`, `correct` and `confidence` (sums), `nll_sum`, `brier_sum` (`files.CalibrationSums`).

        A cell without the key (a run made before calibration was measured) is absent; a damaged key (wrong types,
        lists that are not `bins` long, more correct pixels than pixels) is left out with one line in `problems`.
        """
        out: dict[tuple[str, str], dict] = {}
        for cell in self.cells():
            sums, model, condition = cell.get(CALIBRATION_KEY), cell.get("model"), cell.get("condition")
            if sums is None or not isinstance(model, str) or not isinstance(condition, str):
                continue
            name = f"cells/{cell['_file']}"
            try:
                CALIBRATION.check(sums, name)
                _check_bins(sums, name)
            except DamagedFileError as exc:
                self._problem(str(exc))
                continue
            out[(model, condition)] = sums
        return out

    def rows(self) -> tuple[Any, str]:
        """(DataFrame of the tidy rows, where they came from): results.csv, else the cells' rows (a running or
        interrupted run, or a damaged results.csv: noted in problems).

        Raises:
            FileNotFoundError: neither results.csv nor any cell is there.
            DamagedFileError: results.csv is damaged and no cell is there to read instead.
        """
        import pandas as pd

        csv = self.dir / "results.csv"
        damaged = None
        if csv.is_file():
            try:
                return read_rows(csv, "results.csv"), "results.csv"
            except DamagedFileError as exc:
                damaged = exc
        cells = self.cells()
        if not cells:
            if damaged is not None:
                raise damaged
            raise FileNotFoundError(
                f"{self.dir}: neither results.csv nor cells/*.json found; is this a run folder (runs/<suite>-<time>)?"
            )
        rows = [r for c in cells for r in c["rows"]]
        frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(COLUMNS))
        if damaged is not None:
            self._problem(
                f"{damaged.path}: {damaged.problem}; the rows were read from cells/*.json instead (`--resume` gathers "
                "it again)"
            )
            return frame, "cells/*.json (results.csv damaged)"
        return frame, "cells/*.json (results.csv not gathered yet)"

    def frame(self):
        """The tidy rows as a DataFrame (one value per row; see `COLUMNS`)."""
        return self.rows()[0]

    def summary(self, reference_model: str | None = None):
        """summary.csv as a DataFrame, against `reference_model` (None: the one the run used).

        When another reference is asked for (or the file is missing or damaged: noted in problems), summary.csv is
        rewritten first with the contract's own `summary_rows`, so the file always holds what a report built from it
        shows.
        """
        import pandas as pd

        current = self._summary_file()
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
        summary = RunStore(self.dir, self.dataset).write_summary(rows, suite, reference_model)
        return pd.DataFrame(summary) if summary else pd.DataFrame(columns=[*COLUMNS, "reference"])

    def _summary_file(self):
        """summary.csv as written, or None when missing or damaged (noted in problems)."""
        path = self.dir / "summary.csv"
        if not path.is_file():
            return None
        try:
            return read_rows(path, "summary.csv")
        except DamagedFileError as exc:
            self._problem(f"{exc.path}: {exc.problem}; recomputed from the rows and written again")
            return None

    def partial(self) -> str | None:
        """One line when the run is not whole (killed or interrupted before results.csv was gathered, or cells of
        run.json's models x conditions not finished), saying how far it got and how to go on; None otherwise."""
        gathered = (self.dir / "results.csv").is_file()
        expected = self._expected()
        if expected:
            finished = {(c.get("model"), c.get("condition")) for c in self.cells() if c.get("kind") == "accuracy"}
            if gathered and expected <= finished:
                return None
            done = f"{len(expected & finished)} of {len(expected)} accuracy cells finished"
        elif gathered:
            return None
        else:
            done = f"{len(self.cells())} cells finished"
        if not gathered:
            done += ", results.csv not gathered"
        return f"partial run: {done}; resume with the run's command and --out {self.dir} --resume"

    def _expected(self) -> set[tuple[str, str]] | None:
        """The (model, condition) pairs of the run's accuracy cells, from run.json's models and conditions (None when
        it does not say)."""
        manifest = self.manifest
        config = manifest.get("config") or {}
        settings = manifest.get("settings") or {}
        models, conditions = config.get("models"), settings.get("conditions")
        if not isinstance(models, list) or not isinstance(conditions, list):
            return None
        if config.get("only") == "efficiency":
            return set()
        return {(str(m), str(c)) for m in models for c in conditions}


def _check_bins(sums: Mapping[str, Any], name: str) -> None:
    """Raise `DamagedFileError` unless the calibration sums have `bins` entries per list and 0 <= correct <= count."""
    bins = sums["bins"]
    lengths = {len(sums[k]) for k in ("count", "correct", "confidence")}
    problem = ""
    if bins < 1 or lengths != {bins}:
        problem = f"calibration lists of lengths {sorted(lengths)} for {bins} bins"
    elif any(not 0 <= k <= n for k, n in zip(sums["correct"], sums["count"])):
        problem = "calibration bins with more correct pixels than pixels (or negative counts)"
    if problem:
        raise DamagedFileError(name, problem, CALIBRATION.remedy)


def read_run(run_dir: str | Path) -> RunFolder:
    """Open a finished run folder for reading (`segbench.read_run`): `.frame()`, `.summary()`, `.env`, `.cells()`,
    `.classes`."""
    folder = RunFolder(run_dir)
    if not (folder.dir / "results.csv").is_file() and not (folder.dir / "cells").is_dir():
        raise FileNotFoundError(f"{folder.dir}: no results.csv or cells/ here; give a run folder made by segbench")
    return folder


def check_resume(old: Mapping[str, Any], new: Mapping[str, Any], run_dir: str | Path) -> None:
    """Refuse to resume when what defines the numbers differs between the stored manifest and this run.

    Compared: suite, suite version, dataset (a run made before datasets were named read Cityscapes), seed, split,
    max_images, number of classes, the shard (`RunConfig.shard`), every entry of `settings` (the fast
    path, precision, channels-last, compile, batch size, the conditions run, ...), and for every model present in
    both its weight hash and inference protocol (mode, crop, stride, flip, precision). Device and worker count may
    change.
    """
    problems = []
    for key in ("suite", "suite_version", "seed", "split", "max_images", "num_classes", "shard"):
        if _norm(old.get(key)) != _norm(new.get(key)):
            problems.append(f"{key} was {old.get(key)!r}, now {new.get(key)!r}")
    if (old.get("dataset") or "cityscapes") != (new.get("dataset") or "cityscapes"):
        problems.append(f"dataset was {old.get('dataset') or 'cityscapes'!r}, now {new.get('dataset')!r}")
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
