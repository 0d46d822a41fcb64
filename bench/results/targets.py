"""Output paths a user names (`--out`, `--update-baseline`, `--history`, `--summary`, `--json`): what is there
already, and refusing to replace what the writer did not write.

Every writer of a user-named path calls `check_target` before it writes. Nothing there: it writes, as asked.
Something of the kind it writes (a baseline over a baseline, a line appended to a history): it writes. Anything else
(a run folder, a results CSV, a folder of other files, a checkpoint) is a one-line `TargetError` that says what is
there and what to give instead, and the path is left as it is.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEAD_BYTES = 64 * 1024
"""How much of a file `describe` reads to tell text from binary and a CSV's columns."""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESULTS_COLUMNS = ("model", "metric", "value")


class TargetError(ValueError):
    """A user-named output path holding something the writer must not replace (one line: what is there, what to
    give instead)."""


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEAD_BYTES)


def _text_head(head: bytes) -> str | None:
    """The UTF-8 text of a file's first bytes, or None when they are binary (a NUL byte, or not UTF-8)."""
    if b"\0" in head:
        return None
    try:  # incremental: a character cut at the end of the head is not an error
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None


def json_object(path: str | Path) -> dict[str, Any] | None:
    """The JSON object a file holds, or None (not a file, not UTF-8 JSON, or JSON that is not an object)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_json_lines(path: str | Path) -> bool:
    """Whether a file is empty or holds one JSON object per non-blank line (a regression history)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return all(isinstance(json.loads(line), dict) for line in lines if line.strip())
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def _describe_folder(path: Path) -> str:
    if (path / "run.json").is_file() or (path / "cells").is_dir():
        return "a run folder"
    names = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    if not names:
        return "an empty folder"
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"a folder holding other files ({shown})"


def describe(path: str | Path) -> str:
    """What is at `path`, in words, as an error message names it: "a run folder", "a results CSV", "a JSON file",
    "a PNG image", "a binary file", "a text file", "nothing", ..."""
    path = Path(path)
    if path.is_dir():
        return _describe_folder(path)
    if not path.exists():
        return "nothing"
    if not path.is_file():
        return "not a regular file"
    head = _head(path)
    if not head:
        return "an empty file"
    if head.startswith(PNG_MAGIC):
        return "a PNG image"
    text = _text_head(head)
    if text is None:
        return "a binary file"
    first = text.lstrip()
    if first[:1] in ("{", "["):
        if json_object(path) is not None:
            return "a JSON file"
        return "a JSON-lines file" if is_json_lines(path) else "a text file"
    if first[:15].lower().startswith(("<!doctype html", "<html")):
        return "an HTML page"
    columns = {c.strip().strip('"') for c in first.split("\n", 1)[0].split(",")}
    if set(RESULTS_COLUMNS) <= columns:
        return "a results CSV"
    return "a CSV file" if path.suffix.lower() == ".csv" else "a text file"


def check_target(
    path: str | Path,
    flag: str,
    want: str,
    instead: str,
    accepts: Callable[[Path], bool] = lambda path: False,
) -> Path:
    """`path` if a writer may write it: nothing is there, or what is there `accepts` (the writer's own kind).

    Args:
        path: the path the user named.
        flag: the flag or argument that named it (`--update-baseline`), for the message.
        want: the kind the writer writes, in words ("a segbench baseline JSON").
        instead: what to give instead ("give a new .json file").
        accepts: whether an existing path is of the writer's kind (then it is replaced or appended to).

    Raises:
        TargetError: something else is there (nothing is written).
    """
    path = Path(path)
    if not path.exists() or accepts(path):
        return path
    raise TargetError(f"{flag} {path}: this is {describe(path)}, not {want}, and is left as it is; {instead}")


def is_text(path: Path) -> bool:
    """Whether `path` is a plain text file that holds no data segbench reads (not a results CSV, JSON, HTML page)."""
    return path.is_file() and describe(path) in ("an empty file", "a text file")


def check_text_target(path: str | Path, flag: str) -> Path:
    """A Markdown/text file to append to (`--summary`, `$GITHUB_STEP_SUMMARY`): nothing there, or plain text."""
    return check_target(path, flag, "a Markdown or text file", "give a new file or a Markdown one", is_text)
