"""The user's own models (`py:`, entry-point plugins) and exported files (`torchscript:`, `onnx:`)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from segbench.bench.measure.efficiency import count_params
from segbench.bench.measure.inference import normalize
from segbench.bench.run.model_args import parse_model_args
from segbench.models import build_from_source
from segbench.models.adapter import SourceModel
from segbench.models.checkpoint import sha256_file, state_dict_sha256
from segbench.models.exported import load_onnx, load_torchscript, onnx_parameter_count
from segbench.models.sources import BuildRequest, SourceError, parse_model_spec
from segbench.models.user import create_entry_point_model, list_entry_point_models, load_py

CLASSES = ("road", "car", "sky")

MODEL_FILE = """
from torch import nn

from helper import WIDTH  # a sibling module: the file's folder is on sys.path while it imports


def build(num_classes, width=WIDTH, stride=2):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, num_classes, 1, stride=stride))


def wrong_channels(num_classes):
    return nn.Conv2d(3, num_classes + 1, 1)


def wrong_rank(num_classes):
    return nn.Flatten(1)


class Dict(nn.Module):
    def forward(self, x):
        return {"out": x}


def returns_dict(num_classes):
    return Dict()


def not_a_module(num_classes):
    return {"model": None}


def raises(num_classes):
    raise ValueError("boom: the config is wrong\\nsecond line")


def exits(num_classes):
    raise SystemExit(3)


