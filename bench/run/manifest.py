"""Provenance of a run: what it is (`run.json`, checked on resume), what it ran on (`env.json`), and its folder.

`run.json` holds everything that can change a number: suite and version, seed, split, image budget, classes, each
model's weight hash and inference protocol, and the `settings` (fast path, precision, channels-last, compile, batch
size, and the conditions the run evaluates). A resume with another value of any of them is refused
(`bench.results.check_resume`). `env.json` adds the command line, versions, hardware and each model's weight details.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from segbench.bench.results.axes import Condition
from segbench.bench.results.store import RunStore, check_resume
from segbench.bench.run import distributed
from segbench.bench.run.config import InferenceSpec, RunConfig
from segbench.bench.run.provenance import environment, sha256_path
from segbench.bench.run.residency import Residency
from segbench.models import segformer_native


def now() -> str:
    """The UTC time, to the second, as run files record it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def weights_detail(model: nn.Module) -> dict[str, Any]:
    """A model's weight provenance and metadata for env.json, with its `status`: one of
    `bench.results.schema.WEIGHTS_STATUSES`, by which the report marks random and synthetic-data weights."""
    from segbench.models.checkpoint import checkpoint_metadata

    info = getattr(model, "weights_info", None)
    detail = dataclasses.asdict(info) if info is not None else {"random": True, "source": "unknown"}
    label = checkpoint_metadata(detail.get("path") or "").get("source")
    if label:  # e.g. "synthetic-demo" for the demo suite's checkpoints
        detail["source"] = f"{label}: {detail.get('source')}"
    detail["status"] = "random" if detail["random"] else "synthetic-demo" if label == "synthetic-demo" else "trained"
    meta = getattr(model, "meta", None)
    if meta is not None:
        detail["meta"] = dataclasses.asdict(meta)
    source = getattr(model, "source_info", None)  # hf:, py:, torchscript:, onnx: and in-memory modules
    detail["model_source"] = dataclasses.asdict(source) if source is not None else {"kind": "registry"}
    return detail


def weights_fingerprint(model: nn.Module, name: str, config: RunConfig) -> str:
    """sha256 of a model's weights: the file (or folder) it was loaded from, or `random-init/seed=<seed>`."""
    info = getattr(model, "weights_info", None)
    if info is None or info.random:
        return f"random-init/seed={config.seed}"
    if info.sha256:
        return info.sha256
    source = info.path or config.weights.get(name)
    if source and Path(source).exists():
        return sha256_path(source)
    return f"unhashed:{info.source}"


def describe_models(residency: Residency, config: RunConfig, spec: InferenceSpec) -> dict[str, dict[str, Any]]:
    """The preflight: every model is built (its weights found, the random-init policy applied) before any work.

    Returns `weights` (hashes), `protocols` and `details` (for env.json), each by model name, in run order.
    """
    described: dict[str, dict[str, Any]] = {"weights": {}, "protocols": {}, "details": {}}
    for name in config.models:

        def describe(model: nn.Module, name: str = name) -> None:
            described["weights"][name] = weights_fingerprint(model, name, config)
            described["protocols"][name] = spec.resolve(model.meta).protocol()
            described["details"][name] = weights_detail(model)

        residency.with_model(name, describe)
    return described


def attack_settings(conds: Sequence[Condition]) -> dict[str, Any]:
    """run.json's record of each attack condition (norm, eps, steps, the step size used, random start, the seed
    derivation), under "attacks"; nothing for a run without attacks (so that older runs resume as they were)."""
    from segbench.bench.measure.attacks import SEED_PROTOCOL

    attacks = {
        c.name: {**dataclasses.asdict(c.attack), "alpha": c.attack.alpha, "seed_protocol": SEED_PROTOCOL}
        for c in conds
        if c.is_attack
    }
    return {"attacks": attacks} if attacks else {}


def shard_record(config: RunConfig) -> dict[str, int] | None:
    """run.json's `shard`: {"index": I, "count": N} for a shard folder (`RunConfig.shard`), None for a whole run."""
    part = config.shard_part
    return None if part is None else {"index": part[0], "count": part[1]}


