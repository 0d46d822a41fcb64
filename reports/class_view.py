"""Per-class views that stay readable with many classes (ADE20K's 150, COCO-Stuff's 171): the worst and the best classes
by the clean IoU of one model, in the figures and tables a page shows; the full table is always a file beside it.

Pandas only, like `reports.tables`: the IoUs are the run's `iou_<class>` rows, only selected and ordered here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

MANY_CLASSES = 30
"""A run of more classes than this shows only its worst and best classes on the page (Cityscapes' 19 all)."""

EXTREMES = 10
"""How many worst and how many best classes such a page shows."""


@dataclass(frozen=True)
class ClassSelection:
    """The classes a page shows of a run with many classes.

    Attributes:
        classes: the worst then the best classes, each block in increasing IoU of `model`.
        worst: how many of `classes` are the worst ones (the rest are the best).
        total: how many classes the run has.
        model: the model whose IoU ranks the classes.
        basis: which of its IoUs ("clean IoU", or "IoU under ACDC fog" for a run without clean per-class rows).
    """

    classes: list[str]
    worst: int
    total: int
    model: str
    basis: str = "clean IoU"

    @property
    def best(self) -> int:
        return len(self.classes) - self.worst

    @property
    def label(self) -> str:
        """The selection in words: "10 worst / 10 best of 150 classes, sorted by clean IoU of segformer-b0 ..."."""
        return (
            f"{self.worst} worst / {self.best} best of {self.total} classes, sorted by {self.basis} of {self.model} "
            "(lowest first)"
        )


def ranking_model(clean: pd.DataFrame, reference: str | None) -> str | None:
    """The model that ranks the classes: the report's reference model when it has clean per-class IoUs, else the
    first model that has them (None: no model has)."""
    if clean.empty:
        return None
    if reference is not None and reference in clean.index and clean.loc[reference].notna().any():
        return reference
    return next((m for m in clean.index if clean.loc[m].notna().any()), None)


def select_classes(clean: pd.DataFrame, model: str | None, k: int = EXTREMES) -> ClassSelection | None:
    """The worst and best `k` classes by `model`'s clean IoU (classes without a value for it are not ranked).

    Args:
        clean: clean per-class IoU (%), models x classes (`tables.class_iou`).
        model: the ranking model (`ranking_model`).
        k: how many worst and how many best.

    Returns:
        None when the run has at most `MANY_CLASSES` classes (every class is shown) or `model` is None.
    """
    total = clean.shape[1]
    if total <= MANY_CLASSES or model is None:
        return None
    values = clean.loc[model].astype(float).dropna()
    ranked = list(values.sort_values(kind="stable").index)  # ties keep the class order
    worst = ranked[: min(k, len(ranked) // 2)]
    best = ranked[max(len(ranked) - k, len(worst)) :]
    return ClassSelection(worst + best, len(worst), total, str(model))


def shown_columns(matrix: pd.DataFrame, selection: ClassSelection | None) -> pd.DataFrame:
    """`matrix` (rows x classes) limited to the selected classes, in their order (all of it without a selection)."""
    return matrix if selection is None else matrix.reindex(columns=selection.classes)
