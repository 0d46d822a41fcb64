"""The openvino backend (bench/deploy/openvino.py): agreement with eager at fp32, bf16 and int8 (NNCF), the read-back
properties, the packed int8 IR in the cache (hit, damaged and rebuilt), one-line refusals, and the CPU's ISA facts."""

from __future__ import annotations

import copy
import io
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from segbench import models
from segbench.bench.data.synthetic import model_scenes
from segbench.bench.deploy import (
    PRECISIONS,
    TOLERANCES,
    ArtifactCache,
    BackendUnavailable,
    check_deployment,
    get_backend,
    reference_logits,
)
from segbench.bench.deploy import openvino as ov_runtime
from segbench.bench.deploy.grid import grid_cells
from segbench.bench.measure import latency as latency_mod
from segbench.bench.run.provenance import VERSIONED_PACKAGES, environment

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "suites" / "demo_weights"
TINY = (64, 128)
B0 = (128, 256)
"""SegFormer-B0's demo weights were trained on 128x256 scenes: bf16 and int8 are judged there (a random-weight model's
argmax is a near tie everywhere, so even eager bf16 moves it)."""
EXTRA = "(pip install 'segbench[openvino]')"


def scenes(model: nn.Module, count: int, seed: int, size: tuple[int, int]) -> list[torch.Tensor]:
    """Synthetic street scenes (1, 3, H, W), normalised as the model expects."""
    return model_scenes(model, size, count, seed)


@pytest.fixture(scope="module")
def openvino():
    pytest.importorskip("onnx", reason="the openvino backend compiles segbench's ONNX export: needs `onnx`")
    return pytest.importorskip("openvino", reason="the `openvino` package is not installed (segbench[openvino])")


@pytest.fixture(scope="module")
def cache(openvino, tmp_path_factory: pytest.TempPathFactory) -> ArtifactCache:
    return ArtifactCache(tmp_path_factory.mktemp("openvino-cache"))


@pytest.fixture(scope="module")
def tiny(openvino) -> tuple[nn.Module, list[torch.Tensor], list[torch.Tensor]]:
    model = models.create_model("segformer-tiny")
    images = scenes(model, 2, seed=1, size=TINY)
    return model, images, reference_logits(model, images, "cpu")


@pytest.fixture(scope="module")
def b0(openvino) -> tuple[nn.Module, list[torch.Tensor], list[torch.Tensor]]:
    model = models.create_model("segformer-b0", weights=str(DEMO_WEIGHTS / "segformer-b0.safetensors"))
    images = scenes(model, 2, seed=1, size=B0)
    return model, images, reference_logits(model, images, "cpu")


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


# --------------------------------------------------------------------------------------------------------------------
# What cannot run: one line each (the first runs without openvino)
# --------------------------------------------------------------------------------------------------------------------


def test_missing_openvino_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed, wherever this runs
    cell = check_deployment("openvino", models.create_model("segformer-tiny"), [torch.randn(1, 3, *TINY)], "fp32")
    assert (cell.status, cell.built) == ("unavailable", None)
    assert cell.reason == f"openvino: the `openvino` package is not installed {EXTRA}"


def test_missing_nncf_fp16_on_the_cpu_and_no_gpu_are_one_line(openvino, monkeypatch):
    backend = get_backend("openvino")
    with pytest.raises(BackendUnavailable) as e:
        backend.check("cpu", "fp16")
    assert _one_line(e).startswith("openvino fp16: not offered on the CPU")
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(BackendUnavailable) as e:
        backend.check("cpu", "int8")
    assert _one_line(e) == f"openvino int8: the `nncf` package is not installed {EXTRA}"
    backend.check("cpu", "fp32")  # fp32 needs no nncf
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(BackendUnavailable) as e:
        backend.check("cpu", "fp32")
    assert _one_line(e) == f"openvino: the `onnx` package is not installed {EXTRA}"  # the export needs it
    monkeypatch.delitem(sys.modules, "onnx")
    monkeypatch.setattr(ov_runtime, "available_devices", lambda: ["CPU"])
    with pytest.raises(BackendUnavailable) as e:
        backend.check("cuda", "fp32")
    assert _one_line(e) == "openvino: cuda asked for, but OpenVINO lists no GPU (Core().available_devices is ['CPU'])"


