"""Join shard folders into one run folder (`segbench merge SHARD_DIR... --out RUN_DIR`).

A run made with `--shard I/N` (`RunConfig.shard`) evaluates share I of every condition's images and stores, per
accuracy cell, its additive state: the confusion matrix, the calibration sums, the image count and the timings. These
add exactly, so the merged cells, and the results.csv, summary.csv and report gathered from them, give every accuracy
number of a single-process run: confusion matrices and calibration counts are integers, and the calibration sums are
float64 sums added in another order (ECE, NLL and Brier agree to about 1e-12). One caveat, as for torchrun's ranks:
a shard batches other images together than one process does, and at a batch size above 1 a model's kernels may round
differently for another batch, flipping the argmax of a few near-tied pixels; at batch size 1 (`--batch-size 1`) the
numbers are identical. The cost probe, the gallery and the
run's efficiency cells come from shard 0, the only one that makes them. Timings add (model, data, metric seconds),
except the total: the longest shard's; an attack's milliseconds per step are the image-weighted mean of the shards'.

The shards must be one run: the same run.json in all that defines a number (`bench.results.store.check_resume`'s
comparison: suite and version, seed, split, image budget, classes, weights, protocols, settings and conditions), the
same N, every share 0..N-1 once, and each finished (a preempted shard is resumed first, `--resume`). Anything else is
a one-line `MergeError` naming the folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from segbench.bench.measure.calibration import CalibrationCounter
from segbench.bench.measure.metrics import accuracy_rows
from segbench.bench.results.axes import Condition
from segbench.bench.results.classes import ClassTable
from segbench.bench.results.schema import ATTACK_MEMORY, ATTACK_STEP_TIME, CALIBRATION_KEY, make_row
from segbench.bench.results.store import RunFolder, RunMismatchError, RunStore, check_resume
from segbench.bench.run.accuracy import calibration_rows, place
from segbench.bench.run.cells import plan_cells


class MergeError(ValueError):
    """Shard folders that cannot be merged; the message names the folder and what to do."""


def _shard_of(run_dir: Path) -> tuple[dict, int, int]:
    """(run.json, index, count) of a shard folder."""
    if not (run_dir / "run.json").is_file():
        raise MergeError(f"{run_dir}: no run.json here; give the folders that `segbench run --shard I/N` wrote")
    manifest = RunFolder(run_dir).manifest
    shard = manifest.get("shard")
    if not isinstance(shard, dict):
        raise MergeError(f"{run_dir} is a whole run, not a shard (its run.json has no shard); give shard folders only")
    return manifest, int(shard["index"]), int(shard["count"])


def _number_defining(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in ("shard", "run_id", "created_at", "config")}


def check_shards(dirs: Sequence[Path]) -> list[tuple[Path, dict]]:
    """The shard folders in share order, with their run.json, once they are checked to make one whole run.

    Raises:
        MergeError: a folder that is not a shard, a share given twice or missing, shards of different runs or of a
            different N, or a shard not finished.
    """
    if not dirs:
        raise MergeError("no shard folders given")
    shards = [(Path(d), *_shard_of(Path(d))) for d in dirs]
    first_dir, first, _, count = shards[0]
    by_index: dict[int, Path] = {}
    for run_dir, manifest, index, n in shards:
        if n != count:
            raise MergeError(
                f"{run_dir} is shard {index}/{n}, but {first_dir} is one of {count}: give one run's shards"
            )
        if index in by_index:
            raise MergeError(f"shard {index}/{count} given twice: {by_index[index]} and {run_dir}")
        by_index[index] = run_dir
        try:
            check_resume(_number_defining(first), _number_defining(manifest), run_dir)
        except RunMismatchError as e:
            reason = str(e).removeprefix(f"cannot resume {run_dir}: ").split(". Start a new run")[0]
            raise MergeError(f"{run_dir} is not a shard of the same run as {first_dir}: {reason}") from None
    missing = [f"{i}/{count}" for i in range(count) if i not in by_index]
    if missing:
        raise MergeError(f"shard {', '.join(missing)} missing: give all {count} shard folders")
    for index in range(count):
        partial = RunFolder(by_index[index]).partial()
        if partial:
            raise MergeError(f"shard {index}/{count} ({by_index[index]}) is unfinished: {partial}")
    return [(by_index[i], next(m for d, m, _, _ in shards if d == by_index[i])) for i in range(count)]


def merge_cell(records: Sequence[dict], classes: ClassTable, suite: str) -> dict:
    """One accuracy cell from its shards' records (see the module docstring)."""
    first = records[0]
    cm = sum(torch.tensor(r["confusion_matrix"], dtype=torch.int64) for r in records)
    counter = CalibrationCounter.from_dict(first[CALIBRATION_KEY], classes.ignore_index)
    for r in records[1:]:
        counter.merge(CalibrationCounter.from_dict(r[CALIBRATION_KEY], classes.ignore_index))
    images = [int(r["num_images"]) for r in records]
    timing = {k: sum(float(r["timing"][k]) for r in records) for k in first["timing"] if k != "total"}
    timing["total"] = max(float(r["timing"]["total"]) for r in records)
    rows = accuracy_rows(first["model"], suite, Condition.parse(first["condition"]), cm, classes, timing, sum(images))
    rows += calibration_rows(rows, counter) + _attack_cost_rows(records, images, rows)
    warnings = list(dict.fromkeys(w for r in records for w in r.get("warnings", [])))
    return {
        **first,
        "num_images": sum(images),
        "timing": timing,
        "confusion_matrix": cm.tolist(),
        CALIBRATION_KEY: counter.to_dict(),
        "rows": rows,
        "warnings": warnings,
        "merged_shards": len(records),
    }


