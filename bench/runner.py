"""The runner: expand models x conditions into cells, evaluate the missing ones, store each as soon as it finishes.

    >>> from segbench.bench.config import RunConfig, InferenceSpec
    >>> from segbench.bench.corruptions import conditions
    >>> from segbench.bench.runner import run
    >>> cfg = RunConfig(suite="demo", models=("segformer-b0",), weights={"segformer-b0": "ckpt.pth"},
    ...                 data_root="/data/cityscapes", max_images=10)
    >>> result = run(cfg, conditions(("fog",), (1, 3)), InferenceSpec(mode="slide"))   # doctest: +SKIP
    >>> result.results_csv                                                           # doctest: +SKIP
    PosixPath('runs/demo-20260101-120000/results.csv')

Cells: for each model, an optional efficiency cell (when an `efficiency` callable is given) and one accuracy cell
per condition. An accuracy cell streams the (sharded) dataset through `bench.inference.predict`, accumulates a
confusion matrix on the device, all-reduces it across ranks, and rank 0 writes `cells/<cell>.json` atomically with
the matrix, the tidy rows and the timing split (model / data / metric). A run folder that already holds a cell
never recomputes it (`resume`). `results.csv` and `summary.csv` are gathered from the cell files.

Order: the efficiency cells first, then the accuracy cells condition by condition. The cells of one condition run
together: every model stays loaded, and each batch is read and corrupted once and goes through every model in turn,
so corrupting on the fly costs the same for one model as for ten. Those cells share their data and total times.

Faults: NaN/inf logits or CUDA out-of-memory fail that cell with a message saying what to change; the run goes on
with the other models and the next cells and raises `RunFailed` at the end, listing them. Ctrl-C keeps every
finished cell and prints how to resume.

`python -m bench.runner --config cfg.json` runs a JSON-described run (RunConfig fields plus an optional
`conditions` list such as `["clean", "fog-2"]`); it is what the distributed tests launch with torchrun.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import gc
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbench.bench import distributed
from segbench.bench.config import InferenceSpec, RunConfig
from segbench.bench.corruptions import warm_up
from segbench.bench.inference import NonFiniteLogitsError, nonfinite_message, predict
from segbench.bench.metrics import ConfusionCounter, accuracy_rows
from segbench.bench.provenance import environment, sha256_path
from segbench.bench.results import CITYSCAPES_CLASSES, Condition, RunStore, check_resume
from segbench.bench.results import conditions as expand_conditions

EfficiencyFn = Callable[[nn.Module, str], list[dict[str, Any]]]
"""`efficiency(model, model_name) -> tidy rows` (e.g. a partial of `bench.efficiency.efficiency_sweep`)."""


class CellError(RuntimeError):
    """A cell could not be evaluated (non-finite logits, out of memory, ...). `out_of_memory`: on some rank the
    device ran out of memory (the run may retry such a cell with no other model loaded)."""

    def __init__(self, message: str, out_of_memory: bool = False):
        super().__init__(message)
        self.out_of_memory = out_of_memory


class RunFailed(RuntimeError):
    """Some cells failed; the others are stored. `.result` holds the `RunResult`."""

    def __init__(self, message: str, result: RunResult):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Cell:
    """One unit of work: a model under one condition (accuracy) or the model's efficiency probe."""

    model: str
    kind: str  # "accuracy" | "efficiency"
    condition: Condition | None = None

    @property
    def id(self) -> str:
        return f"{self.model}__{self.condition.name if self.kind == 'accuracy' else 'efficiency'}"


@dataclass
class RunResult:
    """What a run produced. `computed` and `skipped` are cell ids; `failed` maps cell id -> error message."""

    run_dir: Path
    results_csv: Path | None
    cells: list[str]
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    timing: dict[str, dict[str, float]] = field(default_factory=dict)


