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
        ({"dataset": "kitti"}, "dataset", "not a dataset; choose one of cityscapes, ade20k"),
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


# --------------------------------------------------------------------------------------------------------------------
# Every field of the Python API refuses a wrong type or value with a ConfigError naming it
# --------------------------------------------------------------------------------------------------------------------

BAD_RUN_CONFIG = {
    "suite": [123, "", None],
    "suite_version": [1, None],
    "models": [123, {"segformer-b0": 1}, [1], "segformer-b9"],
    "weights": [["segformer-b0"], {"segformer-b0": 5}, "ckpt.pth"],
    "weights_text": [5, ["a"]],
    "data_root": [5, ["/data"]],
    "data_roots": [["acdc"], {"acdc": 5}, {"kitti": "/data"}],
    "split": [1, ""],
    "corrupted_root": [5, {"a": 1}],
    "out_dir": [5, None, "FILE"],
    "run_id": [5, "a/b", ".."],
    "device": [0, "tpu", ["cpu"]],
    "precision": [16, "fp64", ["fp32"]],
    "batch_size": [0, -1, "2", 1.5, True],
    "workers": [-1, "two", 1.5, None, True],
    "corruptions": [3, [1], "rain", {"fog": 1}],
    "severities": [3, "6", [0], [True], 1.5],
    "max_images": [0, -5, "10", 2.5],
    "only": ["speed", 1, ["accuracy"]],
    "resume": ["yes", 1, None],
    "quiet": ["no", 0],
    "seed": [-1, "0", 1.5, True, None],
    "allow_random_weights": ["true", 1],
    "inference": ["slide", 3, {"mode": "tiles"}, {"crop": "big"}, {"unknown": 1}],
    "fast": ["yes", 1],
    "channels_last": ["no", 0],
    "compile": ["yes", 1],
    "reference_model": [5, ""],
    "dataset": [0, "kitti", None, ("cityscapes",)],
    "sources": [["hf:x"], {"m": 5}],
    "model_args": [[1], 5, "a=1,a=2", {1: "x"}],
    "label_map": [5, {"vegetation": "tree"}, "/nonexistent/map.json", "NOT_JSON", "LIST", "TYPO"],
    "model_meta": [5, "/nonexistent/meta.json", "NOT_JSON", "LIST", "BAD_MEAN"],
    "backends": [3, ["tpu"], "eager,tpu"],
    "deploy_precisions": [3, ["fp8"], "int4"],
    "attacks": [3, "fgsm", ["pgd", "pgd"], {"pgd": 1}],
    "norm": [2, "l1", ["linf"]],
    "eps": ["8/0", "x/255", "-1/255", [True], 3],
    "attack_steps": [0, "10", 2.5, True],
    "attack_step_size": [0, "-0.01", "big", True],
    "random_start": ["no", 0, None],
    "shard": ["4/4", "1", "-1/2", "a/b", 3, (0, 2)],
    "command": ["python run_bench.py", [1, 2], 5],
}
"""A bad value (several, where a field can go wrong in several ways) for every field of `RunConfig`; upper-case
words stand for files the test writes (see `_materialise`)."""

BAD_INFERENCE_SPEC = {
    "mode": ["tiles", 1, ["whole"]],
    "crop": [0, "512", (512,), (512, 0), 512.0, True],
    "stride": [-1, "x", (1, 2, 3), (True, 2)],
    "flip": ["yes", 1],
    "batch_size": [0, "2", -3],
    "precision": ["fp64", 16, ["fp32"]],
    "device": ["tpu", 0],
    "channels_last": ["no", 1],
}


def _materialise(value, tmp_path):
    """The files the table names by upper-case words."""
    files = {
        "FILE": ("a-file", "not a folder"),
        "NOT_JSON": ("not.json", "vegetation: tree"),
        "LIST": ("list.json", '["vegetation", "tree"]'),
        "TYPO": ("typo.json", '{"vegitation": "tree"}'),
        "BAD_MEAN": ("mean.json", '{"mean": "imagenet"}'),
    }
    if not isinstance(value, str) or value not in files:
        return value
    name, text = files[value]
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


@pytest.mark.parametrize("cls, table", [(RunConfig, BAD_RUN_CONFIG), (InferenceSpec, BAD_INFERENCE_SPEC)])
def test_every_field_has_bad_values_in_the_table(cls, table):
    """A new field without bad values in the table fails here: add them, and the check that refuses them."""
    import dataclasses

    assert sorted(table) == sorted(f.name for f in dataclasses.fields(cls))


@pytest.mark.parametrize(
    "cls, field, value",
    [(RunConfig, f, v) for f, values in BAD_RUN_CONFIG.items() for v in values]
    + [(InferenceSpec, f, v) for f, values in BAD_INFERENCE_SPEC.items() for v in values],
    ids=lambda v: repr(v)[:30] if not isinstance(v, type) else v.__name__,
)
def test_every_field_refuses_a_bad_value_naming_the_field(cls, field, value, tmp_path):
    value = _materialise(value, tmp_path)
    with pytest.raises(ConfigError) as info:
        cls(**{field: value})
    assert info.value.field == field, info.value
    assert "\n" not in str(info.value) and info.value.problem


def test_inference_given_as_a_bad_dict_names_the_inner_field():
    with pytest.raises(ConfigError) as info:
        RunConfig(inference={"mode": "slide", "crop": "big"})
    assert info.value.field == "inference" and info.value.problem.startswith("crop: must be a positive int")


def test_typed_values_of_the_python_api_are_kept():
    """Paths may be `Path`s (kept as text, so that the config round-trips through JSON); sequences may be any."""
    from pathlib import Path

    cfg = RunConfig(
        models=["segformer-b0"],
        severities=range(1, 3),
        data_root=Path("/data/cityscapes"),
        weights={"segformer-b0": Path("/ckpt/b0.pth")},
        out_dir=Path("/tmp/runs"),
        command=("python", "run_bench.py"),
    )
    assert cfg.severities == (1, 2) and cfg.data_root == "/data/cityscapes" and cfg.out_dir == "/tmp/runs"
    assert cfg.weights == {"segformer-b0": "/ckpt/b0.pth"} and cfg.command == ["python", "run_bench.py"]
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_a_folder_that_cannot_be_made_is_named_with_the_cache_setting_only_inside_the_cache(tmp_path, monkeypatch):
    from segbench.paths import make_folder

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SEGBENCH_CACHE", str(blocker))
    with pytest.raises(
        OSError, match=r"a-file/deploy: Not a directory; segbench keeps generated files in .*SEGBENCH_CACHE="
    ):
        make_folder(blocker / "deploy")
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(OSError) as outside:  # the user's own folder: nothing about the cache
        make_folder(blocker / "engines")
    assert str(outside.value) == f"cannot create the folder {blocker / 'engines'}: Not a directory"
    assert make_folder(tmp_path / "cache" / "a" / "b").is_dir()
