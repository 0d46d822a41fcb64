"""The accuracy loop: the cells of one condition, evaluated together on each batch.

The (sharded) dataset of the condition streams through a DataLoader once; each batch goes through every model in
turn (`bench.measure.inference.predict`), so a corruption computed on the fly costs the same for one model as for ten.
Each model's predictions go into its own confusion matrix on the device, all-reduced across ranks at the end. A model
that fails (NaN/inf logits, out of memory, an exception raised by a user's model) drops out of the loop and the
others go on. On a GPU nothing in the loop
waits for the device (`defers_syncs`): NaN checks and timings are read once, when the condition ends.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from segbench.bench.data.corruptions import warm_up
from segbench.bench.measure.calibration import CalibrationCounter
from segbench.bench.measure.clock import Clock
from segbench.bench.measure.inference import NonFiniteLogitsError, nonfinite_message, predict
from segbench.bench.measure.latency import strict_fp32, tf32_flags
from segbench.bench.measure.metrics import ConfusionCounter, accuracy_rows
from segbench.bench.results.axes import CLEAN, Condition
from segbench.bench.results.schema import CALIBRATION_KEY, MIOU, make_row
from segbench.bench.run import distributed
from segbench.bench.run.cells import Cell
from segbench.bench.run.config import InferenceSpec, RunConfig
from segbench.bench.run.oom import is_out_of_memory
from segbench.bench.run.outcome import CellError, user_code_failed, warning_text
from segbench.bench.run.residency import free_device_memory
from segbench.bench.run.stop import check_stop


def defers_syncs(device: torch.device) -> bool:
    """Whether an accuracy cell's loop leaves every check and timing on the device until the cell ends (a GPU: a host
    sync per batch would idle it between batches). On the CPU every op has finished when it returns anyway."""
    return device.type != "cpu"


def oom_message(cell: Cell, spec: InferenceSpec) -> str:
    """What a cell that ran out of memory says: the settings that set its memory, and what to change."""
    if spec.mode == "whole":
        crop = "whole-image inference"
    else:
        crop = f"crop {spec.crop[0]}x{spec.crop[1]}" if spec.crop else "the model's default crop"
    return (
        f"CUDA out of memory in cell {cell.id} (batch size {spec.batch_size}, {crop}, precision {spec.precision}): "
        "lower the batch size (--batch-size), use slide inference with a smaller crop, or fp16/bf16 precision"
    )


class _WatchFinite(nn.Module):
    """`model`, noting in the device flag `nonfinite` whether any output had a NaN or inf, without a host sync."""

    def __init__(self, model: nn.Module, nonfinite: torch.Tensor):
        super().__init__()
        self.model, self.meta, self.nonfinite = model, model.meta, nonfinite

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.nonfinite.logical_or_(~torch.isfinite(out).all())
        return out


def image_share(n: int, config: RunConfig, ctx: distributed.DistContext) -> range:
    """The indices of `n` images this process evaluates: its rank's share, or with `config.shard` "I/N" share I of N
    (the one torchrun's rank I of N takes; a shard runs in one process)."""
    index, count = config.shard_part or (ctx.rank, ctx.world_size)
    return distributed.shard_indices(n, index, count)


def _collate(items: list[dict]) -> dict:
    shapes = {tuple(it["image"].shape) for it in items}
    if len(shapes) > 1:
        raise ValueError(f"images in one batch differ in size {sorted(shapes)}; use batch_size 1 for such data")
    return {
        "image": torch.stack([it["image"] for it in items]),
        "label": torch.stack([it["label"] for it in items]),
        "id": [it["id"] for it in items],
    }


def _loader(
    condition: Condition, batch_size: int, config: RunConfig, ctx: distributed.DistContext
) -> tuple[torch.utils.data.DataLoader, int]:
    """This rank's shard of the condition's images, as a DataLoader; returns (loader, number of images). An attack
    condition reads the clean images (the pass attacks them)."""
    from segbench.bench.data.datasets import get_dataset
    from segbench.bench.data.loading import SegmentationDataset
    from segbench.bench.data.realworld import RealWorldDataset

    if condition.is_real:
        root = config.root_of(condition.dataset)
        dataset = RealWorldDataset(root, condition, split=config.split, max_images=config.max_images)
    else:
        root = config.root_of(config.dataset)
        dataset = SegmentationDataset(
            get_dataset(config.dataset, root),
            root,
            split=config.split,
            max_images=config.max_images,
            condition=CLEAN if condition.is_attack else condition,
            base_seed=config.seed,
            corrupted_root=config.corrupted_root,
        )
    if not condition.is_real and not dataset.dataset.same_size:
        batch_size = 1  # images of several sizes: one per batch (the plan says so in its notes)
    shard = image_share(len(dataset), config, ctx)
    if config.workers > 0 and condition.corruption is not None and config.corrupted_root is None:
        warm_up(condition.corruption, condition.severity)  # inherited by the forked workers
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, shard),
        batch_size=batch_size,
        shuffle=False,
        num_workers=config.workers,
        collate_fn=_collate,
        pin_memory=ctx.device.type == "cuda",
    )
    return loader, len(shard)


