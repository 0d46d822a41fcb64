"""The run config: the one place where a run's settings are checked, for the command line and the Python API alike."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from segbench.bench.run import config as config_module
from segbench.bench.run.config import (
    PRECISIONS,
    ConfigError,
    InferenceSpec,
    RunConfig,
    autocast_dtype,
    check_precision_supported,
    expand_models,
)
from segbench.bench.run.model_args import parse_model_args


def test_expand_models_shorthand():
    assert expand_models("segformer-b0,b5") == ("segformer-b0", "segformer-b5")
    assert expand_models("deeplabv3plus-r50,r101,segformer-b2,b3-mmseg") == (
        "deeplabv3plus-r50",
        "deeplabv3plus-r101",
        "segformer-b2",
        "segformer-b3-mmseg",
    )
    assert expand_models("deeplabv3plus:resnet18") == ("deeplabv3plus:resnet18",)  # compositions are not registered
    with pytest.raises(ConfigError, match="unknown model 'b9'"):
        expand_models("segformer-b0,b9")


@pytest.mark.parametrize(
    "fields, field, problem",
    [
        ({"device": "tpu"}, "device", "'tpu' is not a device; use cpu, cuda or cuda:N"),
        ({"device": "cuda:x"}, "device", "'cuda:x' is not a device"),
        ({"models": ","}, "models", "no model names in ','"),
        ({"models": ""}, "models", "no model names in ''"),
        ({"models": "segformer-b0,b9"}, "models", "unknown model 'b9'"),
        ({"models": ("a", "b", "a")}, "models", "a listed more than once"),
        ({"severities": "0,6"}, "severities", "'0' is not a severity; use integers 1-5"),
        ({"severities": (1, 7)}, "severities", "7 is not a severity"),
        ({"severities": (True,)}, "severities", "True is not a severity"),
        ({"corruptions": "fog,rain"}, "corruptions", "unknown corruption 'rain'"),
        ({"workers": "two"}, "workers", "'two' is not a number of processes"),
        ({"workers": -1}, "workers", "-1 is not a number of processes"),
        ({"precision": "fp64"}, "precision", "'fp64' is not a precision; choose one of fp32, fp16, bf16"),
        ({"precision": "fp16"}, "precision", "fp16 needs a CUDA device"),
        ({"batch_size": 0}, "batch_size", "must be a positive integer, got 0"),
        ({"max_images": 0}, "max_images", "must be a positive integer or None, got 0"),
        ({"num_classes": 0}, "num_classes", "must be a positive integer"),
        ({"only": "speed"}, "only", "'speed' unknown"),
        ({"models": ("a",), "reference_model": "b"}, "reference_model", "'b' is not among the models (a)"),
    ],
)
def test_each_setting_is_checked_when_the_config_is_made(fields, field, problem):
    with pytest.raises(ConfigError) as info:
        RunConfig(**fields)
    assert info.value.field == field and problem in info.value.problem
    assert str(info.value) == f"{field}: {info.value.problem}"


def test_values_are_taken_as_the_command_line_types_them(monkeypatch):
    cfg = RunConfig(
        models="segformer-b0,b5",
        corruptions="fog, snow",
        severities="1,3",
        workers="2",
        device="cuda:1",
        precision="fp16",
    )
    assert cfg.models == ("segformer-b0", "segformer-b5") and cfg.corruptions == ("fog", "snow")
    assert cfg.severities == (1, 3) and cfg.workers == 2
    monkeypatch.setattr(config_module, "default_workers", lambda device: 7)
    assert RunConfig(workers="auto").workers == 7
    # the models a suite fills in are checked against the reference when the suite has filled them
    assert RunConfig(reference_model="segformer-b0").reference_model == "segformer-b0"


def test_one_precision_table():
    assert list(PRECISIONS) == ["fp32", "fp16", "bf16"]
    assert autocast_dtype("fp32") is None
    assert autocast_dtype("fp16") is torch.float16 and autocast_dtype("bf16") is torch.bfloat16
    with pytest.raises(ConfigError, match="'fp8' is not a precision"):
        autocast_dtype("fp8")
    with pytest.raises(ConfigError, match="precision: fp16 needs a CUDA device"):
        InferenceSpec(precision="fp16", device="cpu")


def test_config_round_trips_through_json():
    cfg = RunConfig(
        models=("segformer-b0",),
        weights_text="ckpt/",
        fast=True,
        severities=(1, 3),
        corruptions=("fog",),
        inference=InferenceSpec(mode="slide", crop=64),
    )
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.settings() == {
        "fast": True,
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
        "batch_size": 1,
        "sources": {},
        "model_args": {},
        "label_map": None,
        "model_meta": None,
    }


def test_models_take_every_source_with_an_optional_name(tmp_path):
    label_map = tmp_path / "map.json"
    label_map.write_text('{"vegetation": "tree"}')
    cfg = RunConfig(
        models="segformer-b0,b1,mynet=py:./my_model.py:build,py:mypkg.models:build_large,hf:/ckpt/upernet,"
        "onnx:/deploy/model.onnx,b0=segformer-b0",
        model_args="depth=18,pretrained=False,name=x",
        label_map=str(label_map),
    )
    assert cfg.models == ("segformer-b0", "segformer-b1", "mynet", "build_large", "upernet", "model", "b0")
    assert cfg.sources == {
        "mynet": "py:./my_model.py:build",
        "build_large": "py:mypkg.models:build_large",
        "upernet": "hf:/ckpt/upernet",
        "model": "onnx:/deploy/model.onnx",
        "b0": "segformer-b0",
    }
    assert cfg.model_args == {"depth": 18, "pretrained": False, "name": "x"}
    assert len(cfg.settings()["label_map"]) == 64  # a resume sees a changed map
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="models: mynet listed more than once"):
        RunConfig(models="mynet=py:a.py:f,mynet=onnx:b.onnx")
    with pytest.raises(ConfigError, match="label_map: /nope.json: no such file"):
        RunConfig(models="segformer-b0", label_map="/nope.json")
    with pytest.raises(ConfigError, match="nothing after 'hf:'"):
        RunConfig(models="hf:")


def test_parse_model_args_types_and_brackets():
    args = parse_model_args("depth=2, lr=1e-3,act=gelu,flag=false,On=True,none=None,sizes=[8,16],name='a,b',d={'k': 1}")
    assert args == {
        "depth": 2,
        "lr": 1e-3,
        "act": "gelu",
        "flag": False,
        "On": True,
        "none": None,
        "sizes": [8, 16],
        "name": "a,b",
        "d": {"k": 1},
    }
    assert isinstance(args["depth"], int) and isinstance(args["lr"], float)
    assert parse_model_args(["a=1", "b=x y"]) == {"a": 1, "b": "x y"}
    assert parse_model_args("") == {} and parse_model_args(None) == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("depth", "not key=value"), ("1x=2", "not key=value"), ("a=1,a=2", "given twice"), ("num_classes=3", "set by")],
)
def test_parse_model_args_errors(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_model_args(text)
    with pytest.raises(ConfigError, match=fragment) as info:
        RunConfig(model_args=text)
    assert info.value.field == "model_args" and "model-args" not in info.value.problem  # the flag is the CLI's to add


class StandInGpus:
    """Stand-ins for the `torch.cuda` calls of the bf16 check: GPUs by index, `(name, supports bf16)`, with a current
    device that `torch.cuda.device(...)` switches (as `is_bf16_supported` asks about the current device only)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gpus: dict[int, tuple[str, bool]]):
        self.gpus, self.current = gpus, 0
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device", self.device)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: self.gpus[self.current][1])
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: self.gpus[torch.device(device).index][0])

    @contextlib.contextmanager
    def device(self, device):
        before, self.current = self.current, torch.device(device).index
        try:
            yield
        finally:
            self.current = before


def test_bf16_on_a_gpu_without_it_is_refused_in_one_line(monkeypatch):
    """`torch.autocast` would raise on the first batch, after the preflight; the run refuses first, naming the GPU.
    The GPU asked about is the run's own, not the current one."""
    StandInGpus(monkeypatch, {0: ("NVIDIA A100-SXM4-80GB", True), 1: ("Tesla V100-SXM2-16GB", False)})
    with pytest.raises(ConfigError) as info:
        check_precision_supported("bf16", "cuda:1")
    assert str(info.value) == "precision: bf16 is not supported on cuda:1 (Tesla V100-SXM2-16GB); use fp16 or fp32"
    assert info.value.field == "precision"
    assert check_precision_supported("bf16", "cuda:0") == "bf16"
    assert check_precision_supported("fp16", "cuda:1") == "fp16" and check_precision_supported("fp32", "cuda:1")
    assert check_precision_supported("bf16", "cpu") == "bf16"
