"""The axes of a benchmark: Cityscapes-C corruptions and their categories, severities, the real adverse-condition
datasets and their conditions, adversarial attacks and their budgets (`AttackSpec`), and `Condition`, the one parser
and name of every condition."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

CATEGORIES: dict[str, tuple[str, ...]] = {
    "blur": ("motion_blur", "defocus_blur", "glass_blur", "gaussian_blur"),
    "noise": ("gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"),
    "digital": ("brightness", "contrast", "saturate", "jpeg_compression"),
    "weather": ("snow", "spatter", "fog", "frost"),
}
"""The four Cityscapes-C corruption categories, in the order of the issue and the paper's tables."""


CORRUPTIONS: tuple[str, ...] = tuple(name for names in CATEGORIES.values() for name in names)
"""The 16 Cityscapes-C corruptions, grouped by category."""


EXTRA_CORRUPTIONS: tuple[str, ...] = ("zoom_blur", "elastic_transform", "pixelate")
"""The module's other corruptions: available by name, not part of Cityscapes-C."""


EXTRA_CATEGORIES: dict[str, str] = {"zoom_blur": "blur", "elastic_transform": "digital", "pixelate": "digital"}


SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


def _check_corruption(name: object) -> str:
    if not isinstance(name, str) or name not in CORRUPTIONS + EXTRA_CORRUPTIONS:
        raise ValueError(
            f"unknown corruption {name!r}; valid corruptions: {', '.join(CORRUPTIONS)} "
            f"(extra, not in Cityscapes-C: {', '.join(EXTRA_CORRUPTIONS)})"
        )
    return name


def _check_severity(severity: object) -> int:
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral) or not 1 <= severity <= 5:
        raise ValueError(f"severity {severity!r} is outside 1-5; valid severities: 1, 2, 3, 4, 5")
    return int(severity)


def category_of(name: str) -> str:
    """Returns the category (blur, noise, digital, weather) of a corruption name; "clean" for "clean"."""
    if name == "clean":
        return "clean"
    _check_corruption(name)
    for category, names in CATEGORIES.items():
        if name in names:
            return category
    return EXTRA_CATEGORIES[name]


DATASETS: dict[str, str] = {
    "cityscapes": "Cityscapes",
    "ade20k": "ADE20K",
    "voc": "Pascal VOC 2012",
    "coco_stuff": "COCO-Stuff 164k",
    "folder": "folder dataset",
}
"""The datasets whose clean images (and their synthetic corruptions) a run scores, by the name runs, rows and
`--data name=PATH` use, with their titles; `bench.data.datasets` registers a reader for each."""


REAL_WORLD: dict[str, tuple[str, ...]] = {
    "acdc": ("fog", "night", "rain", "snow"),
    "dark_zurich": ("night",),
    "foggy_cityscapes": ("beta_0.005", "beta_0.01", "beta_0.02"),
}
"""The real adverse-condition datasets and their conditions ("domains"), all labelled in Cityscapes' 19 classes:
ACDC (Sakaridis et al., ICCV 2021), Dark Zurich (Sakaridis et al., ICCV 2019) and Foggy Cityscapes-DBF (Sakaridis
et al., IJCV 2018 / ECCV 2018), whose domains are the fog densities beta (attenuation coefficient, 1/m)."""


REAL_WORLD_NAMES: dict[str, str] = {
    "acdc": "ACDC",
    "dark_zurich": "Dark Zurich",
    "foggy_cityscapes": "Foggy Cityscapes",
}


REAL_WORLD_CATEGORY = "real-world"
"""The `category` of a real-world condition's rows."""


FOGGY_BETAS: tuple[float, ...] = (0.005, 0.01, 0.02)


INVALID_REGION_NOTE = (
    "pixels marked invalid in the dataset's invIds masks are ignored (set to 255) in addition to the void classes"
)
"""How ACDC's and Dark Zurich's invalid-region masks (`_gt_invIds.png`) are used: `bench.data.realworld` applies them,
the report states it in these words."""


ADVERSARIAL_CATEGORY = "adversarial"
"""The `category` of an attack condition's rows (the attack's name is in the `corruption` column)."""

ATTACKS: tuple[str, ...] = ("pgd", "segpgd", "cospgd")
"""Attack names (`bench.measure.attacks` runs them)."""

