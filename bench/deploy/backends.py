"""Deployment backends: one model, run the ways a user would ship it, each checked against eager fp32.

A backend (`BACKENDS`, filled with `register_backend`; `get_backend(name)`) says whether it can run here,
``check(device, precision, model)``, which raises `BackendUnavailable` with one line naming the missing package or
hardware, and builds a runnable model, ``build(model, input_shape, precision, cache) -> Built``. The built module takes
a normalised float32 NCHW batch and returns float32 NCHW logits on the batch's device.

=========== =================================================== =============================================
backend     what runs                                           precisions
=========== =================================================== =============================================
eager       the model as given                                  fp32; bf16 (autocast, CPU or GPU); fp16 (GPU)
fast        SegFormer's fast path (a copy, `fast_path`)        as eager, but bf16 on the CPU is a bf16 copy
                                                                (its fused oneDNN kernels run in bf16); SegFormer
                                                                models only
compile     ``torch.compile``, static shapes, compiled at build   as eager; a C++ compiler (CPU) or triton (GPU)
cudagraphs  the model captured as one CUDA graph (static shape)   fp32; bf16; fp16 (autocast in the graph); GPU only
onnxruntime segbench's ONNX export in ONNX Runtime: the CPU         fp32; int8 (static QDQ, calibrated); fp16 (GPU)
            provider, the CUDA and TensorRT providers if present
openvino    the ONNX export compiled by OpenVINO: the CPU       fp32; bf16 (CPUs with native bf16); int8 (NNCF
            plugin, or its GPU plugin for cuda if listed        IR, calibrated); fp16 (GPU plugin)
tensorrt    a TensorRT engine built from the ONNX export (GPU)  fp32; fp16; int8 (from the QDQ graph)
=========== =================================================== =============================================

ONNX's Conv (opset 17) has no bfloat16 type, so neither ONNX Runtime nor TensorRT (which builds from the same graphs)
can be given a bf16 graph; OpenVINO runs bf16 from the fp32 graph, as a compile-time hint (`bench.deploy.openvino`).
Artifacts (ONNX files, OpenVINO IRs, engines) go through the deployment cache (`bench.deploy.cache`).
`check_deployment` builds one cell and measures its agreement with eager fp32; any reason it cannot run becomes a
one-line status instead of an exception, so that the other cells go on.
"""

from __future__ import annotations

import copy
import importlib
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbench.bench.deploy import openvino as ov_runtime
from segbench.bench.deploy import ort as ort_runtime
from segbench.bench.deploy.agreement import Agreement, measure_agreement, reference_logits
from segbench.bench.deploy.cache import ArtifactCache, CachedArtifact, CacheKey
from segbench.bench.deploy.cudagraphs import CUDA_GRAPH_WARMUP, CudaGraphModule
from segbench.bench.deploy.export import (
    EXPORTER,
    OPSET,
    ExportError,
    graph_versions,
    int8_calibration,
    onnx_graph,
)
from segbench.bench.measure.latency import resolve_device
from segbench.bench.results.schema import FAILED, UNAVAILABLE
from segbench.bench.run.config import ConfigError, autocast_dtype, check_precision_supported
from segbench.models import segformer_native
from segbench.models.checkpoint import state_dict_sha256
from segbench.models.exported import onnx_session
from segbench.models.registry import Registry
from segbench.models.segformer_kernels import onednn_bf16
from segbench.models.sources import first_line

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
"""Deployment precisions: `bench.run.config.PRECISIONS` (autocast) plus int8 (static quantisation of an exported
graph)."""


class BackendUnavailable(RuntimeError):
    """A backend, or one of its precisions, that cannot run on this machine; the message is one line."""


