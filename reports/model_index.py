"""`segbench export RUN_DIR --format hf-model-index`: the `model-index` block of a Hugging Face model card (task,
dataset, metrics) from a run folder, so that results go into a model card without retyping.

The layout is the Hub's model card metadata (hub-docs `modelcard.md`): `model-index: - name, results: - task {type,
name}, dataset {type, name, split}, metrics: - {type, value, name}`; each metric's `name` says its convention (clean
or under which shift, which protocol), and `verified` is false (self-reported). Figures are the run's own
(`reports.console.results_table`). Written as YAML (strings JSON-quoted, which YAML reads as they are).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segbench.bench.results.axes import DATASETS
from segbench.bench.results.store import RunFolder
from segbench.reports.console import results_table

TASK = {"type": "image-segmentation", "name": "Semantic Segmentation"}
METRIC_TYPES = {"Clean mIoU": "mean_iou", "mPC": "mean_iou", "rPC (%)": "relative_performance"}
"""Metric ids by the results table's column; any other accuracy column is exported with type mean_iou or its own."""


def _metrics(row: Any, protocol: str) -> list[dict[str, Any]]:
    out = []
    for column, value in row.items():
        if value != value or column.startswith(("Params", "GMACs", "Latency")):
            continue
        kind = METRIC_TYPES.get(column, "mean_iou" if "mIoU" in column else column.split(" ")[0].lower())
        name = f"{column} ({protocol})" if column == "Clean mIoU" else column
        out.append({"type": kind, "value": round(float(value), 2), "name": name, "verified": False})
    return out


def _check_trained(model: str, weights: dict, run_dir: Path) -> None:
    """Refuse a model whose numbers do not belong in a model card: random weights or the demo's synthetic ones."""
    status = "random weights" if weights.get("random") else "synthetic demo weights"
    if weights.get("random") or weights.get("status") == "synthetic-demo":
        raise ValueError(
            f"{run_dir}: {model} ran with {status}; its numbers do not belong in a model card (export a run with "
            "trained weights)"
        )


def model_index(run_dir: str | Path) -> list[dict[str, Any]]:
    """The `model-index` entries of a run: one per model, its accuracy figures as metrics.

    Raises:
        ValueError: a model ran with random or synthetic demo weights.
    """
    folder = RunFolder(run_dir)
    manifest = folder.manifest
    dataset = manifest.get("dataset") or "cityscapes"
    split = (manifest.get("config") or {}).get("split") or manifest.get("split") or "val"
    protocols = manifest.get("protocols") or {}
    table = results_table(run_dir)
    weights = (folder.env or {}).get("weights") or {}
    entries = []
    for model, row in table.iterrows():
        _check_trained(str(model), weights.get(model) or {}, folder.dir)
        protocol = protocols.get(model, {})
        mode = protocol.get("mode", "?") if isinstance(protocol, dict) else "?"
        suite = f"segbench {manifest.get('suite', '?')} v{manifest.get('suite_version', '?')}, {mode} inference"
        data = {"type": dataset, "name": DATASETS.get(dataset, dataset), "split": split}
        results = [{"task": TASK, "dataset": data, "metrics": _metrics(row, suite)}]
        entries.append({"name": str(model), "results": results})
    return entries


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """A minimal YAML writer for nested dicts and lists of scalars (scalars JSON-encoded)."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list):
                lines += [f"{pad}{key}:", *_yaml(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
        return lines
    lines = []
    for item in value:
        inner = _yaml(item, indent + 2)
        lines.append(f"{pad}- {inner[0].lstrip()}")
        lines += inner[1:]
    return lines


def model_index_yaml(run_dir: str | Path) -> str:
    """The block as YAML, ready to paste into a model card's front matter."""
    return "\n".join(_yaml({"model-index": model_index(run_dir)})) + "\n"
