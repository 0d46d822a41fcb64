"""Running a suite from Python: the same path the command line takes.

    >>> from segbench import suites
    >>> from segbench.bench.api import run_suite
    >>> from segbench.bench.run.config import RunConfig
    >>> result = run_suite(suites.get_suite("demo"), RunConfig(models=("segformer-b0",)))  # doctest: +SKIP

`run_suite` takes every setting from the run config (the command line fills the same config), completes it from the
suite (name, version, default models, image budget), finds the data (generating the synthetic scenes of a synthetic
suite on first use), resolves each model's weights, runs the cells through `bench.run.runner.run`, and writes the
corruption gallery. Rendering the report is the caller's step (`reports/`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from segbench.bench.data.cityscapes import resolve_root
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.axes import REAL_WORLD, SEVERITIES, Condition
from segbench.bench.run import runner
from segbench.bench.run.config import ConfigError, RunConfig
from segbench.bench.run.gallery import write_gallery
from segbench.bench.run.outcome import RunResult
from segbench.bench.run.residency import ModelFactory, ModelSlot, model_factory, resolve_weights
from segbench.bench.spec import EfficiencySpec, SuiteSpec, datasets_of


def cache_dir() -> Path:
    """Where generated data lives: `$SEGBENCH_CACHE`, else `~/.cache/segbench`."""
    return Path(os.environ.get("SEGBENCH_CACHE") or Path.home() / ".cache" / "segbench")


def synthetic_root(suite: SuiteSpec, datasets: Sequence[str] = ("cityscapes",)) -> Path:
    """The suite's synthetic scenes, written on first use (atomically: a half-written folder is never reused).

    The folder is a Cityscapes root (with `leftImg8bit_foggyDBF/` when `datasets` has Foggy Cityscapes) holding the
    synthetic ACDC and Dark Zurich under `acdc/` and `dark_zurich/` when asked (`synthetic_roots` names them).
    """
    s = suite.synthetic
    real = [d for d in datasets if d in REAL_WORLD]
    name = f"{suite.name}-n{s.num_images}-{s.size[0]}x{s.size[1]}-seed{s.seed}"
    if real:
        name += f"-{'+'.join(real)}-n{s.real_images}-{s.real_size[0]}x{s.real_size[1]}"
    root = cache_dir() / "synthetic" / name
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        write_synthetic_cityscapes(tmp, num_images=s.num_images, size=s.size, split="val", seed=s.seed)
        _write_synthetic_real_world(tmp, real, s)
        try:
            tmp.rename(root)
        except OSError:  # another process finished first: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _write_synthetic_real_world(root: Path, datasets: Sequence[str], s: Any) -> None:
    from segbench.bench.data import realworld

    if realworld.ACDC in datasets:
        realworld.write_synthetic_acdc(
            root / realworld.ACDC, images_per_condition=s.real_images, size=s.real_size, seed=s.seed
        )
    if realworld.DARK_ZURICH in datasets:
        realworld.write_synthetic_dark_zurich(
            root / realworld.DARK_ZURICH, num_images=s.real_images, size=s.real_size, seed=s.seed
        )
    if realworld.FOGGY_CITYSCAPES in datasets:
        realworld.write_synthetic_foggy_cityscapes(root)


def synthetic_roots(root: Path, datasets: Sequence[str]) -> dict[str, str]:
    """Where `synthetic_root` put each real-world dataset (Foggy Cityscapes: the Cityscapes root itself)."""
    return {d: str(root if d == "foggy_cityscapes" else root / d) for d in datasets if d in REAL_WORLD}


def select_conditions(
    suite: SuiteSpec, corruptions: tuple[str, ...] = (), severities: tuple[int, ...] = ()
) -> tuple[Condition, ...]:
    """The suite's conditions, narrowed or widened by the user's corruptions and severities.

    Given severities apply to every corruption (so `--severities 1,2,3,4,5` runs all five everywhere, also where
    the suite's protocol stops the noise corruptions at 3); without, each corruption keeps the suite's severities.
    Real-world conditions are kept as they are.
    """
    if not corruptions and not severities:
        return suite.conditions
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


def efficiency_spec(suite: SuiteSpec, config: RunConfig) -> EfficiencySpec | None:
    """The suite's cost probe with the user's precision (when not fp32) in place of the suite's; None for none.

    The runner turns it into the probe (`bench.run.efficiency_cells.efficiency_probe`) on each rank's own device:
    under torchrun `config.device` is not the device of every rank.
    """
    eff = suite.efficiency
    if eff is not None and config.precision != "fp32":
        eff = dataclasses.replace(eff, precisions=(config.precision,))
    return eff


def suite_config(suite: SuiteSpec, config: RunConfig, conditions: Sequence[Condition] = ()) -> RunConfig:
    """`config` completed by the suite: its name and version, default models, reference model, image budget, the
    roots of the datasets `conditions` read (synthetic scenes written on first use; `resolve_data`) and the checkpoints
    of its models. No conditions: an efficiency-only run, which reads no data and may use random weights."""
    models = config.models or suite.default_models
    config = dataclasses.replace(
        config,
        suite=suite.name,
        suite_version=suite.version,
        models=tuple(models),
        max_images=config.max_images or suite.max_images,
        reference_model=config.reference_model or (suite.reference_model if suite.reference_model in models else None),
        allow_random_weights=config.allow_random_weights or not conditions,
    )
    config = resolve_data(suite, config, datasets_of(tuple(conditions))) if conditions else config
    return dataclasses.replace(config, weights=resolve_weights(config, suite.weights))


def resolve_data(suite: SuiteSpec, config: RunConfig, datasets: Sequence[str]) -> RunConfig:
    """`config` with the root of every dataset in `datasets` found: synthetic ones written on first use; real ones
    from `--data` (a bare path, or `name=path,...`) or the datasets' environment variables.

    A bare `--data PATH` is the Cityscapes root; for a suite that reads no Cityscapes it is the root of its one
    dataset. Foggy Cityscapes lies in the Cityscapes root unless `foggy-cityscapes=PATH` says otherwise.

    Raises:
        ConfigError: a bare path for a suite that reads several datasets but no Cityscapes.
        DataNotFoundError: a root that is not given or not a folder (one line naming the flag and variable).
    """
    from segbench.bench.data import realworld

    if suite.data == "synthetic":
        root = synthetic_root(suite, datasets)
        return dataclasses.replace(config, data_root=str(root), data_roots=synthetic_roots(root, datasets))
    if suite.data != "cityscapes":
        return config
    data_root, roots = config.data_root, dict(config.data_roots)
    real = [d for d in datasets if d in REAL_WORLD]
    if "cityscapes" not in datasets and "cityscapes" in roots and not any(d in roots for d in real):
        names = ", ".join(f"{d.replace('_', '-')}=PATH" for d in real)
        raise ConfigError("data_root", f"suite {suite.name} reads no Cityscapes; give --data {names}")
    if "cityscapes" not in datasets and data_root is not None and "cityscapes" not in roots:
        if len(real) != 1:
            names = ", ".join(d.replace("_", "-") for d in real)
            raise ConfigError(
                "data_root", f"suite {suite.name} reads {names}: name each root, e.g. --data acdc=PATH,dark-zurich=PATH"
            )
        roots.setdefault(real[0], data_root)
        data_root = None
    if "cityscapes" in datasets:
        data_root = str(resolve_root(data_root))
    for dataset in real:
        given = dataclasses.replace(config, data_root=data_root, data_roots=roots).root_of(dataset)
        roots[dataset] = str(realworld.resolve_realworld_root(dataset, given))
    return dataclasses.replace(config, data_root=data_root, data_roots=roots)


def describe_data(config: RunConfig, conditions: Sequence[Condition]) -> list[str]:
    """The start-up check of the data, before any run folder is made: every dataset the conditions read is listed and
    its kept samples' files validated (a `DataError` of one line naming the file otherwise). Returns one line per
    dataset saying what was found."""
    from segbench.bench.data import realworld
    from segbench.bench.data.cityscapes import find_samples

    lines = []
    if any(not c.is_real for c in conditions):  # clean and Cityscapes-C read the Cityscapes labels
        samples = find_samples(config.data_root, config.split, config.max_images)
        kinds = ", ".join(sorted({s.label_kind for s in samples}))
        lines.append(f"Cityscapes {config.split}: {len(samples)} images; labels: {kinds} [{config.data_root}]")
    by_dataset: dict[str, list] = {}
    for condition in conditions:
        if condition.is_real:
            samples = realworld.find_condition(
                config.root_of(condition.dataset), condition, config.split, config.max_images
            )
            by_dataset.setdefault(condition.dataset, []).extend(samples)
    lines += [f"{realworld.describe_samples(samples)} [{config.root_of(d)}]" for d, samples in by_dataset.items()]
    return lines


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
    config = suite_config(suite, config, conditions if accuracy else ())
    found = describe_data(config, conditions) if accuracy else []  # before any run folder is made
    efficiency = efficiency_spec(suite, config) if config.only != "accuracy" else None
    factory = model_factory(config, modules)
    records: list[dict] = []
    if suite.deploy is not None:
        config, factory, records = _deployment_grid(suite, config, factory)
    notes = [f"data: {line}" for line in found]
    result = runner.run(
        config, conditions, suite.inference, efficiency, model_factory=factory, records=records, notes=notes
    )
    if accuracy and suite.gallery and result.run_dir is not None:
        _gallery(result.run_dir, suite, config, conditions, factory)
    return result


def _deployment_grid(
    suite: SuiteSpec, config: RunConfig, factory: ModelFactory
) -> tuple[RunConfig, ModelFactory, list[dict]]:
    """Build and check the suite's deployment grid (`bench.deploy.grid.prepare_grid`) for the run's models, on the
    suite's first clean images; returns the config with the variants as its models, their factory, and the grid's
    `deploy` cell records."""
    from segbench.bench.data.cityscapes import CityscapesDataset
    from segbench.bench.deploy.grid import prepare_grid
    from segbench.bench.measure.inference import normalize

    spec = suite.deploy
    count = max(spec.calibration_images, spec.agreement_images)
    dataset = CityscapesDataset(config.data_root, split=config.split, max_images=count)
    raw = [dataset[i]["image"].unsqueeze(0) for i in range(len(dataset))]

    def images(model: nn.Module) -> list:
        return [normalize(x, model.meta.mean, model.meta.std).to(config.device) for x in raw]

    grid = prepare_grid(
        config.models,
        ModelSlot(config, config.device, factory).build,  # as the runner builds: seeded, random weights refused
        images,
        config.backends or spec.backends,
        config.deploy_precisions or spec.precisions,
        device=config.device,
        calibration=spec.calibration_images,
        agreement=spec.agreement_images,
        suite=config.suite,
        quiet=config.quiet,
    )
    from segbench.bench.results.schema import deploy_variant

    weights = {v: config.weights[deploy_variant(v)[0]] for v in grid.variants if deploy_variant(v)[0] in config.weights}
    config = dataclasses.replace(config, models=tuple(grid.variants), weights=weights, reference_model=None)

    def variant(name: str, **_: object) -> nn.Module:
        return grid.variants[name]

    return config, variant, grid.records


def _gallery(
    run_dir: Path, suite: SuiteSpec, config: RunConfig, conditions: Sequence[Condition], factory: ModelFactory
) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 writes the gallery
        return
    conditions = [c for c in conditions if not c.is_real]  # the gallery shows one Cityscapes image under each
    if not conditions:
        return
    spec = config.inference_spec(suite.inference)

    def build(name: str) -> nn.Module:
        model = factory(name, num_classes=config.num_classes, weights=config.weights.get(name))
        return model.to(spec.device).eval()

    write_gallery(run_dir, config.data_root, conditions, config.models, build, spec, config.split, config.seed)
