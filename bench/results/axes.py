"""The axes of a benchmark: Cityscapes-C corruptions and their categories, severities, the real adverse-condition
datasets and their conditions, and `Condition`, the one parser and name of every condition."""

from __future__ import annotations

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
    """An evaluation condition: clean Cityscapes, one Cityscapes-C corruption at one severity, or one condition of a
    real adverse-condition dataset.

    Attributes:
        corruption: corruption name, or None (clean or real-world).
        severity: 1-5 for a corruption, 0 otherwise.
        dataset: a `REAL_WORLD` dataset ("acdc", "dark_zurich", "foggy_cityscapes"), or None.
        domain: the dataset's condition ("fog", "night", "beta_0.01", ...) when `dataset` is set.

    Names: "clean", "<corruption>-<severity>" (e.g. "fog-3") and "<dataset>:<domain>" (e.g. "acdc:night").
    """

    corruption: str | None = None
    severity: int = 0
    dataset: str | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
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

    @property
    def is_clean(self) -> bool:
        """Clean Cityscapes (neither corrupted nor from a real-world dataset)."""
        return self.corruption is None and self.dataset is None

    @property
    def is_real(self) -> bool:
        """A condition of a real adverse-condition dataset (ACDC, Dark Zurich, Foggy Cityscapes)."""
        return self.dataset is not None

    @property
    def name(self) -> str:
        """ "clean", "<corruption>-<severity>" (e.g. "gaussian_noise-3") or "<dataset>:<domain>" (e.g. "acdc:fog")."""
        if self.dataset is not None:
            return f"{self.dataset}:{self.domain}"
        return "clean" if self.corruption is None else f"{self.corruption}-{self.severity}"

    @property
    def category(self) -> str:
        """ "clean", the corruption's category, or "real-world"."""
        if self.dataset is not None:
            return REAL_WORLD_CATEGORY
        return "clean" if self.corruption is None else category_of(self.corruption)

    @property
    def label(self) -> str:
        """How a person reads the condition: "clean", "fog-3", "ACDC fog", "Foggy Cityscapes beta 0.01"."""
        if self.dataset is None:
            return self.name
        return f"{REAL_WORLD_NAMES[self.dataset]} {str(self.domain).replace('_', ' ')}"

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Parses "clean", "<corruption>-<severity>" (e.g. "fog-2") or "<dataset>:<domain>" (e.g. "acdc:night")."""
        text = text.strip()
        if text == "clean":
            return cls()
        if ":" in text:
            dataset, _, domain = text.partition(":")
            return cls(dataset=dataset.strip(), domain=domain.strip())
        corruption, severity = split_condition(text)
        if corruption is None:
            raise ValueError(
                f"cannot parse condition {text!r}: expected 'clean', '<corruption>-<severity>' (e.g. 'fog-2') or "
                "'<dataset>:<condition>' (e.g. 'acdc:night')"
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
