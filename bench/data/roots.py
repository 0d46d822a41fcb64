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
from segbench.bench.data.cityscapes import find_samples, resolve_root
from segbench.bench.data.synthetic import write_synthetic_cityscapes
from segbench.bench.results.axes import REAL_WORLD, Condition
from segbench.bench.run.config import ConfigError, RunConfig, cache_dir
from segbench.bench.spec import SuiteSpec


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
    tmp = root.parent / f".{root.name}.{secrets.token_hex(8)}"  # mkdir, not mkdtemp (0700): the umask decides
    tmp.mkdir()
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

    A bare `--data PATH` is the Cityscapes root; for a suite that reads no Cityscapes it is the root of its one
    dataset. Foggy Cityscapes lies in the Cityscapes root unless `foggy-cityscapes=PATH` says otherwise.

    Raises:
        ConfigError: a bare path for a suite that reads several datasets but no Cityscapes.
        DataNotFoundError: a root that is not given or not a folder (one line naming the flag and variable).
    """
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
