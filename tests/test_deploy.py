"""Deployment backends (bench/deploy): export agreement, int8, bf16, one-line refusals, and the artifact cache."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from segbench import models
from segbench.bench.data.synthetic import model_scenes
from segbench.bench.deploy import (
    TOLERANCES,
    AgreementMeter,
    ArtifactCache,
    BackendUnavailable,
    CacheKey,
    ExportError,
    check_deployment,
    export_onnx,
    get_backend,
    list_backends,
    reference_logits,
)
from segbench.bench.deploy import backends as backends_module
from segbench.bench.deploy import export as export_module
from segbench.bench.deploy import ort as ort_module
from segbench.models import segformer_native
from segbench.models.checkpoint import state_dict_sha256
from segbench.models.exported import onnx_session
from segbench.models.segformer_fast import FoldedMLPDecoder

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[1]
DEMO_WEIGHTS = ROOT / "suites" / "demo_weights"
SIZE = (64, 128)


def scenes(model: nn.Module, count: int, seed: int, size: tuple[int, int] = SIZE) -> list[torch.Tensor]:
    """Synthetic street scenes (1, 3, H, W), normalised as the model expects."""
    return model_scenes(model, size, count, seed)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ArtifactCache:
    return ArtifactCache(tmp_path_factory.mktemp("deploy-cache"))


@pytest.fixture(scope="module")
def demo_models() -> dict[str, nn.Module]:
    """SegFormer-B0 and DeepLabV3+ (MobileNetV2) with the demo weights (trained on synthetic scenes)."""
    names = ("segformer-b0", "deeplabv3plus-mobilenetv2")
    return {n: models.create_model(n, weights=str(DEMO_WEIGHTS / f"{n}.safetensors")) for n in names}


@pytest.fixture(scope="module")
def images(demo_models: dict[str, nn.Module]) -> list[torch.Tensor]:
    return scenes(demo_models["segformer-b0"], 2, seed=1)  # both models share ImageNet normalisation


@pytest.fixture(scope="module")
def references(demo_models: dict[str, nn.Module], images: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """Eager fp32 logits of each demo model on `images`, computed once for every cell."""
    return {name: reference_logits(model, images, "cpu") for name, model in demo_models.items()}


# --------------------------------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_name", "backend"),
    [
        ("segformer-b0", "onnxruntime"),
        ("segformer-b0", "fast"),
        ("deeplabv3plus-mobilenetv2", "onnxruntime"),
    ],
)
def test_fp32_backends_agree_with_eager(model_name, backend, demo_models, images, references, cache):
    model, eager = demo_models[model_name], references[model_name][0]
    cell = check_deployment(backend, model, images, "fp32", cache, references=references[model_name])
    assert cell.status == "agrees", cell.reason or cell.agreement.line()
    agreement = cell.agreement
    assert agreement.images == 2 and agreement.pixels == 2 * 16 * 32  # logits at stride 4
    assert 0 < agreement.max_rel <= TOLERANCES["fp32"].max_rel  # not zero: another code path really ran
    assert agreement.argmax_agreement == 100.0
    logits = cell.built(images[0])
    assert logits.dtype == torch.float32
    assert torch.allclose(logits, eager, rtol=0, atol=1e-4 * eager.abs().max().item())
    if backend == "onnxruntime":
        assert cell.built.artifact.suffix == ".onnx" and cell.built.artifact_bytes == cell.built.artifact.stat().st_size
        assert cell.built.detail["providers"] == ["CPUExecutionProvider"]
        assert cell.built.detail["opset"] == export_module.OPSET
    else:
        assert cell.built.artifact is None
        assert isinstance(cell.built.module.model.decode_head, FoldedMLPDecoder)  # a folded copy...
        assert not isinstance(model.decode_head, FoldedMLPDecoder)  # ...of the model, left as it was
        assert cell.built.detail["kernels"] == segformer_native.status().detail  # which kernels ran


def test_int8_static_quantization_is_calibrated_run_and_judged(demo_models, images, references, cache):
    model, refs = demo_models["segformer-b0"], references["segformer-b0"]
    calibration = scenes(model, 4, seed=2)
    fp32 = get_backend("onnxruntime").build(model, images[0].shape, "fp32", cache)
    cell = check_deployment("onnxruntime", model, images, "int8", cache, references=refs, calibration=calibration)
    assert cell.built is not None, cell.reason
    graph = onnx.load(str(cell.built.artifact)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == ops.count("Conv")  # every conv's weight, per channel
    assert "Softmax" in ops and "LayerNormalization" in ops  # left in float (INT8_SKIP_OPS)
    assert cell.built.artifact_bytes < 0.9 * fp32.artifact_bytes
    a, tol = cell.agreement, TOLERANCES["int8"]
    assert 1e-3 < a.max_rel < 0.5 and 90.0 < a.argmax_agreement < 100.0  # quantised: close, not equal
    assert a.agrees == (a.max_rel <= tol.max_rel and a.argmax_agreement >= tol.min_argmax)
    assert cell.status == a.verdict
    # calibrated on other images: another key, another file
    other = get_backend("onnxruntime").build(model, images[0].shape, "int8", cache, calibration=calibration[:2])
    assert other.artifact != cell.built.artifact
    # no calibration: one line, no exception
    missing = check_deployment("onnxruntime", model, images, "int8", cache)
    assert missing.status == "failed" and "calibration" in missing.reason and "\n" not in missing.reason


def test_bf16_autocast_on_cpu_agrees_within_its_tolerance(demo_models, images, references):
    model = demo_models["segformer-b0"]
    cell = check_deployment("eager", model, images, "bf16", references=references["segformer-b0"])
    assert cell.status == "agrees", cell.agreement.line()
    assert cell.built.detail["autocast"] == "bfloat16"
    assert 1e-4 < cell.agreement.max_rel <= TOLERANCES["bf16"].max_rel  # bf16 really ran: not fp32's ~1e-7
    assert cell.agreement.argmax_agreement >= TOLERANCES["bf16"].min_argmax
    assert cell.built(images[0]).dtype == torch.float32


def test_fast_bf16_on_cpu_is_a_bf16_copy_that_agrees_within_its_tolerance(demo_models, images, references):
    """The fast path's bf16 on the CPU runs bf16 weights (its fused kernels in bf16), not autocast; the caller's
    model stays fp32."""
    model = demo_models["segformer-b0"]
    cell = check_deployment("fast", model, images, "bf16", references=references["segformer-b0"])
    assert cell.status == "agrees", cell.agreement.line()
    assert cell.built.detail["weights"] == "bfloat16" and cell.built.detail["autocast"] is None
    assert cell.built.detail["kernels"].startswith("PyTorch's operators")
    assert {p.dtype for p in cell.built.module.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert 1e-4 < cell.agreement.max_rel <= TOLERANCES["bf16"].max_rel  # bf16 really ran: not fp32's ~1e-7
    assert cell.agreement.argmax_agreement >= TOLERANCES["bf16"].min_argmax
    assert cell.built(images[0]).dtype == torch.float32


def test_fp16_graph_keeps_layernorm_in_fp32_and_agrees(demo_models, images, references, cache):
    """The GPU backends' fp16 graph, run here by the CPU provider (a stand-in: its speed means nothing)."""
    model = demo_models["segformer-b0"]
    graph = export_module.onnx_graph(
        model, images[0].shape, "fp16", cache, name="segformer-b0", weights_sha256=state_dict_sha256(model)
    )
    proto = onnx.load(str(graph.path)).graph
    initializers = {t.name: t.data_type for t in proto.initializer}
    conv_weights = [initializers[n.input[1]] for n in proto.node if n.op_type == "Conv"]
    norm_scales = [initializers[n.input[1]] for n in proto.node if n.op_type == "LayerNormalization"]
    assert conv_weights and set(conv_weights) == {onnx.TensorProto.FLOAT16}
    assert norm_scales and set(norm_scales) == {onnx.TensorProto.FLOAT}  # FP16_KEEP_FP32
    assert proto.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    session = onnx_session(graph.path)
    meter = AgreementMeter()
    for x, ref in zip(images, references["segformer-b0"]):
        meter.update(ref, torch.from_numpy(session.run(None, {"image": x.numpy()})[0]))
    result = meter.result("fp16")
    assert result.agrees and result.max_rel > 1e-5, result.line()  # fp16 rounding, within fp16's tolerance