WORST = "worst"
"""The per-image worst case over a run's attacks at one budget (as SEA, Croce et al. 2023, reports it): for each image
the attacked image with the lowest pixel accuracy. Its condition is `worst-<budget>`."""

NORMS: tuple[str, ...] = ("linf", "l2")
"""Perturbation norms."""

DEFAULT_EPS: dict[str, tuple[float, ...]] = {
    "linf": (0.25 / 255, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255),
    "l2": (0.25, 0.5, 1.0, 2.0),
}
"""The budget grid taken when attacks are asked for without budgets, per norm ([0, 1] pixel units). L-inf spans
SEA's small budgets (0.25-1/255, where undefended models still differ) to SemSegBench's 8/255; L2 is the radius of the
whole image's perturbation."""

DEFAULT_ATTACK_STEPS = 10


def eps_text(eps: float, norm: str) -> str:
    """A budget as condition names and tables write it: L-inf in grey levels ("8/255", "0.25/255"), L2 as a number."""
    return f"{eps * 255:.6g}/255" if norm == "linf" else f"{eps:.6g}"


def parse_eps(text: object, norm: str = "linf") -> float:
    """A budget from its text: "8/255", "0.25/255", "0.03", or a number; in [0, 1] pixel units.

    Raises:
        ValueError: not a number or fraction, negative, or an L-inf budget above 1 ("8" where "8/255" was meant).
    """
    if isinstance(text, bool):
        raise ValueError(f"eps: {text!r} is not a budget; give e.g. 8/255 (L-inf) or 0.5 (L2)")
    try:
        if isinstance(text, int | float):
            value = float(text)
        else:
            top, _, bottom = str(text).strip().partition("/")
            value = float(top) / float(bottom) if bottom else float(top)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"eps: {text!r} is not a budget; give e.g. 8/255 (L-inf) or 0.5 (L2)") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"eps: the budget must be a finite number >= 0, got {text!r}")
    if norm == "linf" and value > 1:
        raise ValueError(f"eps: an L-inf budget is in [0, 1] pixel units ({value:g}/255, not {value:g}), got {text!r}")
    return value