@dataclass
class Built:
    """A model built by a backend, ready to call.

    Attributes:
        backend, precision, device: what was built, for where (the device with its index).
        input_shape: the example input (N, 3, H, W); dynamic: whether H, W (and N) may differ from it.
        module: ``module(x)`` takes a normalised float32 NCHW batch, returns float32 NCHW logits on x's device.
        build_s: what this build took (export, quantisation, engine build, compilation, session creation; on a cache
            hit, loading).
        artifact: the file it runs (ONNX graph, engine), None for the torch backends; artifact_bytes its size.
        cache_hit: whether the artifact came from the cache (None without an artifact).
        artifact_build_s: what building the artifact took when it was built (from its manifest on a hit).
        detail: backend facts (exporter, opset, providers, autocast dtype, whether the CPU has native bf16...).
    """

    backend: str
    precision: str
    device: str
    input_shape: tuple[int, ...]
    dynamic: bool
    module: nn.Module
    build_s: float
    artifact: Path | None = None
    artifact_bytes: int | None = None
    cache_hit: bool | None = None
    artifact_build_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x)


@dataclass(frozen=True)
class DeployRequest:
    """What `Backend.build` was asked for, as its subclasses receive it (see `Backend.build` for each field)."""

    shape: tuple[int, ...]
    precision: str
    device: torch.device
    cache: ArtifactCache | None = None
    dynamic: bool = False
    calibration: torch.Tensor | Sequence[torch.Tensor] | None = None
    name: str | None = None

    def built(
        self, backend: str, module: nn.Module, dynamic: bool, artifact: CachedArtifact | None = None, **detail: Any
    ) -> Built:
        """The `Built` of this request (build_s is filled in by `Backend.build`)."""
        if artifact is None:
            return Built(backend, self.precision, str(self.device), self.shape, dynamic, module, 0.0, detail=detail)
        return Built(
            backend,
            self.precision,
            str(self.device),
            self.shape,
            dynamic,
            module,
            0.0,
            artifact.path,
            artifact.bytes,
            artifact.hit,
            artifact.build_s,
            detail,
        )


class AutocastModule(nn.Module):
    """A model under ``torch.autocast`` at a precision ("bf16", "fp16"; none for "fp32"), logits returned in fp32."""

    def __init__(self, model: nn.Module | Any, precision: str, device_type: str):
        super().__init__()
        self.model = model
        self.dtype = autocast_dtype(precision)
        self.device_type = device_type
        if hasattr(model, "meta"):
            self.meta = model.meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype is None:
            return self.model(x)
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(x).float()


class CastModule(nn.Module):
    """A model whose weights were cast to `dtype`: the batch is cast to it on the way in, the logits back to fp32."""

    def __init__(self, model: nn.Module | Any, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype
        if hasattr(model, "meta"):
            self.meta = model.meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def model_name(model: nn.Module) -> str:
    meta = getattr(model, "meta", None)
    return getattr(meta, "name", None) or type(model).__name__


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX-512-BF16 or AMX); without, bf16 is emulated and slow."""
    return onednn_bf16()


# --------------------------------------------------------------------------------------------------------------------
# The backend interface
# --------------------------------------------------------------------------------------------------------------------


class Backend:
    """A way to run a model. Subclasses set `name` and `unsupported` and implement `_requirements` and `_build`."""

    name = ""
    unsupported: Mapping[str, str] = {}
    """Precision -> why this backend never offers it (one line)."""

    def check(
        self, device: str | torch.device = "cpu", precision: str = "fp32", model: nn.Module | None = None
    ) -> None:
        """Raise `BackendUnavailable` (one line) unless this backend can run `precision` on `device` here (and, given
        one, `model`); return None if it can.

        Raises:
            ValueError: an unknown precision.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        device = torch.device(device)
        self._requirements(device)  # the packages first: the line then names what to install
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"{self.name}: {device} asked for, but torch.cuda.is_available() is False here")
        if precision in self.unsupported:
            raise BackendUnavailable(f"{self.name} {precision}: {self.unsupported[precision]}")
        self._precision_requirements(device, precision)
        if precision == "fp16" and device.type != "cuda":
            none = "" if torch.cuda.is_available() else ", and torch.cuda.is_available() is False here"
            raise BackendUnavailable(f"{self.name} fp16: needs a CUDA GPU (the device is {device}{none})")
        if precision == "bf16" and device.type == "cuda":
            try:
                check_precision_supported(precision, resolve_device(device))
            except ConfigError as e:
                raise BackendUnavailable(f"{self.name} bf16: {e.problem}") from None
        if model is not None:
            self._model_requirements(model)

    def _requirements(self, device: torch.device) -> None:
        """Packages and hardware; raise `BackendUnavailable`."""

    def _precision_requirements(self, device: torch.device, precision: str) -> None:
        """What `precision` needs on `device` beyond the generic checks that follow (fp16 on a CUDA GPU, bf16 on one
        that has it); raise `BackendUnavailable`."""

    def _model_requirements(self, model: nn.Module) -> None:
        """What the model must be; raise `BackendUnavailable`."""

    def build(
        self,
        model: nn.Module,
        input_shape: Sequence[int],
        precision: str = "fp32",
        cache: ArtifactCache | None = None,
        *,
        device: str | torch.device = "cpu",
        dynamic: bool = False,
        calibration: torch.Tensor | Sequence[torch.Tensor] | None = None,
        name: str | None = None,
    ) -> Built:
        """Build `model` for inputs of `input_shape` (N, 3, H, W) at `precision` on `device`.

        Args:
            model: the network in eval mode, fp32 weights (trained or not); the torch backends move it to `device`.
            input_shape: the example input; static graphs and engines are built for exactly this shape.
            precision: one of `PRECISIONS`.
            cache: where artifacts go (default `$SEGBENCH_CACHE/deploy`).
            device: ``"cpu"`` or ``"cuda[:i]"``.
            dynamic: exported graphs with dynamic N, H and W (onnxruntime; refused by tensorrt).
            calibration: int8 only: normalised NCHW images of the input's C, H, W to calibrate activations on.
            name: the model's name in the cache (default: ``model.meta.name``, else its class name).

        Raises:
            BackendUnavailable: see `check`.
            ExportError: an export, conversion or quantisation failed (one line).
        """
        device = resolve_device(device)
        self.check(device, precision, model)
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 4:
            raise ValueError(f"input_shape must be (N, C, H, W), got {shape}")
        start = time.perf_counter()
        request = DeployRequest(shape, precision, device, cache, dynamic, calibration, name)
        built = self._build(model.eval(), request)
        built.build_s = time.perf_counter() - start
        return built

    def _build(self, model: nn.Module, request: DeployRequest) -> Built:
        raise NotImplementedError


