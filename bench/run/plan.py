"""The run plan: every decision about a run, taken once, before any device work.

`plan_run(suite, config)` completes the user's `RunConfig` from the suite (its name and version, default models,
image budget, reference model), chooses the conditions (the suite's, narrowed or widened by the user's corruptions and
severities), decides what `only` leaves to measure, resolves every model's weights and every dataset's root (writing a
synthetic suite's scenes on first use), checks the data, and fixes the efficiency probe and the deployment grid. The
runner (`bench.run.runner.execute`) carries the plan out on each rank, inside the distributed context, and decides
nothing of its own; the command line and the Python API reach it through the same `plan_run`.

A run without a suite (the runner's `run(config, conditions)`, tests, custom protocols) is planned as if its suite
were clean Cityscapes only, named by `config.suite`: the user's corruptions and severities widen it the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from segbench.bench.data.roots import describe_data, resolve_data
from segbench.bench.results.axes import SEVERITIES, Condition
from segbench.bench.run.config import ConfigError, InferenceSpec, RunConfig
from segbench.bench.run.residency import resolve_weights
from segbench.bench.spec import DeploySpec, EfficiencySpec, SuiteSpec, datasets_of

EfficiencyProbe = EfficiencySpec | Callable[..., Any]
"""A suite's cost probe (`EfficiencySpec`), or a function that measures one model (`bench.run.efficiency_cells`)."""


@dataclass(frozen=True)
class RunPlan:
    """What a run measures, decided once (see the module docstring).

    Attributes:
        config: the completed config: suite name and version, models, weights (resolved), data roots, precision.
        conditions: the accuracy conditions, in order. They are recorded in run.json even when `accuracy` is False,
            so that a run made with `only="efficiency"` resumes into its accuracy cells.
        accuracy: whether accuracy cells run (there are conditions, and `only` is not "efficiency").
        inference: the suite's prediction protocol (the run's spec is `config.inference_spec(inference)`).
        efficiency: the cost probe, with the user's precision in place of the suite's when one was given; None when
            there is none or `only` is "accuracy".
        deploy: the deployment grid, narrowed by the user's backends and precisions; None for none.
        gallery: write one image under each condition with every model's prediction (rank 0, after the cells).
        modules: in-memory models by name (the Python API's), under `segbench.models.user`'s declaration contract.
        notes: what the data check found, one line per dataset (printed once the models are built).
    """

    config: RunConfig
    conditions: tuple[Condition, ...]
    accuracy: bool
    inference: InferenceSpec | None = None
    efficiency: EfficiencyProbe | None = None
    deploy: DeploySpec | None = None
    gallery: bool = False
    modules: Mapping[str, nn.Module] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def spec(self) -> InferenceSpec:
        """The run's inference spec: the protocol with the config's device, precision, batch size, channels-last."""
        return self.config.inference_spec(self.inference)

    @property
    def precisions(self) -> tuple[str, ...]:
        """Every precision the run computes in (accuracy and the probe), each checked on the device at start."""
        probe = self.efficiency.precisions if isinstance(self.efficiency, EfficiencySpec) else ()
        return tuple(dict.fromkeys((self.config.precision or "fp32", *probe)))


def select_conditions(
    suite: SuiteSpec, corruptions: tuple[str, ...] = (), severities: tuple[int, ...] = ()
) -> tuple[Condition, ...]:
    """The suite's conditions, narrowed or widened by the user's corruptions and severities.

    Given severities apply to every corruption (so `--severities 1,2,3,4,5` runs all five everywhere, also where
    the suite's protocol stops the noise corruptions at 3); without, each corruption keeps the suite's severities
    (1-5 for a corruption the suite does not have). Real-world conditions are kept as they are. Attack conditions
    are left to `attack_conditions`.
    """
    if not corruptions and not severities:
        return tuple(c for c in suite.conditions if not c.is_attack)
    by_corruption: dict[str, list[int]] = {}
    for c in suite.conditions:
        if c.corruption is not None:
            by_corruption.setdefault(c.corruption, []).append(c.severity)
    names = corruptions or tuple(by_corruption)
    out = [Condition()] if any(c.is_clean for c in suite.conditions) or not suite.conditions else []
    for name in names:
        for sev in severities or by_corruption.get(name, SEVERITIES):
            out.append(Condition(name, sev))
    return tuple(out) + tuple(c for c in suite.conditions if c.is_real)


