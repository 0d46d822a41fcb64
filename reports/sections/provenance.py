"""The page's first sections: the run (folder, suite, command, versions, hardware) and its models with their weights'
provenance."""

from __future__ import annotations

import json

import pandas as pd

from segbench.reports import deploy as D
from segbench.reports import tables as T
from segbench.reports.page import UNKNOWN_WEIGHTS, Cell, HtmlTable, ModelInfo, Page, Row, Section, builds


def _environment_rows(env: dict) -> list[tuple[str, object]]:
    """The provenance items env.json holds (an item it lacks is None)."""
    git = env.get("git") if isinstance(env.get("git"), dict) else {"commit": env.get("git_commit") or env.get("commit")}
    command = env.get("command")
    return [
        ("Created", env.get("created_at")),
        ("Command", " ".join(map(str, command)) if isinstance(command, list) else command),
        ("Git commit", (git.get("commit") or "") + (" (uncommitted changes)" if git.get("dirty") else "")),
        ("Device", " / ".join(str(v) for v in (env.get("device"), env.get("device_name")) if v)),
        ("CUDA / cuDNN", " / ".join(str(v) for v in (env.get("cuda"), env.get("cudnn")) if v)),
        ("CPU threads", env.get("threads")),
        ("Fast path's CPU kernels", env.get("fast_kernels") or env.get("fast_attention")),  # older runs: attention only
        ("World size", env.get("world_size")),
        ("Seed", " ".join(str(v) for v in (env.get("seed"), env.get("seed_protocol")) if v is not None)),
        ("Python", env.get("python")),
        ("Inference", json.dumps(env["inference"], sort_keys=True) if isinstance(env.get("inference"), dict) else None),
        ("Earlier sessions (resumed)", len(env["sessions"]) if isinstance(env.get("sessions"), list) else None),
    ]


@builds("run-summary", "Run summary and provenance")
def run_summary(page: Page, sec: Section) -> Section:
    frame = page.frame
    acc = frame[T.is_accuracy(frame)]
    summary = [
        ("Run folder", str(page.run_dir)),
        ("Results read from", page.source),
        ("Rows", str(len(frame))),
        ("Models", ", ".join(page.models) or "none"),
        ("Conditions", str(acc["condition"].nunique())),
        ("Efficiency rows", str(int((frame["condition"] == "efficiency").sum()))),
    ]
    env = page.env
    if env is None:
        sec.notes.append("env.json not found or unreadable: the run's provenance is unknown.")
        env = {}
    suite = env.get("suite")
    if isinstance(suite, dict):
        summary.insert(0, ("Suite", f"{suite.get('name', '?')} (version {suite.get('version', '?')})"))
    elif suite:
        summary.insert(0, ("Suite", str(suite)))
    hardware = env.get("hardware") if isinstance(env.get("hardware"), dict) else {}
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    details = [(f"hardware: {k}", v) for k, v in hardware.items()] + [(k, v) for k, v in versions.items() if v]
    rows = [Row([Cell(str(v))], label=k) for k, v in summary]
    rows += [Row([Cell(str(v))], label=k) for k, v in _environment_rows(env) if v not in (None, "")]
    sec.tables.append(HtmlTable(["Item", "Value"], rows, cls="kv"))
    if details:
        rows = [Row([Cell(str(v))], label=k) for k, v in details]
        sec.tables.append(HtmlTable(["Item", "Value"], rows, cls="kv", collapsed="Library versions and hardware"))
    sec.notes += [f"Skipped: {p}" for p in page.problems if not p.startswith("cells/")]
    return sec


@builds("models", "Models and weights")
def models(page: Page, sec: Section) -> Section:
    infos = page.infos
    not_built = D.not_built(page.frame)
    if not infos:
        sec.missing = "No models in this run."
        return sec
    flagged = [i.name for i in infos.values() if i.flag]
    if flagged:
        sec.notes.append(
            "Models marked in red were not evaluated with trained Cityscapes weights (random initialisation or "
            "demo weights trained on synthetic scenes): their numbers show that the pipeline runs, not how good "
            "the architecture is."
        )
    rows = [
        Row(
            [
                Cell(i.model_source),
                Cell(i.source or "–"),
                Cell(i.sha256[:16] + ("…" if len(i.sha256) > 16 else "") or "–", title=i.sha256),
                Cell(i.path or "–"),
                _model_status(i, not_built.get(i.name)),
            ],
            model=i.name,
            cls="not-built" if i.name in not_built else "",
        )
        for i in infos.values()
    ]
    if not_built:
        sec.notes.append(
            f"{len(not_built)} deployment variant(s) could not be built on this machine (greyed): they have no "
            "weights and no results; the Deployment section says why."
        )
    unknown = [i.name for i in infos.values() if i.status == UNKNOWN_WEIGHTS and i.name not in not_built]
    if unknown:
        sec.notes.append(
            f"env.json records no weights status for {', '.join(unknown)} (a run folder written before segbench "
            "recorded it, or a model it does not describe): the report cannot tell trained weights from random or "
            "synthetic-demo ones there, and marks none of them."
        )
    frame = pd.DataFrame(
        [
            {
                "model": i.name,
                "model_source": i.model_source,
                "source": i.source,
                "sha256": i.sha256,
                "path": i.path,
                "random": i.random if i.status != UNKNOWN_WEIGHTS else None,
                "synthetic": i.synthetic if i.status != UNKNOWN_WEIGHTS else None,
                "status": _model_status(i, not_built.get(i.name)).text,
            }
            for i in infos.values()
        ]
    )
    sec.files = page.out.table(frame, "models", "Models and weights")
    sec.tables.append(
        HtmlTable(["Model", "Model source", "Weights source", "sha256", "Path", "Status"], rows, cls="kv")
    )
    return sec


def _model_status(info: ModelInfo, not_built: tuple[str, str] | None) -> Cell:
    if not_built is not None:
        status, reason = not_built
        return Cell(f"not built here ({status})", "", reason)
    if info.status == UNKNOWN_WEIGHTS:
        return Cell("unknown", "", "env.json records no weights status for this model")
    return Cell(info.flag or "trained", "flag" if info.flag else "")