TABLE = [1, 2]
"""


def request(text: str, num_classes: int = 3, **kwargs) -> BuildRequest:
    return BuildRequest(parse_model_spec(text), num_classes, CLASSES, **kwargs)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    (tmp_path / "helper.py").write_text("WIDTH = 4\n")
    path = tmp_path / "my_model.py"
    path.write_text(MODEL_FILE)
    return path


def tiny(num_classes: int = 3, width: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, num_classes, 1, stride=2))


def one_line_error(req: BuildRequest, loader=load_py) -> str:
    with pytest.raises(SourceError) as info:
        loader(req)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------------------------------
# py:
# --------------------------------------------------------------------------------------------------------------------


def test_py_from_file_calls_the_factory_with_num_classes_and_model_args(model_file):
    path_before = list(sys.path)
    model = load_py(request(f"py:{model_file}:build", model_args=parse_model_args("width=6,stride=1")))
    assert sys.path == path_before  # the file's folder was on sys.path only while it imported and built
    assert isinstance(model, SourceModel)
    assert model.model[0].out_channels == 6 and model.model[2].stride == (1, 1)
    assert model(torch.zeros(2, 3, 8, 10)).shape == (2, 3, 8, 10)
    info = model.source_info
    assert info.kind == "py" and info.target == f"{model_file}:build"
    assert info.detail["file"] == str(model_file) and info.detail["sha256"] == sha256_file(model_file)
    assert info.detail["factory"] == "build" and info.detail["model_args"] == {"width": 6, "stride": 1}
    assert model.meta.name == "build" and model.meta.mean == (0.485, 0.456, 0.406)  # name: the last component
    own = sum(p.numel() for p in model.model.parameters())
    assert count_params(model).total == own == model.num_parameters  # the wrapper adds no parameters
    assert model.weights_info.random  # nothing declared trained, no --weights


def test_py_from_a_dotted_module(tmp_path, monkeypatch):
    package = tmp_path / "usernets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "seg.py").write_text(
        "from torch import nn\n\ndef build(num_classes, width=4):\n    return nn.Conv2d(3, num_classes, 1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "usernets", raising=False)
    model = build_from_source(request("mine=py:usernets.seg:build", num_classes=5))
    assert not model.training and model.meta.name == "mine"
    assert model(torch.zeros(1, 3, 4, 4)).shape == (1, 5, 4, 4)
    assert model.source_info.detail["module"] == "usernets.seg"
    monkeypatch.delitem(sys.modules, "usernets.seg", raising=False)


def test_output_shape_is_checked(model_file):
    for factory, fragment in [
        ("wrong_channels", r"returned shape \(1, 4, 4, 4\); segbench needs logits \(B, num_classes=3, h, w\)"),
        ("wrong_rank", r"returned shape \(1, 48\)"),
        ("returns_dict", r"returned a dict; .*\['out'\]"),
    ]:
        model = load_py(request(f"py:{model_file}:{factory}"))
        with pytest.raises(SourceError, match=fragment):
            model(torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("{dir}/missing.py:build", "no such file"),
        ("{dir}/broken.py:build", r"broken.py does not import: SyntaxError"),
        ("{dir}/needs_dep.py:build", r"needs_dep.py does not import: ModuleNotFoundError: No module named 'no_dep'"),
        ("no_such_module_xyz:build", "no module named 'no_such_module_xyz'"),
        ("{file}:biuld", "has no 'biuld'; its callables: build, wrong_channels"),
        ("{file}:TABLE", "is a list, not a factory"),
        ("{file}:raises", r"raises\(num_classes=3\) raised ValueError: boom: the config is wrong$"),
        ("{file}:exits", r"exits\(num_classes=3\) raised SystemExit: 3"),
        ("{file}:not_a_module", r"returned a dict, not a torch.nn.Module"),
        ("{file}", "give MODULE_OR_FILE:FACTORY"),
    ],
)
def test_bad_py_sources_are_one_line_errors(model_file, target, fragment):
    folder = model_file.parent
    (folder / "broken.py").write_text("def build(:\n")
    (folder / "needs_dep.py").write_text("import no_dep\n")
    text = "py:" + target.format(dir=folder, file=model_file)
    message = one_line_error(request(text))
    assert message.startswith(text)
    assert re.search(fragment, message), message


def test_unknown_factory_argument_points_at_model_args(model_file):
    message = one_line_error(request(f"py:{model_file}:build", model_args={"depht": 2}))
    assert "unexpected keyword argument 'depht'" in message and "check --model-args" in message


# --------------------------------------------------------------------------------------------------------------------
# The declaration
# --------------------------------------------------------------------------------------------------------------------


def test_declaration_0_255_normalises_exactly_as_declared(tmp_path):
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    (tmp_path / "m255.py").write_text(
        textwrap.dedent(f"""
        from torch import nn

        segbench_meta = {{"mean": [0, 0, 0], "std": [1, 1, 1], "trained": True}}  # module level: overridden below

        def build(num_classes):
            model = nn.Conv2d(3, num_classes, 1)
            model.segbench_meta = {{"input_range": "0-255", "mean": {mean}, "std": {std}, "eval_crop": 64}}
            return model
        """)
    )
    model = load_py(request(f"py:{tmp_path}/m255.py:build"))
    assert model.meta.mean == pytest.approx([m / 255 for m in mean])
    assert model.meta.std == pytest.approx([s / 255 for s in std])
    assert model.meta.eval_crop == (64, 64) and model.meta.eval_stride == (64, 64)
    assert model.weights_info.random  # the model's own declaration wins, and it does not say trained
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    by_hand = (images.double() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(images, model.meta.mean, model.meta.std).double(), by_hand, atol=1e-5, rtol=0)
    # --model-meta overrides what the code declares
    declared = load_py(request(f"py:{tmp_path}/m255.py:build", meta={"mean": [0.5] * 3, "std": [0.5] * 3}))
    assert declared.meta.mean == (0.5, 0.5, 0.5) and declared.source_info.detail["declaration"].endswith("--model-meta")


def test_declaration_errors(tmp_path):
    (tmp_path / "bad.py").write_text(
        "from torch import nn\nsegbench_meta = {'mean': [0, 0, 0], 'scale': 2}\n"
        "def build(num_classes):\n    return nn.Conv2d(3, num_classes, 1)\n"
    )
    assert "unknown keys scale" in one_line_error(request(f"py:{tmp_path}/bad.py:build"))
    for meta, fragment in [
        ({"input_range": "0-255"}, "needs mean and std"),
        ({"std": [1, 0, 1]}, "std must be 3 positive numbers"),
        ({"trained": "yes"}, "trained must be true or false"),
        ({"eval_crop": [1, 2, 3]}, "eval_crop must be"),
    ]:
        assert fragment in one_line_error(request(f"py:{tmp_path}/bad.py:build", meta=meta))


def test_a_model_meta_declaration_and_class_names_mapped_by_name(tmp_path):
    (tmp_path / "named.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        from segbench.models.base import ModelMeta

        class Ramp(nn.Module):
            segbench_meta = {"class_names": ["sky", "Road", "tree", "car"], "mean": [0.5, 0.5, 0.5]}

            def forward(self, x):  # channel k scores k everywhere
                return torch.arange(4.0).view(1, 4, 1, 1).expand(x.shape[0], 4, *x.shape[-2:])

        def build(num_classes):
            return Ramp()

        def with_meta(num_classes):
            model = nn.Conv2d(3, num_classes, 1)
            model.segbench_meta = ModelMeta("x", "f", "b", "h", num_classes, mean=(0.1, 0.2, 0.3), output_stride=8)
            return model
        """)
    )
    model = load_py(request(f"py:{tmp_path}/named.py:build", num_classes=3))
    out = model(torch.zeros(2, 3, 2, 2))
    assert out.shape == (2, 3, 2, 2)
    assert out[0, :, 0, 0].tolist() == [1.0, 3.0, 0.0]  # road, car, sky: the model's channels 1, 3, 0
    assert model.source_info.detail["class_names"] == ["sky", "Road", "tree", "car"]
    assert "do not cover the dataset's classes" in one_line_error(
        BuildRequest(parse_model_spec(f"py:{tmp_path}/named.py:build"), 2, ("road", "bus"))
    )
    meta = load_py(request(f"py:{tmp_path}/named.py:with_meta")).meta
    assert meta.mean == (0.1, 0.2, 0.3) and meta.output_stride == 8


