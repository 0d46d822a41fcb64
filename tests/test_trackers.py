"""`--log-to mlflow,wandb`: the run logged to a local MLflow store and to an offline wandb run, each read back with
the tracker's own client or file format."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from segbench.bench.results.schema import MIOU
from segbench.bench.track.trackers import ARTIFACTS, parse_log_to

RUN = ["run", "--suite", "ci", "--max-images", "2", "--only", "accuracy", "--quiet"]


def _clean_miou(run_dir: Path) -> float:
    results = pd.read_csv(run_dir / "results.csv")
    return results[(results.metric == MIOU) & (results.condition == "clean")]["value"].iloc[0]


def _mpc(run_dir: Path) -> float:
    summary = pd.read_csv(run_dir / "summary.csv")
    return summary[(summary.metric == "mPC") & (summary.condition == "corrupted")]["value"].iloc[0]


def test_a_run_logged_to_mlflow_reads_back(tmp_path, monkeypatch, capsys, cli_here):
    pytest.importorskip("mlflow", reason="--log-to mlflow needs pip install 'segbench[mlflow]'")
    pytest.importorskip("sqlalchemy", reason="MLflow's local sqlite store needs SQLAlchemy")
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
    assert logged.data.metrics["segformer-b0/miou/clean"] == pytest.approx(_clean_miou(tmp_path / "runs" / "one"))
    assert "segformer-b0/mPC/corrupted" in logged.data.metrics
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"results.csv", "summary.csv", "run.json", "index.html"} <= artifacts


def _wandb_alone(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """wandb as on a machine that never logged in: no key, no netrc entry, no settings, its folders under `home`."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_DIR", "WANDB_ENTITY", "WANDB_ERROR_REPORTING", "WANDB_SILENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(home / "netrc"))  # not there
    for name, folder in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(name, str(home / "wandb-home" / folder))


def _wandb_records(path: Path) -> dict[str, list]:
    """The records of a .wandb file (what `wandb sync` uploads) by type. The file is wandb's LevelDB-style log: a
    7-byte header, then 32 KiB blocks of chunks `crc (4) | length (2, little-endian) | type (1 full, 2 first, 3 middle,
    4 last)`, each record a `wandb_internal_pb2.Record`. wandb-core writes no files/config.yaml or
    wandb-summary.json for an offline run: this log is all there is until it is synced."""
    from wandb.proto import wandb_internal_pb2

    data, out = path.read_bytes(), {}
    assert data[:4] == b":W&B"
    block, pos, chunks = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunks = (b"" if kind in (1, 2) else chunks) + data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record.FromString(chunks)
            out.setdefault(record.WhichOneof("record_type"), []).append(record)
    return out


def test_a_run_logged_to_wandb_offline_reads_back(tmp_path, monkeypatch, capsys, cli_here):
    pytest.importorskip("wandb", reason="--log-to wandb needs pip install 'segbench[wandb]'")
    _wandb_alone(monkeypatch, tmp_path)
    code, out, err = cli_here(monkeypatch, tmp_path, capsys)(*RUN, "--out", "runs/one", "--log-to", "wandb")
    assert code == 0, err
    run_dir = tmp_path / "runs" / "one"
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert f"wandb: offline run in {offline} (upload it with `wandb sync {offline}`)" in out
    (log,) = offline.glob("run-*.wandb")
    records = _wandb_records(log)
    (run,) = [r.run for r in records["run"]]
    assert run.project == "ci" and run.display_name == "one"
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["suite"] == "ci" and config["settings.precision"] == "fp32"
    summary = {u.key: json.loads(u.value_json) for r in records["summary"] for u in r.summary.update if u.key}
    assert summary["segformer-b0/miou/clean"] == pytest.approx(_clean_miou(run_dir))
    assert summary["segformer-b0/mPC/corrupted"] == pytest.approx(_mpc(run_dir))
    (artifact,) = [r.artifact for r in records["artifact"]]
    assert artifact.type == "segbench-run" and artifact.name == "one"
    files = {c.path: Path(c.local_path) for c in artifact.manifest.contents}
    assert files == {name: run_dir / name for name in ARTIFACTS}  # the run's own files, no copy elsewhere
    assert not list((tmp_path / "wandb-home").rglob("staging"))
    assert "WANDB_ERROR_REPORTING" not in os.environ  # set for wandb's service only, then restored


def test_wandb_is_online_only_with_credentials_on_this_machine(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="--log-to wandb needs pip install 'segbench[wandb]'")
    import wandb

    from segbench.bench.track.trackers import wandb_logged_in

    _wandb_alone(monkeypatch, tmp_path)
    try:
        assert not wandb_logged_in()
        (tmp_path / "netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {'a' * 40}\n")
        assert wandb_logged_in()  # `wandb login`'s entry
        (tmp_path / "netrc").unlink()
        monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
        assert wandb_logged_in()
    finally:
        wandb.teardown()  # the settings wandb loaded from this test's variables


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_a_tracker_not_installed_is_refused_before_the_run(tmp_path, monkeypatch, capsys, cli_here, tracker):
    monkeypatch.setitem(sys.modules, tracker, None)  # what `import` makes of a package that is not there
    code, _, err = cli_here(monkeypatch, tmp_path, capsys)(*RUN, "--out", "runs/two", "--log-to", tracker)
    assert code == 2 and f"pip install 'segbench[{tracker}]'" in err and not (tmp_path / "runs" / "two").exists()


def test_log_to_lists_trackers_and_refuses_what_it_cannot_log():
    for name in ("mlflow", "wandb"):
        pytest.importorskip(name, reason=f"--log-to {name} needs pip install 'segbench[{name}]'")
    assert parse_log_to("mlflow=sqlite:///x.db, wandb") == [("mlflow", "sqlite:///x.db"), ("wandb", None)]
    assert parse_log_to(None) == [] and parse_log_to("mlflow,wandb") == [("mlflow", None), ("wandb", None)]
    with pytest.raises(ValueError, match="--log-to wandb takes no value"):
        parse_log_to("wandb=myproject")


def test_an_unknown_tracker_is_refused_before_the_run(tmp_path, monkeypatch, capsys, cli_here):
    code, _, err = cli_here(monkeypatch, tmp_path, capsys)(*RUN, "--out", "runs/two", "--log-to", "tensorboard")
    assert code == 2 and "'tensorboard' is not a tracker" in err and not (tmp_path / "runs" / "two").exists()