class ConditionPass:
    """The models of one condition on its batches: per cell a confusion counter, model and metric seconds, the first
    error, and the warnings its model raised (in order, without repeats)."""

    def __init__(
        self,
        cells: Sequence[Cell],
        runners: Sequence[nn.Module],
        specs: Sequence[InferenceSpec],
        config: RunConfig,
        ctx: distributed.DistContext,
        sources: Sequence[str | None],
    ):
        self.cells, self.specs, self.device = list(cells), list(specs), ctx.device
        self.sources = list(sources)  # each model's user source (its exceptions fail its cell), None: a registry model
        self.defer = defers_syncs(ctx.device)  # NaN checks off the host too: one flag per cell, read at the end
        self.nonfinite = [torch.zeros((), dtype=torch.bool, device=ctx.device) for _ in cells] if self.defer else []
        self.runners = [_WatchFinite(r, f) for r, f in zip(runners, self.nonfinite)] if self.defer else list(runners)
        classes = config.classes
        self.counters = [ConfusionCounter(classes.num_classes, classes.ignore_index, ctx.device) for _ in cells]
        self.calibration = [CalibrationCounter(classes.ignore_index, ctx.device) for _ in cells]
        self.clock = Clock(ctx.device)  # model and metric seconds per cell; on a GPU read once per condition
        self.data_seconds = 0.0  # the wait for each batch, shared by the cells
        self.tf32: dict[str, bool] = {}  # the TF32 settings the pass ran under (`bench.measure.latency.tf32_flags`)
        self.errors: list[str | None] = [None] * len(cells)
        self.out_of_memory = [False] * len(cells)
        self.notes: list[dict[str, None]] = [{} for _ in cells]

    def stream(self, loader: torch.utils.data.DataLoader, bar: Any) -> torch.Tensor:
        """Every batch through every model still in the loop; returns model and metric seconds by (cell, phase)."""
        t = time.perf_counter()
        for batch in loader:
            check_stop()
            self.data_seconds += time.perf_counter() - t
            images = batch["image"].to(self.device, non_blocking=True)
            labels = batch["label"].to(self.device, non_blocking=True)
            self.batch(images, labels, batch["id"])
            bar.update(len(batch["id"]))
            t = time.perf_counter()
        seconds = self.clock.seconds()  # on a GPU: the one wait for the device, for the whole condition
        for i, (runner, spec) in enumerate(zip(self.runners, self.specs)):
            if self.defer and self.errors[i] is None and bool(self.nonfinite[i]):
                self.errors[i] = f"cell {self.cells[i].id}: {nonfinite_message(runner, spec)}"
        return seconds

    def batch(self, images: torch.Tensor, labels: torch.Tensor, ids: Sequence[object]) -> None:
        """One batch through every cell still in the loop."""
        for i in range(len(self.cells)):
            if self.errors[i] is None:
                self._predict(i, images, labels)

    def extra_rows(self, i: int) -> list[tuple[str, float]]:
        """(metric, value) rows cell `i` adds beside its accuracy rows (none here; an attack pass adds its cost)."""
        return []

    def _predict(self, i: int, images: torch.Tensor, labels: torch.Tensor) -> None:
        cell, spec = self.cells[i], self.specs[i]
        t0 = self.clock.mark()
        try:
            with warnings.catch_warnings(record=True) as caught:  # each model's warnings go to its own cell
                warnings.simplefilter("always")
                out_size = tuple(labels.shape[-2:])
                pred = predict(
                    self.runners[i],
                    images,
                    spec,
                    out_size=out_size,
                    check_finite=not self.defer,
                    calibration=self.calibration[i],
                    labels=labels,
                )
            self.notes[i].update(dict.fromkeys(map(warning_text, caught)))
        except NonFiniteLogitsError as exc:
            self.errors[i] = f"cell {cell.id}: {exc}"
            return
        except Exception as exc:  # out of memory in any form (cuBLAS, cuDNN...), a user's model raising; else up
            if is_out_of_memory(exc):
                self.errors[i], self.out_of_memory[i] = oom_message(cell, spec), True
            elif self.sources[i] is not None:
                self.errors[i] = user_code_failed(cell.id, self.sources[i], exc)
                return
            else:
                raise
        if self.out_of_memory[i]:
            free_device_memory()  # here, past the except block: its traceback held the failed forward's activations
            return
        t1 = self.clock.mark()
        self.counters[i].add(pred, labels)
        self.clock.add((i, 0), t0, t1)
        self.clock.add((i, 1), t1, self.clock.mark())


