"""The HTML report: a fake run folder rendered end to end, the Table-5 layout, the scores, graceful degradation."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segbench.bench.results.classes import CITYSCAPES
from segbench.bench.results.summaries import summary_rows
from segbench.reports import SECTION_IDS, render_report
from segbench.reports import tables as T
from segbench.reports.page import Outputs, Page, model_infos
from segbench.reports.sections import robustness

EVIL = "<script>alert(1)</script>"
MODELS = ("segformer-b0", "fcn-r18", EVIL)
CORRUPTIONS = {"gaussian_blur": "blur", "gaussian_noise": "noise", "brightness": "digital", "fog": "weather"}
CLEAN = {"segformer-b0": 60.0, "fcn-r18": 50.0, EVIL: 5.0}
# mIoU = clean - drop * severity; segformer-b0 wins every column but brightness, where fcn-r18 wins.
DROP = {
    "segformer-b0": {"gaussian_blur": 5, "gaussian_noise": 20, "brightness": 8, "fog": 3},
    "fcn-r18": {"gaussian_blur": 6, "gaussian_noise": 15, "brightness": 1, "fog": 4},
    EVIL: {"gaussian_blur": 1, "gaussian_noise": 1, "brightness": 1, "fog": 1},
}


def _row(model, condition, metric, value, unit="%", **extra):
    corruption, severity = T.split_condition(condition)
    category = "clean" if condition == "clean" else "efficiency" if condition == "efficiency" else None
    return {
        "model": model,
        "suite": "demo",
        "condition": condition,
        "corruption": corruption,
        "category": CORRUPTIONS.get(corruption, category),
        "severity": 0 if condition == "clean" else severity,
        "metric": metric,
        "value": value,
        "unit": unit,
        **extra,
    }


def miou(model: str, corruption: str | None = None, severity: int = 0) -> float:
    return CLEAN[model] - (DROP[model][corruption] * severity if corruption else 0)


def accuracy_rows(models=MODELS, severities=(1, 2)) -> list[dict]:
    rows = []
    for model in models:
        rows.append(_row(model, "clean", "miou", miou(model)))
        rows.append(_row(model, "clean", "pixel_acc", miou(model) + 20))
        for i, cls in enumerate(CITYSCAPES.names):
            name = cls if model == "fcn-r18" else cls.replace(" ", "_")  # both spellings occur
            rows.append(_row(model, "clean", f"iou_{name}", (miou(model) + 3 * i) % 100))
        for corruption in CORRUPTIONS:
            for s in severities:
                rows.append(_row(model, f"{corruption}-{s}", "miou", miou(model, corruption, s)))
    return rows


def efficiency_rows(models=MODELS) -> list[dict]:
    rows = []
    for k, model in enumerate(models):
        rows.append(_row(model, "efficiency", "params", 3.7 * (k + 1), "M"))
        for convention, factor in (("fvcore", 1.0), ("paper", 1.05)):
            extra = {
                "resolution": "512x1024",
                "batch_size": 1,
                "convention": convention,
                "counter": f"{convention} ctr",
            }
            rows.append(_row(model, "efficiency", "gmacs", 15.0 * (k + 1) * factor, "GMAC", **extra))
        timing = {"resolution": "512x1024", "batch_size": 1, "precision": "fp32", "device": "cpu", "noisy": k == 1}
        for metric, value, unit in (
            ("latency_median", 40.0 * (k + 1), "ms"),
            ("latency_p90", 44.0 * (k + 1), "ms"),
            ("throughput", 25.0 / (k + 1), "img/s"),
            ("peak_memory", 300.0, "MiB"),
        ):
            memory = {"memory_kind": "cpu_process_peak_rss"} if metric == "peak_memory" else {}
            rows.append(_row(model, "efficiency", metric, value, unit, **timing, **memory))
    return rows


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


def make_fake_run(run_dir: Path, models=MODELS, gallery=True, history=True, efficiency=True) -> Path:
    """A run folder as bench/run/runner.py writes it: results.csv, env.json, cells with warnings, gallery, history."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = accuracy_rows(models) + (efficiency_rows(models) if efficiency else [])
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    weights = {
        m: {"source": "synthetic-demo", "sha256": "ab" * 32, "random": False, "status": "synthetic-demo"}
        for m in models
    }
    weights[EVIL] = {"source": "random-init", "sha256": "", "random": True, "status": "random"}
    env = {
        "created_at": "2026-11-25T18:00:00+00:00",
        "command": ["run_bench.py", "--suite", "demo"],
        "git": {"commit": "0123456789abcdef", "dirty": True},
        "device": "cpu",
        "device_name": "Fake CPU",
        "seed": 0,
        "python": "3.11",
        "versions": {"torch": "2.x", "timm": "1.0"},
        "suite": {"name": "demo", "version": "1"},
        "weights": weights,
        "hardware": {"cpu_count": 2},
        "fast_kernels": "segbench's AVX-512 kernels: attention, upsampled sum (cc 12.2.0; /cache/kernels/x-0.so)",
    }
    (run_dir / "env.json").write_text(json.dumps(env))
    cells = run_dir / "cells"
    cells.mkdir(exist_ok=True)
    for i, model in enumerate(models):
        record = {
            "cell": f"{model}|fog-2",
            "kind": "accuracy",
            "model": model,
            "condition": "fog-2",
            "num_images": 10,
            "world_size": 1,
            "shared_with": [f"{m}|fog-2" for m in models if m != model],  # one batch through every model
            "timing": {"total": 10.0, "data": 4.0, "model": 5.0 / len(models), "metric": 0.1},
            "rows": [r for r in rows if r["model"] == model and r["condition"] == "fog-2"],
            "warnings": [f"slow <b>cell</b> {i}"] if i % 2 == 0 else [],
        }
        (cells / f"cell{i}.json").write_text(json.dumps(record))
        if efficiency:
            record = {
                "cell": f"{model}|efficiency",
                "rows": [r for r in rows if r["model"] == model and r["condition"] == "efficiency"],
                "warnings": [],
            }
            (cells / f"eff{i}.json").write_text(json.dumps(record))
    if gallery:
        rng = np.random.default_rng(0)
        entries = []
        for condition in ("clean", "fog-1", "fog-2", "gaussian_noise-1"):
            image = _png(run_dir / f"gallery/input/{condition}.png", rng.integers(0, 255, (8, 16, 3), dtype=np.uint8))
            preds = {}
            for j, model in enumerate(models):
                label = rng.integers(0, 19, (8, 16), dtype=np.uint8)  # train ids: the reporter colours them
                preds[model] = _png(run_dir / f"gallery/pred/m{j}/{condition}.png", label)
            rel = {m: str(Path(p).relative_to(run_dir)) for m, p in preds.items()}
            entries.append({"condition": condition, "input": str(Path(image).relative_to(run_dir)), "predictions": rel})
        _png(run_dir / "gallery/gt.png", rng.integers(0, 19, (8, 16), dtype=np.uint8))
        index = {"image_id": "frankfurt_000000_000294", "conditions": entries, "ground_truth": "gallery/gt.png"}
        (run_dir / "gallery/index.json").write_text(json.dumps(index))
    if history:
        lines = [
            json.dumps(
                {
                    "timestamp": f"2026-11-2{i}T10:00:00",
                    "commit": f"c{i}abcdef01",
                    "metrics": {"segformer-b0/clean/miou": 60 + i, "segformer-b0/latency_median": 40 - i},
                }
            )
            for i in range(3)
        ]
        (run_dir / "history.jsonl").write_text("\n".join(lines) + "\nnot json\n")
    return run_dir


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.links, self.tables, self.missing = set(), [], [], 0, []
        self._section, self._in_missing = None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "section":
            self._section = attrs.get("id")
        if tag == "img":
            self.imgs.append((self._section, attrs["src"]))
        if tag == "a" and not attrs.get("href", "#").startswith("#"):
            self.links.append(attrs["href"])
        if tag == "table":
            self.tables += 1
        if tag == "p" and attrs.get("class") == "missing":
            self.missing.append(self._section)


