"""Exported models: `torchscript:FILE` (TorchScript, run by torch) and `onnx:FILE` (run by ONNX Runtime).

Both run every suite like any other model: the file's module takes a normalised float batch `(B, 3, H, W)` and
returns logits `(B, num_classes, h, w)`, checked on every forward (`adapter.check_logits`).

**The declaration** is the one of `py:` models (`adapter.DECLARATION_KEYS`: mean, std, input_range, trained,
output_stride, eval_crop, eval_stride, class_names; see `segbench.models.adapter`), read from `--model-meta FILE`
(`BuildRequest.meta`), else from the sidecar `<file>.segbench.json` beside the model (`model.onnx.segbench.json`),
else the defaults (ImageNet normalisation, untrained). `trained` defaults to False here too: a run refuses the file
without `--allow-random-weights` unless the declaration says `"trained": true`. With `class_names`, the channels are
matched to the dataset's classes by name.

**TorchScript** files load with `torch.jit.load(FILE, map_location="cpu")`; `--weights` loads strictly into them.
Their parameters are the script module's own. FLOPs are not counted (`source_info.flop_conventions` is empty): fvcore
traces with forward hooks, which ScriptModules refuse.

**ONNX** files run in an `onnxruntime.InferenceSession` on the CPU (`CPUExecutionProvider`, with torch's thread
count), whatever device the runner uses: the batch is copied to the host as a contiguous float array of the graph's
input type, and the logits come back as a tensor on the batch's device. The graph must have exactly one input, an
image tensor `(B, 3, H, W)` (named dims are dynamic); its first output is the logits. A fixed batch size is served
in chunks of that size; fixed H and W become the default sliding window (`eval_crop`). An ONNX graph has no torch
parameters and cannot be traced: `SourceModel.num_parameters` is the element count of its weight initializers
(every initializer except int32/int64 ones, which hold shapes and indices; as exported, so BatchNorm folded into
convolutions is not counted), and `source_info.flop_conventions` is empty. ONNX Runtime and onnx are the optional
extra `segbench[onnx]`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segbench.models.adapter import (
    Declaration,
    SourceModel,
    load_weights_file,
    parse_declaration,
    read_declaration_file,
    wrap,
)
from segbench.models.base import WeightsInfo
from segbench.models.checkpoint import sha256_file
from segbench.models.sources import BuildRequest, SourceError, SourceInfo, first_line

SIDECAR_SUFFIX = ".segbench.json"
"""A model file's declaration beside it: `model.onnx` -> `model.onnx.segbench.json`."""

ONNX_EXTRA = "pip install 'segbench[onnx]'"


def sidecar_path(file: str | os.PathLike) -> Path:
    """Where the declaration of an exported model file is looked for: `<file>.segbench.json`."""
    return Path(str(file) + SIDECAR_SUFFIX)


def _model_file(request: BuildRequest) -> Path:
    path = Path(request.spec.target).expanduser().resolve()
    if not path.is_file():
        raise SourceError(f"{request.spec.text}: no such file {path}")
    return path


def file_declaration(request: BuildRequest, file: Path) -> Declaration:
    """The declaration of an exported file: `--model-meta`, else its sidecar JSON, else the defaults."""
    label = request.spec.text
    if request.meta is not None:
        return parse_declaration(request.meta, f"{label}: --model-meta")
    sidecar = sidecar_path(file)
    if sidecar.is_file():
        return parse_declaration(read_declaration_file(sidecar), f"{label}: {sidecar.name}")
    return Declaration()


def _file_weights(kind: str, file: Path, sha256: str, declaration: Declaration) -> WeightsInfo:
    if declaration.trained:
        return WeightsInfo(
            source=f"user-provided: {kind}:{file}", path=str(file), format=kind, sha256=sha256, random=False
        )
    note = f'declare "trained": true in {sidecar_path(file).name} (or --model-meta) if the file holds trained weights'
    return WeightsInfo(path=str(file), format=kind, sha256=sha256, random=True, notes=[note])


# --------------------------------------------------------------------------------------------------------------------
# TorchScript
# --------------------------------------------------------------------------------------------------------------------


def load_torchscript(request: BuildRequest) -> SourceModel:
    """Build `torchscript:FILE`: the scripted or traced module, its declaration, and the file's sha256.

    Raises:
        SourceError: no such file, not a TorchScript file, a bad declaration, `--weights` that do not load strictly.
    """
    label = request.spec.text
    file = _model_file(request)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.9+: "torch.jit.load is deprecated"
            module = torch.jit.load(str(file), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any reader failure is one line
        raise SourceError(
            f"{label}: {file.name} is not a TorchScript file ({first_line(e)}); "
            "save one with torch.jit.save(torch.jit.script(model), FILE) or torch.jit.trace"
        ) from None
    declaration = file_declaration(request, file)
    sha256 = sha256_file(file)
    if request.weights is not None:
        weights_info = load_weights_file(module, request.weights, label)
    else:
        weights_info = _file_weights("torchscript", file, sha256, declaration)
    detail = {"file": str(file), "sha256": sha256}
    info = SourceInfo(kind="torchscript", target=request.spec.target, detail=detail, flop_conventions=())
    return wrap(module, request, declaration, weights_info, info, family="torchscript")


# --------------------------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------------------------

_ONNX_INPUT_TYPES = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16, "tensor(double)": torch.float64}
_SHAPE_TYPES = (6, 7)  # onnx.TensorProto.INT32, INT64: shapes, axes and indices, not weights


def _dims(shape: list[Any]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else repr(d or "?") for d in shape) + ")"