def test_bf16_is_refused_where_openvino_has_no_native_bf16(openvino, monkeypatch):
    monkeypatch.setattr(ov_runtime, "capabilities", lambda device="CPU": ["FP32", "INT8"])
    with pytest.raises(BackendUnavailable) as e:
        get_backend("openvino").check("cpu", "bf16")
    assert _one_line(e).startswith("openvino bf16: this CPU has no native bf16")


def test_cuda_maps_to_openvinos_gpu_plugin_only_when_listed(openvino, monkeypatch):
    monkeypatch.setattr(ov_runtime, "available_devices", lambda: ["CPU", "GPU"])
    assert ov_runtime.ov_device(torch.device("cuda")) == "GPU"
    assert ov_runtime.ov_device(torch.device("cuda", 1)) is None
    monkeypatch.setattr(ov_runtime, "available_devices", lambda: ["CPU", "GPU.0", "GPU.1"])
    assert ov_runtime.ov_device(torch.device("cuda", 1)) == "GPU.1"
    assert ov_runtime.ov_device(torch.device("cpu")) == "CPU"


def test_the_grid_has_openvino_cells():
    cells = grid_cells(["m"], ("openvino",), PRECISIONS)
    assert cells == [("m", "eager", "fp32")] + [("m", "openvino", p) for p in ("fp32", "bf16", "fp16", "int8")]


# --------------------------------------------------------------------------------------------------------------------
# Agreement, and what the build records
# --------------------------------------------------------------------------------------------------------------------


def test_fp32_agrees_with_eager_and_records_the_read_back_properties(tiny, cache):
    model, images, references = tiny
    cell = check_deployment("openvino", model, images, "fp32", cache, references=references)
    assert cell.status == "agrees", cell.reason or cell.agreement.line()
    assert 0 < cell.agreement.max_rel <= TOLERANCES["fp32"].max_rel  # not zero: OpenVINO's kernels really ran
    assert cell.agreement.argmax_agreement == 100.0
    built = cell.built
    assert built.artifact.suffix == ".onnx" and not built.dynamic  # compiled from the cached fp32 export
    detail = built.detail
    assert detail["properties"] == {
        "INFERENCE_PRECISION_HINT": "f32",  # asked for: the CPU plugin's default here would be bf16
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "NUM_STREAMS": 1,
        "EXECUTION_DEVICES": ["CPU"],
    }
    assert detail["ov_device"] == "CPU" and "ONNX export" in detail["source"]
    assert detail["versions"]["openvino"] == openvino_version()
    assert set(detail["cpu_isa"]) == {"openvino_capabilities", "cpuinfo_flags"}
    logits = built(images[0])
    assert logits.dtype == torch.float32 and logits.shape == references[0].shape
    assert torch.equal(copy.deepcopy(built.module)(images[0]), logits)  # pickles by its file, compiled again


def openvino_version() -> str:
    import openvino

    return openvino.__version__


def test_bf16_agrees_within_its_tolerance_where_the_cpu_has_it(b0, cache):
    model, images, references = b0
    cell = check_deployment("openvino", model, images, "bf16", cache, references=references)
    if "BF16" not in ov_runtime.capabilities("CPU"):
        assert cell.status == "unavailable" and cell.reason.startswith("openvino bf16: this CPU has no native bf16")
        return
    assert cell.status == "agrees", cell.reason or cell.agreement.line()
    assert 1e-4 < cell.agreement.max_rel <= TOLERANCES["bf16"].max_rel  # bf16 really ran: not fp32's ~1e-7
    assert cell.built.detail["properties"]["INFERENCE_PRECISION_HINT"] == "bf16"


@pytest.fixture(scope="module")
def b0_int8(b0, cache):
    """SegFormer-B0's int8 cell (NNCF, calibrated on 4 other scenes), and those scenes."""
    pytest.importorskip("nncf", reason="openvino int8 needs the `nncf` package (segbench[openvino])")
    model, images, references = b0
    calibration = scenes(model, 4, seed=2, size=B0)
    cell = check_deployment("openvino", model, images, "int8", cache, references=references, calibration=calibration)
    return cell, calibration


