"""Adversarial summaries from tidy rows: per model the mIoU at each attack budget (the worst case over the run's
attacks) and the robustness area of each attack's curve (`bench.measure.robustness.robustness_area`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from segbench.bench.measure import robustness
from segbench.bench.results.axes import ADVERSARIAL_CATEGORY, WORST, AttackSpec, is_attack_name
from segbench.bench.results.schema import ADV_AREA, ADV_MIOU, MIOU, make_row

AREA_PREFIX = "area-"
"""The condition of a robustness-area row: `area-<largest budget>` (e.g. "area-linf-8/255": over 0 to 8/255)."""


def attack_scores(rows: Iterable[Mapping[str, Any]], model: str) -> dict[AttackSpec, float]:
    """A model's mIoU per attack condition (the worst case included), from tidy rows; a condition stored twice keeps
    its last value."""
    out: dict[AttackSpec, float] = {}
    for r in rows:
        if r["model"] != model or r["metric"] != MIOU or not is_attack_name(r["condition"]):
            continue
        value = r.get("value")
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[AttackSpec.parse(r["condition"])] = float(value)
    return out


def _settings(spec: AttackSpec) -> str:
    return spec.budget_name().split("-", 2)[-1] if spec.budget_name().count("-") >= 2 else ""


def budget_scores(scores: Mapping[AttackSpec, float]) -> dict[AttackSpec, float]:
    """The mIoU at each budget (as a `WORST` spec): the worst-case row where the run has one, else the lowest
    attack's (one attack: its own)."""
    out: dict[AttackSpec, float] = {}
    for spec, value in scores.items():
        budget = spec.at_budget(WORST)
        if spec.is_worst:
            out[budget] = value
        elif budget not in scores:
            out[budget] = min(out.get(budget, value), value)
    return out


def curves(scores: Mapping[AttackSpec, float]) -> dict[tuple[str, str, str], dict[float, float]]:
    """`{(attack, norm, settings): {eps: mIoU}}`: each attack's (and the worst case's) curve over its budgets,
    `settings` being the budget name's part after eps ("20steps-nostart", or "")."""
    out: dict[tuple[str, str, str], dict[float, float]] = {}
    for spec, value in scores.items():
        out.setdefault((spec.name, spec.norm, _settings(spec)), {})[spec.eps] = value
    return out


def adversarial_summary(
    rows: Sequence[Mapping[str, Any]], model: str, suite: str, clean: float | None
) -> list[dict[str, Any]]:
    """`ADV_MIOU` per budget (condition: the budget's name, e.g. "linf-8/255"; corruption: "worst") and `ADV_AREA`
    per curve (condition `area-<largest budget>`; corruption: the attack or "worst"), when there is a clean mIoU."""
    scores = attack_scores(rows, model)
    keys = {"model": model, "suite": suite, "category": ADVERSARIAL_CATEGORY, "reference": None}
    out = [
        make_row(ADV_MIOU, value, condition=spec.budget_name(), corruption=WORST, **keys)
        for spec, value in budget_scores(scores).items()
    ]
    if clean is None:
        return out
    for (name, norm, settings), curve in curves(scores).items():
        if not any(eps > 0 for eps in curve):
            continue
        top = max(curve)
        largest = next(s for s in scores if (s.name, s.norm, _settings(s)) == (name, norm, settings) and s.eps == top)
        area = robustness.robustness_area(clean, curve)
        out.append(make_row(ADV_AREA, area, condition=AREA_PREFIX + largest.budget_name(), corruption=name, **keys))
    return out
