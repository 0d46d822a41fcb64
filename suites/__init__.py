"""Which measurements make up a named benchmark: frozen, versioned `SuiteSpec`s registered by name.

>>> from segbench import suites
>>> suites.get_suite("cityscapes-c").version
'1'
"""

from __future__ import annotations

from segbench._rooms import require_namespace

require_namespace(__name__)

from segbench.bench.spec import SuiteSpec
from segbench.suites import (
    builtin,  # noqa: F401  (registers the built-in suites)
    datasets,  # noqa: F401  (registers the suites of ADE20K, VOC, COCO-Stuff and folders)
)
from segbench.suites.registry import SUITES, register_suite


def get_suite(name: str) -> SuiteSpec:
    """The registered suite `name`; an unknown name raises a ValueError listing the closest ones."""
    return SUITES.get(name)


def list_suites(pattern: str = "*") -> list[str]:
    return SUITES.list(pattern)


__all__ = ["SUITES", "get_suite", "list_suites", "register_suite"]
