"""Every model source runs a suite end to end: py: (file and module), an entry-point plugin, torchscript:, onnx:,
hf: and an in-memory module; their params equal the module's own count; their provenance reaches run.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import segbench
from segbench.bench.results.classes import CITYSCAPES

ROOT = Path(__file__).resolve().parents[1]
NARROW = dict(corruptions="fog", severities="1", max_images=1, allow_random_weights=True, quiet=True)

MODEL_FILE = """
import torch
from torch import nn

segbench_meta = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "output_stride": 4}


class Tiny(nn.Module):
    def __init__(self, num_classes, width=8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=4, padding=1)
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        return self.head(torch.relu(self.stem(x)))


def build(num_classes, width=8):
    return Tiny(num_classes, width)
"""


class Tiny(nn.Module):
    def __init__(self, num_classes: int = 19, width: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=4, padding=1)
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.stem(x)))


def _params(frame: pd.DataFrame, model: str) -> float:
    return frame.query(f"model == '{model}' and metric == 'params'")["value"].item()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_py_file_module_torchscript_and_an_in_memory_module_run_the_ci_suite(tmp_path, cache, monkeypatch):
    (tmp_path / "my_model.py").write_text(MODEL_FILE)
    pkg = tmp_path / "pkg" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    large = "def build_large(num_classes, width=16):\n    return Tiny(num_classes, width)\n\n\ndef build("
    (pkg / "models.py").write_text(MODEL_FILE.replace("def build(", large))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    scripted = torch.jit.script(Tiny(19).eval())
    scripted.save(str(tmp_path / "tiny.pt"))
    in_memory = Tiny(19, width=4)
    config = segbench.RunConfig(
        models=f"mynet=py:{tmp_path}/my_model.py:build,py:mypkg.models:build_large,ts=torchscript:{tmp_path}/tiny.pt",
        model_args="width=8",
        out_dir=str(tmp_path / "runs"),
        run_id="sources",
        **NARROW,
    )
    result = segbench.run("ci", config, modules={"mem": in_memory})
    assert not result.failed
    frame = result.frame()
    assert set(frame["model"]) == {"mynet", "build_large", "ts", "mem"}
    assert _params(frame, "mynet") == pytest.approx(sum(p.numel() for p in Tiny(19, 8).parameters()) / 1e6)
    assert _params(frame, "build_large") == _params(frame, "mynet")  # --model-args width=8 reached the factory
    assert _params(frame, "ts") == pytest.approx(sum(p.numel() for p in scripted.parameters()) / 1e6)
    assert _params(frame, "mem") == pytest.approx(sum(p.numel() for p in in_memory.parameters()) / 1e6)
    assert {"miou", "latency_calibrated"} <= set(frame.query("model == 'ts'")["metric"])
    assert frame.query("model == 'ts' and metric == 'gmacs'").empty  # no FLOP counter traces a TorchScript file
    assert not frame.query("model == 'mynet' and metric == 'gmacs'").empty
    manifest = json.loads((result.run_dir / "run.json").read_text())
    assert manifest["settings"]["sources"]["ts"] == f"torchscript:{tmp_path}/tiny.pt"
    env = json.loads((result.run_dir / "env.json").read_text())
    assert env["weights"]["mynet"]["model_source"]["kind"] == "py"
    assert env["weights"]["mynet"]["meta"]["mean"] == [0.5, 0.5, 0.5]
    assert env["weights"]["mem"]["model_source"]["kind"] == "module"
    assert env["weights"]["segformer-b0" if "segformer-b0" in env["weights"] else "ts"]  # every model described


def test_onnx_and_hf_through_the_command_line(tmp_path):
    pytest.importorskip("onnxruntime")
    transformers = pytest.importorskip("transformers")
    model = Tiny(19).eval()
    torch.onnx.export(
        model,
        torch.randn(1, 3, 64, 128),
        str(tmp_path / "tiny.onnx"),
        dynamo=False,
        input_names=["image"],
        dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}},
    )
    config = transformers.SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 1],
        decoder_hidden_size=16,
        id2label=dict(enumerate(CITYSCAPES.names)),
        label2id={c: i for i, c in enumerate(CITYSCAPES.names)},
        patch_sizes=[7, 3],
        strides=[4, 2],
        mlp_ratios=[2, 2],
    )
    hf_model = transformers.SegformerForSemanticSegmentation(config)
    hf_model.save_pretrained(tmp_path / "hf-segformer")
    (tmp_path / "hf-segformer" / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "SegformerImageProcessor",
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
            }
        )
    )
    env = {**os.environ, "SEGBENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    args = [
        "--suite",
        "ci",
        "--models",
        f"onnx:{tmp_path}/tiny.onnx,seg=hf:{tmp_path}/hf-segformer",
        "--corruptions",
        "fog",
        "--severities",
        "1",
        "--max-images",
        "1",
        "--allow-random-weights",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    out = subprocess.run(
        [sys.executable, str(ROOT / "run_bench.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    frame = pd.read_csv(tmp_path / "run" / "results.csv")
    assert set(frame["model"]) == {"tiny", "seg"}
    assert _params(frame, "tiny") == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    assert _params(frame, "seg") == pytest.approx(sum(p.numel() for p in hf_model.parameters()) / 1e6)
    conventions = set(frame.query("model == 'seg' and metric == 'gmacs'")["convention"])
    assert conventions == {"fvcore", "torch"}  # fvcore and torch's counter; no paper convention for a hf: model
    assert "| seg " in out.stdout and "| tiny " in out.stdout  # the console table


@pytest.mark.parametrize(
    "models, message",
    [
        ("py:/nonexistent/x.py:build", "py:/nonexistent/x.py:build: "),
        ("hf:/nonexistent/folder", "hf:/nonexistent/folder: "),
        ("onnx:/nonexistent/m.onnx", "onnx:/nonexistent/m.onnx: "),
        ("hf:", "nothing after 'hf:'"),
    ],
)
def test_a_bad_source_is_one_line_and_writes_no_run(tmp_path, models, message):
    env = {**os.environ, "SEGBENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_bench.py"),
            "--suite",
            "ci",
            "--models",
            models,
            "--allow-random-weights",
            "--out",
            str(tmp_path / "run"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert message in out.stderr
    assert not (tmp_path / "run" / "results.csv").exists()
