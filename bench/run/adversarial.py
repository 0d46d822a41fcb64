"""Attack cells: each model under every attack of one budget, and the per-image worst case over those attacks.

A budget's cells run as one pass over the clean images (`bench.run.cells.group_key`). For each batch and model, each
attack (`bench.measure.attacks.attack`, seeded per image) makes adversarial images from the clean ones; they are
predicted as any condition's images are (`predict`: the same protocol, the calibration counter beside the confusion
matrix). The worst case keeps, for each image, the attacked version with the lowest pixel accuracy (the first attack
on ties), as SEA (Croce et al., 2023) reports it, and scores it as a condition of its own (`worst-<budget>`).
A worst-case cell runs every attack of its budget, also those whose own cells are already stored (a resumed run).

Besides the accuracy rows, an attack cell writes what the attack cost: milliseconds per attack step and image
(`ATTACK_STEP_TIME`; the forwards, backwards and projection of every step, over the steps and this rank's images) and,
on a GPU, the peak memory the caching allocator held while attacking (`ATTACK_MEMORY`). Each model's first batch in a
pass is preceded by one untimed attack step, so that allocator and kernel set-up are not counted as attack time.

Gradients are taken at the run's precision: fp32 by default; under fp16/bf16 autocast small gradients can vanish and
the attack weakens, which each cell's warnings say.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from segbench.bench.measure.attacks import attack
from segbench.bench.measure.inference import NonFiniteLogitsError, predict
from segbench.bench.results.axes import WORST, AttackSpec, Condition
from segbench.bench.results.schema import ATTACK_MEMORY, ATTACK_STEP_TIME
from segbench.bench.run import distributed
from segbench.bench.run.accuracy import ConditionPass, oom_message, run_pass
from segbench.bench.run.cells import Cell
from segbench.bench.run.config import InferenceSpec, RunConfig
from segbench.bench.run.oom import is_out_of_memory
from segbench.bench.run.outcome import CellError, user_code_failed, warning_text
from segbench.bench.run.residency import free_device_memory

ATTACK_PHASE = 2
"""The clock key `(cell, ATTACK_PHASE)` of a cell's attack seconds (0 and 1 are the model and metric phases)."""


def precision_warning(precision: str) -> str | None:
    """What an attack cell warns about its gradients' precision (None in fp32)."""
    if precision == "fp32":
        return None
    return (
        f"attack gradients taken under {precision} autocast: small gradients can vanish, which weakens the attack; "
        "published figures use fp32 (--precision fp32)"
    )


def budget_attacks(conditions: Sequence[Condition], budget: AttackSpec) -> tuple[AttackSpec, ...]:
    """The attacks of `conditions` at `budget`'s budget and settings, in order: what its worst case is taken over."""
    key = budget.budget_name()
    return tuple(
        c.attack for c in conditions if c.is_attack and not c.attack.is_worst and c.attack.budget_name() == key
    )


