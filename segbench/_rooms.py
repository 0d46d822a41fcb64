"""The one spelling of a room: `segbench.<room>`.

The rooms (`bench`, `models`, `suites`, `reports`) are folders at the repository root, which is on `sys.path` in a
checkout (`python run_bench.py`, pytest, an editable install). `import models` would then load a second copy of the
room, with its own empty registries, beside `segbench.models`. Each room's `__init__` calls `require_namespace` first,
so that the flat spelling fails at once with one line saying what to import instead.
"""

from __future__ import annotations


def require_namespace(module_name: str) -> None:
    """Raise `ImportError` unless `module_name` (a room's `__name__`) is `segbench.<room>`."""
    if not module_name.startswith("segbench."):
        raise ImportError(
            f"import segbench.{module_name}, not {module_name}: segbench's rooms are sub-packages of segbench "
            f"(a flat `import {module_name}` would load a second copy with empty registries)"
        )