def _fixed(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def onnx_parameter_count(file: str | os.PathLike) -> int:
    """Elements of an ONNX graph's weight initializers (all but int32/int64 ones), read without the external data."""
    import onnx

    graph = onnx.load(str(file), load_external_data=False).graph
    return sum(math.prod(init.dims) for init in graph.initializer if init.data_type not in _SHAPE_TYPES)


def onnx_session(file: str | Path, providers: Sequence[Any] = ("CPUExecutionProvider",)) -> Any:
    """An ONNX Runtime `InferenceSession` of `file` with `providers` (default: the CPU), torch's thread count for the
    CPU's share, errors-only logs. The one session maker: `onnx:` models and the deploy backends use it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(file), options, providers=list(providers))


class OnnxRuntimeModule(nn.Module):
    """An ONNX graph run by ONNX Runtime on the CPU, called like a torch module (no parameters, no autograd).

    Pickles (and deep-copies) by its file: the session is made again on the other side.
    """

    def __init__(self, file: Path, label: str, session: Any | None = None):
        super().__init__()
        self.file, self.label = file, label
        self.session = session if session is not None else onnx_session(file)
        image = self.session.get_inputs()[0]
        self.input_name = image.name
        self.input_dtype = _ONNX_INPUT_TYPES[image.type]
        self.output_name = self.session.get_outputs()[0].name
        self.batch = _fixed(image.shape[0])
        height, width = _fixed(image.shape[2]), _fixed(image.shape[3])
        self.size = (height, width) if height and width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            raise SourceError(
                f"{self.label}: the graph takes {self.size[0]}x{self.size[1]} images, given "
                f"{x.shape[-2]}x{x.shape[-1]}; export it with dynamic H and W, or run slide mode with that crop"
            )
        step = self.batch or x.shape[0]
        if x.shape[0] % step:
            raise SourceError(f"{self.label}: the graph takes batches of {step}; use a batch size that {step} divides")
        array = x.detach().to("cpu", self.input_dtype).contiguous().numpy()
        outs = [
            self.session.run([self.output_name], {self.input_name: array[i : i + step]})[0]
            for i in range(0, x.shape[0], step)
        ]
        out = outs[0] if len(outs) == 1 else np.concatenate(outs)
        return torch.from_numpy(np.ascontiguousarray(out)).to(x.device)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["session"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.session = onnx_session(self.file)

    def extra_repr(self) -> str:
        return f"file={self.file.name}, input={self.input_name}, providers={self.session.get_providers()}"


def _check_graph(session: Any, label: str, channels: int) -> None:
    """One float image input `(B, 3, H, W)` and a first output that can be logits, else a one-line `SourceError`."""
    inputs = session.get_inputs()
    image = inputs[0] if len(inputs) == 1 else None
    if (
        image is None
        or len(image.shape) != 4
        or _fixed(image.shape[1]) not in (3, None)
        or image.type not in _ONNX_INPUT_TYPES
    ):
        shown = ", ".join(f"{i.name}: {_dims(i.shape)} {i.type}" for i in inputs) or "none"
        raise SourceError(f"{label}: its inputs are ({shown}); segbench needs one image tensor (B, 3, H, W) of floats")
    out = session.get_outputs()[0]
    if isinstance(out.shape, list) and (len(out.shape) != 4 or _fixed(out.shape[1]) not in (channels, None)):
        raise SourceError(
            f"{label}: its first output {out.name} is {_dims(out.shape)}; segbench needs logits (B, {channels}, h, w)"
        )


def load_onnx(request: BuildRequest) -> SourceModel:
    """Build `onnx:FILE`: an ONNX Runtime session behind a torch module, its declaration, the file's sha256.

    Raises:
        SourceError: onnxruntime or onnx not installed, no such file, not a valid ONNX file, a graph whose inputs are
            not one image tensor or whose output cannot be logits, a bad declaration, or `--weights` (the weights are
            in the file).
    """
    label = request.spec.text
    try:
        import onnx  # noqa: F401 - needed for the parameter count
        import onnxruntime
    except ImportError:
        raise SourceError(f"{label}: needs onnxruntime and onnx: {ONNX_EXTRA}") from None
    file = _model_file(request)
    if request.weights is not None:
        raise SourceError(f"{label}: --weights does not apply, the weights are inside the ONNX file; leave it out")
    try:
        session = onnx_session(file)
    except Exception as e:  # noqa: BLE001 - any runtime failure is one line
        raise SourceError(f"{label}: ONNX Runtime cannot load {file.name} ({first_line(e)})") from None
    declaration = file_declaration(request, file)
    channels = len(declaration.class_names) if declaration.class_names is not None else request.num_classes
    _check_graph(session, label, channels)
    module = OnnxRuntimeModule(file, label, session)
    if module.size is not None and declaration.eval_crop != module.size:  # a fixed-size graph: windows of its size
        fits = all(s <= c for s, c in zip(declaration.eval_stride, module.size))
        declaration = replace(
            declaration, eval_crop=module.size, eval_stride=declaration.eval_stride if fits else module.size
        )
    sha256 = sha256_file(file)
    info = SourceInfo(
        kind="onnx",
        target=request.spec.target,
        detail={
            "file": str(file),
            "sha256": sha256,
            "runtime": f"onnxruntime {onnxruntime.__version__}",
            "providers": session.get_providers(),
            "threads": torch.get_num_threads(),
        },
        flop_conventions=(),
    )
    weights_info = _file_weights("onnx", file, sha256, declaration)
    return wrap(
        module,
        request,
        declaration,
        weights_info,
        info,
        family="onnx",
        num_parameters=onnx_parameter_count(file),
    )


__all__ = [
    "ONNX_EXTRA",
    "SIDECAR_SUFFIX",
    "OnnxRuntimeModule",
    "file_declaration",
    "load_onnx",
    "load_torchscript",
    "onnx_parameter_count",
    "sidecar_path",
]