@dataclass(frozen=True)
class AttackSpec:
    """One attack and its budget.

    Attributes:
        name: one of `ATTACKS`, or `WORST` (the per-image worst case over the run's attacks at this budget).
        norm: "linf" or "l2".
        eps: budget in [0, 1] pixel units: the L-inf radius (8/255 is eight grey levels) or the L2 radius of the
            whole image's perturbation (all pixels and channels). Kept as its name writes it (six significant digits),
            so that a spec and its parsed name are equal.
        steps: gradient steps.
        step_size: step in the same units as `eps`; None takes `2.5 * eps / steps` (see `bench.measure.attacks`).
        random_start: start from a random point of the budget (seeded per image) instead of the clean image.
    """

    name: str = "pgd"
    norm: str = "linf"
    eps: float = 8 / 255
    steps: int = DEFAULT_ATTACK_STEPS
    step_size: float | None = None
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.name not in (*ATTACKS, WORST):
            raise ValueError(f"name: attack {self.name!r} unknown; choose one of {', '.join(ATTACKS)}")
        if self.norm not in NORMS:
            raise ValueError(f"norm: {self.norm!r} unknown; choose one of {', '.join(NORMS)}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, int | float):
            raise ValueError(f"eps: the budget must be a finite number >= 0, got {self.eps!r}")
        object.__setattr__(self, "eps", parse_eps(eps_text(parse_eps(self.eps, self.norm), self.norm), self.norm))
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps: must be an integer >= 1, got {self.steps!r}")
        size = self.step_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int | float) or not 0 < size < 1e9):
            raise ValueError(f"step_size: must be a number > 0 or None (2.5 * eps / steps), got {size!r}")
        if not isinstance(self.random_start, bool):
            raise ValueError(f"random_start: must be True or False, got {self.random_start!r}")

    @property
    def alpha(self) -> float:
        """The step size: `step_size`, or `2.5 * eps / steps`."""
        return 2.5 * self.eps / self.steps if self.step_size is None else float(self.step_size)

    @property
    def is_worst(self) -> bool:
        return self.name == WORST

    def budget_name(self) -> str:
        """The budget and settings, without the attack: `<norm>-<eps>` ("linf-8/255", "l2-0.5"), followed by whatever
        differs from the defaults: "-20steps", "-step0.01", "-nostart"."""
        named = {
            "steps": f"{self.steps}steps",
            "step_size": f"step{self.step_size or 0:.6g}",
            "random_start": "nostart",
        }
        return "-".join([self.norm, eps_text(self.eps, self.norm), *(named[k] for k in self.changed_settings())])

    def changed_settings(self) -> list[str]:
        """The settings that differ from the defaults, in name order: "steps", "step_size", "random_start"."""
        changed = {
            "steps": self.steps != DEFAULT_ATTACK_STEPS,
            "step_size": self.step_size is not None,
            "random_start": not self.random_start,
        }
        return [k for k, v in changed.items() if v]

    def condition_name(self) -> str:
        """Condition name: `<name>-<budget>`, e.g. "pgd-linf-8/255", "cospgd-l2-0.5-20steps-nostart"."""
        return f"{self.name}-{self.budget_name()}"

    def at_budget(self, name: str) -> AttackSpec:
        """The same budget and settings for attack `name` (e.g. `WORST`)."""
        return dataclasses.replace(self, name=name)

    @classmethod
    def parse(cls, text: str) -> AttackSpec:
        """The spec a `condition_name()` names.

        Raises:
            ValueError: not an attack condition name.
        """
        parts = str(text).strip().split("-")
        if len(parts) < 3 or parts[0] not in (*ATTACKS, WORST) or parts[1] not in NORMS:
            raise ValueError(
                f"cannot parse attack condition {text!r}: expected '<attack>-<norm>-<eps>', e.g. pgd-linf-8/255"
            )
        kwargs: dict = {"name": parts[0], "norm": parts[1], "eps": parse_eps(parts[2], parts[1])}
        for part in parts[3:]:
            if part.endswith("steps") and part[:-5].isdigit():
                kwargs["steps"] = int(part[:-5])
            elif part.startswith("step"):
                kwargs["step_size"] = parse_eps(part[4:], "l2")
            elif part == "nostart":
                kwargs["random_start"] = False
            else:
                raise ValueError(f"cannot parse attack condition {text!r}: unknown part {part!r}")
        return cls(**kwargs)


ATTACK_TITLES = {"pgd": "PGD", "segpgd": "SegPGD", "cospgd": "CosPGD", WORST: "worst case"}
NORM_TITLES = {"linf": "L-inf", "l2": "L2"}


def attack_label(attack: AttackSpec) -> str:
    """How a person reads an attack condition: "PGD L-inf 8/255", "worst case L2 0.5 (20 steps, no random start)"."""
    said = {"steps": f"{attack.steps} steps", "step_size": f"step {attack.step_size or 0:.6g}"}
    extras = [said.get(k, "no random start") for k in attack.changed_settings()]
    text = f"{ATTACK_TITLES[attack.name]} {NORM_TITLES[attack.norm]} {eps_text(attack.eps, attack.norm)}"
    return f"{text} ({', '.join(extras)})" if extras else text


def is_attack_name(text: object) -> bool:
    """Whether a condition name names an attack (`<attack>-<norm>-...`)."""
    parts = str(text).strip().split("-")
    return len(parts) >= 3 and parts[0] in (*ATTACKS, WORST) and parts[1] in NORMS


def beta_name(beta: float | str) -> str:
    """A fog density as Foggy Cityscapes writes it in file names: 0.005 -> "0.005", 0.01 -> "0.01"."""
    return f"{float(beta):g}"


def dataset_key(name: str) -> str:
    """A dataset name as the contract spells it: `dark-zurich` and `Dark_Zurich` -> `dark_zurich`."""
    return str(name).strip().lower().replace("-", "_")


def split_condition(text: str) -> tuple[str | None, int | None]:
    """`fog-3` -> (`fog`, 3); `clean`, `efficiency` or anything without a trailing severity -> (None, None).

    Lenient (any name): the reader of results files uses it; `Condition.parse` adds the checks.
    """
    corruption, sep, severity = str(text).strip().rpartition("-")
    if not sep or not corruption or not severity.isdigit():
        return None, None
    return corruption, int(severity)


