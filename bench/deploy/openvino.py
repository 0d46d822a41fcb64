"""OpenVINO for the `openvino` backend: which device and properties, the int8 IR made by NNCF, and a torch module
around a compiled model.

**The model source** is segbench's own ONNX export (`export.onnx_graph`, the graph ONNX Runtime runs, already cached),
read by OpenVINO's ONNX frontend. OpenVINO's PyTorch frontend (``ov.convert_model(model, example_input=...)``)
agrees with eager as closely (SegFormer-B0 demo weights, 64x128: 4.4e-7 relative against the ONNX graph's 4.8e-7),
but would be a second conversion to cache and keep in step, so the exported backends share one graph.

**Properties** (`compile_config`, read back from the compiled model by `read_back` into the build's detail):
``PERFORMANCE_HINT=LATENCY`` (one stream: a batch is one request, as the latency timer calls it),
``INFERENCE_PRECISION_HINT`` f32 for fp32 and int8 (the ops int8 leaves in float run in fp32, as ONNX Runtime runs
them; the CPU plugin's default on a bf16 CPU would be bf16), bf16 for bf16, and on the CPU ``INFERENCE_NUM_THREADS``
= torch's thread count (the cores the torch and ONNX Runtime backends use). fp32 and bf16 compile the same cached
fp32 graph: bf16 is OpenVINO's own mixed precision, which also runs the LayerNorms and softmaxes that torch's autocast
keeps in fp32 in bf16: SegFormer-B0 (demo weights) agrees at 128x256, the scale it was trained at (0.6% / 99.9%),
and not at 64x128 (5.5% / 98.3%, where autocast gives 0.7% / 99.6%). A CPU without native bf16 (AVX-512-BF16 or AMX)
has no BF16 in OpenVINO's ``OPTIMIZATION_CAPABILITIES`` and would quietly run fp32: the backend refuses there.

**int8** (`quantize_int8`): NNCF post-training quantisation of the fp32 graph (``nncf.quantize``), calibrated on the
suite's images, saved as an OpenVINO IR (FakeQuantize ops, weights int8; float constants kept in fp32). The recipe
(`INT8_RECIPE`) is NNCF's default but for two settings measured on SegFormer-B0 (demo weights, 4 calibration scenes,
64x128 and 128x256; this machine's CPU has AMX): NNCF's default symmetric activations leave 30-45% of the pixels on
their class, so activations are asymmetric (the MIXED preset, as ONNX Runtime's CPU graphs use uint8 asymmetric);
and the attention's sequence-reduction convolutions (kernel = stride = R, 8x8 in the first stage) stay in float: in
int8, the first stage's two alone cost 6% of argmax agreement here, while the same quantisation in ONNX Runtime
costs nothing (their inputs are LayerNorm outputs within +-4, no outlier channels). With both: 5.6% / 99.3% and
4.7% / 99.7% (ONNX Runtime's int8: 3.7% / 99.4% and 5.2% / 99.6%). DeepLabV3+ (MobileNetV2) agrees either way
(5.5% / 99.2% at 64x128).

**The cached IR**: an IR is two files (the topology, .xml, and the weights, .bin); the deployment cache stores one
file per key, written atomically with its manifest. The int8 IR is therefore cached as one uncompressed zip archive
(`pack_ir`) of ``model.xml`` and ``model.bin``: one atomic write and one manifest, as for an ONNX graph, so that no
topology can outlive or mismatch its weights; ``unzip`` gives the ordinary IR back, and OpenVINO reads both members
from memory (``Core.read_model(xml, bin)``). Two cache keys would be two writes that a crash can separate, and a
compiled blob (``export_model``) is tied to the device, the OpenVINO version and the CPU's ISA. The cache notices a
file of another size; a damage that keeps the size fails the zip's CRC-32 (`DamagedIR`), and the backend then
builds the IR again.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segbench.bench.deploy.cache import module_version
from segbench.bench.deploy.export import ExportError
from segbench.bench.measure.latency import cpu_isa_flags
from segbench.models.sources import first_line

IR_SUFFIX = ".ir.zip"
IR_MEMBERS = ("model.xml", "model.bin")
READ_BACK = (
    "INFERENCE_PRECISION_HINT",
    "PERFORMANCE_HINT",
    "INFERENCE_NUM_THREADS",
    "NUM_STREAMS",
    "EXECUTION_DEVICES",
)
"""Properties of a compiled model recorded in the build's detail (what OpenVINO settled on, not what was asked)."""
INT8_FLOAT_PATTERNS = (r".*attn/sr/Conv.*",)
"""Node names (regular expressions) int8 leaves in float: SegFormer's sequence-reduction convolutions."""
INT8_RECIPE: dict[str, Any] = {
    "tool": "nncf.quantize",
    "preset": "mixed",
    "weights": "int8-symmetric-per-channel",
    "activations": "int8-asymmetric-per-tensor",
    "float_nodes": list(INT8_FLOAT_PATTERNS),
    "subset_size": "every calibration batch",
}
"""The int8 recipe (see the module docstring); part of the IR's cache key."""


