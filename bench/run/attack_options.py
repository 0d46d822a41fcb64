"""The attack options of a run (`--attacks`, `--norm`, `--eps`, `--attack-steps`, `--attack-step-size`,
`--no-random-start`): their parsers, and the attack conditions they make of a suite's (`select_attacks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segbench.bench.results.axes import (
    ATTACKS,
    DEFAULT_ATTACK_STEPS,
    DEFAULT_EPS,
    NORMS,
    Condition,
    attack_grid,
    parse_eps,
)


class AttackOptionError(ValueError):
    """A bad attack option: `field` names the `RunConfig` field, `problem` says what is wrong and what to do."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def _items(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Sequence):
        return list(value)
    raise AttackOptionError(field, f"expected a comma list or a list, got {value!r}")


def parse_attacks(value: Any) -> tuple[str, ...]:
    """`pgd,segpgd,cospgd` (or a list) as attack names, each known and named once."""
    names = [str(v).strip().lower() for v in _items(value, "attacks")]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise AttackOptionError("attacks", f"{unknown[0]!r} unknown; choose from {', '.join(ATTACKS)}")
    if len(set(names)) < len(names):
        raise AttackOptionError("attacks", f"an attack is named twice in {', '.join(names)}")
    return tuple(names)


def parse_norm(value: Any) -> str | None:
    """`linf` or `l2` (None: the suite's, else linf)."""
    if value is None:
        return None
    norm = str(value).strip().lower().replace("-", "")
    if norm not in NORMS:
        raise AttackOptionError("norm", f"{value!r} unknown; choose linf or l2")
    return norm


def parse_eps_list(value: Any) -> tuple[float, ...]:
    """`0.25/255,1/255,8/255` or `0.5,1` (or a list of numbers and such texts) as budgets in [0, 1] pixel units,
    sorted and without repeats. The L-inf bound (at most 1) is checked once the norm is known (`select_attacks`)."""
    try:
        values = sorted({parse_eps(v, "l2") for v in _items(value, "eps")})
    except ValueError as e:
        raise AttackOptionError("eps", str(e).removeprefix("eps: ")) from None
    return tuple(values)


def parse_steps(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AttackOptionError("attack_steps", f"must be an integer >= 1, got {value!r}")
    return value


def parse_step_size(value: Any) -> float | None:
    if value is None:
        return None
    try:
        size = parse_eps(value, "l2")
    except ValueError:
        size = -1.0
    if size <= 0:
        raise AttackOptionError("attack_step_size", f"must be a number > 0 such as 0.01 or 1/255, got {value!r}")
    return size


def select_attacks(
    suite_conditions: Sequence[Condition],
    attacks: tuple[str, ...] = (),
    norm: str | None = None,
    eps: tuple[float, ...] = (),
    steps: int | None = None,
    step_size: float | None = None,
    random_start: bool = True,
) -> tuple[Condition, ...]:
    """The attack conditions of a run: the suite's, unless an option is given; then each budget x attack (the
    options, else the suite's, else `DEFAULT_EPS` and `DEFAULT_ATTACK_STEPS`), and with two attacks or more the
    per-image worst case at each budget.

    Raises:
        AttackOptionError: budgets or settings given without attacks, or an L-inf budget above 1.
    """
    base = [c.attack for c in suite_conditions if c.is_attack]
    given = {"attacks": attacks, "norm": norm, "eps": eps, "attack_steps": steps, "attack_step_size": step_size}
    if not random_start:
        given["random_start"] = True
    if not any(v not in (None, ()) for v in given.values()):
        return tuple(c for c in suite_conditions if c.is_attack)
    names = attacks or tuple(dict.fromkeys(a.name for a in base if not a.is_worst))
    if not names:
        field = next(k for k, v in given.items() if v not in (None, ()))
        raise AttackOptionError(
            field, "given without attacks: add --attacks pgd,segpgd,cospgd (or a suite with attacks)"
        )
    first = base[0] if base else None
    norm = norm or (first.norm if first else "linf")
    same_norm = [a for a in base if a.norm == norm]
    budgets = eps or tuple(sorted({a.eps for a in same_norm})) or DEFAULT_EPS[norm]
    try:
        return attack_grid(
            names,
            norm,
            budgets,
            steps or (first.steps if first else DEFAULT_ATTACK_STEPS),
            step_size if step_size is not None else (first.step_size if first else None),
            random_start and (first.random_start if first else True),
        )
    except ValueError as e:
        field, _, problem = str(e).partition(": ")
        field = {"steps": "attack_steps", "step_size": "attack_step_size"}.get(field, field)
        raise AttackOptionError(field, problem) from None