def attack_conditions(source: Sequence[Condition], config: RunConfig, suite: SuiteSpec) -> tuple[Condition, ...]:
    """The run's attack conditions: those of `source` (the suite's or the caller's conditions), remade by the config's
    attack options (`bench.run.attack_options.select_attacks`).

    Raises:
        ConfigError: an attack option that cannot be used, or attacks on models without gradients (an `onnx:` model,
            a deployment grid's exported variants).
    """
    from segbench.bench.run.attack_options import AttackOptionError, select_attacks

    try:
        conds = select_attacks(
            source,
            config.attacks,
            config.norm,
            config.eps,
            config.attack_steps,
            config.attack_step_size,
            config.random_start,
        )
    except AttackOptionError as e:
        raise ConfigError(e.field, e.problem) from None
    budgets = {c.attack.budget_name() for c in conds if not c.attack.is_worst}
    lone = [c.name for c in conds if c.attack.is_worst and c.attack.budget_name() not in budgets]
    if lone:
        raise ConfigError("attacks", f"{lone[0]} is the worst case over attacks at its budget, but none is run there")
    if conds and config.only != "efficiency":
        onnx = [name for name, src in config.sources.items() if src.startswith("onnx:") and name in config.models]
        if onnx:
            raise ConfigError(
                "attacks",
                f"{onnx[0]} is an ONNX model ({config.sources[onnx[0]]}): it has no gradients to attack; "
                "run it without attacks, or attack its PyTorch source",
            )
        if suite.deploy is not None:
            raise ConfigError(
                "attacks",
                f"suite {suite.name} measures exported variants, which have no gradients; attack the "
                "models in a suite without a deployment grid (e.g. --suite adversarial)",
            )
    return conds


def efficiency_probe(suite: SuiteSpec, config: RunConfig) -> EfficiencySpec | None:
    """The suite's cost probe, with the user's precision (when one was given) in place of the suite's."""
    if suite.efficiency is None or config.precision is None:
        return suite.efficiency
    return dataclasses.replace(suite.efficiency, precisions=(config.precision,))


def deploy_grid(suite: SuiteSpec, config: RunConfig) -> DeploySpec | None:
    """The suite's deployment grid narrowed by `config.backends` and `config.deploy_precisions`.

    Raises:
        ConfigError: backends or deployment precisions given for a suite without a grid (they would change nothing).
    """
    if suite.deploy is None:
        for field, given in (("backends", config.backends), ("deploy_precisions", config.deploy_precisions)):
            if given:
                raise ConfigError(
                    field, f"suite {suite.name} has no deployment grid to narrow; use a deploy suite (--suite deploy)"
                )
        return None
    return dataclasses.replace(
        suite.deploy,
        backends=config.backends or suite.deploy.backends,
        precisions=config.deploy_precisions or suite.deploy.precisions,
    )


def suite_of(config: RunConfig, inference: InferenceSpec | None = None, efficiency: Any = None) -> SuiteSpec:
    """The suite a run without one is planned with: the clean images of `config.dataset`, named and versioned by
    `config`."""
    return SuiteSpec(
        name=config.suite,
        version=config.suite_version,
        description="a run without a suite",
        dataset=config.dataset,
        conditions=(Condition(),),
        inference=inference or InferenceSpec(),
        efficiency=efficiency if isinstance(efficiency, EfficiencySpec) else None,
        gallery=False,
    )