def _attack_cost_rows(records: Sequence[dict], images: list[int], rows: list[dict]) -> list[dict]:
    """An attack's ms per step and image (image-weighted mean of the shards') and its peak memory (the largest)."""
    out = []
    for metric, combine in ((ATTACK_STEP_TIME, "mean"), (ATTACK_MEMORY, "max")):
        values = [
            (next((x["value"] for x in r["rows"] if x["metric"] == metric), None), n) for r, n in zip(records, images)
        ]
        values = [(v, n) for v, n in values if v is not None and n > 0]
        if values:
            value = (
                max(v for v, _ in values)
                if combine == "max"
                else sum(v * n for v, n in values) / sum(n for _, n in values)
            )
            out.append(make_row(metric, value, **place(rows)))
    return out


def merge_shards(dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Merge shard folders into the new run folder `out`; returns it (its results.csv and summary.csv gathered).

    Raises:
        MergeError: the shards do not make one whole run (`check_shards`), or `out` is not a new or empty folder.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"{out} exists and is not an empty folder; give a new folder for the merged run (--out)")
    shards = check_shards([Path(d) for d in dirs])
    first_dir, manifest = shards[0]
    folders = [RunFolder(d) for d, _ in shards]
    cells = [{c["cell"]: c for c in f.cells()} for f in folders]
    classes = ClassTable.from_dict(manifest["classes"])
    config = manifest.get("config") or {}
    store = RunStore(out, manifest.get("dataset") or "cityscapes")
    out.mkdir(parents=True, exist_ok=True)
    merged_from = [{"dir": str(d), "index": i} for i, (d, _) in enumerate(shards)]
    config = {**config, "shard": None, "run_id": out.name, "out_dir": str(out.parent)}
    store.write_manifest({**manifest, "shard": None, "run_id": out.name, "config": config, "merged_from": merged_from})
    env = folders[0].env or {}
    store.write_env({**env, "merged_from": [{**m, "env": f.env} for m, f in zip(merged_from, folders)]})
    for cell_id, record in cells[0].items():
        if record.get("kind") == "accuracy":
            record = merge_cell([c[cell_id] for c in cells], classes, str(manifest.get("suite", "")))
        store.write_cell(record)
    if (first_dir / "gallery").is_dir():
        shutil.copytree(first_dir / "gallery", out / "gallery")
    models = config.get("models") or []
    conditions = [Condition.parse(c) for c in manifest["settings"]["conditions"]]
    has_probe = any(c.get("kind") == "efficiency" for c in cells[0].values())
    order = [c.id for c in plan_cells(models, conditions, has_probe)]
    store.gather(order, config.get("reference_model"), str(manifest.get("suite", "")))
    return out
