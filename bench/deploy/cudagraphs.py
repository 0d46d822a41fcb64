"""CUDA graphs for the `cudagraphs` backend: a model captured once for one input shape, then replayed per call.

The capture recipe and what a replay returns are `CudaGraphModule`'s docstring. None of it runs without a CUDA GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from segbench.bench.run.config import autocast_dtype

CUDA_GRAPH_WARMUP = 3
"""Calls before a CUDA graph is captured (PyTorch's whole-network recipe uses 3)."""


class CudaGraphModule(nn.Module):
    """A model captured once as a CUDA graph for one input shape, then replayed for every call.

    The capture follows PyTorch's whole-network recipe: a static input buffer of the shape; `warmup` calls on a side
    stream (lazy initialisation, cuDNN autotuning, cuBLAS workspaces, the allocator's blocks), then one call captured on
    that same stream into the graph's private memory pool. Both run under ``torch.inference_mode()``, IEEE fp32
    (`strict_fp32`: the kernels, TF32 or not, are fixed at capture) and ``cudnn.benchmark`` on, as `measure_latency`
    times the other variants; bf16/fp16 run under ``torch.autocast`` with its cast cache off (cached weight casts
    would be freed when autocast exits while the graph still reads them; the casts are then part of the graph).

    A call copies `x` into the static input, replays the graph on the current stream and returns a copy of the static
    output on x's device (the next replay overwrites it). The graph reads the tensors it read at capture: the model's
    weights are held here (`captured`), so that moving or casting the model afterwards neither frees them nor changes
    what the graph computes (weights copied into those same tensors, as ``load_state_dict`` does, are seen).

    Args:
        model: the network, on `device`, in eval mode.
        shape: the one input shape (N, C, H, W) the graph runs.
        precision: "fp32", "bf16" or "fp16".
        device: the CUDA device, with its index.
        warmup: calls before the capture.
    """

    def __init__(
        self,
        model: nn.Module,
        shape: Sequence[int],
        precision: str,
        device: torch.device,
        warmup: int = CUDA_GRAPH_WARMUP,
    ) -> None:
        from segbench.bench.measure.latency import cudnn_benchmark, strict_fp32

        super().__init__()
        self.model = model
        self.shape = tuple(int(s) for s in shape)
        self.dtype = autocast_dtype(precision)
        if hasattr(model, "meta"):
            self.meta = model.meta
        self.captured = [t.detach() for t in (*model.parameters(), *model.buffers())]
        # Plain attributes, not buffers: `.to()` of this module must not swap in new tensors the graph does not read.
        self.static_input = torch.randn(self.shape, generator=torch.Generator().manual_seed(0)).to(device)
        self.graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream(device)
        with torch.cuda.device(device), torch.inference_mode(), strict_fp32(), cudnn_benchmark(True):
            stream.wait_stream(torch.cuda.current_stream(device))  # the input and weights are ready on the side stream
            with torch.cuda.stream(stream):
                for _ in range(warmup):
                    self._run(self.static_input)
            torch.cuda.current_stream(device).wait_stream(stream)
            with torch.cuda.graph(self.graph, stream=stream):
                self.static_output = self._run(self.static_input)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype is None:
            return self.model(x)
        with torch.autocast("cuda", dtype=self.dtype, cache_enabled=False):
            return self.model(x).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) != self.shape:
            raise ValueError(
                f"cudagraphs: the graph was captured for inputs of shape {self.shape}, got {tuple(x.shape)} "
                "(static shapes: build one per input shape)"
            )
        with torch.no_grad():
            self.static_input.copy_(x)
            self.graph.replay()
            return self.static_output.to(x.device, copy=True)


__all__ = ["CUDA_GRAPH_WARMUP", "CudaGraphModule"]