def efficiency_probe(
    spec: Any, device: str | torch.device = "cpu", suite: str = "", channels_last: bool = False, compile: bool = False
):
    """An `EfficiencyFn` running `bench.efficiency.efficiency_sweep` with a suite's `bench.spec.EfficiencySpec`."""
    from segbench.bench.efficiency import efficiency_sweep

    def probe(model: nn.Module, name: str) -> list[dict[str, Any]]:
        return efficiency_sweep(
            model,
            spec.resolutions,
            spec.batch_sizes,
            device,
            spec.precisions,
            model_name=name,
            suite=suite,
            conventions=spec.conventions,
            latency=spec.latency,
            warmup=spec.warmup,
            iters=spec.iters,
            cv_threshold=spec.cv_threshold,
            max_retries=spec.max_retries,
            channels_last=channels_last,
            compile=compile,
        )

    return probe


def plan_cells(models: Sequence[str], conds: Sequence[Condition], efficiency: bool, only: str | None) -> list[Cell]:
    """Cells in results order: per model, its efficiency cell first (if any), then its conditions. (They run in
    `_group_cells` order: efficiency cells, then condition by condition.)"""
    cells = []
    for model in models:
        if efficiency and only != "accuracy":
            cells.append(Cell(model, "efficiency"))
        if only != "efficiency":
            cells.extend(Cell(model, "accuracy", c) for c in conds)
    return cells


def _group_cells(cells: Sequence[Cell], together: bool = True) -> list[list[Cell]]:
    """The order of work, as groups of cells evaluated together.

    `together`: efficiency cells one by one, first; then the accuracy cells grouped by condition (in first-seen
    order), so that each condition's images are read and corrupted once for all models (`_accuracy_cells`).
    Otherwise (the models do not fit on the device together): one cell at a time, model by model (its efficiency
    cell first), so that each model is loaded once.
    """
    if not together:
        order = {m: i for i, m in enumerate(dict.fromkeys(c.model for c in cells))}
        return [[c] for c in sorted(cells, key=lambda c: (order[c.model], c.kind == "accuracy"))]
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.kind == "accuracy":
            groups.setdefault(cell.condition.name, []).append(cell)
    return [[c] for c in cells if c.kind != "accuracy"] + list(groups.values())


def _collate(items: list[dict]) -> dict:
    shapes = {tuple(it["image"].shape) for it in items}
    if len(shapes) > 1:
        raise ValueError(f"images in one batch differ in size {sorted(shapes)}; use batch_size 1 for such data")
    return {
        "image": torch.stack([it["image"] for it in items]),
        "label": torch.stack([it["label"] for it in items]),
        "id": [it["id"] for it in items],
    }