def test_int8_by_nncf_agrees_within_its_tolerance(b0, b0_int8, cache):
    model, images, _ = b0
    cell, _ = b0_int8
    assert cell.status == "agrees", cell.reason or cell.agreement.line()
    assert 1e-3 < cell.agreement.max_rel and cell.agreement.argmax_agreement < 100.0  # quantised: close, not equal
    built = cell.built
    assert built.artifact.name.endswith(".ir.zip") and built.cache_hit is False
    assert built.detail["int8"] == ov_runtime.INT8_RECIPE and built.detail["versions"]["nncf"]
    assert built.detail["properties"]["INFERENCE_PRECISION_HINT"] == "f32"  # the ops left in float
    ir = ov_runtime.read_model(built.artifact)
    quantized = [op for op in ir.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert len(quantized) > 20
    consumers = [t.get_node().get_friendly_name() for op in quantized for t in op.output(0).get_target_inputs()]
    assert not [name for name in consumers if "/attn/sr/" in name]  # INT8_FLOAT_PATTERNS stay in float
    fp32 = get_backend("openvino").build(model, images[0].shape, "fp32", cache)
    assert built.artifact_bytes < 0.5 * fp32.artifact_bytes  # int8 weights
    missing = check_deployment("openvino", model, images, "int8", cache)  # no calibration: one line
    assert missing.status == "failed" and "calibration" in missing.reason and "\n" not in missing.reason


# --------------------------------------------------------------------------------------------------------------------
# The packed IR in the cache
# --------------------------------------------------------------------------------------------------------------------


def test_the_int8_ir_is_a_cache_hit_and_a_damaged_one_is_built_again(b0, b0_int8, cache, monkeypatch):
    model, images, _ = b0
    first, calibration = b0_int8[0].built, b0_int8[1]
    good = first.artifact.read_bytes()
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        assert [i.filename for i in archive.infolist()] == ["model.xml", "model.bin"]
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    builds = []

    def quantize(graph, batches):  # stands in for NNCF: what it made the first time
        builds.append(graph)
        return good

    monkeypatch.setattr(ov_runtime, "quantize_int8", quantize)
    backend, shape = get_backend("openvino"), images[0].shape
    second = backend.build(model, shape, "int8", cache, calibration=calibration)
    assert second.cache_hit is True and second.artifact == first.artifact and not builds
    assert second.artifact_build_s == pytest.approx(first.artifact_build_s)  # from the manifest
    x = images[1]
    assert torch.equal(second(x), first(x))

    first.artifact.write_bytes(good[:-10])  # truncated: not the recorded size
    assert backend.build(model, shape, "int8", cache, calibration=calibration).cache_hit is False
    assert len(builds) == 1

    damaged = bytearray(good)
    damaged[good.index(b"<?xml") + 100] ^= 0xFF  # same size, other bytes: the zip's CRC-32 fails
    first.artifact.write_bytes(bytes(damaged))
    rebuilt = backend.build(model, shape, "int8", cache, calibration=calibration)
    assert rebuilt.cache_hit is False and len(builds) == 2 and rebuilt.artifact.read_bytes() == good
    assert torch.equal(rebuilt(x), first(x))


def test_pack_and_unpack_ir():
    packed = ov_runtime.pack_ir(b"<net/>", b"\x00\x01weights")
    assert ov_runtime.unpack_ir(packed) == (b"<net/>", b"\x00\x01weights")
    for bad in (b"not a zip", packed[:-30], packed.replace(b"weights", b"WEIGHTS")):
        with pytest.raises(ov_runtime.DamagedIR):
            ov_runtime.unpack_ir(bad)


# --------------------------------------------------------------------------------------------------------------------
# The CPU's ISA facts, in the build and in env.json
# --------------------------------------------------------------------------------------------------------------------


def test_cpu_isa_is_read_and_never_fails(monkeypatch):
    flags = latency_mod.cpu_isa_flags()
    assert set(flags) <= set(latency_mod.CPU_ISA_FLAGS)
    isa = ov_runtime.cpu_isa()
    assert isa["cpuinfo_flags"] == flags and isinstance(isa["openvino_capabilities"], list)
    env = environment(["segbench"], 0, {}, "demo", "1", "cpu")
    assert env["hardware"]["cpu_isa"] == flags
    assert {"openvino", "nncf"} <= set(VERSIONED_PACKAGES)

    def unreadable(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(latency_mod, "open", unreadable, raising=False)
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert latency_mod.cpu_isa_flags() == []
    assert ov_runtime.cpu_isa() == {"openvino_capabilities": [], "cpuinfo_flags": []}