def manifest(config: RunConfig, conds: Sequence[Condition], described: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """run.json: what defines the run's numbers (see the module docstring); `run_id` is filled in later."""
    return {
        "run_id": None,
        "suite": config.suite,
        "suite_version": config.suite_version,
        "seed": config.seed,
        "split": config.split,
        "max_images": config.max_images,
        "dataset": config.dataset,
        "num_classes": config.num_classes,
        "classes": config.classes.to_dict(),
        "weights": described["weights"],
        "protocols": described["protocols"],
        "settings": {**config.settings(), "conditions": [c.name for c in conds], **attack_settings(conds)},
        "shard": shard_record(config),
        "created_at": now(),
        "config": config.to_dict(),
    }


def run_environment(
    config: RunConfig,
    run_dir: Path,
    spec: InferenceSpec,
    described: dict[str, dict[str, Any]],
    ctx: distributed.DistContext,
) -> dict[str, Any]:
    """env.json: the command line, versions, hardware and seed (`bench.run.provenance.environment`), plus the run's
    inference spec, config and weight details, and with `--fast` which kernels its CPU blocks and decoder run."""
    extra = {"run_id": run_dir.name, "inference": spec.to_dict(), "config": config.to_dict()}
    if config.fast and ctx.device.type == "cpu":  # segbench's kernels or PyTorch's operators
        extra["fast_kernels"] = segformer_native.status().detail
    return environment(
        config.command,
        config.seed,
        described["weights"],
        config.suite,
        config.suite_version,
        str(ctx.device),
        ctx.world_size,
        extra={**extra, "weights": described["details"]},
    )


def _holds_a_run(folder: Path) -> bool:
    """Whether a folder has anything but hidden files (its lock, say) in it."""
    return folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir())


def resolve_run_dir(config: RunConfig) -> Path:
    """The run folder: `out_dir/run_id`; with `resume` and no run id the suite's latest run; else a new
    `<suite>-<UTC time>` folder."""
    out = Path(config.out_dir)
    if config.run_id:
        run_dir = out / config.run_id
        if config.resume and not (run_dir / "run.json").is_file():
            raise FileNotFoundError(f"cannot resume: {run_dir} holds no run (no run.json); check out_dir and run_id")
        if not config.resume and (run_dir / "run.json").is_file():
            raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or another run id")
        if not config.resume and _holds_a_run(run_dir):
            names = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise FileExistsError(
                f"{run_dir} holds other files ({shown}), not a run; give a new or empty folder (--out), or another "
                "run id"
            )
        return run_dir
    if config.resume:
        runs = sorted(
            (p for p in out.glob(f"{config.suite}-*") if (p / "run.json").is_file()), key=lambda p: p.stat().st_mtime
        )
        if not runs:
            raise FileNotFoundError(f"cannot resume: no run of suite {config.suite!r} in {out}; give run_id")
        return runs[-1]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if config.shard_part is not None:
        stamp += "-shard{}of{}".format(*config.shard_part)
    run_dir, k = out / f"{config.suite}-{stamp}", 1
    while run_dir.exists():
        k += 1
        run_dir = out / f"{config.suite}-{stamp}-{k}"
    return run_dir


def prepare(store: RunStore, manifest: dict[str, Any], env: dict[str, Any]) -> set[str]:
    """Rank 0: check (on resume) or create the run folder's run.json and env.json; returns the finished cells' ids
    (damaged cell files are set aside, and so computed again: `RunStore.finished`).

    Raises:
        RunMismatchError: the folder holds a run made with other settings.
        DamagedFileError: its run.json is damaged (one line naming it).
    """
    old = store.read_manifest()
    if old is not None:
        check_resume(old, manifest, store.dir)
        merged = {key: {**old.get(key, {}), **manifest[key]} for key in ("weights", "protocols")}
        manifest = {**old, **manifest, **merged, "created_at": old.get("created_at")}
    store.write_manifest(manifest)
    store.write_env(env)
    return set(store.finished())
