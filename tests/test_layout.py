"""The house's shape: DESIGN's arrows, no import circles (lazy imports included), short functions and files, bench/ in
stages, and no sys.path edits. Read from the source with `ast`, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("bench", "models", "suites", "reports")
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 800
MAX_BENCH_TOP_LEVEL = 12

ALLOWED = {
    "models": ("segbench._rooms", "segbench.paths", "segbench.models"),
    "bench": ("segbench._rooms", "segbench.paths", "segbench.bench", "segbench.models"),
    "suites": ("segbench._rooms", "segbench.suites", "segbench.models.registry", "segbench.bench.spec",
               "segbench.bench.results", "segbench.bench.run.config"),
    "reports": ("segbench._rooms", "segbench.reports", "segbench.bench.results", "segbench.bench.measure.robustness"),
}  # fmt: skip
"""Who may import whom (DESIGN: bench -> models; suites -> bench for its dataclasses; reports read the results
contract only; `segbench.paths`, where generated files go, is a leaf importing no room). A prefix allows its
sub-modules."""


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts if parts[0] == "segbench" else ["segbench", *parts])


@cache
def _sources() -> dict[str, Path]:
    paths = [p for room in ROOMS for p in (ROOT / room).rglob("*.py")] + list((ROOT / "segbench").glob("*.py"))
    return {_module(p): p for p in paths if "__pycache__" not in p.parts}


@cache
def _imports(name: str) -> frozenset[str]:
    """The project modules `name` imports, anywhere in the file; `from pkg import sub` counts as `pkg.sub`."""
    modules = _sources()
    path = modules[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in (name, "segbench"):
                out.add(target)
    return frozenset(out)


def _circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in _imports(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                out.append(sorted(component))

    for v in _sources():
        if v not in index:
            visit(v)
    return out


def test_the_shared_leaves_import_no_room():
    assert _imports("segbench.paths") == frozenset() and _imports("segbench._rooms") == frozenset()


def test_no_import_circles():
    assert _circles() == []


@pytest.mark.parametrize("room", ROOMS)
def test_design_arrows(room: str):
    wrong = {
        f"{name} -> {target}"
        for name in _sources()
        if name.startswith(f"segbench.{room}")
        for target in _imports(name)
        if not any(target == a or target.startswith(a + ".") for a in ALLOWED[room])
    }
    assert not wrong, sorted(wrong)


def test_functions_and_files_stay_short():
    long_functions, long_files = [], []
    for path in _sources().values():
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(path.relative_to(ROOT).as_posix())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno} {node.name}")
    assert long_functions == [] and long_files == []


def test_bench_is_in_stages():
    top = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_BENCH_TOP_LEVEL, top
    for stage in ("data", "measure", "run", "track", "deploy", "results"):
        assert (ROOT / "bench" / stage / "__init__.py").is_file()


def test_no_sys_path_edits():
    """Scripts run as `python -m benchmarks.<name>`; nothing puts the checkout on sys.path by hand. (A `py:` model's
    own folder goes on it while the file imports: `models/user.py`, the one exception.)"""
    edits = [
        f"{p.relative_to(ROOT).as_posix()}:{i}"
        for folder in ("benchmarks", "scripts", *ROOMS, "segbench")
        for p in (ROOT / folder).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"sys\.path\.(insert|append)\(", line)
    ]
    assert [e for e in edits if not e.startswith("models/user.py:")] == []
