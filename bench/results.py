"""The results store: one atomic JSON file per finished cell, the tidy `results.csv`, `summary.csv` and `env.json`.

Layout of a run folder::

    runs/<run-id>/
        run.json        what the run is (suite and version, seed, weight hashes, inference protocol): checked on resume
        env.json        provenance: command line, git commit, library versions, hardware, seed, weight hashes
        cells/<cell>.json   one finished cell: its rows, and for accuracy cells the confusion matrix
        results.csv     all cells' rows, tidy (one value per row)
        summary.csv     robustness scores derived from the rows (per-corruption/category averages, mPC, rPC, mCE)

Every row has the columns of `COLUMNS` (`model, suite, condition, corruption, category, severity, metric, value,
unit`); efficiency rows may carry extra columns (resolution, batch size, ...), which follow the nine in the CSV.
IoU-type metrics are in percent (unit "%"), as in the published tables.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from segbench.bench import metrics, robustness
from segbench.models.checkpoint import sha256_file

COLUMNS = ("model", "suite", "condition", "corruption", "category", "severity", "metric", "value", "unit")
SCHEMA_VERSION = 1
TIMING_UNITS = ("s", "img/s")
VERSIONED_PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "fvcore",
    "numpy",
    "imagecorruptions-imaug",
    "imagecorruptions",
    "scikit-image",
    "opencv-python",
    "opencv-python-headless",
    "cityscapesscripts",
    "pandas",
    "safetensors",
)


class RunMismatchError(ValueError):
    """A resume was asked against a run folder made with other settings."""


# --------------------------------------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------------------------------------


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a part (tmp + replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically; NaN/inf are stored as null (strict JSON)."""
    return atomic_write_text(path, json.dumps(_json_safe(data), indent=1, allow_nan=False) + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------------


def class_metric_name(class_name: str) -> str:
    """`traffic light` -> `iou_traffic_light`."""
    return "iou_" + re.sub(r"\W+", "_", class_name).strip("_")


def accuracy_rows(
    model: str,
    suite: str,
    condition: Any,
    cm: torch.Tensor,
    class_names: Sequence[str] = metrics.CITYSCAPES_CLASSES,
    timing: Mapping[str, float] | None = None,
    num_images: int | None = None,
) -> list[dict[str, Any]]:
    """Tidy rows of an accuracy cell: miou, pixel_acc, mean_acc, iou_<class> (percent), num_images, timing.

    Args:
        model: model name.
        suite: suite name.
        condition: a `bench.corruptions.Condition` (name, corruption, severity, category).
        cm: the cell's confusion matrix.
        class_names: class names in train-id order (length = matrix size).
        timing: seconds per phase (`model`, `data`, `metric`, `total`).
        num_images: images evaluated.
    """
    if len(class_names) != cm.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {cm.shape[0]}-class confusion matrix")
    base = {
        "model": model,
        "suite": suite,
        "condition": condition.name,
        "corruption": condition.corruption,
        "category": condition.category,
        "severity": condition.severity,
    }

    def row(metric: str, value: float, unit: str) -> dict[str, Any]:
        return {**base, "metric": metric, "value": float(value), "unit": unit}

    rows = [
        row("miou", 100 * metrics.mean_iou(cm), "%"),
        row("pixel_acc", 100 * metrics.pixel_accuracy(cm), "%"),
        row("mean_acc", 100 * metrics.mean_class_accuracy(cm), "%"),
    ]
    rows += [row(class_metric_name(n), 100 * float(v), "%") for n, v in zip(class_names, metrics.iou_per_class(cm))]
    if num_images is not None:
        rows.append(row("num_images", num_images, "count"))
    for phase, seconds in (timing or {}).items():
        rows.append(row(f"time_{phase}", seconds, "s"))
    if timing and num_images and timing.get("total"):
        rows.append(row("throughput", num_images / timing["total"], "img/s"))
    return rows


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Tidy rows -> CSV (the nine columns first, extra columns after, sorted); numbers at full precision."""
    import pandas as pd

    rows = list(rows)
    extras = sorted({k for r in rows for k in r} - set(COLUMNS))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *extras])
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.17g"))


def read_results(path: str | Path):
    """`results.csv` (or a run folder) -> pandas DataFrame."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file; has the run finished a cell yet?")
    return pd.read_csv(path)


