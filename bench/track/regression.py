"""Regression tracking of accuracy and speed, built not to cry wolf.

Rules (metric by metric, baseline vs candidate):

- **Accuracy** (mIoU, accuracies, per-class IoU, robustness scores; percent): deterministic on fixed weights and data,
  so held tightly: a drop of more than `accuracy_abs` points (default 0.1) is a regression, a rise of more than that
  an improvement (reported, never failed); the other way round for the errors (CE, mCE, relative mCE), whose
  direction the results contract states (`bench.results.schema.METRICS`).
- **Parameters and FLOPs**: exact. Any increase is a regression; a decrease is an improvement.
- **Speed**: noise-aware. A speed cell times the model and a fixed *calibration workload* alternately in the same
  process (`bench.measure.latency.calibrated_latency`), and keeps every per-iteration ratio model / calibration. A
  machine that is uniformly slower today slows both alike, so the ratio stays. A regression needs both (as in asv's `asv
  compare`): the median ratio grew by more than `speed_factor` (default 1.10) *and* a one-sided Mann-Whitney U test on
  the two samples of ratios rejects "not slower" at `alpha` (default 0.01). With the test at 1% and the factor gate on
  top, the false-alarm rate per speed metric is below 1% even when the factor gate alone would misfire; in this
  project's CI (5 consecutive `ci` runs against the committed baseline on the same machine) no false alarm occurred.
  Raw latencies (ms) are reported for information only: across machines or jobs they are not comparable.
  The ratio holds a run to its own processor, though (the calibration workload gains more from some instruction sets
  than the model does): where both sides record the machine (env.json's `hardware`) and its CPU model or ISA flags
  (GPU name, for GPU timings) differ, the speed rows are reported ungated, each saying why, and the summary says to
  record a baseline on this machine (`--update-baseline`).

This module only compares: it reads run folders through the results contract (`bench.results`) and imports no
torch. The measurement it gates lives in `bench.measure.latency`.

Exit codes: 0 nothing regressed, 1 a regression, 2 the comparison cannot be made (missing metrics, another suite
version, unreadable input).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from segbench.bench.results import io as results_io
from segbench.bench.results.files import BASELINE, DamagedFileError
from segbench.bench.results.io import atomic_write_json, read_rows
from segbench.bench.results.schema import (
    GFLOPS,
    GMACS,
    GMACS_SLIDING,
    LATENCY_CALIBRATED,
    PARAMS,
    PARAMS_BACKBONE,
    PARAMS_HEAD,
    lower_is_better,
)
from segbench.bench.results.store import RunFolder
from segbench.bench.results.targets import TargetError, check_target, check_text_target, is_json_lines, json_object

ACCURACY_UNITS = ("%",)
EXACT_METRICS = (PARAMS, PARAMS_BACKBONE, PARAMS_HEAD, GMACS, GFLOPS, GMACS_SLIDING)
SPEED_METRIC = LATENCY_CALIBRATED
KEY_FIELDS = ("model", "condition", "metric", "resolution", "batch_size", "precision", "convention")
BASELINE_FORMAT = "segbench-baseline-v1"


class CompareError(ValueError):
    """The comparison itself cannot be made (exit code 2)."""


# --------------------------------------------------------------------------------------------------------------------
# Loading results
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ResultSet:
    """Rows (with speed samples where measured) and identity of one side of a comparison."""

    source: str
    suite: str | None
    suite_version: str | None
    rows: list[dict[str, Any]]
    provenance: dict[str, Any] = field(default_factory=dict)


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def key_of(row: Mapping[str, Any]) -> tuple:
    return tuple(str(_clean(row.get(k))) if _clean(row.get(k)) is not None else "" for k in KEY_FIELDS)


def load_results(path: str | Path) -> ResultSet:
    """A run folder (cells with speed samples), a `results.csv`, or a baseline JSON written by `write_baseline`."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        try:
            data = BASELINE.read(path)
        except DamagedFileError as e:
            raise CompareError(str(e)) from None
        except OSError as e:
            raise CompareError(f"{path}: unreadable baseline ({e})") from None
        if data["format"] != BASELINE_FORMAT:
            raise CompareError(f"{path}: not a segbench baseline (format {data['format']!r}); {BASELINE.remedy}")
        return ResultSet(str(path), data["suite"], data["suite_version"], data["rows"], data.get("provenance", {}))
    if path.is_dir():
        folder = RunFolder(path)
        cells = folder.cells()
        if not cells:
            raise CompareError(f"{path}: no finished cells (cells/*.json); is it a run folder?")
        rows = [r for cell in cells for r in cell["rows"]]
        if (path / "summary.csv").is_file():
            rows.extend(folder.summary().to_dict("records"))
        run = folder.manifest
        return ResultSet(str(path), run.get("suite"), run.get("suite_version"), rows, folder.env or {})
    if path.is_file() and path.suffix == ".csv":
        try:
            rows = read_rows(path).to_dict("records")
        except ValueError as exc:
            raise CompareError(str(exc)) from None
        suites = {r.get("suite") for r in rows}
        return ResultSet(str(path), suites.pop() if len(suites) == 1 else None, None, rows)
    raise CompareError(f"{path}: not a run folder, results.csv or baseline .json")


