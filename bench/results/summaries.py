"""The summaries derived from tidy rows: robustness (mPC, rPC, mCE; formulas in `bench.measure.robustness`), real
world (each condition's drop from clean), deployment (each variant's accuracy delta from eager fp32 and speed-up) and
closeness to the hardware (each model's GMAC/s and its share of the machine's GEMM peak)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segbench.bench.measure import robustness
from segbench.bench.results.adversarial import adversarial_summary
from segbench.bench.results.axes import (
    CATEGORIES,
    REAL_WORLD,
    REAL_WORLD_CATEGORY,
    REAL_WORLD_NAMES,
    category_of,
    real_condition,
)
from segbench.bench.results.schema import (
    ACHIEVED_GMACS,
    CE,
    DELTA_MIOU,
    DELTA_MPC,
    DEPLOY_REFERENCE,
    DROP,
    GEMM_PEAK,
    GMACS,
    LATENCY_MEDIAN,
    MCE,
    MCE_CORRUPTIONS,
    MIOU,
    MIOU_AVG,
    MPC,
    PEAK_SHARE,
    REFERENCE_METRICS,
    REL_MCE,
    RPC,
    SPEEDUP,
    deploy_variant,
    make_row,
    variant_name,
)


def condition_scores(rows: Iterable[Mapping[str, Any]], model: str, metric: str = MIOU) -> tuple[float | None, dict]:
    """A model's clean score and `{(corruption, severity): score}` from tidy rows (the input of
    `bench.measure.robustness`).

    A condition stored twice (duplicate rows) keeps its last value.
    """
    clean, scores = None, {}
    for r in rows:
        if r["model"] != model or r["metric"] != metric or _missing(r.get("value")):
            continue
        if r["condition"] == "clean":
            clean = float(r["value"])
        elif isinstance(r.get("corruption"), str) and not _missing(r.get("severity")):
            scores[(r["corruption"], int(r["severity"]))] = float(r["value"])
    return clean, scores


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def default_reference(rows: Sequence[Mapping[str, Any]], requested: str | None = None) -> str | None:
    """The reference model of CE / mCE: `requested`, else the first model with corrupted mIoU rows (None if none).

    The one rule, used by the run when it writes summary.csv and by the report when it is re-rendered.

    Raises:
        ValueError: `requested` has no mIoU rows in `rows`.
    """
    measured = list(dict.fromkeys(r["model"] for r in rows if r["metric"] == MIOU))
    if requested is not None:
        if requested not in measured:
            raise ValueError(f"reference model {requested!r} has no mIoU rows in this run; choose one of {measured}")
        return requested
    corrupted = [m for m in measured if condition_scores(rows, m)[1]]
    return corrupted[0] if corrupted else None


def summary_rows(
    rows: Sequence[Mapping[str, Any]], suite: str, reference_model: str | None = None
) -> list[dict[str, Any]]:
    """Robustness scores per model (formulas in `bench.measure.robustness`) as tidy rows, all in percent.

    Per corruption `miou_avg` (condition = corruption name), per category `miou_avg` (condition = category), and
    for the corrupted set (condition "corrupted") `mPC` and `rPC`. Against `reference_model` (the reference's own
    rows included: 100 by definition): per-corruption `CE`, `mCE`, `rel_mCE`, and `mCE_corruptions`, the number of
    corruptions they average. CE of a corruption sums over the severities measured for both the model and the
    reference; corruptions the reference lacks are left out. A relative CE whose reference does not degrade is
    undefined and left out of relative mCE. Models without corrupted cells get no corruption scores.

    Deployment variants (`deploy_variant`): `delta_miou` (clean) and `delta_mPC` (corrupted, over the conditions
    both measured) against the model's eager fp32 variant (`DEPLOY_REFERENCE`), in percentage points; and per timing
    setting the `SPEEDUP` of a variant that agrees with eager fp32 (`_speedup_summary`).

    Closeness to the hardware, in a run that measured its device's GEMM peak (a deployment run's `machine` cell): per
    resolution where a model has GMACs and a median latency at batch 1, its `ACHIEVED_GMACS` and, where the run
    measured the peak of its precision on its device, its `PEAK_SHARE` (`_peak_summary`).

    Real-world conditions (`REAL_WORLD`): per condition its `drop` from clean (percentage points, unit "pp"), per
    dataset the `miou_avg` over its measured conditions and that average's `drop` (`real_world_scores`).

    Attacks: per budget `adv_miou` (the worst case) and per attack curve `adv_area`
    (`bench.results.adversarial.adversarial_summary`).
    """
    rows = list(rows)
    models = list(dict.fromkeys(r["model"] for r in rows))
    ref_clean, ref_scores = condition_scores(rows, reference_model) if reference_model else (None, {})
    peaks = gemm_peaks(rows)
    out: list[dict[str, Any]] = []
    for model in models:
        out += _real_world_summary(rows, model, suite)
        out += _deploy_summary(rows, model, suite)
        out += _speedup_summary(rows, model, suite)
        out += _peak_summary(rows, model, suite, peaks)
        clean, scores = condition_scores(rows, model)
        out += adversarial_summary(rows, model, suite, clean)
        if not scores:
            continue

        def row(condition, corruption, category, metric, value, model=model):
            reference = reference_model if metric in REFERENCE_METRICS else None
            keys = {"condition": condition, "corruption": corruption, "category": category, "reference": reference}
            return make_row(metric, value, model=model, suite=suite, **keys)

        categories: dict[str, tuple[str, ...]] = {}
        for corruption, value in robustness.per_corruption(scores).items():
            out.append(row(corruption, corruption, category_of(corruption), MIOU_AVG, value))
            categories[category_of(corruption)] = (*categories.get(category_of(corruption), ()), corruption)
        ordered = {k: categories[k] for k in [*CATEGORIES, *categories] if k in categories}
        for category, value in robustness.per_category(scores, ordered).items():
            out.append(row(category, None, category, MIOU_AVG, value))
        out.append(row("corrupted", None, None, MPC, robustness.mean_pc(scores)))
        if clean:
            out.append(row("corrupted", None, None, RPC, 100 * robustness.relative_pc(scores, clean)))
        shared = {k: v for k, v in scores.items() if k in ref_scores}
        if not shared:
            continue
        reference = {k: ref_scores[k] for k in shared}
        ce = robustness.corruption_errors(shared, reference)
        for corruption, value in ce.items():
            out.append(row(corruption, corruption, category_of(corruption), CE, 100 * value))
        out.append(row("corrupted", None, None, MCE, 100 * robustness.mean_corruption_error(shared, reference)))
        out.append(row("corrupted", None, None, MCE_CORRUPTIONS, len(ce)))
        if clean is not None and ref_clean is not None:
            rel = _relative_errors(shared, clean, reference, ref_clean)
            if rel:
                out.append(row("corrupted", None, None, REL_MCE, 100 * sum(rel) / len(rel)))
    return out


def real_world_scores(rows: Iterable[Mapping[str, Any]], model: str) -> dict[str, float]:
    """A model's mIoU per real-world condition (`acdc:fog`, ...) and per dataset (`acdc`: the mean over its measured
    conditions), from tidy rows. A condition stored twice keeps its last value."""
    per_condition: dict[str, float] = {}
    for r in rows:
        if r["model"] == model and r["metric"] == MIOU and not _missing(r.get("value")):
            condition = real_condition(r["condition"])
            if condition is not None:
                per_condition[condition.name] = float(r["value"])
    out = dict(per_condition)
    for dataset in REAL_WORLD:
        values = [v for k, v in per_condition.items() if k.startswith(f"{dataset}:")]
        if values:
            out[dataset] = sum(values) / len(values)
    return out


def _real_world_summary(rows: Sequence[Mapping[str, Any]], model: str, suite: str) -> list[dict[str, Any]]:
    scores = real_world_scores(rows, model)
    clean, _ = condition_scores(rows, model)
    out = []
    for name, value in scores.items():
        condition = real_condition(name)
        keys = {"model": model, "suite": suite, "condition": name, "category": REAL_WORLD_CATEGORY, "reference": None}
        if condition is None:  # a dataset's average
            out.append(make_row(MIOU_AVG, value, **keys))
        if clean is not None:
            out.append(make_row(DROP, robustness.drop(clean, value), **keys))
    return out


def _deploy_summary(rows: Sequence[Mapping[str, Any]], model: str, suite: str) -> list[dict[str, Any]]:
    variant = deploy_variant(model)
    if variant is None or variant[1:] == DEPLOY_REFERENCE:
        return []
    reference = variant_name(variant[0], *DEPLOY_REFERENCE)
    clean, scores = condition_scores(rows, model)
    ref_clean, ref_scores = condition_scores(rows, reference)
    keys = {"model": model, "suite": suite, "reference": None, "compared_with": reference}  # `reference`: mCE's only
    out = []
    if clean is not None and ref_clean is not None:
        out.append(make_row(DELTA_MIOU, clean - ref_clean, condition="clean", category="clean", **keys))
    shared = [k for k in scores if k in ref_scores]
    if shared:
        mine, theirs = ({k: s[k] for k in shared} for s in (scores, ref_scores))
        delta = robustness.mean_pc(mine) - robustness.mean_pc(theirs)
        out.append(make_row(DELTA_MPC, delta, condition="corrupted", **keys))
    return out


SPEEDUP_SETTING = ("resolution", "batch_size", "device")
"""The timing setting a speed-up compares at: a variant and its eager fp32 at the same resolution, batch size and
device, each at its own precision (the precision belongs to the variant, not to the setting)."""


def _speedup_summary(rows: Sequence[Mapping[str, Any]], model: str, suite: str) -> list[dict[str, Any]]:
    """A deployment variant's `SPEEDUP` at each timing setting where it and its eager fp32 both have a median latency:
    eager fp32's median over the variant's (unit "x"; eager fp32's own is 1). None for a variant whose `deploy` cell
    does not say it agrees with eager fp32: one that disagrees is not the same model, one without a cell is unchecked.
    """
    variant = deploy_variant(model)
    if variant is None:
        return []
    reference = variant_name(variant[0], *DEPLOY_REFERENCE)
    if model != reference and not _agrees(rows, model):
        return []
    theirs = _median_latencies(rows, reference)
    out = []
    for setting, (mine, keys) in _median_latencies(rows, model).items():
        if setting in theirs and mine > 0:
            speedup = theirs[setting][0] / mine
            out.append(
                make_row(
                    SPEEDUP,
                    speedup,
                    model=model,
                    suite=suite,
                    condition="efficiency",
                    reference=None,
                    compared_with=reference,
                    **keys,
                )
            )
    return out


def _agrees(rows: Sequence[Mapping[str, Any]], model: str) -> bool:
    """Whether a variant's `deploy` cell says it agrees with eager fp32: its `status` (rows written before the status
    column: its `agrees` flag)."""
    deploy = [r for r in rows if r["model"] == model and r["condition"] == "deploy"]
    status = next((r["status"] for r in deploy if isinstance(r.get("status"), str) and r["status"]), None)
    if status is not None:
        return status == "agrees"
    flags = [r.get("value") for r in deploy if r["metric"] == "agrees"]
    return bool(flags) and str(flags[-1]).strip().lower() in ("true", "1", "1.0")


def _median_latencies(rows: Sequence[Mapping[str, Any]], model: str) -> dict[tuple[str, ...], tuple[float, dict]]:
    """A model's median latency per timing setting (`SPEEDUP_SETTING` as text; the first row of each), with the
    setting's keys as the rows hold them."""
    out: dict[tuple[str, ...], tuple[float, dict]] = {}
    for r in rows:
        if r["model"] != model or r["condition"] != "efficiency" or r["metric"] != LATENCY_MEDIAN:
            continue
        if _missing(r.get("value")):
            continue
        keys = {k: r.get(k) for k in SPEEDUP_SETTING}
        out.setdefault(tuple(_key_text(v) for v in keys.values()), (float(r["value"]), keys))
    return out


