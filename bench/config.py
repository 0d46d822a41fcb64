"""Configuration records shared by the Python API, the suites and the command line.

`InferenceSpec` says how a model turns an image into a label map (the evaluation protocol plus the hardware knobs);
`RunConfig` says what a run measures and where it writes. Both are plain dataclasses that round-trip through JSON
(`to_dict` / `from_dict`), so a run folder records exactly what produced it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODES = ("whole", "slide")
PRECISIONS = ("fp32", "fp16", "bf16")
ONLY = (None, "accuracy", "efficiency")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; all logical cores where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(device: str) -> int:
    """DataLoader worker processes per rank when the user gives no number.

    * CPU: the model's intra-op threads already run on every core (`torch.get_num_threads()`), so a worker process
      can only take a core away from the model, and then the model's parallel sections wait for the slowed thread.
      Measured on 2 cores (fast SegFormer-B0, 512x1024, `benchmarks/bench_pipeline.py`): 0 workers beat 2 workers on
      clean, fog-3 and gaussian_noise-3 images (3.56 vs 3.26 img/s clean) and tie on glass_blur-1. Only the cores the
      model leaves free become workers.
    * CUDA: the model runs on the GPU, so every core but the main process's one decodes and corrupts (up to 8).

    Cores are split evenly between the ranks on this machine (`LOCAL_WORLD_SIZE`, set by torchrun).
    """
    import torch

    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    cores = max(1, usable_cores() // local_ranks)
    if torch.device(device).type == "cpu":
        return max(0, min(8, cores - torch.get_num_threads()))
    return max(1, min(8, cores - 1))


def _pair(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
        raise ValueError(f"{name} must be a positive int or an (H, W) pair of positive ints, got {value!r}")
    return value


@dataclass(frozen=True)
class InferenceSpec:
    """How predictions are made.

    Attributes:
        mode: "whole" (one forward pass on the full image) or "slide" (sliding window, mmseg's `slide_inference`).
        crop: sliding-window crop (H, W); None takes the model's `meta.eval_crop`.
        stride: sliding-window stride (H, W); None takes the model's `meta.eval_stride`.
        flip: average softmax probabilities with those of the horizontally flipped image (mmseg's flip test).
        batch_size: images per DataLoader batch; in slide mode also the number of crops per forward pass.
        precision: "fp32", or "fp16" / "bf16" through `torch.autocast` (fp16 needs CUDA).
        device: "cpu", "cuda" or "cuda:<i>".
        channels_last: feed the model NHWC-strided input (often faster for convolutions on GPU).
    """

    mode: str = "whole"
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    flip: bool = False
    batch_size: int = 1
    precision: str = "fp32"
    device: str = "cpu"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"inference mode {self.mode!r} unknown; choose one of {MODES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} unknown; choose one of {PRECISIONS}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        object.__setattr__(self, "crop", _pair(self.crop, "crop"))
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        if self.precision == "fp16" and not str(self.device).startswith("cuda"):
            raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")

    def resolve(self, meta: Any) -> InferenceSpec:
        """Fill a missing crop/stride from a model's `ModelMeta` (`eval_crop`, `eval_stride`)."""
        crop = self.crop or _pair(getattr(meta, "eval_crop", None), "meta.eval_crop")
        stride = self.stride or _pair(getattr(meta, "eval_stride", None), "meta.eval_stride") or crop
        if self.mode == "slide" and crop is None:
            raise ValueError("slide inference needs a crop size (InferenceSpec.crop or the model's meta.eval_crop)")
        return dataclasses.replace(self, crop=crop, stride=stride)

    def protocol(self) -> dict[str, Any]:
        """The fields that change predictions (not just speed): compared when a run is resumed."""
        fields = (
            ("mode", "crop", "stride", "flip", "precision") if self.mode == "slide" else ("mode", "flip", "precision")
        )
        return {name: getattr(self, name) for name in fields}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InferenceSpec:
        return cls(**_known(cls, data))


@dataclass
class RunConfig:
    """What a run measures and where it writes. The CLI fills one of these; so can Python code.

    `device`, `precision` and `batch_size` are the hardware knobs: they override those fields of the inference spec
    (the suite's protocol: mode, crop, stride, flip).

    Attributes:
        suite: suite name, recorded in every row.
        suite_version: suite version; a resume against a run of another version refuses.
        models: registered model names.
        weights: model name -> checkpoint path or Hugging Face id; a model without an entry gets `weights=None`.
        data_root: Cityscapes root (None: the `CITYSCAPES_DATASET` environment variable).
        split: dataset split.
        corrupted_root: optional folder of pre-generated corrupted images.
        out_dir: folder that holds run folders (`<out_dir>/<run_id>/`).
        run_id: run folder name; None makes `<suite>-<UTC time>` (or, with `resume`, picks the latest run of the suite).
        device: "cpu", "cuda" or "cuda:<i>" (under torchrun, each rank uses `cuda:<LOCAL_RANK>`).
        precision: "fp32", "fp16" or "bf16".
        batch_size: images per batch (crops per forward pass in slide mode).
        workers: DataLoader worker processes (the command line's default is `default_workers(device)`).
        corruptions / severities: the corrupted conditions when the caller passes no explicit condition list.
        max_images: evaluate only the first N images (sorted by id); None for all.
        only: "accuracy" or "efficiency" to run one kind of cell; None for both.
        resume: continue an existing run folder; finished cells are kept and not recomputed.
        quiet: no progress bars (CI logs).
        seed: base seed of the corruptions and of random initialisation.
        allow_random_weights: run models without a checkpoint (tests, smoke runs) instead of refusing.
        inference: the inference protocol; None uses the caller's (suite's) spec or `InferenceSpec()`.
        channels_last: NHWC input to the model.
        compile: run accuracy cells through `torch.compile(model)` and time latency compiled (the first batch of
            each input size compiles: about 40 s for SegFormer-B0 on 2 CPU cores).
        reference_model: model whose scores are the reference of CE / mCE in the run summary (must be in `models`).
        num_classes: classes of the label space.
        command: the command line recorded in env.json (None: `sys.argv`).
    """

    suite: str = "custom"
    suite_version: str = "0"
    models: tuple[str, ...] = ()
    weights: dict[str, str] = field(default_factory=dict)
    data_root: str | None = None
    split: str = "val"
    corrupted_root: str | None = None
    out_dir: str = "runs"
    run_id: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 1
    workers: int = 0
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    max_images: int | None = None
    only: str | None = None
    resume: bool = False
    quiet: bool = False
    seed: int = 0
    allow_random_weights: bool = False
    inference: InferenceSpec | None = None
    channels_last: bool = False
    compile: bool = False
    reference_model: str | None = None
    num_classes: int = 19
    command: list[str] | None = None

    def __post_init__(self) -> None:
        self.models = tuple(self.models)
        self.corruptions = tuple(self.corruptions)
        self.severities = tuple(int(s) for s in self.severities)
        if self.only not in ONLY:
            raise ValueError(f"only={self.only!r} unknown; choose one of {ONLY}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be a positive integer or None, got {self.max_images}")
        if self.reference_model is not None and self.reference_model not in self.models:
            raise ValueError(f"reference_model {self.reference_model!r} is not among the models {list(self.models)}")
        if isinstance(self.inference, Mapping):
            self.inference = InferenceSpec.from_dict(self.inference)

    def inference_spec(self, protocol: InferenceSpec | None = None) -> InferenceSpec:
        """The spec a run uses: the protocol (`self.inference`, else `protocol`, else defaults) with this config's
        device, precision, batch size and channels_last."""
        base = self.inference or protocol or InferenceSpec()
        return dataclasses.replace(
            base,
            device=self.device,
            precision=self.precision,
            batch_size=self.batch_size,
            channels_last=self.channels_last or base.channels_last,
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["inference"] = self.inference.to_dict() if self.inference else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        return cls(**_known(cls, data))


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
    return dict(data)