BACKENDS: Registry = Registry("backend")


def register_backend(backend: Backend) -> Backend:
    BACKENDS.add(backend.name, backend)
    return backend


def get_backend(name: str) -> Backend:
    """The backend registered as `name`; an unknown name raises a `ValueError` with the closest names."""
    return BACKENDS.get(name)


def list_backends() -> list[str]:
    return BACKENDS.list()


# --------------------------------------------------------------------------------------------------------------------
# torch: eager, fast, compile
# --------------------------------------------------------------------------------------------------------------------

_TORCH_INT8 = (
    "not offered: int8 is static quantisation of the exported graph (backends onnxruntime, openvino, tensorrt)"
)


class EagerBackend(Backend):
    """The model itself, under autocast for bf16/fp16."""

    name = "eager"
    unsupported = {"int8": _TORCH_INT8}

    def _prepare(self, model: nn.Module, device: torch.device) -> nn.Module:
        return model.to(device)

    def _build(self, model: nn.Module, request: DeployRequest) -> Built:
        device = request.device
        module = AutocastModule(self._prepare(model, device), request.precision, device.type)
        detail: dict[str, Any] = {"autocast": str(module.dtype).replace("torch.", "") if module.dtype else None}
        if request.precision == "bf16" and device.type == "cpu":
            detail["cpu_native_bf16"] = cpu_has_native_bf16()
        return request.built(self.name, module, True, **detail)


