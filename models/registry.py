"""A small name registry, shared by models and suites (after timm's `register_model` and lm-eval's `Registry`), and the
model registry itself.

A decorator fills it; `get`, `create` and `list` are the doors. A duplicate name raises; an unknown name raises a
`ValueError` that lists the closest registered names.

The model families register their variants here (`@register_model(...)`), not through the package: `segbench.models`
imports the families on first use, so a family that imported the package would import itself in a circle.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (or objects) of one kind ("model", "suite", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._groups: dict[str, str] = {}

    def register(self, name: str, group: str = "") -> Callable[[T], T]:
        """Decorator registering `obj` under `name`; `group` is shown by `grouped()` (for example a model family)."""

        def wrap(obj: T) -> T:
            self.add(name, obj, group)
            return obj

        return wrap

    def add(self, name: str, obj: T, group: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        self._groups[name] = group

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"known: {', '.join(sorted(self._entries))}"
        return f"unknown {self.kind} {name!r}; {hint}"

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def group_of(self, name: str) -> str:
        return self._groups[name]

    def grouped(self, pattern: str = "*") -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name in self.list(pattern):
            out.setdefault(self._groups[name] or "other", []).append(name)
        return out

    def create(self, name: str, **kwargs: Any) -> Any:
        factory = self.get(name)
        return factory(**kwargs)  # type: ignore[operator]


MODELS: Registry = Registry("model")
"""The registered model variants (filled by the families: `models/segformer.py`, `models/baselines.py`)."""
register_model = MODELS.register
