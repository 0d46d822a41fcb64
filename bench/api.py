"""Running a suite from Python: the same path the command line takes.

    >>> from segbench import suites
    >>> from segbench.bench.api import run_suite
    >>> from segbench.bench.run.config import RunConfig
    >>> result = run_suite(suites.get_suite("demo"), RunConfig(models=("segformer-b0",)))  # doctest: +SKIP

`run_suite` plans the run once from the suite and the config (`bench.run.plan.plan_run`: models, weights, data,
conditions, probe, deployment grid, gallery) and carries the plan out (`bench.run.runner.execute`). Rendering the
report is the caller's step (`reports/`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from segbench.bench.results.axes import Condition
from segbench.bench.run.config import RunConfig
from segbench.bench.run.outcome import RunResult
from segbench.bench.run.plan import plan_run
from segbench.bench.run.runner import execute
from segbench.bench.spec import SuiteSpec


def run_suite(
    suite: SuiteSpec,
    config: RunConfig,
    conditions: Sequence[Condition] | None = None,
    modules: Mapping[str, nn.Module] | None = None,
) -> RunResult:
    """Run `suite` with the settings of `config` and return the runner's result.

    Args:
        suite: the benchmark.
        config: every setting of the run (models, weights, data, conditions, hardware, output); the suite fills what
            it leaves open, and sets the suite name and version.
        conditions: the accuracy conditions, replacing the suite's selection narrowed by `config.corruptions` and
            `config.severities` (tests, custom protocols).
        modules: in-memory models by name (`nn.Module`s, under the declaration contract of `segbench.models.user`:
            normalisation and a trained flag in their `segbench_meta`); their names join `config.models`.
    """
    return execute(plan_run(suite, config, conditions, modules=modules))