class FastBackend(EagerBackend):
    """SegFormer's fast path: a copy of the model with its decoder folded and, on the CPU, its blocks run in bands
    (`SegFormer.fast_path`)."""

    name = "fast"

    def _model_requirements(self, model: nn.Module) -> None:
        if not hasattr(model, "fold_decoder"):
            raise BackendUnavailable(
                f"fast: {model_name(model)} has no fast path (segbench's folded decoder is SegFormer's)"
            )

    def _prepare(self, model: nn.Module, device: torch.device) -> nn.Module:
        return copy.deepcopy(model).to(device).fast_path().eval()

    def _build(self, model: nn.Module, request: DeployRequest) -> Built:
        """On the CPU, bf16 is a bf16 copy of the fast path rather than autocast: its fused oneDNN kernels
        (`models/segformer_kernels.py`) then run in bf16, and no activation is cast back and forth between ops
        (LayerNorm and softmax still accumulate in fp32 inside their kernels); like OpenVINO's bf16, which also
        keeps its tensors in bf16 between ops."""
        if request.device.type != "cpu":
            return super()._build(model, request)
        if request.precision != "bf16":
            built = super()._build(model, request)
            built.detail["kernels"] = segformer_native.status().detail  # segbench's AVX-512 kernels or PyTorch's
            return built
        module = CastModule(self._prepare(model, request.device).to(torch.bfloat16), torch.bfloat16)
        return request.built(
            self.name,
            module,
            True,
            autocast=None,
            weights="bfloat16",
            cpu_native_bf16=cpu_has_native_bf16(),
            kernels="PyTorch's operators (segbench's kernels are fp32)",
        )


def _cxx_compiler() -> str | None:
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return shutil.which(get_cpp_compiler())
    except Exception:  # noqa: BLE001 - no compiler found, or a torch without that helper
        return next((found for c in ("c++", "g++", "clang++") if (found := shutil.which(c))), None)


class CompileBackend(EagerBackend):
    """``torch.compile`` with static shapes, compiled during the build by one call at the example shape."""

    name = "compile"

    def _requirements(self, device: torch.device) -> None:
        if device.type == "cuda":
            from torch.utils._triton import has_triton

            if not has_triton():
                raise BackendUnavailable("compile: torch.compile on CUDA needs the `triton` package, not installed")
        elif _cxx_compiler() is None:
            raise BackendUnavailable(
                "compile: torch.compile on the CPU needs a C++ compiler (g++ or clang++); none found"
            )

    def _build(self, model: nn.Module, request: DeployRequest) -> Built:
        from segbench.bench.deploy.export import example_input
        from segbench.bench.measure.latency import compile_static

        eager = super()._build(model, request)
        compiled = AutocastModule(compile_static(eager.module.model), request.precision, request.device.type)
        x = example_input(request.shape, request.device)  # a normal tensor as callers pass (an inference one guards)
        with torch.inference_mode():
            compiled(x)  # compiles now, so that build_s holds the compilation
        return request.built(self.name, compiled, False, **eager.detail, mode="default, dynamic=False")


# --------------------------------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------------------------------

_NO_BF16_GRAPH = (
    "not offered: ONNX Conv (opset 17) has no bfloat16 type, so no bf16 graph can be exported or loaded; "
    "use fp32 or int8 (fp16 on a GPU)"
)


def _weights_and_name(model: nn.Module, name: str | None) -> tuple[str, str]:
    return name or model_name(model), state_dict_sha256(model)


class OnnxRuntimeBackend(Backend):
    """segbench's ONNX export run by ONNX Runtime (providers: `bench.deploy.ort`)."""

    name = "onnxruntime"
    unsupported = {"bf16": _NO_BF16_GRAPH}

    def __init__(self, use_tensorrt_provider: bool = True):
        self.use_tensorrt_provider = use_tensorrt_provider

    def _requirements(self, device: torch.device) -> None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise BackendUnavailable(
                f"onnxruntime: the `{e.name}` package is not installed (pip install 'segbench[onnx]')"
            ) from None
        providers = ort_runtime.available_providers()
        if device.type == "cuda" and ort_runtime.CUDA not in providers:
            raise BackendUnavailable(
                f"onnxruntime CUDA provider: not in onnxruntime.get_available_providers() {providers} "
                "(install onnxruntime-gpu)"
            )

    def _build(self, model: nn.Module, request: DeployRequest) -> Built:
        device = request.device
        name, weights = _weights_and_name(model, request.name)
        graph = onnx_graph(
            model,
            request.shape,
            request.precision,
            request.cache or ArtifactCache(),
            name=name,
            weights_sha256=weights,
            dynamic=request.dynamic,
            calibration=request.calibration,
            target="gpu" if device.type == "cuda" else "cpu",
        )
        engines = graph.path.with_name(graph.path.name + ".trt")  # the TensorRT provider's engine cache, if used
        session = onnx_session(graph.path, ort_runtime.providers_for(device, engines, self.use_tensorrt_provider))
        loaded = session.get_providers()
        if device.type == "cuda" and ort_runtime.CUDA not in loaded:
            raise BackendUnavailable(
                f"onnxruntime CUDA provider: listed but did not load (session providers {loaded}); "
                "check the CUDA and cuDNN libraries onnxruntime-gpu needs"
            )
        if device.type == "cuda":
            module: nn.Module = ort_runtime.CudaOnnxRuntimeModule(graph.path, name, session, device)
        else:
            module = ort_runtime.OnnxRuntimeModule(graph.path, name, session)
        return request.built(
            self.name,
            module,
            request.dynamic,
            graph,
            exporter=EXPORTER,
            opset=OPSET,
            providers=loaded,
            threads=torch.get_num_threads(),
            versions=graph_versions(),
        )


