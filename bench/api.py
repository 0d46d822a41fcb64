"""Running a suite from Python: the same path the command line takes.

    >>> from segbench import suites
    >>> from segbench.bench.api import run_suite
    >>> from segbench.bench.config import RunConfig
    >>> result = run_suite(suites.get_suite("demo"), RunConfig(models=("segformer-b0",)))  # doctest: +SKIP

`run_suite` takes every setting from the run config (the command line fills the same config), completes it from the
suite (name, version, default models, image budget), finds the data (generating the synthetic scenes of a synthetic
suite on first use), resolves each model's weights, runs the cells through `bench.runner.run`, and writes the
corruption gallery. Rendering the report is the caller's step (`reports/`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn

from segbench.bench import runner
from segbench.bench.config import ConfigError, RunConfig
from segbench.bench.data import resolve_root
from segbench.bench.gallery import write_gallery
from segbench.bench.results import SEVERITIES, Condition
from segbench.bench.run.outcome import RunResult
from segbench.bench.run.residency import ModelFactory, model_factory, resolve_weights
from segbench.bench.spec import EfficiencySpec, SuiteSpec
from segbench.bench.synthetic import write_synthetic_cityscapes


def cache_dir() -> Path:
    """Where generated data lives: `$SEGBENCH_CACHE`, else `~/.cache/segbench`."""
    return Path(os.environ.get("SEGBENCH_CACHE") or Path.home() / ".cache" / "segbench")


def synthetic_root(suite: SuiteSpec) -> Path:
    """The suite's synthetic scenes, written on first use (atomically: a half-written folder is never reused)."""
    s = suite.synthetic
    root = cache_dir() / "synthetic" / f"{suite.name}-n{s.num_images}-{s.size[0]}x{s.size[1]}-seed{s.seed}"
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        write_synthetic_cityscapes(tmp, num_images=s.num_images, size=s.size, split="val", seed=s.seed)
        try:
            tmp.rename(root)
        except OSError:  # another process finished first: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def select_conditions(
    suite: SuiteSpec, corruptions: tuple[str, ...] = (), severities: tuple[int, ...] = ()
) -> tuple[Condition, ...]:
    """The suite's conditions, narrowed or widened by the user's corruptions and severities.

    Given severities apply to every corruption (so `--severities 1,2,3,4,5` runs all five everywhere, also where
    the suite's protocol stops the noise corruptions at 3); without, each corruption keeps the suite's severities.
    """
    if not corruptions and not severities:
        return suite.conditions
    by_corruption: dict[str, list[int]] = {}
    for c in suite.conditions:
        if not c.is_clean:
            by_corruption.setdefault(c.corruption, []).append(c.severity)
    names = corruptions or tuple(by_corruption)
    out = [Condition()] if any(c.is_clean for c in suite.conditions) or not suite.conditions else []
    for name in names:
        for sev in severities or by_corruption.get(name, SEVERITIES):
            out.append(Condition(name, sev))
    return tuple(out)


def efficiency_spec(suite: SuiteSpec, config: RunConfig) -> EfficiencySpec | None:
    """The suite's cost probe with the user's precision (when not fp32) in place of the suite's; None for none.

    The runner turns it into the probe (`bench.run.efficiency_cells.efficiency_probe`) on each rank's own device:
    under torchrun `config.device` is not the device of every rank.
    """
    eff = suite.efficiency
    if eff is not None and config.precision != "fp32":
        eff = dataclasses.replace(eff, precisions=(config.precision,))
    return eff


def suite_config(suite: SuiteSpec, config: RunConfig, accuracy: bool) -> RunConfig:
    """`config` completed by the suite: its name and version, default models, reference model, image budget, data
    (synthetic scenes written on first use) and the checkpoints of its models."""
    models = config.models or suite.default_models
    config = dataclasses.replace(
        config,
        suite=suite.name,
        suite_version=suite.version,
        models=tuple(models),
        max_images=config.max_images or suite.max_images,
        reference_model=config.reference_model or (suite.reference_model if suite.reference_model in models else None),
        allow_random_weights=config.allow_random_weights or not accuracy,
    )
    data_root = config.data_root
    if accuracy and suite.data == "synthetic":
        data_root = str(synthetic_root(suite))
    elif accuracy and suite.data == "cityscapes":
        data_root = str(resolve_root(config.data_root))
    return dataclasses.replace(config, data_root=data_root, weights=resolve_weights(config, suite.weights))


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
            it leaves open (`suite_config`), and sets the suite name and version.
        conditions: the accuracy conditions, replacing the selection `select_conditions(suite, config.corruptions,
            config.severities)` (tests, custom protocols).
        modules: in-memory models by name (`nn.Module`s, under the declaration contract of `segbench.models.user`:
            normalisation and a trained flag in their `segbench_meta`); their names join `config.models`.
    """
    if modules:
        clash = sorted(set(modules) & set(config.models))
        if clash:
            raise ConfigError("models", f"{', '.join(clash)} given both in models and as in-memory modules")
        config = dataclasses.replace(config, models=(*config.models, *modules))
    if conditions is None:
        conditions = select_conditions(suite, config.corruptions, config.severities)
    conditions = tuple(conditions)
    accuracy = config.only != "efficiency" and bool(conditions)
    config = suite_config(suite, config, accuracy)
    efficiency = efficiency_spec(suite, config) if config.only != "accuracy" else None
    factory = model_factory(config, modules)
    result = runner.run(config, conditions, suite.inference, efficiency, model_factory=factory)
    if accuracy and suite.gallery and result.run_dir is not None:
        _gallery(result.run_dir, suite, config, conditions, factory)
    return result


def _gallery(
    run_dir: Path, suite: SuiteSpec, config: RunConfig, conditions: Sequence[Condition], factory: ModelFactory
) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 writes the gallery
        return
    spec = config.inference_spec(suite.inference)

    def build(name: str) -> nn.Module:
        model = factory(name, num_classes=config.num_classes, weights=config.weights.get(name))
        return model.to(spec.device).eval()

    write_gallery(run_dir, config.data_root, conditions, config.models, build, spec, config.split, config.seed)
