"""Where segbench keeps the files it generates (one definition for every room; torch-free)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where generated files live (synthetic scenes, deployment artifacts, compiled CPU kernels): `$SEGBENCH_CACHE`,
    else `~/.cache/segbench`."""
    return Path(os.environ.get("SEGBENCH_CACHE") or Path.home() / ".cache" / "segbench")


__all__ = ["cache_dir"]
