"""The shape of a result row: its columns, the metric names, the deployment variant names and the schema version."""

from __future__ import annotations

import re

COLUMNS = ("model", "suite", "condition", "corruption", "category", "severity", "metric", "value", "unit")


SCHEMA_VERSION = 1


TIMING_UNITS = ("s", "img/s")


DEPLOY_BACKENDS: tuple[str, ...] = ("eager", "fast", "compile", "cudagraphs", "onnxruntime", "tensorrt")
"""Deployment backends (`bench.deploy.backends` registers one of each): the model as written, SegFormer's fast path,
`torch.compile`, the model captured as one CUDA graph, ONNX Runtime (CPU, CUDA and TensorRT execution providers) and
TensorRT."""


DEPLOY_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
"""Deployment precisions: autocast's (fp32, bf16, fp16) plus int8 (static quantisation of an exported graph)."""


DEPLOY_REFERENCE = ("eager", "fp32")
"""The (backend, precision) every deployment variant is compared with: the model as written, in IEEE fp32."""


E2E_STAGES: tuple[str, ...] = ("decode", "preprocess", "model", "postprocess")
"""The stages of one end-to-end call (`bench.measure.end_to_end`), in order; together they are the whole call."""


LATENCY_E2E_MEDIAN = "latency_e2e_median"


LATENCY_E2E_P90 = "latency_e2e_p90"


LATENCY_E2E_P99 = "latency_e2e_p99"


THROUGHPUT_E2E = "throughput_e2e"


LATENCY_STAGE = "latency_stage"
"""Metric of the per-stage rows: the stage's median time (ms), the stage named in the row's ``stage`` key."""


E2E_METRICS = (LATENCY_E2E_MEDIAN, LATENCY_E2E_P90, LATENCY_E2E_P99, THROUGHPUT_E2E, LATENCY_STAGE)
"""Every metric of end-to-end latency rows (model-only latency is ``latency_median`` and its kin)."""


def variant_name(model: str, backend: str, precision: str) -> str:
    """The name a deployment variant carries in every row: `segformer-b0@onnxruntime-int8`."""
    return f"{model}@{backend}-{precision}"


def deploy_variant(name: object) -> tuple[str, str, str] | None:
    """`segformer-b0@onnxruntime-int8` -> ("segformer-b0", "onnxruntime", "int8"); None for a plain model name."""
    if not isinstance(name, str) or "@" not in name:
        return None
    model, _, rest = name.rpartition("@")
    backend, sep, precision = rest.rpartition("-")
    if not model or not sep or not backend or precision not in DEPLOY_PRECISIONS:
        return None
    return model, backend, precision


def class_metric_name(class_name: str) -> str:
    """`traffic light` -> `iou_traffic_light`."""
    return "iou_" + re.sub(r"\W+", "_", class_name).strip("_")


JSON_COLUMNS = ("samples",)
"""Row columns that hold a list (a speed cell's per-run samples): stored as JSON text in the CSV, decoded on read."""


SUMMARY_METRICS = (
    "miou_avg",
    "mPC",
    "rPC",
    "CE",
    "mCE",
    "rel_mCE",
    "mCE_corruptions",
    "drop",
    "delta_miou",
    "delta_mPC",
    "speedup",
)


REFERENCE_METRICS = ("CE", "mCE", "rel_mCE", "mCE_corruptions")
"""Summary metrics measured against a reference model (their rows name it in the `reference` column)."""


SPEEDUP = "speedup"
"""Summary metric of a deployment variant (unit "x"): eager fp32's median latency over the variant's at the same timing
setting (`bench.results.summaries.SPEEDUP_SETTING`), written only for a variant that agrees with eager fp32 (eager
fp32's own is 1)."""


WEIGHTS_STATUSES = ("trained", "random", "synthetic-demo")
"""What a model's weights are, as env.json's `weights[<model>]["status"]` records it: trained weights, random
initialisation (any part of the model left at random init), or the demo suite's weights trained on synthetic scenes
only (`scripts/train_demo.py` labels them "synthetic-demo")."""
