"""Files of the results contract: the one atomic writer, the tidy CSV files and the regression history."""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from segbench.bench.results.files import DamagedFileError
from segbench.bench.results.schema import COLUMNS, JSON_COLUMNS, REQUIRED_COLUMNS

TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file so that readers see the old file or the whole new one, never a part.

    `write(f)` fills a temporary file (binary) in the same folder; it is synced and renamed over `path`. The
    temporary file is `.<name>.<random>.tmp`; it is removed if anything fails, an interruption included. This is the
    one atomic writer of the project: JSON, CSV, PNG, checkpoints and generated images all go through it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """Create `.<name>.<random>.tmp` beside `path`, open for writing, as `open()` creates a file: mode 0o666 less the
    process's umask, which the kernel applies (so a colleague or a web server reads what a 022 umask lets them, and a
    077 umask keeps it private). `tempfile.mkstemp` would make it 0600 whatever the umask; reading the umask
    ourselves would mean setting it (`os.umask`), which races with other threads creating files."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # another writer's temporary file of the same name: draw again
            continue
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name}")


def is_temp_file(path: str | Path) -> bool:
    """Whether `path` is a temporary file of `atomic_write` (a hidden `.<name>.<random>.tmp`)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically (see `atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically (see `atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically; NaN/inf are stored as null (strict JSON)."""
    return atomic_write_text(path, json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n")


def json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Tidy rows -> CSV (the nine columns first, extra columns after, sorted); numbers at full precision.

    List values (`JSON_COLUMNS`) are written as JSON text, so that `read_rows` gives them back as lists.
    """
    import pandas as pd

    rows = [{k: json.dumps(v) if isinstance(v, list | tuple) else v for k, v in r.items()} for r in rows]
    extras = sorted({k for r in rows for k in r} - set(COLUMNS))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *extras])
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.17g"))


def _decode_json_columns(frame):
    for column in JSON_COLUMNS:
        if column in frame.columns:
            frame[column] = [json.loads(v) if isinstance(v, str) and v.startswith("[") else None for v in frame[column]]
    return frame


def read_rows(path: str | Path, name: str | Path | None = None):
    """A `results.csv` or `summary.csv` (or a run folder's results.csv) -> pandas DataFrame, lists decoded.

    Checked: the columns `REQUIRED_COLUMNS` are there and every `value` is a number (or empty).

    Args:
        path: the file, or a run folder.
        name: how messages name the file (default: its path).

    Raises:
        FileNotFoundError: there is no such file.
        DamagedFileError: it is not a segbench results CSV (one line naming it).
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file; give a run folder or its results.csv")
    name = path if name is None else name
    remedy = "give a results.csv or summary.csv written by segbench"
    if _cut_short(path):  # segbench writes whole files (atomically), each line ended
        raise DamagedFileError(name, "cut short (its last line has no end)", remedy)
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=list(COLUMNS))
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DamagedFileError(name, f"not a segbench results CSV ({str(exc).splitlines()[0]})", remedy) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DamagedFileError(name, f"not a segbench results CSV (no column {', '.join(missing)})", remedy)
    bad = not_a_number(frame)
    if bad:
        raise DamagedFileError(name, f"not a segbench results CSV ({bad})", remedy)
    frame["value"] = pd.to_numeric(frame["value"])
    return _decode_json_columns(frame)


def _cut_short(path: Path) -> bool:
    """Whether a non-empty text file does not end with a newline: truncated by something other than segbench."""
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            return False
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"


def not_a_number(frame) -> str | None:
    """What is wrong with a frame's `value` column: its first value that is not a number (None: every value is a
    number or empty)."""
    import pandas as pd

    values = pd.to_numeric(frame["value"], errors="coerce")
    bad = frame["value"].notna() & values.isna()
    if not bad.any():
        return None
    first = frame.loc[bad].iloc[0]
    return f"value {first['value']!r} of {first.get('model')}/{first.get('metric')} is not a number"


HISTORY = "history.jsonl"
"""The regression history: one JSON line per comparison, in a run folder or beside the run folders."""


def append_history(path: str | Path, entry: Mapping[str, Any]) -> Path:
    """Add one comparison to a history file (one line, appended in one write, so concurrent writers never interleave
    a line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(json_safe(entry), allow_nan=False) + "\n")
    return path


def read_history(run_dir: str | Path) -> tuple[Path | None, list[dict], int]:
    """The run's own history, else the shared one beside the run folders (`runs/history.jsonl`).

    Returns:
        (the file or None, its entries that carry a `metrics` mapping, the number of lines that did not parse).
    """
    run_dir = Path(run_dir)
    path = next((p for p in (run_dir / HISTORY, run_dir.parent / HISTORY) if p.is_file()), None)
    if path is None:
        return None, [], 0
    entries, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("metrics"), dict):
            entries.append(entry)
        else:
            bad += 1
    return path, entries, bad