def _parse(index: Path) -> tuple[str, _Page]:
    text = index.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run = make_fake_run(tmp_path_factory.mktemp("run") / "demo-run")
    return run, render_report(run)


def test_every_section_figure_and_table_present(rendered):
    run, index = rendered
    assert index == run / "index.html"
    text, page = _parse(index)
    assert set(SECTION_IDS) <= page.ids
    # every section has content in the full fake run, but calibration (tests/test_report_calibration.py), the
    # real-world ones (tests/test_report_realworld.py), attacks (tests/test_report_adversarial.py) and the deployment
    # grid (tests/test_report_deploy.py)
    assert page.missing == ["calibration", "real-world", "prediction", "adversarial", "deployment"]
    sections_with_images = {s for s, _ in page.imgs}
    for section in ("severity-curves", "per-class-iou", "efficiency-curves", "gallery", "history"):
        assert section in sections_with_images, section
    for _, src in page.imgs:
        assert (run / src).is_file() or src.startswith("data:image/png"), src
        if src.endswith(".png"):
            assert (run / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len([s for s, _ in page.imgs if s == "efficiency-curves"]) == 2  # mIoU vs GMACs and vs latency
    assert page.tables >= 8
    for link in page.links:
        assert (run / link).is_file(), link
    assert "Peak memory: the process&#39;s peak resident memory on the CPU" in text  # the kind, in words
    # 4 conditions x 3 models: predictions, coloured from train ids, each written once
    assert len([s for s, src in page.imgs if s == "gallery" and src.startswith("report/gallery/")]) == 4 * 3 + 1


def test_model_names_and_warnings_are_escaped(rendered):
    run, index = rendered
    text, _ = _parse(index)
    assert "<script>alert" not in text and "<b>cell</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "slow &lt;b&gt;cell&lt;/b&gt; 0" in text
    shown = html.unescape(text)  # env.json's fast_kernels, as the run wrote it
    assert "Fast path's CPU kernels" in shown
    assert "segbench's AVX-512 kernels: attention, upsampled sum (cc 12.2.0; /cache/kernels/x-0.so)" in shown
    warnings = pd.read_csv(run / "report" / "warnings.csv")
    assert list(warnings["condition"]) == ["fog-2", "fog-2", "efficiency"]
    assert list(warnings["model"]) == [MODELS[0], EVIL, "fcn-r18"]  # the last: its latency was flagged noisy
    assert warnings["warning"].iloc[-1] == "latency timing was noisy (512x1024, batch 1, fp32)"
    md = (run / "report" / "robustness_scores.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_random_and_synthetic_weights_are_flagged(rendered):
    _, index = rendered
    text, _ = _parse(index)
    assert 'class="model flagged">&lt;script&gt;alert(1)&lt;/script&gt;</span> <span class="badge"' in text
    assert "random weights (untrained)" in text and "synthetic-data demo weights" in text


def test_weights_flags_are_the_status_the_run_wrote():
    weights = {
        "a": {"status": "random", "sha256": "ff" * 32, "source": "trained.pth", "random": False},  # looks trained
        "b": {"status": "synthetic-demo", "source": "hf"},
        "c": {"status": "trained", "source": "random-init", "sha256": "random-init/seed=0", "random": True},
    }
    env = {"weights": weights, "weights_sha256": {"d": "random-init/seed=0", "e": "unhashed:synthetic-demo"}}
    infos = model_infos(env, ["a", "b", "c", "d", "e", "f"])
    assert infos["a"].random and infos["a"].flag == "random weights (untrained)" and infos["a"].sha256 == "ff" * 32
    assert infos["b"].synthetic and infos["b"].flag == "synthetic-data demo weights"
    assert infos["c"].status == "trained" and not infos["c"].flag  # its status, not its source or fingerprint
    for name in ("d", "e", "f"):  # no status written (a run folder from before, or no entry): not guessed
        assert infos[name].status == "unknown" and not infos[name].flag and not infos[name].random
    assert infos["d"].source == "" and infos["d"].sha256 == "random-init/seed=0"
    assert model_infos({"weights": {"a": {"status": "bogus", "random": True}}}, ["a"])["a"].status == "unknown"


def test_a_run_folder_without_weights_status_renders_them_unknown(tmp_path):
    run = make_fake_run(tmp_path / "run")
    env = json.loads((run / "env.json").read_text())
    for detail in env["weights"].values():
        detail.pop("status")  # env.json as runs wrote it before the status field
    (run / "env.json").write_text(json.dumps(env))
    text, page = _parse(render_report(run))
    assert "random weights (untrained)" not in text and 'class="badge"' not in text
    assert "env.json records no weights status for" in text
    models = pd.read_csv(run / "report" / "models.csv")
    assert set(models["status"]) == {"unknown"} and models["random"].isna().all()


def test_tables_written_as_csv_and_markdown(rendered):
    run, _ = rendered
    for stem in (
        "cityscapes_c",
        "robustness_scores",
        "per_class_iou",
        "efficiency",
        "miou_per_condition",
        "warnings",
        "models",
        "history",
        "evaluation_time",
    ):
        assert (run / "report" / f"{stem}.csv").is_file(), stem
        assert (run / "report" / f"{stem}.md").read_text().count("|") > 4, stem
    table5 = pd.read_csv(run / "report" / "cityscapes_c.csv")
    run_rows = table5[table5["source"] == "this run"].set_index("model")
    assert run_rows.loc["segformer-b0", "fog"] == pytest.approx(60 - 3 * 1.5)
    assert run_rows.loc["fcn-r18", "clean"] == 50.0
    assert "SegFormer-B5" in set(table5["model"])  # the published rows travel with the table
    eff = pd.read_csv(run / "report" / "efficiency.csv")
    assert {"GMACs [fvcore]", "GMACs [paper]", "latency_median_ms", "latency_p90_ms", "params_M"} <= set(eff.columns)
    assert list(eff["model"]) == list(MODELS)
    classes = pd.read_csv(run / "report" / "per_class_iou.csv")
    assert list(classes.columns[1:]) == list(CITYSCAPES.names)  # spaces and underscores both mapped
    assert "# segbench report" in (run / "report" / "report.md").read_text()


def test_table5_groups_columns_by_category_and_marks_best():
    rows = accuracy_rows(MODELS[:2])
    frame = T.normalize_results(pd.DataFrame(rows))
    tab = T.table5(T.miou_conditions(frame), list(MODELS[:2]), pd.DataFrame(summary_rows(rows, "demo")))
    assert [g for g, _ in tab.groups] == ["blur", "noise", "digital", "weather"]
    assert tab.columns[:5] == ["clean", "motion_blur", "defocus_blur", "glass_blur", "gaussian_blur"]
    assert tab.columns[-4:] == ["snow", "spatter", "fog", "frost"] and len(tab.columns) == 17
    assert tab.values.loc["fcn-r18", "brightness"] == pytest.approx(50 - 1.5)
    assert np.isnan(tab.values.loc["segformer-b0", "snow"])  # not measured: kept as an empty paper column
    assert tab.best == {("segformer-b0", c) for c in ("clean", "gaussian_blur", "gaussian_noise", "fog")} | {
        ("fcn-r18", "brightness")
    }
    assert tab.severities["fog"] == [1, 2] and tab.severities["snow"] == []
    assert list(tab.published.columns) == tab.columns and "SegFormer-B5" in tab.published.index
    text = T.describe_severities(tab.severities)
    assert "blur at severities 1, 2" in text and "weather at severities 1, 2" in text


def test_table5_html_layout(rendered):
    _, index = rendered
    text, _ = _parse(index)
    section = text[text.index('id="cityscapes-c"') : text.index('id="robustness-scores"')]
    groups = [section.index(f">{g}</th>") for g in ("Blur", "Noise", "Digital", "Weather")]
    assert groups == sorted(groups) and 'colspan="4" class="group">Blur' in section
    assert section.count('class="best"') == 5
    assert "Published numbers" in section and 'class="published"' in section


def test_scores_follow_the_formulas():
    """The contract's summary rows (what summary.csv holds and the report shows) follow the published formulas."""
    rows = accuracy_rows(MODELS[:2])
    summary = pd.DataFrame(summary_rows(rows, "demo", reference_model="fcn-r18"))
    scores = summary[summary["condition"] == "corrupted"].pivot(index="model", columns="metric", values="value")
    s, r = DROP["segformer-b0"], DROP["fcn-r18"]
    mpc = np.mean([60 - 1.5 * d for d in s.values()])
    assert scores.loc["segformer-b0", "mPC"] == pytest.approx(mpc)
    assert scores.loc["segformer-b0", "rPC"] == pytest.approx(100 * mpc / 60)
    ce = [(40 * 2 + 3 * s[c]) / (50 * 2 + 3 * r[c]) for c in CORRUPTIONS]  # sum over severities 1, 2
    assert scores.loc["segformer-b0", "mCE"] == pytest.approx(100 * np.mean(ce))
    rel = [s[c] / r[c] for c in CORRUPTIONS]  # drops sum to 3 * drop per severity step for both
    assert scores.loc["segformer-b0", "rel_mCE"] == pytest.approx(100 * np.mean(rel))
    assert scores.loc["fcn-r18", "mCE"] == pytest.approx(100.0)  # the reference's own scores are rows too
    assert scores.loc["fcn-r18", "rel_mCE"] == pytest.approx(100.0)
    noise = summary[(summary["condition"] == "noise") & (summary["model"] == "segformer-b0")]["value"]
    assert noise.item() == pytest.approx(60 - 1.5 * 20)


@pytest.mark.parametrize("reference", [None, "fcn-r18", "segformer-b0"])
def test_report_shows_exactly_what_summary_csv_holds(tmp_path, reference):
    """Whatever reference the report uses (the run's default or another one), summary.csv holds the same scores."""
    run = make_fake_run(tmp_path / "run", MODELS[:2], gallery=False, history=False, efficiency=False)
    render_report(run, reference_model=reference)
    shown = pd.read_csv(run / "report" / "robustness_scores.csv").set_index("model")
    stored = pd.read_csv(run / "summary.csv")
    used = set(stored["reference"].dropna())
    assert used == {reference or MODELS[0]} and set(shown["reference"]) == used
    overall = stored[stored["condition"] == "corrupted"].pivot(index="model", columns="metric", values="value")
    for model in MODELS[:2]:
        for metric in ("mPC", "rPC", "mCE", "rel_mCE"):
            assert shown.loc[model, metric] == pytest.approx(overall.loc[model, metric], rel=1e-5), (model, metric)
    assert overall.loc[reference or MODELS[0], "mCE"] == pytest.approx(100.0)


def test_reference_model_argument(tmp_path):
    run = make_fake_run(tmp_path / "run", MODELS[:2], gallery=False, history=False, efficiency=False)
    render_report(run, reference_model="fcn-r18")
    scores = pd.read_csv(run / "report" / "robustness_scores.csv").set_index("model")
    assert scores.loc["fcn-r18", "mCE"] == pytest.approx(100.0) and set(scores["reference"]) == {"fcn-r18"}
    with pytest.raises(ValueError, match="reference model 'nope'"):
        render_report(run, reference_model="nope")


def test_missing_sections_degrade_and_stale_files_go(tmp_path):
    run = make_fake_run(tmp_path / "run", MODELS[:1], gallery=False, efficiency=False)
    render_report(run)
    assert (run / "report" / "history.png").is_file() and (run / "report" / "miou_per_condition.csv").is_file()
    rows = [r for r in accuracy_rows(MODELS[:1]) if r["condition"] == "clean" and r["metric"] == "miou"]
    pd.DataFrame(rows).drop(columns=["category", "severity", "unit"]).to_csv(run / "results.csv", index=False)
    for name in ("env.json", "history.jsonl"):
        (run / name).unlink()
    for cell in (run / "cells").glob("*.json"):
        cell.unlink()
    _, page = _parse(render_report(run))
    assert set(SECTION_IDS) <= page.ids
    assert set(page.missing) == {
        "robustness-scores",
        "severity-curves",
        "calibration",
        "real-world",
        "adversarial",
        "prediction",
        "per-class-iou",
        "efficiency-table",
        "efficiency-curves",
        "deployment",
        "evaluation-time",
        "gallery",
        "warnings",
        "history",
    }
    assert not (run / "report" / "history.png").exists() and not (run / "report" / "miou_per_condition.csv").exists()
    assert "env.json not found" in (run / "index.html").read_text()


def test_fractions_are_shown_in_percent():
    rows = [
        _row("m", "clean", "miou", 0.625, unit="fraction"),
        _row("m", "fog-1", "miou", 0.5, unit="fraction"),
        _row("m", "clean", "iou_road", 0.9, unit=None),
        _row("m", "efficiency", "params", 0.5, unit="M"),
    ]
    frame = T.normalize_results(pd.DataFrame(rows))
    assert frame.loc[frame["metric"] == "miou", "value"].tolist() == [62.5, 50.0]
    assert frame.loc[frame["metric"] == "iou_road", "value"].item() == pytest.approx(90.0)
    assert frame.loc[frame["metric"] == "params", "value"].item() == 0.5  # efficiency untouched
    no_unit = T.normalize_results(pd.DataFrame(rows).drop(columns="unit"))
    assert no_unit.loc[no_unit["metric"] == "miou", "value"].tolist() == [62.5, 50.0]


def test_published_points_match_model_names():
    frame = T.normalize_results(pd.DataFrame(accuracy_rows(MODELS[:2]) + efficiency_rows(MODELS[:2])))
    clean = T.miou_conditions(frame).query("corruption == 'clean'").set_index("model")["miou"]
    gmacs, latency = T.efficiency_curves(T.efficiency_rows(frame), clean)
    assert gmacs.x_label.endswith("[paper]") and gmacs.setting.startswith("512x1024")  # paper convention first
    assert list(gmacs.published["label"]) == ["segformer-b0"] and gmacs.published["x"].item() == 125.5
    assert latency.published.empty  # no mmseg-named model in the run
    assert list(gmacs.points["model"]) == list(MODELS[:2])


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        render_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither results.csv nor cells"):
        render_report(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    pd.DataFrame({"model": ["m"], "metric": ["miou"]}).to_csv(tmp_path / "bad" / "results.csv", index=False)
    with pytest.raises(ValueError, match=r"not a segbench results CSV \(no column value\)"):
        render_report(tmp_path / "bad")


def test_reporter_imports_neither_torch_nor_other_rooms():
    code = (
        "import sys, segbench.reports; print([m for m in sys.modules if m == 'torch' or m.startswith(("
        "'segbench.models', 'segbench.suites', 'segbench.bench.run', 'segbench.bench.data', 'segbench.bench.deploy'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _screenshot_module():
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / "screenshot_report.py"
    spec = importlib.util.spec_from_file_location("screenshot_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_screenshot_script_fails_clearly(tmp_path, capsys):
    shot = _screenshot_module()
    with pytest.raises(FileNotFoundError, match="apt-get install -y chromium"):
        shot.find_chromium(str(tmp_path / "no-chromium"))
    assert shot.main([str(tmp_path), "--chromium", str(tmp_path / "no-chromium")]) == 1
    assert "index.html not found" in capsys.readouterr().err
    (tmp_path / "index.html").write_text("<html></html>")
    assert shot.main([str(tmp_path), "--chromium", str(tmp_path / "no-chromium")]) == 1
    assert "Chromium not found" in capsys.readouterr().err


@pytest.mark.parametrize("random_models", [("fcn-r18",), ("segformer-b0", "fcn-r18")])
def test_random_weight_models_are_never_marked_best(tmp_path, random_models):
    rows = accuracy_rows(MODELS[:2])
    frame = T.normalize_results(pd.DataFrame(rows))
    summary = pd.DataFrame(summary_rows(rows, "demo", reference_model="segformer-b0"))
    weights = {
        m: {
            "source": "random-init" if m in random_models else "trained.pth",
            "random": m in random_models,
            "status": "random" if m in random_models else "trained",
        }
        for m in MODELS[:2]
    }
    env = {"weights": weights}
    page = Page(tmp_path, frame, "results.csv", summary, env, [], [], model_infos(env, MODELS[:2]), Outputs(tmp_path))
    sec, scores = robustness.table5(page), robustness.scores(page)
    marked = {
        (row.model, i)
        for table in (sec.tables[0], scores.tables[0])
        for row in table.rows
        for i, cell in enumerate(row.cells)
        if cell.cls == "best"
    }
    assert not {model for model, _ in marked} & set(random_models)
    if len(random_models) == 1:  # fcn-r18 won brightness, but its weights are random: segformer-b0 takes every column
        b0 = next(row for row in sec.tables[0].rows if row.model == "segformer-b0")
        assert {i for i, c in enumerate(b0.cells) if c.cls == "best"} == {
            i for i, c in enumerate(b0.cells) if c.text != "–"
        }
        assert "random-weight models are never marked" in " ".join(sec.notes)
    else:
        assert not marked and "every model here has random weights" in " ".join(sec.notes)


def test_efficiency_table_shows_executed_gmacs_beside_the_architectures():
    rows = efficiency_rows(MODELS[:2])
    extra = {"resolution": "512x1024", "batch_size": 1, "convention": "fvcore", "counter": "fvcore ctr"}
    rows.append(_row("segformer-b0", "efficiency", "gmacs_executed", 6.0, "GMAC", **extra))
    table = T.efficiency_table(T.efficiency_rows(T.normalize_results(pd.DataFrame(rows))), list(MODELS[:2]))
    first = table[table["model"] == "segformer-b0"].iloc[0]
    assert first["GMACs [fvcore]"] == 15.0 and first["GMACs executed [fvcore]"] == 6.0
    assert np.isnan(table[table["model"] == "fcn-r18"].iloc[0]["GMACs executed [fvcore]"])
    plain = T.efficiency_table(T.efficiency_rows(T.normalize_results(pd.DataFrame(efficiency_rows(MODELS[:2])))), [])
    assert not any("executed" in c for c in plain.columns)  # only runs with a fast path get the column


def _timed_cell(model, condition, shared=(), ranks=1, total=10.0, data=1.0, model_s=8.0, metric=0.2, images=20):
    return {
        "cell": f"{model}|{condition}",
        "model": model,
        "condition": condition,
        "num_images": images,
        "world_size": ranks,
        "shared": [f"{m}|{condition}" for m in shared],
        "total_s": total,
        "data_s": data,
        "model_s": model_s,
        "metric_s": metric,
    }


def test_evaluation_time_counts_a_shared_condition_once():
    cells = pd.DataFrame(
        [
            # two models shared fog-1's batches on 2 ranks: data and wall once, model seconds added, per rank
            _timed_cell("a", "fog-1", shared=["b"], ranks=2, total=10.0, data=6.0, model_s=4.0, metric=0.4),
            _timed_cell("b", "fog-1", shared=["a"], ranks=2, total=10.0, data=6.0, model_s=8.0, metric=0.4),
            _timed_cell("a", "clean", total=5.0, data=0.5, model_s=4.0, metric=0.1, images=10),
        ]
    )
    table = T.evaluation_time(cells)
    assert list(table["condition"]) == ["clean", "fog-1"] and list(table["models"]) == ["a", "a, b"]  # clean first
    fog = table.iloc[1]
    assert (fog["images"], fog["wall_s"], fog["data_s"], fog["model_s"]) == (20, 10.0, 3.0, 6.0)
    assert fog["metric_s"] == pytest.approx(0.4)
    assert (fog["data_pct"], fog["model_pct"], fog["img_s"]) == (30.0, 60.0, 2.0)
    total = T.evaluation_total(table)
    assert (total["images"], total["wall_s"], total["data_s"]) == (30, 15.0, 3.5)
    assert total["data_pct"] == pytest.approx(100 * 3.5 / 15) and total["img_s"] == 2.0
    assert T.evaluation_time(pd.DataFrame()).empty
    names = ["zoom_blur-1", "fog-2", "clean", "motion_blur-3", "fog-1"]  # Table 5's order, an extra one last
    shuffled = pd.DataFrame([_timed_cell("a", c) for c in names])
    assert list(T.evaluation_time(shuffled)["condition"]) == ["clean", "motion_blur-3", "fog-1", "fog-2", "zoom_blur-1"]


def _time_run(tmp_path, data, device="cpu", corrupted_root=None, condition="fog-2"):
    run = make_fake_run(tmp_path / "run", MODELS[:2], gallery=False, history=False, efficiency=False)
    env = json.loads((run / "env.json").read_text())
    env["config"] = {"device": device, "corrupted_root": corrupted_root}
    (run / "env.json").write_text(json.dumps(env))
    for path in (run / "cells").glob("cell*.json"):
        record = json.loads(path.read_text())
        record["condition"] = condition
        record["timing"]["data"] = data
        record["timing"]["model"] = (10.0 - data - 0.2) / 2  # the rest of the 10 s, but for 0.1 s metric per model
        path.write_text(json.dumps(record))
    bad = {"cell": "x|fog-3", "kind": "accuracy", "num_images": "many", "timing": {"total": 1.0}}
    (run / "cells" / "zbad.json").write_text(json.dumps(bad))  # a broken record is left out, not fatal
    render_report(run)
    text = (run / "index.html").read_text()
    return text[text.index('id="evaluation-time"') : text.index('id="gallery"')]


def test_report_says_where_the_evaluation_time_went(tmp_path):
    section = _time_run(tmp_path, data=4.0)
    table = pd.read_csv(tmp_path / "run" / "report" / "evaluation_time.csv")
    assert list(table["Condition"]) == ["fog-2", "all conditions"]  # both models' cells are one row
    assert list(table["Data (% of wall)"]) == [40.0, 40.0] and list(table["Images"]) == [10, 10]
    busy = "the models were busy for 60% of it (inference 58%, metric 2%); the loop waited for images for 40%"
    assert busy in section
    assert "The pipeline, not the models, limited this run" in section
    assert "generate-c" in section and "DataLoader workers cannot hide it" in section  # CPU, corrupted on the fly


@pytest.mark.parametrize(
    "kw, generate_c, workers, limited",
    [
        ({"data": 0.5}, False, False, False),  # 5%: the models were busy
        ({"data": 4.0, "device": "cuda:0"}, True, True, True),
        ({"data": 4.0, "corrupted_root": "/data/cityscapes-c"}, False, False, True),  # read, not computed
        ({"data": 4.0, "condition": "clean"}, False, False, True),
    ],
)
def test_pipeline_advice_fits_the_run(tmp_path, kw, generate_c, workers, limited):
    section = _time_run(tmp_path, **kw)
    assert ("limited this run: the models were idle for" in section) == limited
    assert ("generate-c" in section) == generate_c
    assert ("raise --workers" in section) == workers


def test_a_long_evaluation_time_table_is_folded_under_its_total(tmp_path):
    run = make_fake_run(tmp_path / "run", MODELS[:2], gallery=False, history=False, efficiency=False)
    for k, condition in enumerate(f"{c}-{s}" for c in ("snow", "frost", "spatter") for s in (1, 2, 3, 4, 5)):
        record = {
            "cell": f"a__{condition}",
            "kind": "accuracy",
            "model": "a",
            "condition": condition,
            "num_images": 2,
            "world_size": 1,
            "shared_with": [],
            "timing": {"total": 1.0, "data": 0.1, "model": 0.8, "metric": 0.01},
            "rows": [],
        }
        (run / "cells" / f"t{k}.json").write_text(json.dumps(record))
    render_report(run)
    text = (run / "index.html").read_text()
    section = text[text.index('id="evaluation-time"') : text.index('id="gallery"')]
    folded = section.index("<details><summary>Per condition (16 rows)</summary>")
    assert section.index("all conditions") < folded  # the total stays in view, above the folded rows


def test_models_section_names_each_models_source(tmp_path):
    run = make_fake_run(tmp_path / "run", MODELS[:2], gallery=False, history=False, efficiency=False)
    env = json.loads((run / "env.json").read_text())
    env["weights"][MODELS[0]]["model_source"] = {
        "kind": "hf",
        "target": "/ckpt/upernet",
        "flop_conventions": ["fvcore"],
    }
    env["weights"][MODELS[1]]["model_source"] = {"kind": "onnx", "target": "/deploy/m.onnx", "flop_conventions": []}
    (run / "env.json").write_text(json.dumps(env))
    render_report(run)
    models = pd.read_csv(run / "report" / "models.csv").set_index("model")
    assert models.loc[MODELS[0], "model_source"] == "hf: /ckpt/upernet (FLOPs: fvcore only)"
    assert models.loc[MODELS[1], "model_source"] == "onnx: /deploy/m.onnx (FLOPs not counted: no counter)"
    assert models.loc[EVIL, "model_source"] == "registry"


def test_tables_without_dividers_are_sortable_offline(rendered):
    _, index = rendered
    html = index.read_text()
    assert re.search(r'<table class="[^"]*\bsortable"', html) and 'querySelectorAll("table.sortable")' in html
    assert "<script src" not in html  # the one script is inline: the page works from file:// offline
