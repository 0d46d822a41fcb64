"""Where a suite's data is: the roots of the datasets its conditions read, found once when a run is planned.

A synthetic suite's scenes are written on first use into the cache (`synthetic_root`, atomically); a real suite's
roots come from `--data` (a bare path, or `name=path,...`) or the datasets' environment variables (`resolve_data`).
`describe_data` then lists and checks every kept sample's files before any run folder is made.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segbench.bench.data import realworld
from segbench.bench.data.datasets import Dataset, get_dataset
from segbench.bench.results.axes import DATASETS, REAL_WORLD, REAL_WORLD_NAMES, Condition
from segbench.bench.run.config import ConfigError, RunConfig
from segbench.bench.spec import SuiteSpec
from segbench.paths import cache_dir, make_folder


def synthetic_root(suite: SuiteSpec, datasets: Sequence[str] = ("cityscapes",)) -> Path:
    """The suite's synthetic scenes, written on first use (atomically: a half-written folder is never reused).

    The folder is a root of the suite's dataset in its exact layout (its `write_synthetic`); a Cityscapes one holds
    `leftImg8bit_foggyDBF/` when `datasets` has Foggy Cityscapes, and the synthetic ACDC and Dark Zurich under `acdc/`
    and `dark_zurich/` when asked (`synthetic_roots` names them).
    """
    s = suite.synthetic
    dataset = get_dataset(suite.dataset, None) if suite.dataset != "folder" else None
    real = [d for d in datasets if d in REAL_WORLD]
    prefix = "" if suite.dataset == "cityscapes" else f"{suite.dataset}-"
    name = f"{prefix}{suite.name}-n{s.num_images}-{s.size[0]}x{s.size[1]}-seed{s.seed}"
    if real:
        name += f"-{'+'.join(real)}-n{s.real_images}-{s.real_size[0]}x{s.real_size[1]}"
    root = cache_dir() / "synthetic" / name
    if root.is_dir():
        return root
    make_folder(root.parent)
    tmp = root.parent / f".{root.name}.{secrets.token_hex(8)}"  # mkdir, not mkdtemp (0700): the umask decides
    tmp.mkdir()
    try:
        _write_synthetic(suite.dataset, dataset, tmp, s)
        _write_synthetic_real_world(tmp, real, s)
        try:
            tmp.rename(root)
        except OSError:  # another process finished first: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _write_synthetic(name: str, dataset: Dataset | None, root: Path, s: Any) -> None:
    """The suite's dataset written in its own layout (`Dataset.write_synthetic`; the folder dataset's writer makes
    its dataset.json)."""
    if dataset is None:
        from segbench.bench.data.folder import write_synthetic_folder

        write_synthetic_folder(root, num_images=s.num_images, size=s.size, seed=s.seed)
        return
    if dataset.write_synthetic is None:
        raise ConfigError("data_root", f"{dataset.title} has no synthetic writer; give its root with --data")
    dataset.write_synthetic(root, num_images=s.num_images, size=s.size, seed=s.seed)


def _write_synthetic_real_world(root: Path, datasets: Sequence[str], s: Any) -> None:
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


def resolve_data(suite: SuiteSpec, config: RunConfig, datasets: Sequence[str]) -> RunConfig:
    """`config` with the root of every dataset in `datasets` found: synthetic ones written on first use; real ones
    from `--data` (a bare path, or `name=path,...`) or the datasets' environment variables.

    A bare `--data PATH` is the root of the suite's dataset; for a suite that reads only real-world datasets it is the
    root of its one dataset. Foggy Cityscapes lies in the Cityscapes root unless `foggy-cityscapes=PATH` says
    otherwise.

    Raises:
        ConfigError: a root named for a dataset the suite does not read, or a bare path for a suite that reads several
            real-world datasets only.
        DataNotFoundError: a root that is not given or not a folder (one line naming the flag and variable).
    """
    config = dataclasses.replace(config, dataset=suite.dataset)
    if suite.data == "synthetic":
        root = synthetic_root(suite, datasets)
        return dataclasses.replace(config, data_root=str(root), data_roots=synthetic_roots(root, datasets))
    if suite.data != "real":
        return config
    _check_named(suite, config, datasets)
    base, data_root, roots = suite.dataset, config.data_root, dict(config.data_roots)
    real = [d for d in datasets if d in REAL_WORLD]
    if base not in datasets and data_root is not None and base not in roots:
        if len(real) != 1:
            names = ", ".join(d.replace("_", "-") for d in real)
            raise ConfigError(
                "data_root", f"suite {suite.name} reads {names}: name each root, e.g. --data acdc=PATH,dark-zurich=PATH"
            )
        roots.setdefault(real[0], data_root)
        data_root = None
    if base in datasets:
        given = config.root_of(base)
        data_root = str(get_dataset(base, given).resolve_root(given))
        if base in roots:
            roots[base] = data_root
    for dataset in real:
        given = dataclasses.replace(config, data_root=data_root, data_roots=roots).root_of(dataset)
        roots[dataset] = str(realworld.resolve_realworld_root(dataset, given))
    return dataclasses.replace(config, data_root=data_root, data_roots=roots)


_TITLES = {**DATASETS, **REAL_WORLD_NAMES}


def _check_named(suite: SuiteSpec, config: RunConfig, datasets: Sequence[str]) -> None:
    """A root named for a dataset the suite does not read is refused (a Cityscapes root given to an ADE20K suite
    would otherwise be read as ADE20K)."""
    extra = [
        d for d in config.data_roots if d not in datasets and not (d == "cityscapes" and "foggy_cityscapes" in datasets)
    ]
    if extra:
        wanted = ", ".join(f"{d.replace('_', '-')}=PATH" for d in datasets) or "no data"
        raise ConfigError(
            "data_root",
            f"suite {suite.name} reads no {', '.join(_TITLES.get(d, d) for d in extra)}; give --data {wanted}",
        )


def describe_data(config: RunConfig, conditions: Sequence[Condition]) -> list[str]:
    """The start-up check of the data, before any run folder is made: every dataset the conditions read is listed and
    its kept samples' files validated (a `DataError` of one line naming the file otherwise). Returns one line per
    dataset saying what was found."""
    lines = []
    if any(not c.is_real for c in conditions):  # clean and corrupted conditions read the run's dataset
        root = config.root_of(config.dataset)
        dataset = get_dataset(config.dataset, root)
        samples = dataset.samples(root, config.split, config.max_images)
        kinds = ", ".join(sorted({s.kind for s in samples if s.kind}))
        labels = f"; labels: {kinds}" if kinds else ""
        lines.append(f"{dataset.title} {config.split}: {len(samples)} images{labels} [{root}]")
    by_dataset: dict[str, list] = {}
    for condition in conditions:
        if condition.is_real:
            samples = realworld.find_condition(
                config.root_of(condition.dataset), condition, config.split, config.max_images
            )
            by_dataset.setdefault(condition.dataset, []).extend(samples)
    lines += [f"{realworld.describe_samples(samples)} [{config.root_of(d)}]" for d, samples in by_dataset.items()]
    return lines
