"""Experiment trackers (`--log-to mlflow[=URI],wandb`): a finished run folder logged as one tracked run.

Every tracker logs the same things (`run_params`, `run_metrics`, `run_artifacts`): run.json's settings as
parameters, summary.csv's scores and each model's clean mIoU as metrics, results.csv, summary.csv, run.json and the
report as artifacts. The tracker's own project is the suite's name; its run is named after the run folder. Neither
reaches the network unless the user configured it.

MLflow (optional extra `segbench[mlflow]`): the default store is local, `sqlite:///<out_dir>/mlflow.db` with
artifacts under `<out_dir>/mlartifacts`; only a URI naming a server sends anything off the machine.

Weights & Biases (optional extra `segbench[wandb]`): offline, a run under `<run_dir>/wandb/offline-run-*` that
`wandb sync` uploads later, unless `WANDB_MODE` is set or wandb holds an API key (WANDB_API_KEY, `wandb login`'s
netrc entry), looked up on this machine as `wandb.init` looks it up. Parameters go to the run's config, metrics to
its summary, the files to one artifact of type "segbench-run". wandb collects nothing else: no console capture, no
system metrics or machine metadata, no code or requirements, and no crash reports of its own (`WANDB_ERROR_REPORTING`
is false unless set). `WANDB_PROJECT` and `WANDB_DIR` override the project and the folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from segbench.bench.results.schema import MIOU

TRACKERS = {"mlflow": "MLflow", "wandb": "wandb (Weights & Biases)"}  # --log-to name -> the package, in words
ARTIFACTS = ("results.csv", "summary.csv", "run.json", "index.html")  # the run folder's files every tracker keeps


def _missing(name: str) -> str:
    return f"--log-to {name} needs {TRACKERS[name]}: pip install 'segbench[{name}]'"


def parse_log_to(value: str | None) -> list[tuple[str, str | None]]:
    """`mlflow`, `mlflow=URI`, `wandb` (or a comma list) as (tracker, URI or None). A `ValueError`, before any run:
    an unknown tracker, a value given to wandb (configured by its own variables), a tracker's package not installed.
    """
    out = []
    for item in [v.strip() for v in (value or "").split(",") if v.strip()]:
        name, _, uri = item.partition("=")
        if name not in TRACKERS:
            raise ValueError(f"--log-to: {name!r} is not a tracker segbench logs to; choose {', '.join(TRACKERS)}")
        if name == "wandb" and uri:
            raise ValueError("--log-to wandb takes no value: set WANDB_PROJECT, WANDB_ENTITY or WANDB_MODE instead")
        if importlib.util.find_spec(name) is None:  # the check only: the module is imported when the run is logged
            raise ValueError(_missing(name))
        out.append((name, uri or None))
    return out


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ValueError(_missing(name)) from None


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


def run_artifacts(run_dir: Path) -> list[Path]:
    """The run folder's files a tracker keeps (`ARTIFACTS`), those that exist."""
    return [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]


def _project(manifest: Mapping[str, Any]) -> str:
    """The tracker's experiment or project: the suite's name."""
    return str(manifest.get("suite") or "segbench")


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
    mlflow = _import("mlflow")
    from segbench.bench.results.store import RunFolder

    run_dir = Path(run_dir)
    manifest = RunFolder(run_dir).manifest
    uri = uri or f"sqlite:///{(run_dir.parent / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    experiment = _project(manifest)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=(run_dir.parent / "mlartifacts").resolve().as_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_dir.name) as active:
        mlflow.log_params(run_params(manifest))
        mlflow.log_metrics(run_metrics(run_dir))
        for path in run_artifacts(run_dir):
            mlflow.log_artifact(str(path))
        return active.info.run_id


# wandb collects only what segbench logs: no console capture, system metrics, machine metadata, code or requirements
_WANDB_SETTINGS = dict(
    console="off",
    silent=True,
    x_disable_stats=True,
    x_disable_meta=True,
    x_disable_machine_info=True,
    disable_code=True,
    x_save_requirements=False,
)


@contextlib.contextmanager
def _env_default(name: str, value: str) -> Iterator[None]:
    """`name=value` in the environment while inside, unless the user set it; restored after."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def wandb_logged_in() -> bool:
    """Whether wandb holds credentials for its server (WANDB_API_KEY, an identity token file, a netrc entry, an
    api_key in its settings files), looked up as `wandb.init` looks them up: on this machine only, no prompt, no
    network call. A wandb whose internals have moved counts as logged out: its run stays offline."""
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth

        host = wandb_setup.singleton().settings.base_url
        found = wbauth.authenticate_session(host=host, source="segbench", prompt=False, update_session=False)
    except (ImportError, AttributeError, TypeError):  # another wandb's layout: the safe answer is offline
        return False
    return found is not None


def _wandb_where(run: Any) -> str:
    """The line saying where the run went: the offline folder and how to upload it, else the run's page."""
    if run.disabled:
        return "wandb: disabled (WANDB_MODE), nothing logged"
    if run.offline:
        sync_dir = run.settings.sync_dir
        return f"wandb: offline run in {sync_dir} (upload it with `wandb sync {sync_dir}`)"
    return f"wandb: run {run.url}"


def log_wandb(run_dir: str | Path) -> str:
    """Log the run folder to Weights & Biases (offline unless WANDB_MODE is set or wandb is logged in; see the module
    docstring); returns the line saying where it went. The wandb service it starts is stopped before returning."""
    wandb = _import("wandb")
    from segbench.bench.results.store import RunFolder

    run_dir = Path(run_dir).resolve()
    manifest = RunFolder(run_dir).manifest
    with _env_default("WANDB_ERROR_REPORTING", "false"):  # read when wandb starts its service, in wandb.init
        offline = not os.environ.get("WANDB_MODE") and not wandb_logged_in()
        try:
            run = wandb.init(
                project=os.environ.get("WANDB_PROJECT") or _project(manifest),
                name=run_dir.name,
                dir=os.environ.get("WANDB_DIR") or run_dir,
                mode="offline" if offline else None,
                config=run_params(manifest),
                settings=wandb.Settings(**_WANDB_SETTINGS),
            )
            with run:  # finishes the run, also on an error
                run.summary.update(run_metrics(run_dir))
                artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]+", "_", run_dir.name), type="segbench-run")
                for path in run_artifacts(run_dir):
                    artifact.add_file(str(path), policy="immutable")  # finished files: no staging copy in ~
                run.log_artifact(artifact)
                return _wandb_where(run)
        finally:
            wandb.teardown()


def log_run(run_dir: str | Path, targets: list[tuple[str, str | None]]) -> list[str]:
    """Log a finished run to every tracker of `targets` (`parse_log_to`); one line per tracker, saying where."""
    lines = []
    for name, uri in targets:
        if name == "mlflow":
            run_id = log_mlflow(run_dir, uri)
            lines.append(f"mlflow: run {run_id} in {uri or Path(run_dir).parent / 'mlflow.db'}")
        elif name == "wandb":
            lines.append(log_wandb(run_dir))
    return lines