# --------------------------------------------------------------------------------------------------------------------
# OpenVINO
# --------------------------------------------------------------------------------------------------------------------

_OPENVINO_EXTRA = "(pip install 'segbench[openvino]')"
_OV_TYPES = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
"""The INFERENCE_PRECISION_HINT a compiled model must report per precision (int8: the ops left in float, fp32)."""


class OpenVinoBackend(Backend):
    """segbench's ONNX export compiled by OpenVINO (`bench.deploy.openvino`): its CPU plugin, or its GPU plugin for
    ``cuda`` where OpenVINO lists a GPU; fp32, bf16 (CPUs with native bf16), int8 (NNCF), fp16 (the GPU plugin)."""

    name = "openvino"

    def _requirements(self, device: torch.device) -> None:
        for package in ("openvino", "onnx"):  # onnx: torch's exporter writes the graph OpenVINO reads with it
            try:
                importlib.import_module(package)
            except ImportError:
                raise BackendUnavailable(
                    f"openvino: the `{package}` package is not installed {_OPENVINO_EXTRA}"
                ) from None
        if ov_runtime.ov_device(device) is None:
            raise BackendUnavailable(
                f"openvino: {device} asked for, but OpenVINO lists no GPU (Core().available_devices is "
                f"{ov_runtime.available_devices()})"
            )

    def _precision_requirements(self, device: torch.device, precision: str) -> None:
        target = ov_runtime.ov_device(device)
        if precision == "fp16" and target == "CPU":
            raise BackendUnavailable(
                "openvino fp16: not offered on the CPU (its CPU plugin runs fp32, bf16 and int8 here; fp16 is the "
                "GPU plugin's)"
            )
        if precision == "bf16" and target != "CPU":
            raise BackendUnavailable(f"openvino bf16: the CPU plugin's only (not offered on {target})")
        if precision == "bf16" and "BF16" not in ov_runtime.capabilities(target):
            raise BackendUnavailable(
                "openvino bf16: this CPU has no native bf16 (AVX-512-BF16 or AMX: OpenVINO's optimization "
                f"capabilities are {ov_runtime.capabilities(target)}), so OpenVINO would run fp32"
            )
        if precision == "int8":
            try:
                import nncf  # noqa: F401
            except ImportError:
                raise BackendUnavailable(
                    f"openvino int8: the `nncf` package is not installed {_OPENVINO_EXTRA}"
                ) from None

    def _build(self, model: nn.Module, request: DeployRequest) -> Built:
        target = ov_runtime.ov_device(request.device)
        cache = request.cache or ArtifactCache()
        name, weights = _weights_and_name(model, request.name)
        graph = onnx_graph(
            model, request.shape, "fp32", cache, name=name, weights_sha256=weights, dynamic=request.dynamic
        )
        artifact = graph
        if request.precision == "int8":
            artifact = self._int8_ir(graph, request, name, weights, cache)
        try:
            module = ov_runtime.OpenVinoModule(artifact.path, target, request.precision)
        except ov_runtime.DamagedIR:  # same size, other bytes: removed, so that the cache builds it again
            artifact.path.unlink(missing_ok=True)
            artifact = self._int8_ir(graph, request, name, weights, cache)
            module = ov_runtime.OpenVinoModule(artifact.path, target, request.precision)
        properties = module.properties
        if properties["INFERENCE_PRECISION_HINT"] != _OV_TYPES[request.precision]:  # a hint OpenVINO did not take
            raise BackendUnavailable(
                f"openvino {request.precision}: asked for {_OV_TYPES[request.precision]}, OpenVINO's {target} plugin "
                f"compiled at {properties['INFERENCE_PRECISION_HINT']}"
            )
        return request.built(
            self.name,
            module,
            request.dynamic,
            artifact,
            versions={**graph_versions(), **ov_runtime.versions(request.precision == "int8")},
            ov_device=target,
            properties=properties,
            source=f"segbench's ONNX export ({EXPORTER}, opset {OPSET}): {graph.path.name}",
            cpu_isa=ov_runtime.cpu_isa(),
            **({"int8": ov_runtime.INT8_RECIPE} if request.precision == "int8" else {}),
        )

    def _int8_ir(
        self, graph: CachedArtifact, request: DeployRequest, name: str, weights: str, cache: ArtifactCache
    ) -> CachedArtifact:
        """The NNCF int8 IR of the cached fp32 `graph`, from the cache or quantised now (packed: one file per key)."""
        batches, calibration = int8_calibration(request.calibration, request.shape)
        settings = {"graph": graph.path.name, "int8": ov_runtime.INT8_RECIPE, "calibration": calibration}
        versions = {**graph_versions(), **ov_runtime.versions(int8=True)}
        key = CacheKey(
            name, weights, request.shape, "int8", self.name, ov_runtime.IR_SUFFIX, request.dynamic, versions, settings
        )
        ir = cache.get_or_build(key, lambda: ov_runtime.quantize_int8(graph.path, batches))
        return replace(ir, build_s=graph.build_s + ir.build_s)  # building it from scratch takes both