def accuracy_cells(
    cells: Sequence[Cell],
    runners: Sequence[nn.Module],
    specs: Sequence[InferenceSpec],
    config: RunConfig,
    ctx: distributed.DistContext,
    label: str,
    sources: Sequence[str | None] = (),
) -> list[dict[str, Any] | CellError]:
    """Evaluate the accuracy cells of one condition together (see the module docstring).

    `sources`: each model's user source (`bench.run.outcome.user_source`): an exception its forward raises fails its
    cell alone; a registry model's exception stops the run (it is segbench's own bug).

    Returns one record per cell, or the `CellError` that failed it. Cells share the data time and the total wall
    time; the model and metric times are each model's own.
    """
    work = ConditionPass(cells, runners, specs, config, ctx, list(sources) or [None] * len(cells))
    return run_pass(work, config, ctx, label)


def run_pass(
    work: ConditionPass, config: RunConfig, ctx: distributed.DistContext, label: str
) -> list[dict[str, Any] | CellError]:
    """Stream the pass's condition through it, reduce each cell over the ranks; one record (or error) per cell."""
    from tqdm import tqdm

    start = time.perf_counter()
    loader, shard_size = _loader(work.cells[0].condition, work.specs[0].batch_size, config, ctx)
    bar = tqdm(total=shard_size, desc=label, unit="img", disable=config.quiet or not ctx.is_main, leave=False)
    try:
        with strict_fp32():  # "fp32" is IEEE fp32 (no TF32 convolutions on Ampere and later), as in the latency cells
            seconds = work.stream(loader, bar)
            work.tf32 = tf32_flags()
    finally:
        bar.close()
    count = distributed.all_reduce_(torch.tensor([shard_size], dtype=torch.int64, device=ctx.device), ctx)
    total = torch.tensor([time.perf_counter() - start], dtype=torch.float64, device=ctx.device)
    total_seconds = float(distributed.all_reduce_(total, ctx, "max").item())
    out: list[dict[str, Any] | CellError] = []
    for i, cell in enumerate(work.cells):
        if distributed.any_failed(work.errors[i] is not None, ctx):
            message = work.errors[i] or f"cell {cell.id} failed on another rank (see that rank's log)"
            out.append(CellError(message, distributed.any_failed(work.out_of_memory[i], ctx)))
            continue
        cm = distributed.all_reduce_(work.counters[i].matrix(), ctx).cpu()
        _reduce_calibration(work.calibration[i], ctx)
        phases = torch.tensor([seconds[i, 0], work.data_seconds, seconds[i, 1]], dtype=torch.float64)
        split = distributed.all_reduce_(phases.to(ctx.device), ctx).cpu()  # summed over ranks
        timing = {"total": total_seconds, "model": float(split[0]), "data": float(split[1]), "metric": float(split[2])}
        out.append(_record(work, i, cm, timing, int(count.item()), config, ctx))
    return out


def _reduce_calibration(counter: CalibrationCounter, ctx: distributed.DistContext) -> None:
    """Sum a cell's calibration counts and sums over the ranks, in place."""
    for name in counter.TENSORS:
        setattr(counter, name, distributed.all_reduce_(getattr(counter, name), ctx).cpu())


def calibration_rows(rows: list[dict[str, Any]], counter: CalibrationCounter) -> list[dict[str, Any]]:
    """ECE, NLL and Brier rows placed as the cell's mIoU row (`bench.measure.calibration`)."""
    return [make_row(name, value, **place(rows)) for name, value in counter.values().items()]


def place(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The columns that place a cell's rows (those of its mIoU row)."""
    place = next(r for r in rows if r["metric"] == MIOU)
    return {k: place[k] for k in ("model", "suite", "condition", "corruption", "category", "severity")}


def _record(
    work: ConditionPass,
    i: int,
    cm: torch.Tensor,
    timing: dict[str, float],
    num_images: int,
    config: RunConfig,
    ctx: distributed.DistContext,
) -> dict[str, Any]:
    """The stored record of cell `i`: its confusion matrix, tidy rows, timing and where it ran."""
    cell, spec = work.cells[i], work.specs[i]
    rows = accuracy_rows(cell.model, config.suite, cell.condition, cm, config.classes, timing, num_images)
    return {
        "cell": cell.id,
        "kind": "accuracy",
        "model": cell.model,
        "condition": cell.condition.name,
        "num_images": num_images,
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "inference": spec.to_dict(),
        "tf32": work.tf32,  # as the cell ran: off (strict fp32), whatever the process default
        "timing": timing,
        "shared_with": [c.id for c in work.cells if c is not cell],
        "warnings": list(work.notes[i]),  # completed by the run loop (`cell_warnings`)
        "class_names": list(config.classes.names),
        "confusion_matrix": cm.tolist(),
        CALIBRATION_KEY: work.calibration[i].to_dict(),
        "rows": rows
        + calibration_rows(rows, work.calibration[i])
        + [make_row(name, value, **place(rows)) for name, value in work.extra_rows(i)],
    }
