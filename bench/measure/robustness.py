"""Robustness scores over per-condition mIoU (pure functions, no I/O).

Input convention: a mapping `{(corruption, severity): miou}` for the corrupted conditions of one model, plus that
model's clean mIoU as a separate number. mIoU values are in percent (0-100), as in the SegFormer and Kamann & Rother
tables; the error of a condition is `100 - mIoU`. Ratios (rPC, CE, mCE, relative mCE) are returned as fractions
(1.0 = as good as the reference); multiply by 100 for the percent figures papers print.

Sources:
    * Per-corruption average over severities: the layout of Kamann & Rother, "Benchmarking the Robustness of
      Semantic Segmentation Models", CVPR 2020, and of the SegFormer paper (Xie et al., NeurIPS 2021), Table 5.
    * mPC and rPC: Michaelis et al., "Benchmarking Robustness in Object Detection: Autonomous Driving when Winter
      is Coming", 2019, Eq. 1-2 (there with AP; here with mIoU).
    * CE, mCE, relative CE and relative mCE: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to
      Common Corruptions and Perturbations", ICLR 2019, Sec. 3 (there with top-1 error; here with 100 - mIoU).
    * Robustness area: segbench's one-number summary of a robustness curve (mIoU against the attack's budget eps,
      from eps = 0, the clean mIoU): the area under it divided by the largest budget, i.e. the curve's mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from segbench.bench.results.axes import CATEGORIES
from segbench.bench.results.schema import CE, MCE, MPC, REL_MCE, RPC

Scores = Mapping[tuple[str, int], float]


def _check(scores: Scores, what: str = "scores") -> None:
    if not scores:
        raise ValueError(f"{what}: no corrupted conditions given")
    for key, value in scores.items():
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)):
            raise ValueError(f"{what}: keys must be (corruption, severity) pairs, got {key!r}")
        _check_value(value, f"{what}[{key!r}]")


def _check_value(value: float, what: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 100.0):
        raise ValueError(f"{what} = {value!r}: mIoU must be a finite percentage in [0, 100]")


def per_corruption(scores: Scores) -> dict[str, float]:
    """mIoU per corruption, averaged over its severities: `mIoU_c = 1/N_s sum_s mIoU_{c,s}`.

    Source: the per-corruption columns of Kamann & Rother (CVPR 2020) and SegFormer Table 5.

    Returns:
        `{corruption: mean mIoU}` in first-seen order.
    """
    _check(scores)
    groups: dict[str, list[float]] = {}
    for (corruption, _), value in scores.items():
        groups.setdefault(corruption, []).append(float(value))
    return {c: sum(v) / len(v) for c, v in groups.items()}


def per_category(scores: Scores, categories: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, float]:
    """mIoU per corruption category (blur, noise, digital, weather): the mean of its corruptions' averages.

    Categories without any measured corruption are left out. A corruption that belongs to no category raises.
    `categories` defaults to `bench.results.axes.CATEGORIES`.
    Source: the category grouping of Hendrycks & Dietterich (ICLR 2019), used by Kamann & Rother (CVPR 2020).
    """
    if categories is None:
        categories = CATEGORIES
    by_corruption = per_corruption(scores)
    known = {c for names in categories.values() for c in names}
    unknown = sorted(set(by_corruption) - known)
    if unknown:
        raise ValueError(f"corruptions {unknown} belong to no category of {sorted(categories)}")
    out = {}
    for category, names in categories.items():
        values = [by_corruption[c] for c in names if c in by_corruption]
        if values:
            out[category] = sum(values) / len(values)
    return out


def mean_pc(scores: Scores) -> float:
    """Mean performance under corruption: `mPC = 1/N_c sum_c 1/N_s sum_s mIoU_{c,s}`.

    The mean over corruptions of the per-corruption average (equal to the mean over all conditions when every
    corruption has the same severities). Source: Michaelis et al. 2019, Eq. 1.
    """
    values = list(per_corruption(scores).values())
    return sum(values) / len(values)


def relative_pc(scores: Scores, clean: float) -> float:
    """Relative performance under corruption: `rPC = mPC / mIoU_clean` (a fraction).

    Source: Michaelis et al. 2019, Eq. 2.
    """
    _check_value(clean, "clean mIoU")
    if clean == 0:
        raise ValueError("clean mIoU is 0: rPC = mPC / clean is undefined")
    return mean_pc(scores) / clean


def _check_reference(scores: Scores, reference: Scores) -> None:
    _check(scores)
    _check(reference, "reference")
    missing = sorted(set(scores) - set(reference))
    if missing:
        raise ValueError(f"the reference model lacks conditions {missing[:5]}{' ...' if len(missing) > 5 else ''}")


def _grouped(scores: Scores) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for corruption, severity in scores:
        out.setdefault(corruption, []).append(severity)
    return out


def corruption_errors(scores: Scores, reference: Scores) -> dict[str, float]:
    """Corruption error per corruption relative to a reference model.

    `CE_c = sum_s E_{c,s} / sum_s E^ref_{c,s}` with the error `E = 100 - mIoU`, summed over the severities measured
    for the model. Source: Hendrycks & Dietterich, ICLR 2019, Sec. 3 (AlexNet is their reference).

    Args:
        scores: the model's `{(corruption, severity): mIoU}`.
        reference: the reference model's mIoU on (at least) the same conditions.
    """
    _check_reference(scores, reference)
    out = {}
    for corruption, severities in _grouped(scores).items():
        err = sum(100.0 - scores[corruption, s] for s in severities)
        ref = sum(100.0 - reference[corruption, s] for s in severities)
        if ref == 0:
            raise ValueError(f"reference error on {corruption} is 0 (mIoU 100 at every severity): CE undefined")
        out[corruption] = err / ref
    return out


def mean_corruption_error(scores: Scores, reference: Scores) -> float:
    """mCE: the mean of `CE_c` over corruptions. Source: Hendrycks & Dietterich, ICLR 2019, Sec. 3."""
    values = list(corruption_errors(scores, reference).values())
    return sum(values) / len(values)


def relative_corruption_errors(
    scores: Scores, clean: float, reference: Scores, reference_clean: float
) -> dict[str, float]:
    """Relative corruption error per corruption: the degradation relative to the reference's degradation.

    `relCE_c = sum_s (E_{c,s} - E_clean) / sum_s (E^ref_{c,s} - E^ref_clean)` with `E = 100 - mIoU`.
    Source: Hendrycks & Dietterich, ICLR 2019, Sec. 3 ("Relative mCE").
    """
    _check_reference(scores, reference)
    _check_value(clean, "clean mIoU")
    _check_value(reference_clean, "reference clean mIoU")
    out = {}
    for corruption, severities in _grouped(scores).items():
        drop = sum(clean - scores[corruption, s] for s in severities)  # (100 - m_cs) - (100 - m_clean)
        ref = sum(reference_clean - reference[corruption, s] for s in severities)
        if ref == 0:
            raise ValueError(f"the reference model does not degrade on {corruption}: relative CE undefined")
        out[corruption] = drop / ref
    return out


def relative_mce(scores: Scores, clean: float, reference: Scores, reference_clean: float) -> float:
    """Relative mCE: the mean of `relCE_c` over corruptions. Source: Hendrycks & Dietterich, ICLR 2019, Sec. 3."""
    values = list(relative_corruption_errors(scores, clean, reference, reference_clean).values())
    return sum(values) / len(values)


def summary(
    scores: Scores,
    clean: float | None = None,
    reference: Scores | None = None,
    reference_clean: float | None = None,
    categories: Mapping[str, tuple[str, ...]] | None = None,
) -> dict[str, float]:
    """All scores that the inputs allow, flat: `mPC`, `rPC`, `mCE`, `rel_mCE`, `corruption/<c>`, `category/<k>`,
    `CE/<c>`, `rel_CE/<c>`. rPC needs `clean`; CE and mCE need `reference`; relative ones need both cleans too."""
    out = {MPC: mean_pc(scores)}
    out.update({f"corruption/{c}": v for c, v in per_corruption(scores).items()})
    out.update({f"category/{k}": v for k, v in per_category(scores, categories).items()})
    if clean is not None:
        out[RPC] = relative_pc(scores, clean)
    if reference is not None:
        out[MCE] = mean_corruption_error(scores, reference)
        out.update({f"{CE}/{c}": v for c, v in corruption_errors(scores, reference).items()})
        if clean is not None and reference_clean is not None:
            out[REL_MCE] = relative_mce(scores, clean, reference, reference_clean)
            rel = relative_corruption_errors(scores, clean, reference, reference_clean)
            out.update({f"rel_CE/{c}": v for c, v in rel.items()})
    return out


def robustness_area(clean: float, by_budget: Mapping[float, float]) -> float:
    """The mean mIoU over budgets 0 to the largest measured, by the trapezoid rule through `(0, clean)` and each
    `(eps, mIoU)`: 100 when no budget moves the model, 0 when every budget (and clean) scores 0. Percent.

    Raises:
        ValueError: no budget above 0, or an mIoU outside [0, 100].
    """
    _check_value(clean, "clean")
    for eps, value in by_budget.items():
        _check_value(value, f"by_budget[{eps!r}]")
    points = sorted({0.0: clean, **{float(e): float(v) for e, v in by_budget.items() if e > 0}}.items())
    if len(points) < 2:
        raise ValueError("by_budget: no budget above 0 given")
    area = sum((e1 - e0) * (v0 + v1) / 2 for (e0, v0), (e1, v1) in zip(points, points[1:]))
    return area / points[-1][0]


def drop(clean: float, value: float) -> float:
    """The drop from clean in percentage points: `clean mIoU - mIoU under the condition` (positive: worse)."""
    _check_value(clean, "clean mIoU")
    _check_value(value, "mIoU")
    return clean - value


def correlation(x: list[float], y: list[float]) -> dict[str, float | int | None]:
    """Pearson's r and Spearman's rank correlation of paired samples, with the sample size.

    Computed by pandas (`Series.corr`; Spearman ranks ties by their average rank, as `scipy.stats.spearmanr` does).
    Fewer than three pairs, or a side without spread, gives None for both: no correlation can be read from them.

    Returns:
        `{"n": pairs, "pearson": r or None, "spearman": rho or None}`.
    """
    import pandas as pd

    if len(x) != len(y):
        raise ValueError(f"correlation of {len(x)} against {len(y)} values: give one pair per model")
    n = len(x)
    out: dict[str, float | int | None] = {"n": n, "pearson": None, "spearman": None}
    if n < 3:
        return out
    a, b = pd.Series(x, dtype=float), pd.Series(y, dtype=float)
    for method in ("pearson", "spearman"):
        value = a.corr(b, method=method)
        out[method] = float(value) if math.isfinite(value) else None
    return out
