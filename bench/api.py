"""Running a suite from Python: the same path the command line takes.

    >>> from segbench import suites
    >>> from segbench.bench.api import run_suite
    >>> from segbench.bench.config import RunConfig
    >>> result = run_suite(suites.get_suite("demo"), RunConfig(models=("segformer-b0",)))  # doctest: +SKIP

`run_suite` fills the run config from the suite (name, version, image budget), finds the data (generating the
synthetic scenes of a synthetic suite on first use), resolves each model's weights, runs the cells through
`bench.runner.run`, and writes the corruption gallery. Rendering the report is the caller's step (`reports/`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from segbench.bench import runner
from segbench.bench.config import RunConfig
from segbench.bench.data import resolve_root
from segbench.bench.gallery import write_gallery
from segbench.bench.regression import calibrated_latency
from segbench.bench.results import SEVERITIES, Condition
from segbench.bench.spec import SuiteSpec
from segbench.bench.synthetic import write_synthetic_cityscapes
from segbench.bench.weights import resolve_model_weights


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


def _efficiency_fn(suite: SuiteSpec, config: RunConfig):
    """The suite's cost probe (`runner.efficiency_probe`), plus calibrated latency rows when the suite tracks speed."""
    eff = suite.efficiency
    if eff is None:
        return None
    if config.precision != "fp32":  # the user's precision replaces the suite's
        eff = dataclasses.replace(eff, precisions=(config.precision,))
    sweep = runner.efficiency_probe(eff, config.device, suite.name, config.channels_last, config.compile)

    def probe(model: nn.Module, name: str) -> list[dict[str, Any]]:
        rows = sweep(model, name)
        if eff.calibrated:
            for size in eff.resolutions:
                rows += calibrated_latency(model, size, config.device, eff.warmup, eff.iters, name, suite.name)
        return rows

    return probe


def run_suite(
    suite: SuiteSpec,
    config: RunConfig,
    weights_arg: str | None = None,
    conditions: tuple[Condition, ...] | None = None,
    fast: bool = False,
    severities: tuple[int, ...] | None = None,
) -> runner.RunResult:
    """Run `suite` for `config.models` (default: the suite's) and return the runner's result.

    Args:
        suite: the benchmark.
        config: models, data, hardware and output settings; suite name and version are taken from `suite`.
        weights_arg: the `--weights` text (a folder and/or `model=path` pairs); `config.weights` entries win.
        conditions: accuracy conditions (default: `select_conditions(suite, config.corruptions, severities)`).
        fast: build SegFormer models with their folded-decoder fast path (same outputs up to rounding).
        severities: the user's severities, applied to every corruption (None: the suite's per-corruption ones).
    """
    models_ = config.models or suite.default_models
    if conditions is None:
        conditions = select_conditions(suite, config.corruptions, severities or ())
    accuracy = config.only != "efficiency" and bool(conditions)
    if config.only == "efficiency" or not conditions:
        conditions = ()
    data_root = config.data_root
    if accuracy:
        if suite.data == "synthetic":
            data_root = str(synthetic_root(suite))
        elif suite.data == "cityscapes":
            data_root = str(resolve_root(config.data_root))
    weights = resolve_model_weights(list(models_), weights_arg, suite.weights)
    weights = {m: w for m, w in weights.items() if w is not None} | dict(config.weights)
    config = dataclasses.replace(
        config,
        suite=suite.name,
        suite_version=suite.version,
        models=tuple(models_),
        weights=weights,
        data_root=data_root,
        max_images=config.max_images or suite.max_images,
        reference_model=config.reference_model or (suite.reference_model if suite.reference_model in models_ else None),
        allow_random_weights=config.allow_random_weights or not accuracy,
    )
    efficiency = _efficiency_fn(suite, config) if config.only != "accuracy" else None
    factory = model_factory(fast)
    result = runner.run(config, conditions, suite.inference, efficiency, model_factory=factory)
    if accuracy and suite.gallery and result.run_dir is not None:
        _gallery(result.run_dir, suite, config, conditions, factory)
    return result


def model_factory(fast: bool = False):
    """`factory(name, **kwargs) -> model`: `models.create_model`, with SegFormer's fast path when `fast`."""
    from segbench import models

    def create(name: str, **kwargs: Any) -> nn.Module:
        if fast and models.MODELS.group_of(name) == "segformer":
            kwargs["fast"] = True
        return models.create_model(name, **kwargs)

    return create


def _gallery(run_dir: Path, suite: SuiteSpec, config: RunConfig, conditions, factory) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 writes the gallery
        return
    spec = config.inference_spec(suite.inference)

    def build(name: str) -> nn.Module:
        model = factory(name, num_classes=config.num_classes, weights=config.weights.get(name))
        return model.to(spec.device).eval()

    write_gallery(run_dir, config.data_root, conditions, config.models, build, spec, config.split, config.seed)
