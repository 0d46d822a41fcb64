"""segbench: how robust is a semantic-segmentation model, and what does it cost?

The four rooms of the repository are sub-packages of this one namespace, so that their generic names never collide
with another project's `models` or `bench` in a shared environment:

* `segbench.models`: what is measured (networks, the name registry, checkpoint formats);
* `segbench.bench`: how it is measured (data, corruptions, inference, metrics, efficiency, the runner, results);
* `segbench.suites`: which measurements make up a named benchmark;
* `segbench.reports`: how it is shown (HTML, figures), from a run folder only (no torch).

The public Python API (lazily imported, so that `import segbench.reports` stays torch-free)::

    >>> import segbench
    >>> result = segbench.run("ci", segbench.RunConfig(models="segformer-b0"))  # doctest: +SKIP
    >>> result.frame()  # doctest: +SKIP
    >>> run = segbench.read_run("runs/ci-20261202-120000")  # doctest: +SKIP

The rooms stay at the repository root (the layout of the design card); `segbench/bench`, `segbench/models`,
`segbench/suites` and `segbench/reports` are committed relative symlinks to them, so that every tool (pyright, jedi,
setuptools' package discovery) finds `segbench.bench` where Python does, and each file is one module object. A
checkout made without symlinks (git's `core.symlinks=false`, where a link is a small text file) still imports:
this package then looks for the rooms in the repository root too. Importing a room by its flat name
(`import models`) fails at once, saying to import `segbench.models` (`segbench._rooms`).
"""

from __future__ import annotations

import importlib
from importlib import metadata
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if not (_HERE / "bench").is_dir() and (_HERE.parent / "bench" / "__init__.py").is_file():
    __path__.append(str(_HERE.parent))  # a checkout without symlinks: the rooms are reached in the root

try:
    __version__ = metadata.version("segbench")
except metadata.PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it (imported on first use)
_API = {
    "RunConfig": "segbench.bench.run.config",
    "InferenceSpec": "segbench.bench.run.config",
    "RunResult": "segbench.bench.run.outcome",
    "run_suite": "segbench.bench.api",
    "read_run": "segbench.bench.results.store",
    "RunFolder": "segbench.bench.results.store",
    "register_model": "segbench.models",
    "create_model": "segbench.models",
    "list_models": "segbench.models",
    "get_suite": "segbench.suites",
    "list_suites": "segbench.suites",
    "register_suite": "segbench.suites",
    "render_report": "segbench.reports",
}


def run(suite: Any, config: Any = None, modules: Any = None) -> Any:
    """Run a suite and return its `RunResult` (`.frame()`: the tidy rows as a DataFrame; `.summary()`; `.run_dir`).

    Args:
        suite: a registered suite name (`segbench.list_suites()`) or a `SuiteSpec`.
        config: a `RunConfig` (the same one the command line fills); None for the suite's defaults.
        modules: in-memory `nn.Module`s by name, measured beside `config.models` (their normalisation and trained
            flag in a `segbench_meta` attribute; see `segbench.models.user`).
    """
    from segbench import suites
    from segbench.bench.api import run_suite
    from segbench.bench.run.config import RunConfig

    spec = suites.get_suite(suite) if isinstance(suite, str) else suite
    return run_suite(spec, config if config is not None else RunConfig(), modules=modules)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'segbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = sorted([*_API, "run"])