@dataclass(frozen=True)
class Condition:
    """An evaluation condition: the clean images, one corruption at one severity, one condition of a real
    adverse-condition dataset, or an adversarial attack at one budget on the clean images.

    Attributes:
        corruption: corruption name, or None (clean, real-world or attacked).
        severity: 1-5 for a corruption, 0 otherwise.
        dataset: a `REAL_WORLD` dataset ("acdc", "dark_zurich", "foggy_cityscapes"), or None.
        domain: the dataset's condition ("fog", "night", "beta_0.01", ...) when `dataset` is set.
        attack: the attack and its budget (`AttackSpec`), or None.

    Names: "clean", "<corruption>-<severity>" (e.g. "fog-3"), "<dataset>:<domain>" (e.g. "acdc:night") and
    "<attack>-<norm>-<eps>[-<settings>]" (e.g. "pgd-linf-8/255", "worst-linf-8/255"; `AttackSpec.condition_name`).
    """

    corruption: str | None = None
    severity: int = 0
    dataset: str | None = None
    domain: str | None = None
    attack: AttackSpec | None = None

    def __post_init__(self) -> None:
        if self.attack is not None:
            if not isinstance(self.attack, AttackSpec):
                raise ValueError(f"attack must be an AttackSpec, got {self.attack!r}")
            if self.corruption is not None or self.severity != 0 or self.dataset is not None or self.domain is not None:
                raise ValueError("an attack condition attacks the clean images: no corruption, dataset or domain")
            return
        if self.dataset is not None:
            if self.corruption is not None or self.severity != 0:
                raise ValueError("a real-world condition has no corruption and severity 0")
            dataset = dataset_key(self.dataset)
            if dataset not in REAL_WORLD:
                raise ValueError(
                    f"unknown real-world dataset {self.dataset!r}; valid datasets: {', '.join(REAL_WORLD)}"
                )
            domain = self.domain
            if dataset == "foggy_cityscapes" and domain is not None and not str(domain).startswith("beta_"):
                domain = f"beta_{beta_name(domain)}" if _is_number(domain) else domain
            if domain not in REAL_WORLD[dataset]:
                raise ValueError(
                    f"{REAL_WORLD_NAMES[dataset]} has no condition {self.domain!r}; valid: "
                    f"{', '.join(REAL_WORLD[dataset])}"
                )
            object.__setattr__(self, "dataset", dataset)
            object.__setattr__(self, "domain", domain)
            return
        if self.domain is not None:
            raise ValueError(f"domain {self.domain!r} given without a real-world dataset")
        if self.corruption is None:
            if self.severity != 0:
                raise ValueError(f"a clean condition has severity 0, got {self.severity!r}")
            return
        _check_corruption(self.corruption)
        object.__setattr__(self, "severity", _check_severity(self.severity))

    @classmethod
    def real(cls, dataset: str, domain: str) -> Condition:
        """A real-world condition, e.g. `Condition.real("acdc", "fog")`."""
        return cls(dataset=dataset, domain=domain)

    @classmethod
    def attacked(cls, attack: AttackSpec) -> Condition:
        """An attack condition, e.g. `Condition.attacked(AttackSpec("pgd", "linf", 8 / 255))`."""
        return cls(attack=attack)

    @property
    def is_clean(self) -> bool:
        """The clean images of the run's dataset (neither corrupted, nor real-world, nor attacked)."""
        return self.corruption is None and self.dataset is None and self.attack is None

    @property
    def is_attack(self) -> bool:
        """An adversarial attack (or the worst case over attacks) on the clean images."""
        return self.attack is not None

    @property
    def corruption_column(self) -> str | None:
        """What a row's `corruption` column holds: the corruption, or the attack's name (`WORST` for the worst case)."""
        return self.attack.name if self.attack is not None else self.corruption

    @property
    def severity_column(self) -> int | None:
        """What a row's `severity` column holds: 1-5 for a corruption, 0 for clean, None for real-world and attacks."""
        return None if self.is_real or self.is_attack else self.severity

    @property
    def is_real(self) -> bool:
        """A condition of a real adverse-condition dataset (ACDC, Dark Zurich, Foggy Cityscapes)."""
        return self.dataset is not None

    @property
    def name(self) -> str:
        """ "clean", "<corruption>-<severity>" (e.g. "gaussian_noise-3") or "<dataset>:<domain>" (e.g. "acdc:fog")."""
        if self.dataset is not None:
            return f"{self.dataset}:{self.domain}"
        if self.attack is not None:
            return self.attack.condition_name()
        return "clean" if self.corruption is None else f"{self.corruption}-{self.severity}"

    @property
    def category(self) -> str:
        """ "clean", the corruption's category, "real-world" or "adversarial"."""
        if self.dataset is not None:
            return REAL_WORLD_CATEGORY
        if self.attack is not None:
            return ADVERSARIAL_CATEGORY
        return "clean" if self.corruption is None else category_of(self.corruption)

    @property
    def label(self) -> str:
        """How a person reads the condition: "clean", "fog-3", "ACDC fog", "Foggy Cityscapes beta 0.01",
        "PGD L-inf 8/255"."""
        if self.attack is not None:
            return attack_label(self.attack)
        if self.dataset is None:
            return self.name
        return f"{REAL_WORLD_NAMES[self.dataset]} {str(self.domain).replace('_', ' ')}"

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Parses "clean", "<corruption>-<severity>" (e.g. "fog-2"), "<dataset>:<domain>" (e.g. "acdc:night") or an
        attack's "<attack>-<norm>-<eps>..." (e.g. "pgd-linf-8/255")."""
        text = text.strip()
        if text == "clean":
            return cls()
        if is_attack_name(text):
            return cls(attack=AttackSpec.parse(text))
        if ":" in text:
            dataset, _, domain = text.partition(":")
            return cls(dataset=dataset.strip(), domain=domain.strip())
        corruption, severity = split_condition(text)
        if corruption is None:
            raise ValueError(
                f"cannot parse condition {text!r}: expected 'clean', '<corruption>-<severity>' (e.g. 'fog-2') or "
                "'<dataset>:<condition>' (e.g. 'acdc:night') or '<attack>-<norm>-<eps>' (e.g. 'pgd-linf-8/255')"
            )
        return cls(corruption, severity)

    def __str__(self) -> str:
        return self.name