class _ModelSlot:
    """Builds models (seeded, so random init is identical on every rank and every resume) and keeps them loaded.

    Accuracy cells of one condition are evaluated together, every model on each batch (see `_accuracy_cells`), so
    every model of a run stays loaded; only one runs at a time, so activations are never held for two. When they do
    not fit on the device together, the run goes one model at a time (`release(keep=...)`).
    """

    def __init__(self, config: RunConfig, device: torch.device, factory: Callable[..., nn.Module] | None):
        self.config, self.device = config, device
        self.factory = factory
        self.models: dict[str, nn.Module] = {}
        self.compiled: dict[str, nn.Module] = {}

    def build(self, name: str) -> nn.Module:
        if self.factory is None:
            from segbench import models

            self.factory = models.create_model
        torch.manual_seed(self.config.seed)
        model = self.factory(name, num_classes=self.config.num_classes, weights=self.config.weights.get(name))
        info = getattr(model, "weights_info", None)
        if (info is None or info.random) and not self.config.allow_random_weights:
            raise ValueError(
                f"model {name} has no trained weights (random init); give a checkpoint with weights={{{name!r}: path}} "
                "(--weights on the command line), or allow_random_weights=True for a smoke run"
            )
        return model.eval()

    def get(self, name: str) -> nn.Module:
        if name not in self.models:
            model = self.build(name).to(self.device)
            if self.config.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self.models[name] = model
        return self.models[name]

    def for_inference(self, name: str) -> nn.Module:
        """The model for accuracy cells: `get(name)`, wrapped once in `torch.compile` when the config asks for it.
        (Efficiency cells take the plain model: FLOP counters trace it, and the latency timer compiles on its own.)"""
        model = self.get(name)
        if not self.config.compile:
            return model
        if name not in self.compiled:
            self.compiled[name] = torch.compile(model)
        return self.compiled[name]

    def release(self, keep: Sequence[str] = ()) -> None:
        """Unload every model but those named in `keep` (and give their memory back to the device)."""
        for name in [n for n in self.models if n not in keep]:
            del self.models[name]
            self.compiled.pop(name, None)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def weights_detail(model: nn.Module) -> dict[str, Any]:
    """A model's weight provenance and metadata for env.json (the report marks random and synthetic-data weights)."""
    from segbench.models.checkpoint import checkpoint_metadata

    info = getattr(model, "weights_info", None)
    detail = dataclasses.asdict(info) if info is not None else {"random": True, "source": "unknown"}
    label = checkpoint_metadata(detail.get("path") or "").get("source")
    if label:  # e.g. "synthetic-demo" for the demo suite's checkpoints
        detail["source"] = f"{label}: {detail.get('source')}"
    meta = getattr(model, "meta", None)
    if meta is not None:
        detail["meta"] = dataclasses.asdict(meta)
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


def _defers_syncs(device: torch.device) -> bool:
    """Whether an accuracy cell's loop leaves every check and timing on the device until the cell ends (a GPU: a host
    sync per batch would idle it between batches). On the CPU every op has finished when it returns anyway."""
    return device.type != "cpu"


class _Clock:
    """Model and metric seconds of each cell of a condition: the host clock on the CPU; on a GPU, CUDA events
    recorded into the stream and read once, at the end (`seconds`), so the loop never waits for the device."""

    def __init__(self, device: torch.device, cells: int):
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.current_stream(device) if self.cuda else None  # cuda:1 need not be the current one
        self.totals = torch.zeros(cells, 2, dtype=torch.float64)
        self.pending: list[tuple[int, int, Any, Any]] = []

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(self.stream)
        return event

    def add(self, cell: int, phase: int, start: Any, end: Any) -> None:
        if self.cuda:
            self.pending.append((cell, phase, start, end))
        else:
            self.totals[cell, phase] += end - start

    def seconds(self) -> torch.Tensor:
        """(cells, 2): model and metric seconds (one device sync on a GPU)."""
        if self.pending:
            self.pending[-1][3].synchronize()
            for cell, phase, start, end in self.pending:
                self.totals[cell, phase] += start.elapsed_time(end) / 1000
            self.pending.clear()
        return self.totals


class _WatchFinite(nn.Module):
    """`model`, noting in the device flag `nonfinite` whether any output had a NaN or inf, without a host sync."""

    def __init__(self, model: nn.Module, nonfinite: torch.Tensor):
        super().__init__()
        self.model, self.meta, self.nonfinite = model, model.meta, nonfinite

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.nonfinite.logical_or_(~torch.isfinite(out).all())
        return out


def _oom_message(cell: Cell, spec: InferenceSpec) -> str:
    if spec.mode == "whole":
        crop = "whole-image inference"
    else:
        crop = f"crop {spec.crop[0]}x{spec.crop[1]}" if spec.crop else "the model's default crop"
    return (
        f"CUDA out of memory in cell {cell.id} (batch size {spec.batch_size}, {crop}, precision {spec.precision}): "
        "lower the batch size (--batch-size), use slide inference with a smaller crop, or fp16/bf16 precision"
    )


