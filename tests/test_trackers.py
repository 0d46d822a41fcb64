"""`--log-to mlflow`: the run logged to a local MLflow store, read back with MLflow's own client."""

from __future__ import annotations

import pandas as pd
import pytest

from segbench.bench.results.schema import MIOU

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")

RUN = ["run", "--suite", "ci", "--max-images", "2", "--only", "accuracy", "--quiet"]


def test_a_run_logged_to_mlflow_reads_back(tmp_path, monkeypatch, capsys, cli_here):
    from mlflow.tracking import MlflowClient

    call = cli_here(monkeypatch, tmp_path, capsys)
    code, out, err = call(*RUN, "--out", "runs/one", "--log-to", "mlflow")
    assert code == 0, err
    assert "mlflow: run " in out
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ci")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "one"
    assert logged.data.params["suite"] == "ci" and logged.data.params["settings.precision"] == "fp32"
    results = pd.read_csv(tmp_path / "runs" / "one" / "results.csv")
    clean = results[(results.metric == MIOU) & (results.condition == "clean")]["value"].iloc[0]
    assert logged.data.metrics["segformer-b0/miou/clean"] == pytest.approx(clean)
    assert "segformer-b0/mPC/corrupted" in logged.data.metrics
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"results.csv", "summary.csv", "run.json", "index.html"} <= artifacts


def test_an_unknown_tracker_is_refused_before_the_run(tmp_path, monkeypatch, capsys, cli_here):
    code, _, err = cli_here(monkeypatch, tmp_path, capsys)(*RUN, "--out", "runs/two", "--log-to", "tensorboard")
    assert code == 2 and "'tensorboard' is not a tracker" in err and not (tmp_path / "runs" / "two").exists()