def _key_text(value: Any) -> str:
    """A setting key as text: '' when missing, an integral float without its '.0' (as read back from a CSV)."""
    if _missing(value):
        return ""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


PEAK_CONVENTIONS = ("paper", "fvcore", "torch")
"""The FLOP conventions a model's GMAC/s is computed under, the first the run counted: the SegFormer paper's (mmcv's
rules plus the attention matmuls; every registry model), else fvcore's, else torch's counter (a model from hf:, py:,
torchscript: or onnx: counts with those)."""


def achieved_gmacs_per_s(gmacs: float, latency_ms: float) -> float:
    """GMAC/s of one image's `gmacs` done in `latency_ms`."""
    return gmacs / (latency_ms / 1e3)


def peak_share(gmacs: float, latency_ms: float, peak_gflops: float) -> float:
    """The share (%) of a GEMM peak of `peak_gflops` (GFLOP/s) that `gmacs` in `latency_ms` reach: 2 FLOPs per MAC,
    ``100 * 2 * gmacs / (latency_ms / 1000) / peak_gflops``. The one formula (`bench.measure.peak` calls it too)."""
    return 100.0 * 2.0 * achieved_gmacs_per_s(gmacs, latency_ms) / peak_gflops


def gemm_peaks(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """The run's `GEMM_PEAK` rows by (precision, device) as text (the last of each)."""
    return {
        (_key_text(r.get("precision")), _key_text(r.get("device"))): r
        for r in rows
        if r["metric"] == GEMM_PEAK and not _missing(r.get("value")) and float(r["value"]) > 0
    }


def _peak_gmacs(rows: Sequence[Mapping[str, Any]], model: str) -> dict[str, tuple[str, float]]:
    """A model's GMACs per resolution (text) under the first of `PEAK_CONVENTIONS` it was counted with."""
    out: dict[str, tuple[str, float]] = {}
    for r in rows:
        if r["model"] != model or r["metric"] != GMACS or r.get("convention") not in PEAK_CONVENTIONS:
            continue
        if _missing(r.get("value")):
            continue
        resolution, convention = _key_text(r.get("resolution")), r["convention"]
        known = out.get(resolution)
        if known is None or PEAK_CONVENTIONS.index(convention) < PEAK_CONVENTIONS.index(known[0]):
            out[resolution] = (convention, float(r["value"]))
    return out


def _peak_summary(
    rows: Sequence[Mapping[str, Any]], model: str, suite: str, peaks: Mapping[tuple[str, str], Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """A model's `ACHIEVED_GMACS` at each resolution, precision and device where it has GMACs (`_peak_gmacs`) and a
    median latency at batch 1 (the first row of each), and its `PEAK_SHARE` where `peaks` holds the GEMM peak of that
    precision on that device. Both rows carry the GMACs, convention and latency they come from; the share also the
    peak's GFLOP/s, matrix size and threads. None when the run measured no peak at all."""
    if not peaks:
        return []
    gmacs = _peak_gmacs(rows, model)
    seen, out = set(), []
    for r in rows:
        if r["model"] != model or r["condition"] != "efficiency" or r["metric"] != LATENCY_MEDIAN:
            continue
        setting = tuple(_key_text(r.get(k)) for k in ("resolution", "precision", "device"))
        if _key_text(r.get("batch_size")) != "1" or setting[0] not in gmacs or setting in seen:
            continue
        if _missing(r.get("value")) or float(r["value"]) <= 0:
            continue
        seen.add(setting)
        convention, macs = gmacs[setting[0]]
        ms = float(r["value"])
        keys = {k: r.get(k) for k in ("resolution", "batch_size", "precision", "device")}
        keys |= {"convention": convention, "gmacs": macs, "latency_median_ms": ms}
        where = {"model": model, "suite": suite, "condition": "efficiency", "reference": None}
        out.append(make_row(ACHIEVED_GMACS, achieved_gmacs_per_s(macs, ms), **where, **keys))
        peak = peaks.get(setting[1:])
        if peak is not None:
            gflops = float(peak["value"])
            keys |= {"peak_gflops": gflops, "peak_size": peak.get("size"), "peak_threads": peak.get("threads")}
            out.append(make_row(PEAK_SHARE, peak_share(macs, ms, gflops), **where, **keys))
    return out


@dataclass(frozen=True)
class PredictionPair:
    """A synthetic corruption score set beside the real condition it stands in for.

    Attributes:
        synthetic: Cityscapes-C corruptions whose per-corruption averages are averaged, or ("mPC",).
        real: a real-world condition name (`acdc:fog`) or a dataset (`acdc`: its mean over conditions).
    """

    synthetic: tuple[str, ...]
    real: str

    @property
    def label(self) -> str:
        real = real_condition(self.real)
        where = real.label if real is not None else f"{REAL_WORLD_NAMES[self.real]} (mean)"
        return f"{' + '.join(self.synthetic)} \u2192 {where}"


PREDICTION_PAIRS: tuple[PredictionPair, ...] = (
    PredictionPair(("fog",), "foggy_cityscapes"),
    PredictionPair(("fog",), "acdc:fog"),
    PredictionPair(("snow",), "acdc:snow"),
    PredictionPair(("brightness", "contrast"), "acdc:night"),
    PredictionPair(("brightness", "contrast"), "dark_zurich:night"),
    PredictionPair(("spatter",), "acdc:rain"),
    PredictionPair((MPC,), "acdc"),
)
"""Which synthetic corruption is read as a predictor of which real condition (issue 18's matched pairs)."""


def prediction_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For each `PREDICTION_PAIRS` entry the run can fill: per model the synthetic score (x) and the real one (y),
    in mIoU % and relative to the model's clean mIoU, with Pearson and Spearman correlations across models
    (`bench.measure.robustness.correlation`; None below three models).

    Returns:
        One dict per pair with `label`, `synthetic`, `real`, `models`, `x`, `y` (mIoU %), `x_rel`, `y_rel`
        (fractions of clean; empty when a model has no clean mIoU), `n`, `pearson`, `spearman`, `pearson_rel`,
        `spearman_rel`. Pairs that no model fills are left out.
    """
    rows = list(rows)
    models = list(dict.fromkeys(r["model"] for r in rows))
    per_model = {}
    for model in models:
        clean, scores = condition_scores(rows, model)
        synthetic = robustness.per_corruption(scores) if scores else {}
        if scores:
            synthetic[MPC] = robustness.mean_pc(scores)
        per_model[model] = (clean, synthetic, real_world_scores(rows, model))
    out = []
    for pair in PREDICTION_PAIRS:
        entry: dict[str, Any] = {
            "label": pair.label,
            "synthetic": pair.synthetic,
            "real": pair.real,
            "models": [],
            "x": [],
            "y": [],
            "x_rel": [],
            "y_rel": [],
        }
        for model, (clean, synthetic, real) in per_model.items():
            if pair.real not in real or not all(c in synthetic for c in pair.synthetic):
                continue
            x = sum(synthetic[c] for c in pair.synthetic) / len(pair.synthetic)
            entry["models"].append(model)
            entry["x"].append(x)
            entry["y"].append(real[pair.real])
            if clean:
                entry["x_rel"].append(x / clean)
                entry["y_rel"].append(real[pair.real] / clean)
        if not entry["models"]:
            continue
        entry.update(robustness.correlation(entry["x"], entry["y"]))
        complete = len(entry["x_rel"]) == len(entry["models"])
        rel = robustness.correlation(entry["x_rel"], entry["y_rel"]) if complete else {}
        entry["pearson_rel"], entry["spearman_rel"] = rel.get("pearson"), rel.get("spearman")
        if not complete:
            entry["x_rel"], entry["y_rel"] = [], []
        out.append(entry)
    return out


def _relative_errors(scores: dict, clean: float, reference: dict, reference_clean: float) -> list[float]:
    """Relative CE per corruption (`bench.measure.robustness`), leaving out the corruptions where it is undefined."""
    out = []
    for corruption in dict.fromkeys(c for c, _ in scores):
        mine = {k: v for k, v in scores.items() if k[0] == corruption}
        try:
            rel = robustness.relative_corruption_errors(mine, clean, {k: reference[k] for k in mine}, reference_clean)
        except ValueError:  # the reference does not degrade on this corruption
            continue
        out.append(rel[corruption])
    return out
