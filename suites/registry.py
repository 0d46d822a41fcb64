"""The suite registry: `register_suite` fills it; `segbench.suites` (`get_suite`, `list_suites`) reads it.

The built-in suites (`suites/builtin.py`) register themselves here rather than through the package, which imports
them: a suite module that imported the package would import itself in a circle.
"""

from __future__ import annotations

from segbench.bench.spec import SuiteSpec
from segbench.models.registry import Registry

SUITES: Registry = Registry("suite")


def register_suite(spec: SuiteSpec) -> SuiteSpec:
    """Register `spec` under its name (a name registered twice raises)."""
    SUITES.add(spec.name, spec)
    return spec