def condition_scores(rows: Iterable[Mapping[str, Any]], model: str, metric: str = "miou") -> tuple[float | None, dict]:
    """A model's clean score and `{(corruption, severity): score}` from tidy rows (the input of `bench.robustness`)."""
    clean, scores = None, {}
    for r in rows:
        if r["model"] != model or r["metric"] != metric:
            continue
        if r["condition"] == "clean":
            clean = float(r["value"])
        elif r.get("corruption"):
            scores[(r["corruption"], int(r["severity"]))] = float(r["value"])
    return clean, scores


def summary_rows(
    rows: Sequence[Mapping[str, Any]], suite: str, reference_model: str | None = None
) -> list[dict[str, Any]]:
    """Robustness scores per model (see `bench.robustness`) as tidy rows, all in percent.

    Per corruption `miou_avg` (condition = corruption name), per category `miou_avg` (condition = category), and
    for the corrupted set (condition "corrupted") `mPC`, `rPC`, and against `reference_model` `mCE`, `rel_mCE`
    and per-corruption `CE`. Models without corrupted cells are skipped.
    """
    from segbench.bench.corruptions import category_of

    models = list(dict.fromkeys(r["model"] for r in rows))
    ref_clean, ref_scores = condition_scores(rows, reference_model) if reference_model else (None, {})
    out: list[dict[str, Any]] = []
    for model in models:
        clean, scores = condition_scores(rows, model)
        if not scores:
            continue

        def row(condition, corruption, category, metric, value, unit="%", model=model):
            return {"model": model, "suite": suite, "condition": condition, "corruption": corruption,
                    "category": category, "severity": None, "metric": metric, "value": value, "unit": unit}  # fmt: skip

        for corruption, value in robustness.per_corruption(scores).items():
            out.append(row(corruption, corruption, category_of(corruption), "miou_avg", value))
        for category, value in robustness.per_category(scores).items():
            out.append(row(category, None, category, "miou_avg", value))
        out.append(row("corrupted", None, None, "mPC", robustness.mean_pc(scores)))
        if clean:
            out.append(row("corrupted", None, None, "rPC", 100 * robustness.relative_pc(scores, clean)))
        if reference_model and ref_scores and set(scores) <= set(ref_scores):
            for corruption, value in robustness.corruption_errors(scores, ref_scores).items():
                out.append({**row(corruption, corruption, category_of(corruption), "CE", 100 * value)})
            out.append(row("corrupted", None, None, "mCE", 100 * robustness.mean_corruption_error(scores, ref_scores)))
            if clean is not None and ref_clean is not None and model != reference_model:
                rel = robustness.relative_mce(scores, clean, ref_scores, ref_clean)
                out.append(row("corrupted", None, None, "rel_mCE", 100 * rel))
    for r in out:
        r["reference"] = reference_model if r["metric"] in ("CE", "mCE", "rel_mCE") else None
    return out


# --------------------------------------------------------------------------------------------------------------------
# Run folder
# --------------------------------------------------------------------------------------------------------------------


def cell_filename(cell_id: str) -> str:
    """File name of a cell: the id with unsafe characters replaced, plus a short hash when anything was replaced."""
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", cell_id)
    if safe != cell_id:
        safe += "-" + hashlib.sha1(cell_id.encode()).hexdigest()[:8]
    return safe + ".json"


