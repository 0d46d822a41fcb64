"""ONNX graphs of a model, made by segbench itself: the fp32 export, its fp16 conversion and its int8 quantisation.

**The exporter** is torch's TorchScript-based one, ``torch.onnx.export(..., dynamo=False)``, at opset 17 (the first
with a LayerNormalization op). torch 2.9+ defaults to the torch.export-based exporter (``dynamo=True``), but that one
needs the `onnxscript` package, which segbench's `onnx` extra does not install (nor does this machine have it); the
TorchScript exporter exports SegFormer (fast path included) and the baselines and agrees with eager to 5e-7 relative.
Its deprecation warning and the tracer's warnings about Python booleans (the models' input-size guards) are silenced:
they are expected, and a dynamic export is checked instead (below).

**Shapes**: static by default (every dimension of the example input is fixed: the fastest graph, and what TensorRT
wants); ``dynamic=True`` makes batch, H and W dynamic. The tracer records Python arithmetic on sizes as constants, so
a model that computes its output size in Python (the baselines' ``math.ceil(h / stride)`` crop) exports a graph whose
output size is frozen; every dynamic export is therefore run at a second size by ONNX Runtime and compared with
eager's output shape, and refused in one line when it does not follow.

**A failed export** is one `ExportError` line that names the operator when torch's error names one
(``aten::erfinv``); the TorchScript exporter also prints its graph to stderr first (a torch bug: its ONNX log is
always on during an export), which cannot be silenced from Python.

**fp16** (GPU backends): `onnxruntime.transformers.float16.convert_float_to_float16` with float32 inputs and outputs,
LayerNormalization kept in fp32 (its variance overflows fp16: NVIDIA/TensorRT#2564), as torch's autocast keeps it.

**int8**: `onnxruntime.quantization.quantize_static` in QDQ format, weights int8 symmetric per output channel,
activations calibrated (MinMax) on the given images: uint8 asymmetric for ONNX Runtime's CPU provider (its fast
u8s8 kernels), int8 symmetric for GPU providers and TensorRT (which needs zero points of 0). Every op type the
quantiser knows is quantised except those in `INT8_SKIP_OPS`, measured on SegFormer-B0 (demo weights, 512x1024
synthetic scenes, this 2-core CPU): quantising Softmax (attention probabilities, a long tail in [0, 1] on 256
levels) drops argmax agreement from 98.1% to 91.2%; LayerNorm is kept for the same reason (a normalisation, whose
input range is wide); and ONNX Runtime's CPU int8 MatMul on 3-D activations is slower than its fp32 one (360 ms
against 233 ms for the whole model), so on the CPU MatMul stays fp32. DeepLabV3+ (MobileNetV2) has none of these.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segbench.bench.deploy.cache import ArtifactCache, CachedArtifact, CacheKey, module_version
from segbench.models.sources import first_line

OPSET = 17
EXPORTER = "torch.onnx.export(dynamo=False) (TorchScript-based)"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
FP16_KEEP_FP32 = ("LayerNormalization",)
"""Ops an fp16 graph keeps in fp32, besides ONNX Runtime's `DEFAULT_OP_BLOCK_LIST` (ops without fp16 kernels)."""
INT8_ACTIVATIONS = {"cpu": "uint8-asymmetric", "gpu": "int8-symmetric"}
"""Activation type of int8 graphs by where they run."""
INT8_SKIP_OPS = {"cpu": ("LayerNormalization", "MatMul", "Softmax"), "gpu": ("LayerNormalization", "Softmax")}
"""Op types int8 graphs leave in float, by where they run (see the module docstring)."""


class ExportError(RuntimeError):
    """An export, conversion or quantisation that failed; the message is one line (naming the operator when known)."""


def failed_operator(e: BaseException) -> str | None:
    """The operator an exporter error names (``aten::erfinv``, ``prim::PythonOp``), else None."""
    text = str(e)
    quoted = re.search(r"operator '([\w.:]+)'", text)
    if quoted:
        return quoted.group(1)
    qualified = re.search(r"\b((?:aten|prim|onnx|quantized|torchvision)::[\w.]+)", text)
    return qualified.group(1) if qualified else None


def graph_versions() -> dict[str, str | None]:
    """The libraries whose versions change an ONNX graph segbench writes (export, fp16 conversion, quantisation)."""
    return {"torch": torch.__version__, "onnx": module_version("onnx"), "onnxruntime": module_version("onnxruntime")}