def _is_baseline(path: Path) -> bool:
    data = json_object(path)
    return data is not None and data.get("format") == BASELINE_FORMAT


def check_baseline_target(path: str | Path) -> Path:
    """Where `--update-baseline` may write: nothing there yet, or a segbench baseline (then replaced). A run folder, a
    results CSV or any other file is refused (`TargetError`), untouched."""
    instead = "give a new .json file (e.g. baseline.json), or a baseline written by --update-baseline to replace"
    return check_target(path, "--update-baseline", "a segbench baseline JSON", instead, _is_baseline)


def check_history_target(path: str | Path) -> Path:
    """Where `--history` may append: nothing there yet, or a history (JSON lines)."""
    return check_target(path, "--history", "a segbench history (JSON lines)", "give a new .jsonl file", is_json_lines)


def check_outputs(
    baseline: str | Path | None, update_baseline: bool, history: str | Path | None, summary: str | Path | None
) -> None:
    """Refuse, before anything runs, output paths that hold something else (see `bench.results.targets`)."""
    if update_baseline and baseline:
        check_baseline_target(baseline)
    if history:
        check_history_target(history)
    for target, flag in ((summary, "--summary"), (_github_summary(), "GITHUB_STEP_SUMMARY")):
        if target:
            check_text_target(target, flag)


def write_baseline(results: ResultSet, path: str | Path) -> Path:
    """Freeze a run as a baseline file (rows, speed samples and provenance), atomically.

    Raises:
        TargetError: `path` holds something that is not a segbench baseline (it is left as it is).
    """
    check_baseline_target(path)
    data = {
        "format": BASELINE_FORMAT,
        "suite": results.suite,
        "suite_version": results.suite_version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": results.source,
        "provenance": results.provenance,
        "rows": [{k: _clean(v) for k, v in r.items()} for r in results.rows],
    }
    return atomic_write_json(path, data)


# --------------------------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerances:
    accuracy_abs: float = 0.1  # percentage points
    speed_factor: float = 1.10
    alpha: float = 0.01


@dataclass
class Finding:
    key: tuple
    kind: str  # accuracy | exact | speed | info
    baseline: float | None
    candidate: float | None
    status: str  # ok | regressed | improved | missing | info
    tolerance: str
    detail: str = ""

    @property
    def label(self) -> str:
        return " / ".join(v for v in self.key if v)


@dataclass
class Comparison:
    findings: list[Finding]
    errors: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.errors or any(f.status == "missing" for f in self.findings):
            return 2
        return 1 if any(f.status == "regressed" for f in self.findings) else 0