class RunStore:
    """A run folder: cells, manifest, provenance and the gathered tables."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.cells_dir = self.dir / "cells"

    @property
    def results_csv(self) -> Path:
        return self.dir / "results.csv"

    @property
    def summary_csv(self) -> Path:
        return self.dir / "summary.csv"

    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / cell_filename(cell_id)

    def write_cell(self, record: Mapping[str, Any]) -> Path:
        """Store a finished cell (atomically). `record` needs `cell` (its id) and `rows`."""
        return atomic_write_json(self.cell_path(record["cell"]), {"schema": SCHEMA_VERSION, **record})

    def finished(self) -> dict[str, dict]:
        """Finished cells by id. A file that does not parse (not written by this code) is reported and skipped."""
        out = {}
        if not self.cells_dir.is_dir():
            return out
        for path in sorted(self.cells_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                out[record["cell"]] = record
            except (OSError, ValueError, KeyError) as exc:
                print(f"warning: ignoring unreadable cell file {path} ({exc}); it will be recomputed", file=sys.stderr)
        return out

    def read_manifest(self) -> dict | None:
        path = self.dir / "run.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.dir / "run.json", manifest)

    def write_env(self, env: Mapping[str, Any]) -> Path:
        """Write env.json; earlier sessions of a resumed run are kept under `sessions`."""
        path = self.dir / "env.json"
        sessions = []
        if path.is_file():
            try:
                old = json.loads(path.read_text())
                sessions = old.pop("sessions", []) + [old]
            except ValueError:
                pass
        return atomic_write_json(path, {**env, "sessions": sessions})

    def gather(self, order: Sequence[str] | None = None, reference_model: str | None = None, suite: str = "") -> Path:
        """Write results.csv (and summary.csv when there are corrupted cells) from the finished cells.

        Args:
            order: cell ids in plan order (others follow, sorted); makes the CSV independent of finishing order.
            reference_model: reference of CE / mCE in summary.csv.
            suite: suite name for the summary rows.
        """
        cells = self.finished()
        rank = {cell: i for i, cell in enumerate(order or [])}
        ids = sorted(cells, key=lambda c: (rank.get(c, len(rank)), c))
        rows = [r for c in ids for r in cells[c]["rows"]]
        write_csv(rows, self.results_csv)
        summary = summary_rows(rows, suite, reference_model)
        if summary:
            write_csv(summary, self.summary_csv)
        return self.results_csv


def check_resume(old: Mapping[str, Any], new: Mapping[str, Any], run_dir: str | Path) -> None:
    """Refuse to resume when what defines the numbers differs between the stored manifest and this run.

    Compared: suite, suite version, seed, split, max_images, number of classes, and for every model present in both
    its weight hash and inference protocol (mode, crop, stride, flip, precision). Device, batch size and worker count
    may change.
    """
    problems = []
    for key in ("suite", "suite_version", "seed", "split", "max_images", "num_classes"):
        if _norm(old.get(key)) != _norm(new.get(key)):
            problems.append(f"{key} was {old.get(key)!r}, now {new.get(key)!r}")
    for model, digest in new.get("weights", {}).items():
        before = old.get("weights", {}).get(model)
        if before is not None and before != digest:
            problems.append(f"weights of {model} changed (sha256 {before[:16]}... -> {digest[:16]}...)")
    for model, protocol in new.get("protocols", {}).items():
        before = old.get("protocols", {}).get(model)
        if before is not None and _norm(before) != _norm(protocol):
            problems.append(f"inference protocol of {model} was {before}, now {_norm(protocol)}")
    if problems:
        raise RunMismatchError(
            f"cannot resume {run_dir}: " + "; ".join(problems) + ". Start a new run (without resume) or use the "
            "settings the run was made with."
        )


def _norm(value: Any) -> str:
    return json.dumps(_json_safe(value), sort_keys=True)


# --------------------------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------------------------


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted), e.g. a Hugging Face snapshot."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def package_versions(names: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo: str | Path | None = None) -> dict[str, Any]:
    """HEAD commit of the checkout holding this code, and whether the working tree has changes."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def environment(
    command: Sequence[str] | None,
    seed: int,
    weights: Mapping[str, str],
    suite: str,
    suite_version: str,
    device: str,
    world_size: int = 1,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Provenance of a run (env.json): command line, git commit, versions, hardware, seed, weight hashes, suite."""
    from segbench.bench.efficiency import hardware_info

    hardware = hardware_info()
    try:
        from segbench.bench.corruptions import SEED_PROTOCOL
    except ImportError:  # pragma: no cover - corruptions is part of bench
        SEED_PROTOCOL = None
    dev = torch.device(device)
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else list(sys.argv),
        "git": git_commit(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "hardware": hardware,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else hardware["cpu_model"],
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "threads": torch.get_num_threads(),
        "world_size": world_size,
        "seed": seed,
        "seed_protocol": SEED_PROTOCOL,
        "weights_sha256": dict(weights),
        "suite": {"name": suite, "version": suite_version},
        **(extra or {}),
    }
