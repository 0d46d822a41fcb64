"""Plan the cells of a run and the order they run in.

A cell is one unit of work: a model under one condition (accuracy) or the model's efficiency probe. The plan lists
them in results order (per model: its efficiency cell, then its conditions). They run in groups: the efficiency cells
one by one first, then the accuracy cells condition by condition, every model of a condition together (each batch is
read and corrupted once for all models). When the models do not fit on the device together, the `Schedule` turns to
one cell at a time, model by model, so that each model is loaded once.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

from segbench.bench.results.axes import Condition


@dataclass(frozen=True)
class Cell:
    """One unit of work: a model under one condition (accuracy) or the model's efficiency probe."""

    model: str
    kind: str  # "accuracy" | "efficiency"
    condition: Condition | None = None

    @property
    def id(self) -> str:
        return f"{self.model}__{self.condition.name if self.kind == 'accuracy' else 'efficiency'}"


def plan_cells(models: Sequence[str], conds: Sequence[Condition], efficiency: bool) -> list[Cell]:
    """Cells in results order: per model, its efficiency cell first (when the run has a probe), then one accuracy cell
    per condition. (They run in `group_cells` order: efficiency cells, then condition by condition.)"""
    cells = []
    for model in models:
        if efficiency:
            cells.append(Cell(model, "efficiency"))
        cells.extend(Cell(model, "accuracy", c) for c in conds)
    return cells


def group_cells(cells: Sequence[Cell], together: bool = True) -> list[list[Cell]]:
    """The order of work, as groups of cells evaluated together.

    `together`: efficiency cells one by one, first; then the accuracy cells grouped by condition (in first-seen
    order), so that each condition's images are read and corrupted once for all models. Otherwise (the models do not
    fit on the device together): one cell at a time, model by model (its efficiency cell first), so that each model
    is loaded once.
    """
    if not together:
        order = {m: i for i, m in enumerate(dict.fromkeys(c.model for c in cells))}
        return [[c] for c in sorted(cells, key=lambda c: (order[c.model], c.kind == "accuracy"))]
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.kind == "accuracy":
            groups.setdefault(cell.condition.name, []).append(cell)
    return [[c] for c in cells if c.kind != "accuracy"] + list(groups.values())


def group_label(group: Sequence[Cell]) -> str:
    """How progress lines name a group: its cell id, or `<condition> x <n> models`."""
    return group[0].id if len(group) == 1 else f"{group[0].condition.name} x {len(group)} models"


class Schedule:
    """The groups still to run, in order; `alone` re-plans what is left one model at a time."""

    def __init__(self, cells: Sequence[Cell], together: bool = True):
        self.queue = collections.deque(group_cells(cells, together))

    def next(self) -> list[Cell] | None:
        """The next group, or None when all have run."""
        return self.queue.popleft() if self.queue else None

    def alone(self, first: Sequence[Cell]) -> None:
        """From here on one cell at a time, model by model: `first` (cells to try again), then the rest."""
        rest = [c for group in self.queue for c in group]
        self.queue = collections.deque(group_cells([*first, *rest], together=False))