def mann_whitney_greater(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """One-sided p-value of "candidate is stochastically greater than baseline" (scipy's Mann-Whitney U)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(candidate, baseline, alternative="greater").pvalue)


def _kind(row: Mapping[str, Any]) -> str:
    metric = str(row["metric"])
    if metric == SPEED_METRIC:
        return "speed"
    if metric in EXACT_METRICS:
        return "exact"
    if row.get("unit") in ACCURACY_UNITS and row.get("condition") != "efficiency":
        return "accuracy"
    return "info"


def speed_machine(provenance: Mapping[str, Any], device: str) -> tuple | None:
    """What a calibrated speed ratio is tied to, from a side's provenance (env.json): the GPU's name for a GPU timing,
    else the CPU model and its ISA flags; None where the side does not record it (a bare results.csv)."""
    hardware = provenance.get("hardware")
    if not isinstance(hardware, Mapping):
        return None
    if device.startswith("cuda"):
        return ("gpu", hardware.get("gpu_name"))
    return ("cpu", hardware.get("cpu_model"), tuple(hardware.get("cpu_isa") or ()))


def other_machine(baseline: ResultSet, candidate: ResultSet, device: str) -> str | None:
    """Why the speed rows timed on `device` cannot be gated (another processor, one line), or None."""
    b, c = speed_machine(baseline.provenance, device), speed_machine(candidate.provenance, device)
    if b is None or c is None or b == c:
        return None
    name = "GPU" if b[0] == "gpu" else "CPU"
    if b[1] != c[1]:
        return f"baseline timed on another {name} ({name} model: {b[1]!r} vs {c[1]!r}), not gated"
    only = sorted(set(b[2]) ^ set(c[2]))  # the same CPU model name with other instruction sets
    return f"baseline timed on another CPU (CPU ISA flags: {', '.join(only)} on one side only), not gated"


def compare(baseline: ResultSet, candidate: ResultSet, tol: Tolerances = Tolerances()) -> Comparison:
    """Compare metric by metric (see the module docstring for the rules)."""
    errors, notes = [], []
    if baseline.suite and candidate.suite and baseline.suite != candidate.suite:
        errors.append(f"suites differ: baseline {baseline.suite!r}, candidate {candidate.suite!r}")
    if baseline.suite_version and candidate.suite_version and baseline.suite_version != candidate.suite_version:
        errors.append(
            f"suite versions differ: baseline v{baseline.suite_version}, candidate v{candidate.suite_version}; "
            "record a new baseline (--update-baseline)"
        )
    cand = {key_of(r): r for r in candidate.rows}
    findings = []
    for b in baseline.rows:
        key, kind = key_of(b), _kind(b)
        c = cand.get(key)
        bv = _clean(b.get("value"))
        if c is None:
            if kind != "info" and bv is not None:
                findings.append(Finding(key, kind, bv, None, "missing", "-", "metric absent from the candidate"))
            continue
        cv = _clean(c.get("value"))
        if bv is None or cv is None:  # undefined (an IoU of a class in neither labels nor predictions): no number
            if bv is not None or cv is not None:
                detail = f"undefined in the {'baseline' if bv is None else 'candidate'}"
                findings.append(Finding(key, kind, bv, cv, "info", "-", detail))
            continue
        bv, cv = float(bv), float(cv)
        if kind == "accuracy":
            delta = cv - bv
            worse = delta > 0 if lower_is_better(str(b["metric"])) else delta < 0
            status = "ok" if abs(delta) <= tol.accuracy_abs else ("regressed" if worse else "improved")
            findings.append(Finding(key, kind, bv, cv, status, f"±{tol.accuracy_abs} pt", f"{delta:+.3f} pt"))
        elif kind == "exact":
            status = "ok" if cv == bv else ("regressed" if cv > bv else "improved")
            findings.append(Finding(key, kind, bv, cv, status, "exact", f"{cv - bv:+.6g}"))
        elif kind == "speed" and (other := other_machine(baseline, candidate, str(b.get("device") or "cpu"))):
            findings.append(Finding(key, kind, bv, cv, "info", "-", f"x{cv / bv:.3f}; {other}"))
            if not notes:
                notes.append(f"speed: {other}; record a baseline on this machine (--update-baseline)")
        elif kind == "speed":
            findings.append(_speed_finding(key, b, c, tol))
        else:
            findings.append(Finding(key, kind, bv, cv, "info", "-", f"x{cv / bv:.3f}" if bv else ""))
    return Comparison(findings, errors, notes)


def _speed_finding(key: tuple, b: Mapping[str, Any], c: Mapping[str, Any], tol: Tolerances) -> Finding:
    bs, cs = b.get("samples"), c.get("samples")
    bv, cv = float(b["value"]), float(c["value"])
    if not bs or not cs:
        return Finding(key, "speed", bv, cv, "info", "-", "no samples on one side: not gated")
    ratio = statistics.median(cs) / statistics.median(bs)
    p_slower = mann_whitney_greater(cs, bs)
    p_faster = mann_whitney_greater(bs, cs)
    tolerance = f"x{tol.speed_factor:.2f} and p<{tol.alpha}"
    detail = f"x{ratio:.3f} (p slower {p_slower:.2g}, n={len(bs)}/{len(cs)})"
    if ratio > tol.speed_factor and p_slower < tol.alpha:
        return Finding(key, "speed", bv, cv, "regressed", tolerance, detail)
    if ratio < 1 / tol.speed_factor and p_faster < tol.alpha:
        return Finding(key, "speed", bv, cv, "improved", tolerance, detail)
    return Finding(key, "speed", bv, cv, "ok", tolerance, detail)


# --------------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------------


def markdown(comparison: Comparison, baseline: ResultSet, candidate: ResultSet) -> str:
    verdict = {0: "no regression", 1: "REGRESSION", 2: "comparison failed"}[comparison.exit_code]
    lines = [f"### segbench compare: {verdict}", "", f"baseline `{baseline.source}` vs candidate `{candidate.source}`"]
    lines += [f"- error: {e}" for e in comparison.errors]
    lines += [f"- note: {n}" for n in comparison.notes]
    moved = [f for f in comparison.findings if f.status in ("regressed", "improved", "missing")]
    counts = {s: sum(f.status == s for f in comparison.findings) for s in ("ok", "regressed", "improved", "missing")}
    lines += ["", ", ".join(f"{n} {s}" for s, n in counts.items()), ""]
    if moved:
        lines += ["| status | metric | baseline | candidate | change | tolerance |", "|---|---|---|---|---|---|"]
        for f in moved:
            b = "-" if f.baseline is None else f"{f.baseline:.4g}"
            c = "-" if f.candidate is None else f"{f.candidate:.4g}"
            lines.append(f"| {f.status} | {f.label} | {b} | {c} | {f.detail} | {f.tolerance} |")
    speed = [f for f in comparison.findings if f.kind == "speed"]
    if speed:
        lines += ["", "Speed (calibrated, ratio of medians and one-sided Mann-Whitney U):", ""]
        lines += [f"- {f.label}: {f.status}, {f.detail}" for f in speed]
    return "\n".join(lines) + "\n"


def append_history(path: str | Path, comparison: Comparison, candidate: ResultSet) -> None:
    """One JSON line per comparison: time, commit, verdict and the candidate's gated metrics."""
    commit = candidate.provenance.get("git", {})
    entry = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit.get("commit") if isinstance(commit, dict) else commit,
        "suite": candidate.suite,
        "exit_code": comparison.exit_code,
        "metrics": {
            " / ".join(v for v in f.key if v): f.candidate
            for f in comparison.findings
            if f.kind != "info" and f.candidate is not None
        },
    }
    results_io.append_history(path, entry)