def _accuracy_cells(
    cells: Sequence[Cell],
    runners: Sequence[nn.Module],
    specs: Sequence[InferenceSpec],
    config: RunConfig,
    ctx: distributed.DistContext,
    label: str,
) -> list[dict[str, Any] | CellError]:
    """Evaluate the accuracy cells of one condition together: each batch is read (and corrupted) once and goes
    through every model in turn, so a corruption computed on the fly costs the same for one model as for ten.

    Returns one record per cell, or the `CellError` that failed it (NaN/inf logits, out of memory); a failed model
    drops out of the loop and the others go on. Cells share the data time and the total wall time; the model and
    metric times are each model's own. On a GPU nothing in the loop waits for the device (`_defers_syncs`), so NaN
    logits are noticed when the condition ends rather than at the batch that had them.
    """
    from segbench.bench.data import CityscapesDataset

    condition = cells[0].condition
    start = time.perf_counter()
    dataset = CityscapesDataset(
        config.data_root,
        split=config.split,
        max_images=config.max_images,
        condition=condition,
        base_seed=config.seed,
        corrupted_root=config.corrupted_root,
    )
    shard = distributed.shard_indices(len(dataset), ctx.rank, ctx.world_size)
    if config.workers > 0 and not condition.is_clean and config.corrupted_root is None:
        warm_up(condition.corruption, condition.severity)  # inherited by the forked workers
    cuda = ctx.device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, shard),
        batch_size=specs[0].batch_size,
        shuffle=False,
        num_workers=config.workers,
        collate_fn=_collate,
        pin_memory=cuda,
    )
    n = config.num_classes
    k = len(cells)
    counters = [ConfusionCounter(n, device=ctx.device) for _ in cells]
    clock = _Clock(ctx.device, k)  # per cell: model and metric seconds
    data_seconds = 0.0  # the wait for each batch, shared by the cells
    defer = _defers_syncs(ctx.device)  # NaN checks off the host too: one flag per cell, read at the end
    nonfinite = [torch.zeros((), dtype=torch.bool, device=ctx.device) for _ in cells] if defer else []
    if defer:
        runners = [_WatchFinite(runner, flag) for runner, flag in zip(runners, nonfinite)]
    errors: list[str | None] = [None] * k
    out_of_memory = [False] * k
    notes: list[dict[str, None]] = [{} for _ in cells]  # warnings per cell, in order, without repeats
    from tqdm import tqdm

    bar = tqdm(total=len(shard), desc=label, unit="img", disable=config.quiet or not ctx.is_main, leave=False)
    try:
        t = time.perf_counter()
        for batch in loader:
            data_seconds += time.perf_counter() - t
            images = batch["image"].to(ctx.device, non_blocking=True)
            labels = batch["label"].to(ctx.device, non_blocking=True)
            for i, (cell, runner, spec) in enumerate(zip(cells, runners, specs)):
                if errors[i] is not None:
                    continue
                t0 = clock.mark()
                try:
                    with warnings.catch_warnings(record=True) as caught:  # each model's warnings go to its own cell
                        warnings.simplefilter("always")
                        pred = predict(runner, images, spec, out_size=tuple(labels.shape[-2:]), check_finite=not defer)
                    notes[i].update(dict.fromkeys(map(_warning_text, caught)))
                except NonFiniteLogitsError as exc:
                    errors[i] = f"cell {cell.id}: {exc}"
                    continue
                except torch.OutOfMemoryError:
                    errors[i], out_of_memory[i] = _oom_message(cell, spec), True
                    if cuda:
                        torch.cuda.empty_cache()
                    continue
                t1 = clock.mark()
                counters[i].add(pred, labels)
                clock.add(i, 0, t0, t1)
                clock.add(i, 1, t1, clock.mark())
            bar.update(len(batch["id"]))
            t = time.perf_counter()
        seconds = clock.seconds()  # on a GPU: the one wait for the device, for the whole condition
    finally:
        bar.close()
    for i, (runner, spec) in enumerate(zip(runners, specs)):
        if defer and errors[i] is None and bool(nonfinite[i]):
            errors[i] = f"cell {cells[i].id}: {nonfinite_message(runner, spec)}"
    count = torch.tensor([len(shard)], dtype=torch.int64, device=ctx.device)
    distributed.all_reduce_(count, ctx)
    num_images = int(count.item())
    total = torch.tensor([time.perf_counter() - start], dtype=torch.float64, device=ctx.device)
    total = float(distributed.all_reduce_(total, ctx, "max").item())
    classes = CITYSCAPES_CLASSES if n == len(CITYSCAPES_CLASSES) else tuple(f"class{i}" for i in range(n))
    out: list[dict[str, Any] | CellError] = []
    for i, (cell, spec) in enumerate(zip(cells, specs)):
        if distributed.any_failed(errors[i] is not None, ctx):
            message = errors[i] or f"cell {cell.id} failed on another rank (see that rank's log)"
            out.append(CellError(message, distributed.any_failed(out_of_memory[i], ctx)))
            continue
        cm = distributed.all_reduce_(counters[i].matrix(), ctx)
        phases = torch.tensor([seconds[i, 0], data_seconds, seconds[i, 1]], dtype=torch.float64)
        split = distributed.all_reduce_(phases.to(ctx.device), ctx).cpu()  # summed over ranks
        timing = {"total": total, "model": float(split[0]), "data": float(split[1]), "metric": float(split[2])}
        cm_cpu = cm.cpu()
        out.append(
            {
                "cell": cell.id,
                "kind": "accuracy",
                "model": cell.model,
                "condition": condition.name,
                "num_images": num_images,
                "world_size": ctx.world_size,
                "device": str(ctx.device),
                "inference": spec.to_dict(),
                "timing": timing,
                "shared_with": [c.id for c in cells if c is not cell],
                "warnings": list(notes[i]),  # completed by the run loop (`_cell_warnings`)
                "class_names": list(classes),
                "confusion_matrix": cm_cpu.tolist(),
                "rows": accuracy_rows(cell.model, config.suite, condition, cm_cpu, classes, timing, num_images),
            }
        )
    return out


