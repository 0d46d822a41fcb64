"""TensorRT engines for the `tensorrt` backend: built from segbench's ONNX graphs with the `tensorrt` Python API.

**Precision lives in the graph** (a strongly typed network): the fp32 graph gives an fp32 engine (TF32 off, as
`strict_fp32` keeps torch's fp32), the fp16 graph (`export.to_fp16`, LayerNorm kept in fp32) an fp16 one, and the
int8 QDQ graph (`export.quantize_int8` with symmetric activations) an explicitly quantised int8 one. That is the one
way that works on TensorRT 10 (strong typing opted into with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``) and on
TensorRT 11, where every network is strongly typed and the ``FP16``/``INT8`` builder flags no longer exist. Implicit
int8 calibrators are deprecated there too, so int8 comes from the QDQ graph, calibrated by ONNX Runtime.

Engines have static shapes (one per input shape: TensorRT's fastest kernels), are tied to the GPU model and the
TensorRT version (both in their cache key), and run on torch's current CUDA stream with torch-allocated buffers.

None of this can run on the CPU-only machines it was written on (no `tensorrt` package, no GPU): it is untested.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "INT8": torch.int8,
    "INT32": torch.int32,
    "BF16": torch.bfloat16,
}


def _logger() -> Any:
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def build_engine(onnx_bytes: bytes, label: str, workspace_bytes: int | None = None) -> bytes:
    """A serialized TensorRT engine of an ONNX graph (strongly typed: the graph's types decide the precision).

    Raises:
        RuntimeError: the parser rejected the graph (one line naming the node and its operator) or the build failed.
    """
    import tensorrt as trt

    logger = _logger()
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        first = errors[0] if errors else None
        where = ""
        if first is not None and hasattr(first, "node_operator"):
            where = f" at node {first.node_name()} ({first.node_operator()})"
        desc = first.desc() if first is not None else "no error reported"
        raise RuntimeError(f"{label}: TensorRT cannot parse the ONNX graph{where}: {desc}")
    config = builder.create_builder_config()
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 layers in IEEE fp32
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{label}: TensorRT could not build an engine (its log above says why)")
    return bytes(serialized)


def engine_versions(device: torch.device) -> dict[str, Any]:
    """What an engine is tied to besides its graph: the TensorRT version and the GPU (model, compute capability)."""
    import tensorrt as trt

    major, minor = torch.cuda.get_device_capability(device)
    return {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(device), "sm": f"{major}.{minor}"}


class TensorRTModule(nn.Module):
    """A deserialized engine called like a torch module: float32 NCHW in, float32 logits out, on `device`."""

    def __init__(self, engine_bytes: bytes, device: torch.device):
        super().__init__()
        import tensorrt as trt

        self.device = device
        with torch.cuda.device(device):
            self.runtime = trt.Runtime(_logger())
            self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise RuntimeError("TensorRT could not deserialize the engine (another TensorRT version or GPU?)")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = _DTYPES[self.engine.get_tensor_dtype(self.input_name).name]
        self.output_dtype = _DTYPES[self.engine.get_tensor_dtype(self.output_name).name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to(self.device, self.input_dtype).contiguous()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        shape = tuple(self.context.get_tensor_shape(self.output_name))
        out = torch.empty(shape, dtype=self.output_dtype, device=self.device)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT failed to run the engine")
        return out.float()


__all__ = ["TensorRTModule", "build_engine", "engine_versions"]
