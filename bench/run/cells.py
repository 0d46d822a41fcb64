"""Plan the cells of a run and the order they run in.

A cell is one unit of work: a model under one condition (accuracy) or the model's efficiency probe. The plan lists
them in results order (per model: its efficiency cell, then its conditions). They run in groups: the efficiency cells
one by one first, then the accuracy cells condition by condition, every model of a condition together (each batch is
read and corrupted once for all models). When the models do not fit on the device together, the `Schedule` turns to
one cell at a time, model by model, so that each model is loaded once.

Attack cells of one budget (every attack, and the per-image worst case over them) form one group: the worst case
needs each image's attacked versions side by side (`bench.run.adversarial`). One model at a time, they stay together
per model.
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


def group_key(cell: Cell) -> str:
    """What an accuracy cell is grouped by: its condition, or for an attack its budget (`AttackSpec.budget_name`)."""
    attack = cell.condition.attack
    return f"attacks at {attack.budget_name()}" if attack is not None else cell.condition.name


def group_cells(cells: Sequence[Cell], together: bool = True) -> list[list[Cell]]:
    """The order of work, as groups of cells evaluated together.

    `together`: efficiency cells one by one, first; then the accuracy cells grouped by condition (in first-seen
    order), so that each condition's images are read and corrupted once for all models. Otherwise (the models do not
    fit on the device together): one cell at a time, model by model (its efficiency cell first), so that each model
    is loaded once.
    """
    if not together:
        order = {m: i for i, m in enumerate(dict.fromkeys(c.model for c in cells))}
        out: list[list[Cell]] = []
        for c in sorted(cells, key=lambda c: (order[c.model], c.kind == "accuracy")):
            last = out[-1][0] if out else None
            joins = last is not None and c.kind == last.kind == "accuracy" and c.model == last.model
            if joins and c.condition.is_attack and last.condition.is_attack and group_key(c) == group_key(last):
                out[-1].append(c)
            else:
                out.append([c])
        return out
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.kind == "accuracy":
            groups.setdefault(group_key(cell), []).append(cell)
    return [[c] for c in cells if c.kind != "accuracy"] + list(groups.values())


def group_label(group: Sequence[Cell]) -> str:
    """How progress lines name a group: its cell id, `<condition> x <n> models`, or for attacks
    `<attacks> at <budget> x <n> models`."""
    if len(group) == 1:
        return group[0].id
    models = len({c.model for c in group})
    name = group[0].condition.name
    if group[0].condition.is_attack:
        names = ",".join(dict.fromkeys(c.condition.attack.name for c in group))
        name = f"{names} at {group[0].condition.attack.budget_name()}"
    return f"{group[0].model} {name}" if models == 1 else f"{name} x {models} models"


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