def _efficiency_cell(cell: Cell, model: nn.Module, config: RunConfig, efficiency: EfficiencyFn) -> dict[str, Any]:
    start = time.perf_counter()
    rows = efficiency(model, cell.model)
    fixed = {"model": cell.model, "suite": config.suite, "condition": "efficiency"}
    rows = [{"corruption": None, "category": None, "severity": None, **r, **fixed} for r in rows]
    for r in rows:
        if not {"metric", "value", "unit"} <= set(r):
            raise ValueError(f"efficiency row {r} lacks metric/value/unit")
    return {
        "cell": cell.id,
        "kind": "efficiency",
        "model": cell.model,
        "condition": "efficiency",
        "timing": {"total": time.perf_counter() - start},
        "rows": rows,
    }


def _resolve_run_dir(config: RunConfig) -> Path:
    out = Path(config.out_dir)
    if config.run_id:
        run_dir = out / config.run_id
        if config.resume and not (run_dir / "run.json").is_file():
            raise FileNotFoundError(f"cannot resume: {run_dir} holds no run (no run.json); check out_dir and run_id")
        if not config.resume and run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or another run id")
        return run_dir
    if config.resume:
        runs = sorted(
            (p for p in out.glob(f"{config.suite}-*") if (p / "run.json").is_file()), key=lambda p: p.stat().st_mtime
        )
        if not runs:
            raise FileNotFoundError(f"cannot resume: no run of suite {config.suite!r} in {out}; give run_id")
        return runs[-1]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir, k = out / f"{config.suite}-{stamp}", 1
    while run_dir.exists():
        k += 1
        run_dir = out / f"{config.suite}-{stamp}-{k}"
    return run_dir


def _prepare(config: RunConfig, store_dir: Path, manifest: dict, env: dict) -> set[str]:
    """Rank 0: check or create the run folder; returns the ids of finished cells."""
    store = RunStore(store_dir)
    old = store.read_manifest()
    if old is not None:
        check_resume(old, manifest, store_dir)
        merged = {key: {**old.get(key, {}), **manifest[key]} for key in ("weights", "protocols")}
        manifest = {**old, **manifest, **merged, "created_at": old.get("created_at")}
    store.write_manifest(manifest)
    store.write_env(env)
    return set(store.finished())


