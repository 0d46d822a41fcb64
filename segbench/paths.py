"""Where segbench keeps the files it generates (one definition for every room; torch-free)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "SEGBENCH_CACHE"


def cache_dir() -> Path:
    """Where generated files live (synthetic scenes, deployment artifacts, compiled CPU kernels): `$SEGBENCH_CACHE`,
    else `~/.cache/segbench`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "segbench")


def make_folder(path: Path) -> Path:
    """`path` made with its parents. Where that fails, an OSError in one line naming the folder, the reason and, for
    a folder in the cache, where the cache is and how to move it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        cache = cache_dir()
        where = ""
        if path.absolute().is_relative_to(cache.absolute()):
            setting = f"{CACHE_ENV}={os.environ[CACHE_ENV]}" if os.environ.get(CACHE_ENV) else f"no {CACHE_ENV} set"
            where = f"; segbench keeps generated files in {cache} ({setting}): set {CACHE_ENV} to a writable folder"
        raise OSError(f"cannot create the folder {path}: {exc.strerror or exc}{where}") from exc
    return path


__all__ = ["CACHE_ENV", "cache_dir", "make_folder"]
