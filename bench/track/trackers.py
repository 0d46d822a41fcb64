"""Experiment trackers (`--log-to mlflow[=URI]`): a finished run folder logged as one tracked run.

MLflow (optional extra `segbench[mlflow]`): run.json's settings as parameters, summary.csv's scores and each model's
clean mIoU as metrics, results.csv, summary.csv, run.json and the report as artifacts. The default store is local:
`sqlite:///<out_dir>/mlflow.db` with artifacts under `<out_dir>/mlartifacts`, so nothing reaches the network unless
the URI given names a server. The experiment is the suite's name; the MLflow run is named after the run folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from segbench.bench.results.schema import MIOU

TRACKERS = ("mlflow",)


def parse_log_to(value: str | None) -> list[tuple[str, str | None]]:
    """`mlflow`, `mlflow=URI` (or a comma list) as (tracker, URI or None); unknown trackers are a `ValueError`."""
    out = []
    for item in [v.strip() for v in (value or "").split(",") if v.strip()]:
        name, _, uri = item.partition("=")
        if name not in TRACKERS:
            raise ValueError(f"--log-to: {name!r} is not a tracker segbench logs to; choose {', '.join(TRACKERS)}")
        out.append((name, uri or None))
    return out


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = str(value)[:500]  # MLflow keeps parameter values up to 6000 characters; lists get long
    return out


def run_params(manifest: Mapping[str, Any]) -> dict[str, str]:
    """What defines the run's numbers, flattened: suite, version, dataset, seed, split, budget, settings, weights."""
    keys = ("suite", "suite_version", "dataset", "seed", "split", "max_images", "settings", "weights", "shard")
    return _flat({k: manifest.get(k) for k in keys if k in manifest})


def _key(*parts: object) -> str:
    """A metric name MLflow accepts (letters, digits, `_-. /`)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]+", "_", "/".join(str(p) for p in parts if p not in (None, "")))


def run_metrics(run_dir: Path) -> dict[str, float]:
    """Each model's clean mIoU and every summary.csv score, keyed `<model>/<metric>/<condition>`."""
    out: dict[str, float] = {}
    results = pd.read_csv(run_dir / "results.csv")
    clean = results[(results["metric"] == MIOU) & (results["condition"] == "clean")]
    for row in clean.itertuples():
        out[_key(row.model, MIOU, "clean")] = float(row.value)
    summary_csv = run_dir / "summary.csv"
    if summary_csv.is_file():
        summary = pd.read_csv(summary_csv).dropna(subset=["value"])
        for row in summary.itertuples():
            out[_key(row.model, row.metric, row.condition)] = float(row.value)
    return out


def log_mlflow(run_dir: str | Path, uri: str | None = None) -> str:
    """Log the run folder to MLflow; returns the MLflow run id."""
    try:
        import mlflow
    except ImportError:
        raise ValueError("--log-to mlflow needs MLflow: pip install 'segbench[mlflow]'") from None
    from segbench.bench.results.store import RunFolder

    run_dir = Path(run_dir)
    manifest = RunFolder(run_dir).manifest
    uri = uri or f"sqlite:///{(run_dir.parent / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    experiment = str(manifest.get("suite") or "segbench")
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=(run_dir.parent / "mlartifacts").resolve().as_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_dir.name) as active:
        mlflow.log_params(run_params(manifest))
        mlflow.log_metrics(run_metrics(run_dir))
        for name in ("results.csv", "summary.csv", "run.json", "index.html"):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
        return active.info.run_id


def log_run(run_dir: str | Path, targets: list[tuple[str, str | None]]) -> list[str]:
    """Log a finished run to every tracker of `targets` (`parse_log_to`); one line per tracker, saying where."""
    lines = []
    for name, uri in targets:
        if name == "mlflow":
            run_id = log_mlflow(run_dir, uri)
            lines.append(f"mlflow: run {run_id} in {uri or Path(run_dir).parent / 'mlflow.db'}")
    return lines