def run(
    config: RunConfig,
    conditions: Sequence[Condition | str] | None = None,
    inference: InferenceSpec | None = None,
    efficiency: EfficiencyFn | None = None,
    model_factory: Callable[..., nn.Module] | None = None,
    on_cell_finished: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Evaluate every missing cell of a run and gather its results (see the module docstring).

    Args:
        config: what to run and where to write.
        conditions: conditions of the accuracy cells (`Condition` or names such as "fog-2"); None expands
            `config.corruptions` x `config.severities` after clean.
        inference: the suite's inference protocol (overridden by `config.inference`; hardware knobs from `config`).
        efficiency: efficiency probe run once per model on rank 0: an `EfficiencyFn`, or a suite's
            `bench.spec.EfficiencySpec` (run through `efficiency_probe` on this rank's device); None for none.
        model_factory: `factory(name, num_classes=..., weights=...) -> nn.Module`; default `models.create_model`.
        on_cell_finished: called on rank 0 with each stored cell record (progress hooks, tests).

    Returns:
        The run's `RunResult` (on every rank; only rank 0 writes files).

    Raises:
        RunFailed: some cells failed; the finished ones are stored.
        RunMismatchError: resume against a run made with another suite version, seed, weights or protocol.
    """
    ctx = distributed.setup(config.device)
    try:
        return _run(config, conditions, inference, efficiency, model_factory, on_cell_finished, ctx)
    finally:
        distributed.teardown(ctx)


def _run(config, conditions, inference, efficiency, model_factory, on_cell_finished, ctx) -> RunResult:
    if not config.models:
        raise ValueError("no models to run; set RunConfig.models")
    if conditions is None:
        conditions = expand_conditions(config.corruptions, config.severities, clean=True)
    conds = [Condition.parse(c) if isinstance(c, str) else c for c in conditions]
    if efficiency is not None and not callable(efficiency):
        efficiency = efficiency_probe(efficiency, ctx.device, config.suite, config.channels_last, config.compile)
    spec = dataclasses.replace(config.inference_spec(inference), device=str(ctx.device))
    cells = plan_cells(config.models, conds, efficiency is not None, config.only)
    slot = _ModelSlot(config, ctx.device, model_factory)

    # Preflight: every model builds (weights found, random-init policy) before any work; hashes for the manifest.
    weights, protocols, details = {}, {}, {}
    # Through the slot, which keeps every model loaded for the cells (each is built once) if they fit together.
    together = _load_together(slot, config.models, ctx)
    if not together:
        _note_one_at_a_time("while loading the models " + ", ".join(config.models) + " together", ctx)
    for name in config.models:
        if not together:
            slot.release(keep=(name,))
        try:
            model, fits = slot.get(name), True
        except torch.OutOfMemoryError:
            model, fits = None, False
        if distributed.any_failed(not fits, ctx):  # every rank stops here, with the same message
            slot.release()
            raise ValueError(
                f"out of memory while loading the model {name} on {ctx.device}, with no other model loaded: use a "
                "device with more memory, or leave this model out (--models)"
            )
        weights[name] = weights_fingerprint(model, name, config)
        protocols[name] = spec.resolve(model.meta).protocol()
        details[name] = weights_detail(model)
        del model
    weights, protocols, details = ({n: d[n] for n in config.models} for d in (weights, protocols, details))
    manifest = {
        "run_id": None,
        "suite": config.suite,
        "suite_version": config.suite_version,
        "seed": config.seed,
        "split": config.split,
        "max_images": config.max_images,
        "num_classes": config.num_classes,
        "weights": weights,
        "protocols": protocols,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
    }
    run_dir = distributed.on_main(lambda: _resolve_run_dir(config), ctx)
    manifest["run_id"] = run_dir.name

    def env() -> dict:
        return environment(
            config.command,
            config.seed,
            weights,
            config.suite,
            config.suite_version,
            str(ctx.device),
            ctx.world_size,
            extra={
                "run_id": run_dir.name,
                "inference": spec.to_dict(),
                "config": config.to_dict(),
                "weights": details,
            },
        )

    done = distributed.on_main(lambda: _prepare(config, run_dir, manifest, env()), ctx)
    store = RunStore(run_dir)
    result = RunResult(run_dir=run_dir, results_csv=None, cells=[c.id for c in cells])
    todo = [c for c in cells if c.id not in done]
    result.skipped = [c.id for c in cells if c.id in done]
    if ctx.is_main and not config.quiet:
        print(
            f"run {run_dir}: {len(cells)} cells, {len(result.skipped)} already done, {len(todo)} to run",
            file=sys.stderr,
        )

    def finish(cell: Cell, record: dict[str, Any], label: str) -> None:
        if ctx.is_main:
            store.write_cell({**record, "weights_sha256": weights[cell.model], "finished_at": _now()})
            if not config.quiet:
                t = record["timing"]
                split = " ".join(f"{k} {v:.2f}s" for k, v in t.items() if k != "total")
                print(f"{label}: done in {t['total']:.2f}s {split}", file=sys.stderr)
            if on_cell_finished is not None:
                on_cell_finished(record)
        result.computed.append(cell.id)
        result.timing[cell.id] = record["timing"]

    def fail(cell: Cell, message: str) -> None:
        result.failed[cell.id] = message
        if ctx.is_main:
            print(f"FAILED {message}", file=sys.stderr)

    queue = collections.deque(_group_cells(todo, together))

    def one_at_a_time(retry: list[Cell], what: str) -> None:
        """From here on, one model at a time: unload every model, `retry` first, then the rest of the queue."""
        nonlocal together, queue
        together = False
        slot.release()
        queue = collections.deque(_group_cells(retry + [c for g in queue for c in g], together=False))
        _note_one_at_a_time(what, ctx)

    try:
        done_count = 0
        while queue:
            group = queue.popleft()
            models = runners = probe = records = None  # the last group's references: release() must free them
            others = together and len(config.models) > 1  # other models are loaded beside this group's
            if not together:
                slot.release(keep=[c.model for c in group])
            first = done_count + 1
            done_count += len(group)
            ids = group[0].id if len(group) == 1 else f"{group[0].condition.name} x {len(group)} models"
            label = f"[{first}{'' if len(group) == 1 else f'-{done_count}'}/{len(todo)}] {ids}"
            try:
                models, loaded = [slot.get(cell.model) for cell in group], True
            except torch.OutOfMemoryError:
                models, loaded = None, False
            if distributed.any_failed(not loaded, ctx):  # all ranks skip the group: none waits in a collective alone
                models = None
                if others:
                    done_count -= len(group)
                    one_at_a_time(list(group), f"while loading the models of {ids} beside the run's others")
                    continue
                names = ", ".join(c.model for c in group)
                where = " on another rank" if loaded else ""
                for cell in group:
                    fail(cell, f"CUDA out of memory{where} while loading {names} for {cell.id}, with no other model "
                         "loaded: use a GPU with more memory")  # fmt: skip
                slot.release()
                continue
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    if group[0].kind == "accuracy":
                        runners = [slot.for_inference(cell.model) for cell in group]
                        specs = [spec.resolve(model.meta) for model in models]
                        records = _accuracy_cells(group, runners, specs, config, ctx, label)
                    else:
                        probe = functools.partial(_efficiency_cell, group[0], models[0], config, efficiency)
                        records = [distributed.on_main(probe, ctx)]
                for record in records:
                    if isinstance(record, dict):
                        record["warnings"] = _cell_warnings(caught, record)
            except CellError as exc:  # an efficiency probe that failed
                fail(group[0], str(exc))
                continue
            except torch.OutOfMemoryError:  # an efficiency probe (raised on every rank by on_main)
                models = probe = None
                if others:
                    done_count -= len(group)
                    one_at_a_time(list(group), f"in {ids} with the run's other models loaded")
                    continue
                for cell in group:
                    fail(cell, _oom_message(cell, spec.resolve(slot.models[cell.model].meta)))
                slot.release()
                continue
            # a model that ran out of memory beside the others gets another try alone
            retry = [c for c, r in zip(group, records) if others and isinstance(r, CellError) and r.out_of_memory]
            for cell, record in zip(group, records):
                if cell in retry:
                    continue
                if isinstance(record, CellError):
                    fail(cell, str(record))
                else:
                    item_label = label if len(group) == 1 else f"{label} {cell.model}"
                    finish(cell, record, item_label)
            if retry:
                models = runners = records = None
                done_count -= len(retry)
                one_at_a_time(retry, f"in {', '.join(c.id for c in retry)} with the run's other models loaded")
    except KeyboardInterrupt:
        if ctx.is_main:
            store.gather([c.id for c in cells], config.reference_model, config.suite)
            print(
                f"\ninterrupted: {len(store.finished())} finished cells are kept in {store.cells_dir}. Resume: the "
                f"same command with --out {run_dir} --resume "
                f"(Python: RunConfig(..., run_id={run_dir.name!r}, resume=True)).",
                file=sys.stderr,
            )
        raise
    finally:
        slot.release()
    distributed.barrier(ctx)
    if ctx.is_main:
        result.results_csv = store.gather([c.id for c in cells], config.reference_model, config.suite)
    if result.failed:
        lines = "\n".join(f"  {cid}: {msg}" for cid, msg in result.failed.items())
        raise RunFailed(
            f"{len(result.failed)} of {len(cells)} cells failed (the rest are in {run_dir}):\n{lines}", result
        )
    return result


def _note_one_at_a_time(what: str, ctx: distributed.DistContext) -> None:
    if ctx.is_main:
        print(
            f"note: out of memory on {ctx.device} {what}: going on one model at a time (each condition's images are "
            "then read, and corrupted, once per model)",
            file=sys.stderr,
        )


def _load_together(slot: _ModelSlot, names: Sequence[str], ctx: distributed.DistContext) -> bool:
    """Load every model into the slot; False (on every rank, with the slot emptied) when they do not fit together."""
    try:
        for name in names:
            slot.get(name)
        fits = True
    except torch.OutOfMemoryError:
        fits = False
    if distributed.any_failed(not fits, ctx):
        slot.release()
        return False
    return True


def _warning_text(w: warnings.WarningMessage) -> str:
    return f"{w.category.__name__}: {w.message}"


def _cell_warnings(caught: list[warnings.WarningMessage], record: dict[str, Any]) -> list[str]:
    """What a reader of the report should know about a cell: Python warnings raised while it ran (weights notes,
    library deprecations), those its own model raised when models shared batches (already in `record["warnings"]`),
    and latency measurements whose spread stayed high."""
    out = [*map(_warning_text, caught), *record.get("warnings", [])]
    for row in record.get("rows", []):
        if row.get("noisy") and str(row.get("metric", "")).startswith("latency_median"):
            out.append(f"noisy timing: {row['metric']} at {row.get('resolution')} stayed above the CV threshold")
    return list(dict.fromkeys(out))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.runner --config run.json`: a run described by JSON (RunConfig fields + `conditions`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="JSON file with RunConfig fields and optional 'conditions'")
    args = parser.parse_args(argv)
    data = json.loads(Path(args.config).read_text())
    conds = data.pop("conditions", None)
    data.setdefault("command", [sys.executable, "-m", "segbench.bench.runner", *(argv or sys.argv[1:])])
    result = run(RunConfig.from_dict(data), conds)
    if result.results_csv is not None:
        print(result.results_csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
