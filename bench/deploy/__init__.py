"""Deployment: a model run the ways a user would ship it (eager, SegFormer's fast path, ``torch.compile``, CUDA graphs,
ONNX Runtime, OpenVINO, TensorRT) at the precisions they offer (fp32, bf16, fp16, int8), each checked against eager
fp32.

- `backends`: the backend registry (`get_backend`, `list_backends`), `BackendUnavailable`, `Built`, and
  `check_deployment` (one backend x precision cell: build, then agreement, or a one-line reason it cannot run);
- `export`: segbench's own ONNX export, fp16 conversion and int8 static quantisation;
- `cache`: the artifact cache (ONNX files, OpenVINO IRs, engines), keyed and written atomically;
- `agreement`: logit and argmax agreement with eager fp32, and the tolerance per precision;
- `ort`, `openvino`, `trt`, `cudagraphs`: the ONNX Runtime, OpenVINO (with NNCF's int8), TensorRT and CUDA-graph
  glue.

>>> from segbench.bench.deploy import check_deployment  # doctest: +SKIP
>>> cell = check_deployment("onnxruntime", model, images, "int8", calibration=images)  # doctest: +SKIP
>>> cell.status, cell.agreement.line()  # doctest: +SKIP
"""

from __future__ import annotations

from segbench.bench.deploy.agreement import (
    TOLERANCES,
    Agreement,
    AgreementMeter,
    Tolerance,
    measure_agreement,
    reference_logits,
)
from segbench.bench.deploy.backends import (
    BACKENDS,
    PRECISIONS,
    Backend,
    BackendUnavailable,
    Built,
    DeploymentCheck,
    check_deployment,
    get_backend,
    list_backends,
    register_backend,
)
from segbench.bench.deploy.cache import ArtifactCache, CacheKey
from segbench.bench.deploy.export import ExportError, export_onnx

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "TOLERANCES",
    "Agreement",
    "AgreementMeter",
    "ArtifactCache",
    "Backend",
    "BackendUnavailable",
    "Built",
    "CacheKey",
    "DeploymentCheck",
    "ExportError",
    "Tolerance",
    "check_deployment",
    "export_onnx",
    "get_backend",
    "list_backends",
    "measure_agreement",
    "reference_logits",
    "register_backend",
]