def _is_number(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def real_condition(name: object) -> Condition | None:
    """The real-world `Condition` a row's condition name stands for, or None (clean, corrupted, a summary name)."""
    if not isinstance(name, str) or ":" not in name:
        return None
    try:
        return Condition.parse(name)
    except ValueError:
        return None


def real_conditions(datasets: Sequence[str] = tuple(REAL_WORLD)) -> tuple[Condition, ...]:
    """Every condition of the given real-world datasets, in `REAL_WORLD` order."""
    keys = [dataset_key(d) for d in datasets]
    unknown = [d for d, k in zip(datasets, keys) if k not in REAL_WORLD]
    if unknown:
        raise ValueError(f"unknown real-world dataset {unknown[0]!r}; valid datasets: {', '.join(REAL_WORLD)}")
    return tuple(Condition.real(d, domain) for d in REAL_WORLD if d in keys for domain in REAL_WORLD[d])


CLEAN = Condition()
"""The clean condition."""


def conditions(
    corruptions: tuple[str, ...] = CORRUPTIONS, severities: tuple[int, ...] = SEVERITIES, clean: bool = True
) -> tuple[Condition, ...]:
    """Returns the conditions of a benchmark: clean first (if asked), then each corruption at each severity."""
    out = [Condition()] if clean else []
    out += [Condition(c, s) for c in corruptions for s in severities]
    return tuple(out)


def attack_grid(
    attacks: Sequence[str] = ATTACKS,
    norm: str = "linf",
    eps: Sequence[float] | None = None,
    steps: int = DEFAULT_ATTACK_STEPS,
    step_size: float | None = None,
    random_start: bool = True,
) -> tuple[Condition, ...]:
    """Attack conditions: each budget (`eps`, default `DEFAULT_EPS[norm]`) x attack, and with two attacks or more the
    per-image worst case at each budget (`WORST`).

    Raises:
        ValueError: a setting `AttackSpec` refuses (the message names its field).
    """
    out: list[Condition] = []
    for value in DEFAULT_EPS[norm] if eps is None else eps:
        specs = [AttackSpec(name, norm, value, steps, step_size, random_start) for name in attacks]
        out += [Condition(attack=s) for s in specs]
        if len(specs) > 1:
            out.append(Condition(attack=specs[0].at_budget(WORST)))
    return tuple(out)