def example_input(input_shape: Sequence[int], device: str | torch.device = "cpu") -> torch.Tensor:
    """A fixed pseudo-random normalised batch of `input_shape` (values do not matter to the tracer; fixed anyway)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(*input_shape, generator=g).to(device)


# --------------------------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter's own notice
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # size guards traced as constants
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        yield


def export_onnx(
    model: nn.Module, input_shape: Sequence[int], dynamic: bool = False, opset: int = OPSET, label: str = "model"
) -> bytes:
    """The fp32 ONNX graph of `model` for inputs of `input_shape` (N, 3, H, W): input ``image``, output ``logits``.

    Args:
        model: the network, in eval mode, on any device (the example input follows its parameters).
        input_shape: the example input's shape; every dimension is fixed unless `dynamic`.
        dynamic: make batch, H and W dynamic (checked at a second size, see the module docstring).
        opset: the ONNX opset.
        label: how errors name the model.

    Raises:
        ExportError: the export failed (naming the operator when the exporter's error does), or a dynamic export
            whose output size does not follow its input.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = example_input(input_shape, device)
    axes = {INPUT_NAME: {0: "N", 2: "H", 3: "W"}, OUTPUT_NAME: {0: "N", 2: "h", 3: "w"}} if dynamic else None
    buffer = io.BytesIO()
    try:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(
                model.eval(),
                (x,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
    except Exception as e:  # noqa: BLE001 - any exporter failure is one line
        op = failed_operator(e)
        at = f" at operator {op}" if op else ""
        raise ExportError(f"{label}: ONNX export (opset {opset}) failed{at}: {first_line(e)}") from None
    data = buffer.getvalue()
    if dynamic:
        _check_dynamic(model, data, tuple(input_shape), label)
    return data


def _probe_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Another batch size and H, W than the example's: half the size (multiples of 32, at least 64), else 32 more."""
    n, c, h, w = input_shape

    def other(s: int) -> int:
        half = max(64, s // 2 // 32 * 32)
        return half if half != s else s + 32

    return (n + 1, c, other(h), other(w))


def _check_dynamic(model: nn.Module, data: bytes, input_shape: tuple[int, ...], label: str) -> None:
    import onnxruntime as ort

    probe = _probe_shape(input_shape)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = example_input(probe)
    with torch.inference_mode():
        expected = tuple(model(x.to(device)).shape)
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = tuple(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0].shape)
    except Exception as e:  # noqa: BLE001 - any runtime failure is one line
        raise ExportError(
            f"{label}: the dynamic-shape graph fails at input {probe} ({first_line(e)}); export static shapes"
        ) from None
    if got != expected:
        raise ExportError(
            f"{label}: the dynamic-shape graph is not dynamic: at input {probe} it returns {got}, eager {expected} "
            "(the TorchScript exporter froze a size computed in Python); export static shapes"
        )


# --------------------------------------------------------------------------------------------------------------------
# fp16 and int8 graphs
# --------------------------------------------------------------------------------------------------------------------


def to_fp16(data: bytes) -> bytes:
    """An fp32 graph converted to fp16 weights and compute, float32 inputs and outputs, LayerNorm kept in fp32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load_from_string(data)
    try:
        converted = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FP32]
        )
    except Exception as e:  # noqa: BLE001 - one line
        raise ExportError(f"fp16 conversion failed: {first_line(e)}") from None
    return converted.SerializeToString()


def calibration_batches(images: torch.Tensor | Sequence[torch.Tensor], input_shape: Sequence[int]) -> list[np.ndarray]:
    """Calibration images (NCHW normalised float tensors, or one stacked tensor) as float32 batches of the graph's
    batch size and H, W (a leftover of fewer images than a batch is dropped).

    Raises:
        ValueError: no images, or images of another H, W or channel count than `input_shape`.
    """
    tensors = [images] if isinstance(images, torch.Tensor) else list(images)
    if not tensors:
        raise ValueError("int8 calibration needs at least one image")
    stacked = torch.cat([t.detach().float().cpu().reshape(-1, *t.shape[-3:]) for t in tensors])
    if tuple(stacked.shape[1:]) != tuple(input_shape[1:]):
        raise ValueError(
            f"calibration images are {tuple(stacked.shape[1:])}, the graph takes {tuple(input_shape[1:])} (C, H, W)"
        )
    n = input_shape[0]
    batches = [stacked[i : i + n].numpy() for i in range(0, len(stacked) - n + 1, n)]
    if not batches:
        raise ValueError(f"int8 calibration needs at least one batch of {n} image(s), got {len(stacked)}")
    return batches


def calibration_sha256(batches: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256()
    for b in batches:
        h.update(f"{b.dtype}|{b.shape}|".encode())
        h.update(np.ascontiguousarray(b).tobytes())
    return h.hexdigest()


def int8_calibration(
    images: torch.Tensor | Sequence[torch.Tensor] | None, input_shape: Sequence[int]
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The calibration batches of an int8 build (`calibration_batches`) and what they are in its cache key (count and
    sha256), for every backend that quantises.

    Raises:
        ValueError: no images given, or images `calibration_batches` refuses.
    """
    if images is None:
        raise ValueError("int8 needs calibration images (normalised NCHW tensors): pass calibration=...")
    batches = calibration_batches(images, input_shape)
    return batches, {"batches": len(batches), "sha256": calibration_sha256(batches)}


def int8_settings(target: str) -> dict[str, Any]:
    """The quantisation recipe for graphs that run on `target` ("cpu" or "gpu"); part of their cache key."""
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "weights": "int8-symmetric-per-channel",
        "activations": INT8_ACTIVATIONS[target],
        "calibration_method": "MinMax",
        "float_ops": list(INT8_SKIP_OPS[target]),
    }


def _int8_op_types(target: str) -> list[str]:
    """Every op type ONNX Runtime's QDQ quantiser handles, less `INT8_SKIP_OPS[target]`."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - set(INT8_SKIP_OPS[target]))


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantiser logs a warning per rank-1 weight it cannot quantise per channel (LayerNorm scales: they fall back
    to per-tensor) on the root logger, and its calibration sessions log ONNX Runtime warnings; both are expected."""
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)  # ONNX Runtime's default (warnings); it has no getter


def quantize_int8(data: bytes, batches: Sequence[np.ndarray], target: str = "cpu") -> bytes:
    """A fp32 graph statically quantised to int8 (QDQ), activations calibrated on `batches` (`calibration_batches`).

    Raises:
        ExportError: the quantiser failed (one line).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{INPUT_NAME: b} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    symmetric = INT8_ACTIVATIONS[target] == "int8-symmetric"
    with tempfile.TemporaryDirectory(prefix="segbench-int8-") as tmp, _quiet_quantizer():
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(data)
        try:
            quantize_static(
                src,
                out,
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=_int8_op_types(target),
                per_channel=True,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
            )
        except Exception as e:  # noqa: BLE001 - one line
            raise ExportError(f"int8 static quantisation failed: {first_line(e)}") from None
        return out.read_bytes()


# --------------------------------------------------------------------------------------------------------------------
# Cached graphs
# --------------------------------------------------------------------------------------------------------------------


def onnx_graph(
    model: nn.Module,
    input_shape: Sequence[int],
    precision: str,
    cache: ArtifactCache,
    *,
    name: str,
    weights_sha256: str,
    dynamic: bool = False,
    calibration: torch.Tensor | Sequence[torch.Tensor] | None = None,
    target: str = "cpu",
) -> CachedArtifact:
    """The ONNX graph of `model` at `precision` ("fp32", "fp16", "int8"), from the cache or made now (the fp16 and int8
    graphs from the cached fp32 one). int8 needs `calibration` images; `target` ("cpu", "gpu") picks its activation
    type. Keyed under backend "onnxruntime" (TensorRT builds its engines from these graphs too, and OpenVINO compiles
    the fp32 one).

    Raises:
        ExportError: export, conversion or quantisation failed.
        ValueError: int8 without calibration images, or an unknown precision.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"no ONNX graph for precision {precision!r}; fp32, fp16 or int8")
    shape = tuple(int(s) for s in input_shape)
    settings: dict[str, Any] = {"exporter": EXPORTER, "opset": OPSET}
    batches: list[np.ndarray] = []
    if precision == "fp16":
        settings["fp16_keep_fp32"] = sorted(FP16_KEEP_FP32)
    if precision == "int8":
        batches, settings["calibration"] = int8_calibration(calibration, shape)
        settings["int8"] = int8_settings(target)

    def key(p: str, s: dict[str, Any]) -> CacheKey:
        return CacheKey(name, weights_sha256, shape, p, "onnxruntime", ".onnx", dynamic, graph_versions(), s)

    fp32 = cache.get_or_build(
        key("fp32", {"exporter": EXPORTER, "opset": OPSET}),
        lambda: export_onnx(model, shape, dynamic=dynamic, label=name),
    )
    if precision == "fp32":
        return fp32
    derive = to_fp16 if precision == "fp16" else (lambda data: quantize_int8(data, batches, target))
    graph = cache.get_or_build(key(precision, settings), lambda: derive(fp32.path.read_bytes()))
    return replace(graph, build_s=fp32.build_s + graph.build_s)  # building it from scratch takes both


__all__ = [
    "EXPORTER",
    "FP16_KEEP_FP32",
    "INT8_ACTIVATIONS",
    "INT8_SKIP_OPS",
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "ExportError",
    "calibration_batches",
    "export_onnx",
    "failed_operator",
    "int8_calibration",
    "int8_settings",
    "onnx_graph",
    "quantize_int8",
    "to_fp16",
]