def per_image_accuracy(pred: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Pixel accuracy of each image over its labelled pixels (0 for an image without any), float64 `(B,)`."""
    valid = labels != ignore_index
    correct = ((pred == labels) & valid).flatten(1).sum(1, dtype=torch.float64)
    return correct / valid.flatten(1).sum(1, dtype=torch.float64).clamp_min(1)


class AttackPass(ConditionPass):
    """The cells of one budget (see the module docstring): per model, its attacks' cells and its worst-case cell."""

    def __init__(
        self,
        cells: Sequence[Cell],
        runners: Sequence[nn.Module],
        specs: Sequence[InferenceSpec],
        config: RunConfig,
        ctx: distributed.DistContext,
        sources: Sequence[str | None],
        attacks: Sequence[AttackSpec],
    ):
        super().__init__(cells, runners, specs, config, ctx, sources)
        self.seed, self.ignore_index = config.seed, config.classes.ignore_index
        self.by_model: dict[str, dict[str, int]] = {}  # model -> {attack name: cell index}
        for i, cell in enumerate(self.cells):
            self.by_model.setdefault(cell.model, {})[cell.condition.attack.name] = i
        self.attacks = tuple(attacks)
        self.images = [0] * len(self.cells)  # images this rank attacked, per attack cell
        self.peak_mib = [0.0] * len(self.cells)
        self.attack_seconds = [0.0] * len(self.cells)
        self.warm: set[str] = set()  # models whose first, untimed attack step has run

    def stream(self, loader: torch.utils.data.DataLoader, bar: object) -> torch.Tensor:
        seconds = super().stream(loader, bar)
        self.attack_seconds = [seconds[i, ATTACK_PHASE] for i in range(len(self.cells))]
        return seconds

    def batch(self, images: torch.Tensor, labels: torch.Tensor, ids: Sequence[object]) -> None:
        for cells in self.by_model.values():
            indices = list(cells.values())
            if self.errors[indices[0]] is not None:
                continue
            failure = self._model_batch(cells, images, labels, ids)
            if failure is None:
                continue
            kind, exc = failure
            for i in indices:
                self.errors[i], self.out_of_memory[i] = self._failed(i, kind, exc), kind == "oom"
            if kind == "oom":
                free_device_memory()  # past the except block, whose traceback held the attack's activations

    def _model_batch(
        self, cells: dict[str, int], images: torch.Tensor, labels: torch.Tensor, ids: Sequence[object]
    ) -> tuple[str, Exception] | None:
        """One model's attacks on a batch; None, or how it failed: ("nonfinite" | "oom" | "user", the error)."""
        first = next(iter(cells.values()))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if (text := precision_warning(self.specs[first].precision)) is not None:
                    warnings.warn(text, UserWarning, stacklevel=1)
                self._attack_batch(cells, images, labels, ids)
            for i in cells.values():
                self.notes[i].update(dict.fromkeys(map(warning_text, caught)))
        except NonFiniteLogitsError as exc:
            return "nonfinite", exc
        except Exception as exc:  # out of memory in any form, a user's model raising; else up
            if is_out_of_memory(exc):
                return "oom", exc
            if self.sources[first] is None:
                raise
            return "user", exc
        return None

    def _failed(self, i: int, kind: str, exc: Exception) -> str:
        """The one line cell `i` fails with."""
        cell = self.cells[i]
        if kind == "oom":
            return oom_message(cell, self.specs[i]) + " (an attack holds the graph of one batch of crops)"
        if kind == "user":
            return user_code_failed(cell.id, self.sources[i], exc)
        return f"cell {cell.id}: {exc}"

    def _attack_batch(
        self, cells: dict[str, int], images: torch.Tensor, labels: torch.Tensor, ids: Sequence[object]
    ) -> None:
        first = next(iter(cells.values()))
        runner, spec = self.runners[first], self.specs[first]
        worst = cells.get(WORST)
        todo = self.attacks if worst is not None else [a for a in self.attacks if a.name in cells]
        worst_images, worst_accuracy = None, None
        if self.cells[first].model not in self.warm:  # allocator and kernel set-up stay out of the step time
            attack(
                runner, images, labels, dataclasses.replace(todo[0], steps=1), spec, self.seed, ids, self.ignore_index
            )
            self.warm.add(self.cells[first].model)
        for attack_spec in todo:
            i = cells.get(attack_spec.name)
            t0 = self._mark_attack(i)
            adversarial = attack(runner, images, labels, attack_spec, spec, self.seed, ids, self.ignore_index)
            pred = self._score(i, runner, spec, adversarial, labels, t0)
            if worst is not None:
                accuracy = per_image_accuracy(pred, labels, self.ignore_index)
                if worst_images is None:
                    worst_images, worst_accuracy = adversarial, accuracy
                else:
                    lower = accuracy < worst_accuracy  # strictly: the first attack keeps a tie
                    worst_images = torch.where(lower[:, None, None, None], adversarial, worst_images)
                    worst_accuracy = torch.minimum(accuracy, worst_accuracy)
        if worst is not None:
            self._score(worst, runner, spec, worst_images, labels, None)

    def _mark_attack(self, i: int | None) -> object:
        """The attack's start: its clock mark, and on a GPU a fresh peak-memory count."""
        if i is not None and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self.clock.mark()

    def _score(
        self,
        i: int | None,
        runner: nn.Module,
        spec: InferenceSpec,
        images: torch.Tensor,
        labels: torch.Tensor,
        attack_start: object | None,
    ) -> torch.Tensor:
        """Predict attacked images; for a cell of this group (`i`), count them and file the phases' times."""
        t1 = self.clock.mark()
        if i is not None and attack_start is not None:
            self.clock.add((i, ATTACK_PHASE), attack_start, t1)
            self.images[i] += images.shape[0]
            if self.device.type == "cuda":
                self.peak_mib[i] = max(self.peak_mib[i], torch.cuda.max_memory_allocated(self.device) / 2**20)
        calibration = self.calibration[i] if i is not None else None
        pred = predict(
            runner, images, spec, tuple(labels.shape[-2:]), not self.defer, calibration=calibration, labels=labels
        )
        if i is not None:
            t2 = self.clock.mark()
            self.counters[i].add(pred, labels)
            self.clock.add((i, 0), t1, t2)
            self.clock.add((i, 1), t2, self.clock.mark())
        return pred

    def extra_rows(self, i: int) -> list[tuple[str, float]]:
        """The attack's cost (this rank's): ms per step and image, and the GPU's peak memory; none for the worst."""
        spec = self.cells[i].condition.attack
        if spec.is_worst or not self.images[i]:
            return []
        rows = [(ATTACK_STEP_TIME, 1000 * self.attack_seconds[i] / (spec.steps * self.images[i]))]
        if self.device.type == "cuda":
            rows.append((ATTACK_MEMORY, self.peak_mib[i]))
        return rows


def adversarial_cells(
    cells: Sequence[Cell],
    runners: Sequence[nn.Module],
    specs: Sequence[InferenceSpec],
    config: RunConfig,
    ctx: distributed.DistContext,
    label: str,
    conditions: Sequence[Condition],
    sources: Sequence[str | None] = (),
) -> list[dict | CellError]:
    """Evaluate the attack cells of one budget together (see the module docstring); one record or error per cell.

    `conditions`: the run's conditions, whose attacks at this budget a worst-case cell is taken over.
    """
    attacks = budget_attacks(conditions, cells[0].condition.attack)
    sources = list(sources) or [None] * len(cells)
    work = AttackPass(cells, runners, specs, config, ctx, sources, attacks)
    return run_pass(work, config, ctx, label)