# --------------------------------------------------------------------------------------------------------------------
# TensorRT
# --------------------------------------------------------------------------------------------------------------------


class TensorRTBackend(Backend):
    """A TensorRT engine (`bench.deploy.trt`), built from the ONNX graph of the same precision; static shapes."""

    name = "tensorrt"
    unsupported = {"bf16": _NO_BF16_GRAPH}

    def _requirements(self, device: torch.device) -> None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            raise BackendUnavailable(
                "tensorrt: the `tensorrt` package is not installed (pip install tensorrt)"
            ) from None
        try:
            import onnxruntime  # noqa: F401 - the int8 graphs are quantised by ONNX Runtime's tool
        except ImportError:
            raise BackendUnavailable(
                "tensorrt: needs the `onnxruntime` package for its graphs (pip install 'segbench[onnx]')"
            ) from None
        if device.type != "cuda":
            raise BackendUnavailable(f"tensorrt: runs on an NVIDIA GPU only (device is {device})")

    def _build(self, model: nn.Module, request: DeployRequest) -> Built:
        from segbench.bench.deploy.trt import TensorRTModule, build_engine, engine_versions

        if request.dynamic:
            raise BackendUnavailable("tensorrt: static shapes only (one engine per input shape); build without dynamic")
        device, cache = request.device, request.cache or ArtifactCache()
        name, weights = _weights_and_name(model, request.name)
        graph = onnx_graph(
            model,
            request.shape,
            request.precision,
            cache,
            name=name,
            weights_sha256=weights,
            calibration=request.calibration,
            target="gpu",
        )
        versions = {**graph_versions(), **engine_versions(device)}
        settings = {"graph": graph.path.name, "strongly_typed": True, "tf32": False}
        key = CacheKey(name, weights, request.shape, request.precision, self.name, ".engine", False, versions, settings)

        def produce() -> bytes:
            with torch.cuda.device(device):
                return build_engine(graph.path.read_bytes(), name)

        engine = cache.get_or_build(key, produce)
        module = TensorRTModule(engine.path.read_bytes(), device)
        return request.built(self.name, module, False, engine, graph=str(graph.path), versions=versions)


# --------------------------------------------------------------------------------------------------------------------
# CUDA graphs
# --------------------------------------------------------------------------------------------------------------------


