"""A user's model that raises inside its forward (py:, torchscript:, onnx:) fails its own cells, each in one line that
names the model, the condition and the exception; the other models' cells finish; `--debug` shows the traceback."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from segbench.cli import main

RAISES = """
import torch
from torch import nn

segbench_meta = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "trained": True}


class Fragile(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.head = nn.Conv2d(3, num_classes, 1)

    def forward(self, x):
        if x.shape[-1] > 8:
            raise ValueError("my model cannot take this input")
        return self.head(x)


def build(num_classes):
    return Fragile(num_classes)
"""


class Fixed(nn.Module):
    """Works at one input size only (as an exported graph with static axes does)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 19, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x).view(1, 19, 8, 8)  # any other size: a RuntimeError inside the model


def _source(kind: str, tmp_path) -> str:
    if kind == "py":
        (tmp_path / "fragile.py").write_text(RAISES)
        return f"py:{tmp_path}/fragile.py:build"
    if kind == "torchscript":
        torch.jit.script(Fixed().eval()).save(str(tmp_path / "fixed.pt"))
        return f"torchscript:{tmp_path}/fixed.pt"
    pytest.importorskip("onnxruntime")
    torch.onnx.export(Fixed().eval(), torch.randn(1, 3, 8, 8), str(tmp_path / "fixed.onnx"), dynamo=False)
    return f"onnx:{tmp_path}/fixed.onnx"


@pytest.fixture()
def meta(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEGBENCH_DEBUG", "0")  # restored after the test (--debug sets it in this process)
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "trained": True}))
    return path


def _argv(source: str, meta, out) -> list[str]:
    return [
        "--suite",
        "ci",
        "--models",
        f"segformer-tiny,bad={source}",
        "--model-meta",
        str(meta),
        "--allow-random-weights",
        "--only",
        "accuracy",
        "--corruptions",
        "fog",
        "--severities",
        "1",
        "--max-images",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]


@pytest.mark.parametrize("kind", ["py", "torchscript", "onnx"])
def test_a_model_raising_in_forward_fails_its_cells_in_one_line_each(kind, tmp_path, meta, capsys):
    out = tmp_path / "run"
    code = main(_argv(_source(kind, tmp_path), meta, out))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    for condition in ("clean", "fog-1"):
        line = next(x for x in err.splitlines() if f"cell bad__{condition}: the model ({kind}:" in x)
        assert "raised " in line and "(--debug shows the traceback)" in line
    cells = {p.name for p in (out / "cells").glob("*.json")}
    assert cells == {"segformer-tiny__clean.json", "segformer-tiny__fog-1.json"}  # the other model went on
    assert (out / "results.csv").is_file()


def test_debug_shows_the_user_s_traceback(tmp_path, meta, capsys):
    source = _source("py", tmp_path)
    with pytest.raises(Exception, match="2 of 4 cells failed"):  # --debug: the failure goes up, traceback and all
        main(["--debug", *_argv(source, meta, tmp_path / "run")])
    err = capsys.readouterr().err
    assert "Traceback" in err and 'raise ValueError("my model cannot take this input")' in err