# --------------------------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------------------------


def test_weights_are_loaded_strictly_and_recorded(model_file, tmp_path):
    trained = tiny()
    file = tmp_path / "trained.safetensors"
    save_file(trained.state_dict(), str(file))
    model = load_py(request(f"py:{model_file}:build", weights=str(file)))
    for mine, theirs in zip(model.model.state_dict().values(), trained.state_dict().values()):
        assert torch.equal(mine, theirs)
    info = model.weights_info
    assert not info.random and info.sha256 == sha256_file(file) and info.path == str(file)
    assert info.format == "safetensors"
    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in trained.state_dict().items() if k != "2.bias"}, partial)
    message = one_line_error(request(f"py:{model_file}:build", weights=str(partial)))
    assert "missing keys 2.bias" in message
    wider = tmp_path / "wider.pt"
    torch.save(tiny(width=6).state_dict(), wider)
    assert "has shape (6, 3, 3, 3)" in one_line_error(request(f"py:{model_file}:build", weights=str(wider)))


def test_weights_the_factory_declares_trained_are_user_provided(model_file):
    model = load_py(request(f"py:{model_file}:build", meta={"trained": True}))
    info = model.weights_info
    assert not info.random and info.source == f"user-provided: py:{model_file}:build"
    assert info.sha256 == state_dict_sha256(model.model)
    other = load_py(request(f"py:{model_file}:build", meta={"trained": True}))  # another random init
    assert other.weights_info.sha256 != info.sha256


# --------------------------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------------------------


