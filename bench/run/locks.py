"""One process per output folder: an exclusive lock (the `filelock` library) plus a note of who holds it.

A run folder and a `generate-c` output folder are each written by one process (or one torchrun job) at a time. The
lock is an OS-level file lock, so it is released when its process dies, however it dies: a crashed run never
leaves a folder locked. Beside it, a small JSON note says which process holds the lock, so that a second process can
refuse in one line that names the holder instead of waiting or writing over its files.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from segbench.bench.results.io import atomic_write_text


class FolderBusyError(RuntimeError):
    """Another live process holds the folder's lock."""


def _holder(note: Path) -> str:
    try:
        info = json.loads(note.read_text())
        return f"process {info['pid']} on {info['host']} (started {info['started']}: {info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def folder_lock(folder: str | Path, name: str = "segbench", what: str = "folder") -> Iterator[Path]:
    """Hold the exclusive lock `<folder>/.<name>.lock` for the duration of the block.

    Args:
        folder: the folder to own (created if missing).
        name: the lock's name, so that several kinds of lock can share a folder (e.g. one per generate-c shard).
        what: how the error names the folder ("run folder", "generate-c output folder").

    Raises:
        FolderBusyError: another live process holds the lock; the message names it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / f".{name}.lock", thread_local=False)
    note = folder / f".{name}.lock.json"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FolderBusyError(
            f"{folder}: this {what} is in use by {_holder(note)}; wait for it to finish, or use another folder"
        ) from None
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        command = " ".join(sys.argv)[:200]
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": command}
        atomic_write_text(note, json.dumps(info) + "\n")
        yield folder
    finally:
        note.unlink(missing_ok=True)
        lock.release()