def run_compare(
    baseline_path: str | Path,
    candidate_path: str | Path,
    tol: Tolerances = Tolerances(),
    history: str | Path | None = None,
    summary_file: str | Path | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Load, compare, print the Markdown summary, append to the history; returns the exit code.

    Raises:
        CompareError: an input that cannot be read or compared.
        TargetError: `history` or `summary_file` holds something else (checked before anything is written).
    """
    check_outputs(None, False, history, summary_file)
    baseline, candidate = load_results(baseline_path), load_results(candidate_path)
    comparison = compare(baseline, candidate, tol)
    text = markdown(comparison, baseline, candidate)
    out(text)
    for target in filter(None, (summary_file, _github_summary())):
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(text)
    if Path(candidate_path).is_dir():
        (Path(candidate_path) / "regression.md").write_text(text)
    if history:
        append_history(history, comparison, candidate)
    return comparison.exit_code


def _github_summary() -> str | None:
    import os

    return os.environ.get("GITHUB_STEP_SUMMARY") or None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tolerance-miou", type=float, default=Tolerances.accuracy_abs, help="accuracy points (0.1)")
    p.add_argument("--speed-factor", type=float, default=Tolerances.speed_factor, help="median ratio gate (1.10)")
    p.add_argument("--alpha", type=float, default=Tolerances.alpha, help="Mann-Whitney significance (0.01)")
    p.add_argument("--history", help="append a JSON line per comparison here (default: history.jsonl beside the run)")
    p.add_argument("--summary", help="also append the Markdown summary to this file")


def tolerances_from(args: argparse.Namespace) -> Tolerances:
    return Tolerances(args.tolerance_miou, args.speed_factor, args.alpha)


def main(
    argv: Iterable[str] | None = None,
    prog: str = "segbench compare",
    parser: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> int:
    """`segbench compare BASELINE RUN [--update-baseline]` (`parser`: the CLI's, whose mistakes are one line)."""
    p = parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("baseline", help="baseline run folder, results.csv or baseline .json")
    p.add_argument("candidate", help="candidate run folder or results.csv")
    p.add_argument("--update-baseline", action="store_true", help="after comparing, write the candidate as baseline")
    add_arguments(p)
    args = p.parse_args(list(argv) if argv is not None else None)
    history = args.history or (Path(args.candidate).parent / "history.jsonl" if Path(args.candidate).is_dir() else None)
    try:
        check_outputs(args.baseline, args.update_baseline, history, args.summary)
        if args.update_baseline and not Path(args.baseline).exists():
            print(f"baseline written: {write_baseline(load_results(args.candidate), args.baseline)}")
            return 0
        code = run_compare(args.baseline, args.candidate, tolerances_from(args), history, args.summary)
        if args.update_baseline:
            print(f"baseline written: {write_baseline(load_results(args.candidate), args.baseline)}")
    except (CompareError, TargetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return code