def plan_run(
    suite: SuiteSpec | None,
    config: RunConfig,
    conditions: Sequence[Condition | str] | None = None,
    *,
    modules: Mapping[str, nn.Module] | None = None,
    inference: InferenceSpec | None = None,
    efficiency: EfficiencyProbe | None = None,
) -> RunPlan:
    """Decide the run (see the module docstring).

    Args:
        suite: the benchmark; None plans a run without a suite (`suite_of`).
        config: every setting the user gave (the command line fills the same config).
        conditions: accuracy conditions replacing the suite's selection (tests, custom protocols); names such as
            "fog-2" are parsed.
        modules: in-memory models by name; their names join `config.models`.
        inference, efficiency: a run without a suite: its protocol and its cost probe (an `EfficiencySpec`, or a
            function measuring one model).

    Raises:
        ConfigError: a setting that cannot be used (a model named twice, no model, a data root that does not fit).
        DataNotFoundError, DataError: the data is missing or damaged (one line naming the file).
    """
    suite = suite or suite_of(config, inference, efficiency)
    modules = dict(modules or {})
    if modules:
        clash = sorted(set(modules) & set(config.models))
        if clash:
            raise ConfigError("models", f"{', '.join(clash)} given both in models and as in-memory modules")
        config = dataclasses.replace(config, models=(*config.models, *modules))
    if conditions is None:
        source = suite.conditions
        conditions = select_conditions(suite, config.corruptions, config.severities)
    else:
        source = conditions = tuple(Condition.parse(c) if isinstance(c, str) else c for c in conditions)
    conds = tuple(c for c in conditions if not c.is_attack) + attack_conditions(source, config, suite)
    accuracy = config.only != "efficiency" and bool(conds)
    config = _completed(suite, config, accuracy)
    if not config.models:
        raise ConfigError("models", "no models to run; name some (--models) or use a suite with default models")
    if accuracy or suite.deploy is not None:  # the grid is checked on the suite's first clean images
        config = resolve_data(suite, config, datasets_of(conds, suite.dataset) if accuracy else (suite.dataset,))
    probe = efficiency if callable(efficiency) else efficiency_probe(suite, config)
    notes = (*describe_data(config, conds), *_batch_note(config)) if accuracy else ()
    first = config.shard_part is None or config.shard_part[0] == 0  # a shard: the probe and gallery in shard 0 only
    if config.shard_part is not None and suite.deploy is not None:
        raise ConfigError(
            "shard", f"suite {suite.name} has a deployment grid, which is measured whole; run it without --shard"
        )
    return RunPlan(
        config=dataclasses.replace(config, precision=config.precision or "fp32"),
        conditions=conds,
        accuracy=accuracy,
        inference=_inference(suite, config, accuracy),
        efficiency=None if config.only == "accuracy" or not first else probe,
        deploy=deploy_grid(suite, config),
        gallery=accuracy and suite.gallery and first,
        modules=modules,
        notes=tuple(f"data: {line}" for line in notes),
    )


def _inference(suite: SuiteSpec, config: RunConfig, accuracy: bool) -> InferenceSpec:
    """The suite's protocol; a folder suite's from the folder's dataset.json (`Protocol.mode`, `crop`, `stride`)."""
    if suite.dataset != "folder" or not accuracy:
        return suite.inference
    from segbench.bench.data.datasets import get_dataset

    protocol = get_dataset("folder", config.root_of("folder")).protocol
    return dataclasses.replace(suite.inference, mode=protocol.mode, crop=protocol.crop, stride=protocol.stride)


def _batch_note(config: RunConfig) -> tuple[str, ...]:
    """A note when the dataset's images differ in size: accuracy then runs one image per batch."""
    from segbench.bench.data.datasets import get_dataset

    dataset = get_dataset(config.dataset, config.root_of(config.dataset))
    if dataset.same_size or config.batch_size == 1:
        return ()
    return (
        f"{dataset.title} images differ in size: accuracy runs one image per batch (--batch-size {config.batch_size} "
        "applies to the cost probe)",
    )


def _completed(suite: SuiteSpec, config: RunConfig, accuracy: bool) -> RunConfig:
    """`config` with what the suite fills: its name and version, default models, image budget, reference model (when
    it is among the models), and every model's checkpoint (resolved once). A run that measures no accuracy may use
    random weights."""
    models = config.models or suite.default_models
    if config.dataset not in ("cityscapes", suite.dataset):
        raise ConfigError("dataset", f"{config.dataset!r}, but suite {suite.name} reads {suite.dataset}")
    config = dataclasses.replace(
        config,
        dataset=suite.dataset,
        suite=suite.name,
        suite_version=suite.version,
        models=tuple(models),
        max_images=config.max_images or suite.max_images,
        reference_model=config.reference_model or (suite.reference_model if suite.reference_model in models else None),
        allow_random_weights=config.allow_random_weights or not accuracy,
    )
    return dataclasses.replace(config, weights=resolve_weights(config, suite.weights))