def test_gpu_providers_are_chosen_by_availability(monkeypatch):
    monkeypatch.setattr(
        ort_module,
        "available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert ort_module.providers_for(torch.device("cpu")) == ["CPUExecutionProvider"]
    assert ort_module.providers_for(torch.device("cuda", 1), Path("engines")) == [
        (
            "TensorrtExecutionProvider",
            {"device_id": 1, "trt_engine_cache_enable": True, "trt_engine_cache_path": "engines"},
        ),
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    assert ort_module.providers_for(torch.device("cuda", 0), use_tensorrt=False)[0] == (
        "CUDAExecutionProvider",
        {"device_id": 0},
    )
    monkeypatch.setattr(ort_module, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert [p[0] for p in ort_module.providers_for(torch.device("cuda", 0))[:1]] == ["CUDAExecutionProvider"]


def test_agreement_meter_definitions():
    ref = torch.zeros(1, 3, 2, 2)
    ref[:, 0] = 4.0  # class 0 everywhere, max |ref| = 4
    meter = AgreementMeter()
    cand = ref.clone()
    cand[0, 1, 0, 0] = 5.0  # one pixel flips to class 1, |d| = 5
    meter.update(ref, cand)
    result = meter.result("fp32")
    assert result.max_abs == 5.0 and result.max_rel == 5.0 / 4.0 and result.argmax_agreement == 75.0
    assert not result.agrees and result.verdict == "disagrees"
    same = AgreementMeter()
    same.update(ref, ref + 1e-6)
    assert same.result("fp32").agrees
    nan = AgreementMeter()
    nan.update(ref, ref * float("nan"))
    assert not nan.result("int8").agrees and nan.result("int8").note == "non-finite logits"
    shape = AgreementMeter()
    shape.update(ref, ref[..., :1])
    bad = shape.result("int8")
    assert not bad.agrees and math.isinf(bad.max_abs) and "eager" in bad.note
    with pytest.raises(ValueError, match="no images"):
        AgreementMeter().result("fp32")


# --------------------------------------------------------------------------------------------------------------------
# What this machine cannot run: one line each
# --------------------------------------------------------------------------------------------------------------------


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_unavailable_backends_and_precisions_are_one_line(monkeypatch, demo_models, images):
    assert list_backends() == ["compile", "cudagraphs", "eager", "fast", "onnxruntime", "openvino", "tensorrt"]
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not installed, wherever this runs
    with pytest.raises(BackendUnavailable) as e:
        get_backend("tensorrt").check("cpu", "fp32")
    assert _one_line(e).startswith("tensorrt: the `tensorrt` package is not installed")
    cell = check_deployment("tensorrt", demo_models["segformer-b0"], images, "fp16")
    assert cell.status == "unavailable" and cell.reason.startswith("tensorrt: the `tensorrt` package")

    with pytest.raises(BackendUnavailable) as e:
        get_backend("eager").check("cpu", "fp16")
    assert _one_line(e).startswith("eager fp16: needs a CUDA GPU (the device is cpu")
    with pytest.raises(BackendUnavailable) as e:
        get_backend("onnxruntime").check("cpu", "bf16")
    assert _one_line(e).startswith("onnxruntime bf16: not offered: ONNX Conv (opset 17) has no bfloat16 type")
    with pytest.raises(BackendUnavailable) as e:
        get_backend("eager").check("cpu", "int8")
    assert "onnxruntime, openvino, tensorrt" in _one_line(e)
    with pytest.raises(BackendUnavailable) as e:
        get_backend("fast").check("cpu", "fp32", demo_models["deeplabv3plus-mobilenetv2"])
    assert _one_line(e).startswith("fast: deeplabv3plus-mobilenetv2 has no fast path")

    monkeypatch.setattr(ort_module, "available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable) as e:
        get_backend("onnxruntime").check("cuda", "fp32")
    assert _one_line(e) == (
        "onnxruntime CUDA provider: not in onnxruntime.get_available_providers() ['CPUExecutionProvider'] "
        "(install onnxruntime-gpu)"
    )
    monkeypatch.setattr(backends_module, "_cxx_compiler", lambda: None)
    with pytest.raises(BackendUnavailable) as e:
        get_backend("compile").check("cpu", "fp32")
    assert "C++ compiler" in _one_line(e)
    with pytest.raises(ValueError, match="closest: onnxruntime"):
        get_backend("onnxruntim")
    with pytest.raises(ValueError, match="unknown precision"):
        get_backend("eager").check("cpu", "int4")


# --------------------------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------------------------


class _Erfinv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erfinv(self.conv(x).tanh() * 0.5)


def test_failed_export_is_one_line_naming_the_operator(cache):
    with pytest.raises(ExportError) as e:
        export_onnx(_Erfinv(), (1, 3, 8, 8), label="erfinv-net")
    assert _one_line(e).startswith("erfinv-net: ONNX export (opset 17) failed at operator aten::erfinv")
    cell = check_deployment("onnxruntime", _Erfinv(), [torch.randn(1, 3, 8, 8)], "fp32", cache)
    assert cell.status == "failed" and "aten::erfinv" in cell.reason and "\n" not in cell.reason


def test_dynamic_export_follows_the_input_or_is_refused(cache):
    segformer = models.create_model("segformer-tiny")
    built = get_backend("onnxruntime").build(segformer, (1, 3, *SIZE), "fp32", cache, dynamic=True)
    x = torch.randn(2, 3, 96, 160)
    with torch.inference_mode():
        assert torch.allclose(built(x), segformer(x), atol=1e-5)
    baseline = models.create_model("fcn-mit-tiny")  # crops its logits with a size computed in Python
    with pytest.raises(ExportError) as e:
        get_backend("onnxruntime").build(baseline, (1, 3, *SIZE), "fp32", cache, dynamic=True)
    assert "is not dynamic" in _one_line(e) and "export static shapes" in str(e.value)


# --------------------------------------------------------------------------------------------------------------------
# The artifact cache
# --------------------------------------------------------------------------------------------------------------------


def test_cache_key_changes_with_weights_shape_and_precision(tmp_path):
    cache = ArtifactCache(tmp_path)
    model = models.create_model("segformer-tiny")
    backend = get_backend("onnxruntime")
    calibration = [torch.randn(1, 3, *SIZE)]
    first = backend.build(model, (1, 3, *SIZE), "fp32", cache)
    assert backend.build(model, (1, 3, *SIZE), "fp32", cache).artifact == first.artifact
    other_shape = backend.build(model, (1, 3, 64, 96), "fp32", cache)
    int8 = backend.build(model, (1, 3, *SIZE), "int8", cache, calibration=calibration)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    new_weights = backend.build(model, (1, 3, *SIZE), "fp32", cache)
    paths = {first.artifact, other_shape.artifact, int8.artifact, new_weights.artifact}
    assert len(paths) == 4
    manifests = [
        json.loads(ArtifactCache.manifest_path(p).read_text())["key"] for p in (first.artifact, new_weights.artifact)
    ]
    assert manifests[0]["weights_sha256"] != manifests[1]["weights_sha256"]
    assert manifests[0]["versions"]["torch"] == torch.__version__ and manifests[0]["versions"]["onnxruntime"]
    key = CacheKey("m", "w", (1, 3, 8, 8), "fp32", "onnxruntime", ".onnx")
    for change in ({"versions": {"onnxruntime": "0.1"}}, {"dynamic": True}, {"backend": "tensorrt"}):
        assert CacheKey(**{**key.__dict__, **change}).digest != key.digest


def test_second_build_is_a_cache_hit_without_export(tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path)
    model = models.create_model("segformer-tiny")
    backend = get_backend("onnxruntime")
    first = backend.build(model, (1, 3, *SIZE), "fp32", cache)
    assert first.cache_hit is False and first.artifact_build_s > 0

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(export_module, "export_onnx", no_export)
    second = backend.build(model, (1, 3, *SIZE), "fp32", cache)
    assert second.cache_hit is True and second.artifact == first.artifact
    assert second.artifact_build_s == pytest.approx(first.artifact_build_s)  # from the manifest
    x = torch.randn(1, 3, *SIZE)
    assert torch.equal(second(x), first(x))


def test_half_written_files_are_never_taken(tmp_path):
    cache = ArtifactCache(tmp_path)
    key = CacheKey("m", "w", (1, 3, 8, 8), "fp32", "onnxruntime", ".onnx")
    path = cache.path(key)
    path.parent.mkdir(parents=True)
    (path.parent / f".{path.name}.x1y2z3.tmp").write_bytes(b"half")  # atomic_write's temporary name
    assert cache.lookup(key) is None
    path.write_bytes(b"an artifact whose manifest was never written")  # crash between the two writes
    assert cache.lookup(key) is None
    built = cache.get_or_build(key, lambda: b"whole")
    assert not built.hit and path.read_bytes() == b"whole"
    assert not list(path.parent.glob("*.tmp"))  # the crashed writer's temporary file is gone
    assert cache.lookup(key).hit
    path.write_bytes(b"who")  # truncated behind the cache's back: not the recorded size
    assert cache.lookup(key) is None
    assert cache.get_or_build(key, lambda: b"whole again").bytes == len(b"whole again")
    failing = CacheKey("m", "w", (1, 3, 8, 8), "int8", "onnxruntime", ".onnx")

    def broken() -> bytes:
        raise RuntimeError("quantiser crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build(failing, broken)
    assert not cache.path(failing).exists() and cache.lookup(failing) is None
    assert not list(path.parent.glob("*.tmp"))


def test_two_processes_building_one_key_take_turns(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from segbench.bench.deploy.cache import ArtifactCache, CacheKey
        key = CacheKey("m", "w", (1, 3, 8, 8), "fp32", "onnxruntime", ".onnx")

        def produce():
            with open({str(tmp_path / "builds.txt")!r}, "a") as f:
                f.write("built\\n")
            time.sleep(1.0)
            return b"x" * 1_000_000

        got = ArtifactCache({str(tmp_path / "cache")!r}).get_or_build(key, produce)
        print(got.hit, got.bytes)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert outs == ["False 1000000", "True 1000000"]
    assert (tmp_path / "builds.txt").read_text() == "built\n"


def test_reference_logits_are_eager_fp32(demo_models, images, references):
    model = demo_models["deeplabv3plus-mobilenetv2"]
    with torch.inference_mode():
        assert torch.equal(references["deeplabv3plus-mobilenetv2"][1], model(images[1]))


def test_cudagraphs_is_unavailable_off_a_gpu_in_one_line_naming_cuda(demo_models, images):
    from segbench.bench.deploy.grid import grid_cells

    model = demo_models["segformer-b0"]
    for precision in ("fp32", "bf16"):
        cell = check_deployment("cudagraphs", model, images, precision)
        assert (cell.status, cell.built, cell.agreement) == ("unavailable", None, None)
        assert cell.reason == "cudagraphs: CUDA graphs need a CUDA GPU (device is cpu)"
    with pytest.raises(BackendUnavailable) as e:
        get_backend("cudagraphs").check("cpu", "int8")  # what the machine lacks is said before what is never offered
    assert _one_line(e).startswith("cudagraphs: CUDA graphs need a CUDA GPU")
    cells = grid_cells(["m"], ("cudagraphs",), ("fp32", "bf16", "fp16", "int8"))
    assert cells == [
        ("m", "eager", "fp32"),
        ("m", "cudagraphs", "fp32"),
        ("m", "cudagraphs", "bf16"),
        ("m", "cudagraphs", "fp16"),
    ]