class CudaGraphsBackend(EagerBackend):
    """The model captured as one CUDA graph (`CudaGraphModule`) at the example shape, replayed per call: the same
    kernels as eager without the per-kernel launch cost; static shapes, NVIDIA GPUs only."""

    name = "cudagraphs"

    def _requirements(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise BackendUnavailable(f"cudagraphs: CUDA graphs need a CUDA GPU (device is {device})")

    def _build(self, model: nn.Module, request: DeployRequest) -> Built:
        if request.dynamic:
            raise BackendUnavailable(
                "cudagraphs: static shapes only (one graph per input shape); build without dynamic"
            )
        eager = super()._build(model, request)  # the model on the device, and the autocast facts
        module = CudaGraphModule(eager.module.model, request.shape, request.precision, request.device)
        return request.built(self.name, module, False, **eager.detail, cuda_graph=True, warmup_calls=CUDA_GRAPH_WARMUP)


for _backend in (
    EagerBackend(),
    FastBackend(),
    CompileBackend(),
    CudaGraphsBackend(),
    OnnxRuntimeBackend(),
    OpenVinoBackend(),
    TensorRTBackend(),
):
    register_backend(_backend)


# --------------------------------------------------------------------------------------------------------------------
# One cell: build, check agreement, never raise for what the machine lacks
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class DeploymentCheck:
    """One backend x precision, built and compared with eager fp32.

    Attributes:
        backend, precision, device: the cell.
        status: ``"agrees"``, ``"disagrees"`` (built and ran, beyond its precision's tolerance: not the same model),
            ``"unavailable"`` (this machine cannot run it) or ``"failed"`` (export, quantisation or build failed).
        reason: the one line for ``unavailable`` and ``failed``, else "".
        built: the built model (None unless built); agreement: its `Agreement` (None unless built).
    """

    backend: str
    precision: str
    device: str
    status: str
    reason: str = ""
    built: Built | None = None
    agreement: Agreement | None = None


def check_deployment(
    backend: str,
    model: nn.Module,
    images: Sequence[torch.Tensor],
    precision: str = "fp32",
    cache: ArtifactCache | None = None,
    *,
    device: str | torch.device = "cpu",
    references: Sequence[torch.Tensor] | None = None,
    calibration: torch.Tensor | Sequence[torch.Tensor] | None = None,
    dynamic: bool = False,
    name: str | None = None,
) -> DeploymentCheck:
    """Build `model` with `backend` at `precision` for the shape of `images[0]` and compare it with eager fp32.

    Args:
        backend: a registered backend name.
        model: the network (fp32 weights); the reference is this model, eager, in IEEE fp32.
        images: normalised NCHW batches of one shape, to compare on.
        references: eager fp32 logits of `images` (`reference_logits`), when already computed for another cell.
        cache, device, calibration, dynamic, name: as `Backend.build`.

    Returns:
        The cell: unavailable and failed cells carry their one line (any exception while building is a failed cell,
        so that a grid goes on); built ones their agreement.

    Raises:
        ValueError: an unknown backend name.
    """
    device = resolve_device(device)
    shape = tuple(images[0].shape)
    runner = get_backend(backend)
    try:
        built = runner.build(
            model, shape, precision, cache, device=device, dynamic=dynamic, calibration=calibration, name=name
        )
    except BackendUnavailable as e:
        return DeploymentCheck(backend, precision, str(device), UNAVAILABLE, str(e))
    except Exception as e:  # noqa: BLE001 - export, quantisation, compilation, session or engine: one line, next cell
        line = str(e) if isinstance(e, ExportError) else first_line(e)
        return DeploymentCheck(backend, precision, str(device), FAILED, f"{backend} {precision}: {line}")
    if references is None:
        references = reference_logits(model, images, device)
    agreement = measure_agreement(built.module, images, references, precision)
    return DeploymentCheck(backend, precision, str(device), agreement.verdict, "", built, agreement)


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "AutocastModule",
    "Backend",
    "BackendUnavailable",
    "Built",
    "CudaGraphModule",
    "DeployRequest",
    "DeploymentCheck",
    "check_deployment",
    "cpu_has_native_bf16",
    "get_backend",
    "list_backends",
    "model_name",
    "register_backend",
]
