"""ONNX Runtime sessions for the `onnxruntime` backend: which execution providers, and a torch module around a session.

**Providers** are chosen by the device and by what the installed ONNX Runtime offers
(``onnxruntime.get_available_providers()``):

- ``cpu``: ``CPUExecutionProvider``, with torch's thread count (as `models.exported` runs `onnx:` files);
- ``cuda[:i]``: ``TensorrtExecutionProvider`` first when present (its engines cached beside the graph), then
  ``CUDAExecutionProvider`` (on GPU i), then the CPU provider for any node neither takes. ONNX Runtime falls back to
  the CPU without failing when the CUDA provider cannot load its libraries; the backend checks the session's providers
  after it is made and refuses in one line then.

**On the CPU** the module is `models.exported.OnnxRuntimeModule` (the batch copied to a float array, the logits back
as a tensor). **On a GPU** (`CudaOnnxRuntimeModule`) input and output are bound to torch's CUDA memory through an
IO binding, so no host copies are timed: the output tensor is allocated by torch when the graph's output shape is
static, else ONNX Runtime allocates it and it is copied. These GPU paths cannot be run on the CPU-only machines this
was written on: they are untested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbench.models.exported import OnnxRuntimeModule, onnx_session

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def providers_for(device: torch.device, engine_cache: Path | None = None, use_tensorrt: bool = True) -> list[Any]:
    """The provider list for a session on `device` (see the module docstring); `engine_cache`: where the TensorRT
    provider keeps its engines."""
    if device.type != "cuda":
        return [CPU]
    index = device.index if device.index is not None else 0
    out: list[Any] = []
    if use_tensorrt and TENSORRT in available_providers():
        options: dict[str, Any] = {"device_id": index}
        if engine_cache is not None:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(engine_cache))
        out.append((TENSORRT, options))
    return [*out, (CUDA, {"device_id": index}), CPU]


class CudaOnnxRuntimeModule(OnnxRuntimeModule):
    """An ONNX Runtime session on a GPU provider, its input and output bound to torch CUDA tensors (untested here)."""

    def __init__(self, file: Path, label: str, session: Any, device: torch.device):
        super().__init__(file, label, session)
        self.device = device
        self.index = device.index if device.index is not None else 0
        shape = session.get_outputs()[0].shape
        self.output_shape = tuple(shape) if all(isinstance(d, int) and d > 0 for d in shape) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to(self.device, self.input_dtype).contiguous()
        binding = self.session.io_binding()
        dtype = torch.empty((), dtype=self.input_dtype).numpy().dtype
        binding.bind_input(self.input_name, "cuda", self.index, dtype, list(x.shape), x.data_ptr())
        out = None
        if self.output_shape is not None and self.output_shape[0] == x.shape[0]:
            out = torch.empty(self.output_shape, dtype=torch.float32, device=self.device)
            binding.bind_output(self.output_name, "cuda", self.index, np.float32, list(out.shape), out.data_ptr())
        else:
            binding.bind_output(self.output_name, "cuda", self.index)
        torch.cuda.current_stream(self.device).synchronize()  # x is written before ONNX Runtime's stream reads it
        self.session.run_with_iobinding(binding)  # returns once the outputs are ready
        if out is not None:
            return out
        return torch.from_numpy(binding.copy_outputs_to_cpu()[0]).to(self.device)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.session = onnx_session(self.file, providers_for(self.device))


__all__ = ["CPU", "CUDA", "TENSORRT", "CudaOnnxRuntimeModule", "available_providers", "providers_for"]