def test_an_installed_plugin_builds_by_name(tmp_path, monkeypatch):
    source = tmp_path / "src"
    shutil.copytree(Path(__file__).parent / "plugin_pkg", source)  # the build writes into its source folder
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site, source],
        check=True,
        capture_output=True,
    )
    assert "tinyplug" not in list_entry_point_models()
    monkeypatch.syspath_prepend(str(site))
    try:
        assert "tinyplug" in list_entry_point_models("tiny*")
        model = create_entry_point_model("tinyplug", num_classes=5, width=6)
        assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 5, 4, 4)
        assert model.model[0].out_channels == 6
        assert model.meta.mean == (0.5, 0.5, 0.5) and model.meta.output_stride == 2  # the plugin's segbench_meta
        info = model.source_info
        assert info.kind == "entry-point" and info.target == "tinyplug"
        assert info.detail["entry_point"] == "tinyplug:build"
        assert info.detail["package"] == "tinyplug" and info.detail["version"] == "0.1.0"
        with pytest.raises(SourceError, match="no model 'tinyplu' in the 'segbench.models' entry points"):
            create_entry_point_model("tinyplu")
    finally:
        sys.modules.pop("tinyplug", None)
    # end to end: the command line lists the plugin and runs a suite on it by name
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(site), "SEGBENCH_CACHE": str(tmp_path / "cache")}
    listing = subprocess.run(
        [sys.executable, str(root / "run_bench.py"), "list", "models"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "plugins (segbench.models entry points): tinyplug" in listing.stdout, listing.stderr
    args = [
        "--suite",
        "ci",
        "--models",
        "tinyplug",
        "--allow-random-weights",
        "--max-images",
        "1",
        "--corruptions",
        "fog",
        "--severities",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    out = subprocess.run(
        [sys.executable, str(root / "run_bench.py"), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "run" / "results.csv").read_text()
    assert "tinyplug,ci,cityscapes,clean" in rows and "tinyplug,ci,cityscapes,efficiency" in rows


# --------------------------------------------------------------------------------------------------------------------
# Exported files
# --------------------------------------------------------------------------------------------------------------------


def test_torchscript_round_trip_with_sidecar(tmp_path):
    original = tiny().eval()
    file = tmp_path / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in torch 2.9+
        torch.jit.save(torch.jit.script(original), str(file))
    Path(str(file) + ".segbench.json").write_text(json.dumps({"mean": [0.4, 0.5, 0.6], "trained": True}))
    model = build_from_source(request(f"torchscript:{file}"))
    x = torch.randn(2, 3, 12, 16)
    torch.testing.assert_close(model(x), original(x), rtol=0, atol=0)
    assert model.meta.mean == (0.4, 0.5, 0.6) and model.meta.name == "net"
    assert model.source_info.kind == "torchscript" and model.source_info.detail["sha256"] == sha256_file(file)
    assert model.source_info.detail["declaration"].endswith("net.pt.segbench.json")
    assert not model.weights_info.random and model.weights_info.sha256 == sha256_file(file)
    own = sum(p.numel() for p in original.parameters())
    assert count_params(model).total == own == model.num_parameters
    not_script = tmp_path / "plain.pt"
    torch.save(original.state_dict(), not_script)
    message = one_line_error(request(f"torchscript:{not_script}"), load_torchscript)
    assert "plain.pt is not a TorchScript file" in message


def _export_onnx(module: nn.Module, inputs: tuple, file: Path, names: list[str], dynamic: bool = True) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated in torch 2.9+
        torch.onnx.export(
            module,
            inputs,
            str(file),
            dynamo=False,  # the dynamo exporter needs onnxscript
            input_names=names,
            output_names=["logits"],
            dynamic_axes={name: {0: "batch", 2: "height", 3: "width"} for name in names} if dynamic else None,
        )


def test_onnx_round_trip_runs_on_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    original = tiny().eval()
    file = tmp_path / "net.onnx"
    _export_onnx(original, (torch.randn(1, 3, 16, 16),), file, ["image"])
    model = build_from_source(request(f"onnx:{file}", meta={"trained": True, "std": [0.3, 0.3, 0.3]}))
    for shape in [(1, 3, 16, 16), (3, 3, 20, 34)]:  # dynamic batch, height and width
        x = torch.randn(shape)
        with torch.inference_mode():
            torch.testing.assert_close(model(x), original(x), rtol=0, atol=1e-5)
    initializers = sum(onnx.numpy_helper.to_array(i).size for i in onnx.load(str(file)).graph.initializer)
    own = sum(p.numel() for p in original.parameters())
    assert model.num_parameters == onnx_parameter_count(file) == initializers == own
    assert sum(p.numel() for p in model.parameters()) == 0  # no torch parameters: count_params reads num_parameters
    assert count_params(model).total == own
    info = model.source_info
    assert info.kind == "onnx" and info.flop_conventions == () and info.detail["sha256"] == sha256_file(file)
    assert info.detail["providers"] == ["CPUExecutionProvider"]
    assert model.meta.std == (0.3, 0.3, 0.3) and not model.weights_info.random
    clone = copy.deepcopy(model)  # by its file: a fresh session
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(clone(x), model(x))
    assert "--weights does not apply" in one_line_error(request(f"onnx:{file}", weights="w.pt"), load_onnx)
    message = one_line_error(request(f"onnx:{file}", 4), load_onnx)
    assert "its first output logits is ('batch', 3, " in message and message.endswith("needs logits (B, 4, h, w)")


def test_onnx_fixed_size_graph(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    original = tiny().eval()
    file = tmp_path / "fixed.onnx"
    _export_onnx(original, (torch.randn(1, 3, 16, 24),), file, ["image"], dynamic=False)
    model = load_onnx(request(f"onnx:{file}"))
    assert model.meta.eval_crop == (16, 24) and model.meta.eval_stride == (16, 24)  # its only size: the window
    x = torch.randn(3, 3, 16, 24)  # batch 1 graph: run in chunks of one
    torch.testing.assert_close(model(x), original(x), rtol=0, atol=1e-5)
    with pytest.raises(SourceError, match="the graph takes 16x24 images, given 16x16"):
        model(torch.randn(1, 3, 16, 16))


def test_onnx_refuses_a_graph_that_is_not_one_image_input(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.conv(image) * mask

    file = tmp_path / "two.onnx"
    x = torch.randn(1, 3, 8, 8)
    _export_onnx(TwoInputs().eval(), (x, x), file, ["image", "mask"])
    message = one_line_error(request(f"onnx:{file}"), load_onnx)
    assert "its inputs are (image: ('batch', 3, 'height', 'width') tensor(float), mask:" in message
    assert message.endswith("segbench needs one image tensor (B, 3, H, W) of floats")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph")
    assert "ONNX Runtime cannot load junk.onnx" in one_line_error(request(f"onnx:{junk}"), load_onnx)


def test_onnx_without_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    message = one_line_error(request(f"onnx:{tmp_path}/x.onnx"), load_onnx)
    assert message.endswith("pip install 'segbench[onnx]'")