class DamagedIR(RuntimeError):
    """A cached IR archive that cannot be read (a member missing, or one that fails its CRC-32)."""


@functools.cache
def core() -> Any:
    """One ``openvino.Core`` per process (it loads the device plugins once)."""
    import openvino as ov

    return ov.Core()


def available_devices() -> list[str]:
    return list(core().available_devices)


def ov_device(device: torch.device) -> str | None:
    """The OpenVINO device that runs for torch `device`: ``"CPU"``, or for ``cuda[:i]`` OpenVINO's GPU plugin
    (``"GPU"``, ``"GPU.i"``) when it lists one, else None."""
    if device.type != "cuda":
        return "CPU"
    index = device.index or 0
    devices = available_devices()
    for name in (f"GPU.{index}", "GPU" if index == 0 else None):
        if name in devices:
            return name
    return None


def capabilities(device: str = "CPU") -> list[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of `device` (FP32, BF16, INT8, ...), [] when it cannot tell."""
    import openvino.properties.device as device_props

    with contextlib.suppress(Exception):
        return [str(c) for c in core().get_property(device, device_props.capabilities())]
    return []


def cpu_isa() -> dict[str, list[str]]:
    """The CPU's ISA as OpenVINO and the kernel see it: OpenVINO's optimisation capabilities of the CPU and the
    relevant /proc/cpuinfo flags (`bench.measure.latency.cpu_isa_flags`); each [] when unreadable."""
    caps: list[str] = []
    with contextlib.suppress(Exception):  # no openvino here: the flags alone
        caps = capabilities("CPU")
    return {"openvino_capabilities": caps, "cpuinfo_flags": cpu_isa_flags()}


def versions(int8: bool = False) -> dict[str, str | None]:
    """The OpenVINO version, and NNCF's for int8."""
    out = {"openvino": module_version("openvino")}
    if int8:
        out["nncf"] = module_version("nncf")
    return out


# --------------------------------------------------------------------------------------------------------------------
# Compiling
# --------------------------------------------------------------------------------------------------------------------


def compile_config(device: str, precision: str, threads: int) -> dict[str, Any]:
    """The properties a model is compiled with on OpenVINO `device` at `precision` (see the module docstring)."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    dtype = {"bf16": ov.Type.bf16, "fp16": ov.Type.f16}.get(precision, ov.Type.f32)
    config: dict[str, Any] = {
        hints.performance_mode(): hints.PerformanceMode.LATENCY,
        hints.inference_precision(): dtype,
    }
    if device == "CPU":
        config[props.inference_num_threads()] = threads
    return config


def _plain(value: Any) -> Any:
    """A property value as JSON: OpenVINO types by their short name (``bf16``), enums by name."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "to_string"):
        return value.to_string()
    return getattr(value, "name", None) or str(value)


def read_back(compiled: Any) -> dict[str, Any]:
    """`READ_BACK` properties of a compiled model, as JSON values (None where the device has no such property)."""
    out = {}
    for name in READ_BACK:
        try:
            out[name] = _plain(compiled.get_property(name))
        except Exception:  # noqa: BLE001 - not a property of this device's compiled models
            out[name] = None
    return out


def read_model(path: Path) -> Any:
    """An OpenVINO model from an ONNX graph or a packed IR (`pack_ir`).

    Raises:
        DamagedIR: a packed IR that cannot be read.
    """
    if path.name.endswith(IR_SUFFIX):
        xml, weights = unpack_ir(path.read_bytes())
        return core().read_model(xml, weights)
    return core().read_model(str(path))


class OpenVinoModule(nn.Module):
    """A model compiled by OpenVINO with one infer request, called like a torch module: a normalised float32 NCHW
    batch in, float32 NCHW logits out as a tensor on the batch's device.

    Args:
        file: the ONNX graph or packed IR it runs (`read_model`).
        device: the OpenVINO device (``"CPU"``, ``"GPU"``).
        precision: what `compile_config` compiles it at.
        threads: the CPU's inference threads (default: torch's).

    Pickles (and deep-copies) by its file: the model is compiled again on the other side.
    """

    def __init__(self, file: Path, device: str, precision: str, threads: int | None = None):
        super().__init__()
        self.file, self.device, self.precision = Path(file), device, precision
        self.threads = threads if threads is not None else torch.get_num_threads()
        config = compile_config(device, precision, self.threads)
        self.compiled = core().compile_model(read_model(self.file), device, config)
        self.request = self.compiled.create_infer_request()
        self.properties = read_back(self.compiled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        # share_outputs=False: the logits are copied out of the request's buffer, which the next call overwrites.
        out = self.request.infer({0: array}, share_inputs=True, share_outputs=False)[0]
        return torch.from_numpy(out).to(x.device)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["compiled"] = state["request"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.compiled = core().compile_model(
            read_model(self.file), self.device, compile_config(self.device, self.precision, self.threads)
        )
        self.request = self.compiled.create_infer_request()

    def extra_repr(self) -> str:
        return f"file={self.file.name}, device={self.device}, precision={self.precision}"


# --------------------------------------------------------------------------------------------------------------------
# int8: NNCF, and the IR packed into one file
# --------------------------------------------------------------------------------------------------------------------


def pack_ir(xml: bytes, weights: bytes) -> bytes:
    """An IR's two files as one uncompressed zip archive (see the module docstring)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in zip(IR_MEMBERS, (xml, weights), strict=True):
            archive.writestr(name, data)
    return buffer.getvalue()


def unpack_ir(data: bytes) -> tuple[bytes, bytes]:
    """The topology (.xml) and weights (.bin) of a packed IR, each checked against its CRC-32.

    Raises:
        DamagedIR: not a zip archive, a member missing, or a member that fails its CRC-32.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            xml, weights = (archive.read(name) for name in IR_MEMBERS)
    except (zipfile.BadZipFile, KeyError, EOFError, ValueError) as e:
        raise DamagedIR(f"the packed OpenVINO IR is damaged: {first_line(e)}") from None
    return xml, weights


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs each step and draws progress bars on stdout (rich), and torch warns once that it finds no CUDA
    runtime when NNCF looks for its extensions: all expected, none a result."""
    import nncf

    loggers = [logging.getLogger(n) for n in ("nncf", "torch.utils.cpp_extension")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def quantize_int8(graph: Path, batches: Sequence[np.ndarray]) -> bytes:
    """The fp32 ONNX `graph` quantised to int8 by NNCF (`INT8_RECIPE`), activations calibrated on `batches`
    (`export.calibration_batches`), as a packed IR.

    Raises:
        ExportError: NNCF failed (one line).
    """
    import nncf
    import openvino as ov

    model = core().read_model(str(graph))
    try:
        with _quiet_nncf():
            quantized = nncf.quantize(
                model,
                nncf.Dataset(list(batches)),
                preset=nncf.QuantizationPreset.MIXED,
                subset_size=len(batches),
                ignored_scope=nncf.IgnoredScope(patterns=list(INT8_FLOAT_PATTERNS), validate=False),
            )
    except Exception as e:  # noqa: BLE001 - one line
        raise ExportError(f"int8 quantisation (NNCF) failed: {first_line(e)}") from None
    with tempfile.TemporaryDirectory(prefix="segbench-ov-int8-") as tmp:
        xml = Path(tmp) / IR_MEMBERS[0]
        ov.save_model(quantized, xml, compress_to_fp16=False)  # its float constants stay fp32
        return pack_ir(xml.read_bytes(), xml.with_suffix(".bin").read_bytes())


__all__ = [
    "INT8_FLOAT_PATTERNS",
    "INT8_RECIPE",
    "IR_SUFFIX",
    "READ_BACK",
    "DamagedIR",
    "OpenVinoModule",
    "available_devices",
    "capabilities",
    "compile_config",
    "core",
    "cpu_isa",
    "ov_device",
    "pack_ir",
    "quantize_int8",
    "read_back",
    "read_model",
    "unpack_ir",
    "versions",
]
