"""Configuration records shared by the Python API, the suites and the command line.

`InferenceSpec` says how a model turns an image into a label map (the evaluation protocol plus the hardware knobs);
`RunConfig` says what a run measures and where it writes. Both are plain dataclasses that round-trip through JSON
(`to_dict` / `from_dict`), so a run folder records exactly what produced it.

This module is the one place where a run's values are checked: `RunConfig` validates every field when it is made (from
Python or from the command line, which hands it its text as typed: `models="segformer-b0,b5"`, `severities="1,3"`,
`workers="auto"`). A bad value raises `ConfigError`, which names the field; the command line names the flag instead.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segbench.bench.results.axes import CORRUPTIONS, DATASETS, EXTRA_CORRUPTIONS, REAL_WORLD, SEVERITIES, dataset_key
from segbench.bench.results.classes import ClassTable
from segbench.bench.run.model_args import parse_model_args

MODES = ("whole", "slide")
PRECISIONS: dict[str, str | None] = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}
"""Precision name -> the torch dtype (by name) that `torch.autocast` runs in; None: no autocast (float32)."""
ONLY = (None, "accuracy", "efficiency")
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


class ConfigError(ValueError):
    """A run setting with a value that cannot be used. `field` names the `RunConfig` field, `problem` says what is
    wrong with it (the command line prints the flag of the field, then the problem)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def autocast_dtype(precision: str) -> Any:
    """The `torch.dtype` that `torch.autocast` runs in for `precision` ("fp16", "bf16"); None for "fp32"."""
    check_precision(precision)
    name = PRECISIONS[precision]
    if name is None:
        return None
    import torch

    return getattr(torch, name)


def check_precision(precision: str, device: str | None = None, field: str = "precision") -> str:
    """`precision` if it is one of `PRECISIONS` (and, given a device, one that device runs: fp16 needs CUDA)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigError(field, f"{precision!r} is not a precision; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device is not None and not str(device).startswith("cuda"):
        raise ConfigError(field, "fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return precision


def check_precision_supported(precision: str, device: Any, field: str = "precision") -> str:
    """`precision` if the GPU `device` runs it: bf16 needs one that supports bfloat16 (what `torch.autocast` checks,
    on the run's own device). Called when a run starts, with the device each rank runs on; CPU devices pass."""
    import torch

    device = torch.device(device)
    if precision != "bf16" or device.type != "cuda" or not torch.cuda.is_available():
        return precision
    with torch.cuda.device(device):  # `is_bf16_supported` asks about the current device
        supported = torch.cuda.is_bf16_supported()
    if not supported:
        name = torch.cuda.get_device_name(device)
        raise ConfigError(field, f"bf16 is not supported on {device} ({name}); use fp16 or fp32")
    return precision


def check_device(device: str, field: str = "device") -> str:
    """`device` if it reads "cpu", "cuda" or "cuda:<i>" (whether CUDA is there is checked when a run starts)."""
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise ConfigError(field, f"{device!r} is not a device; use cpu, cuda or cuda:N (e.g. cuda:1)")
    return device


def split_list(value: str | Sequence[str] | None, field: str = "value") -> tuple[str, ...]:
    """A comma list as typed on the command line (`"fog, snow"`), or a sequence of names, as a tuple of stripped
    names; anything else is a `ConfigError` naming `field`."""
    if value is None:
        return ()
    items = (
        value.split(",")
        if isinstance(value, str)
        else _sequence(value, field, "a comma list or a sequence of names", str)
    )
    return tuple(item.strip() for item in items if item.strip())


def _sequence(value: Any, field: str, what: str, of: type | None = None) -> list[Any]:
    """The items of a list, tuple or other iterable (not a text, a mapping or a scalar), each an `of` when given;
    anything else is a `ConfigError` saying the field must be `what`."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ConfigError(field, f"must be {what}, got {value!r}")
    items = list(value)
    if of is not None and not all(isinstance(item, of) for item in items):
        raise ConfigError(field, f"must be {what}, got {value!r}")
    return items


def parse_severities(value: str | Sequence[int | str] | None, field: str = "severities") -> tuple[int, ...]:
    """Severities 1-5 from a comma list (`"1,3,5"`) or a sequence; () when none are given."""
    out = []
    items = () if value is None else split_list(value, field) if isinstance(value, str) else value
    for item in _sequence(items, field, "a comma list or a sequence of severities 1-5"):
        text = str(item).strip()
        if isinstance(item, bool) or not text.isdigit() or int(text) not in SEVERITIES:
            raise ConfigError(field, f"{item!r} is not a severity; use integers 1-5, e.g. 1,3,5")
        out.append(int(text))
    return tuple(out)


def parse_corruptions(value: str | Sequence[str] | None, field: str = "corruptions") -> tuple[str, ...]:
    """Corruption names from a comma list or a sequence, each one of the Cityscapes-C ones or the extra ones."""
    names = split_list(value, field)
    for name in names:
        if name not in CORRUPTIONS + EXTRA_CORRUPTIONS:
            raise ConfigError(
                field,
                f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)} (extra, not in Cityscapes-C: "
                f"{', '.join(EXTRA_CORRUPTIONS)})",
            )
    return names


DATA_NAMES = (*DATASETS, *REAL_WORLD)
"""Datasets a run reads, by the name `--data name=path,...` gives them (`dark-zurich` is read as `dark_zurich`)."""


def parse_data(
    text: str | None, roots: Mapping[str, str] | None = None, field: str = "data_root"
) -> tuple[str | None, dict[str, str]]:
    """`--data`: a bare PATH, or `name=path,...` over `DATA_NAMES` -> (Cityscapes root or None, {dataset: root}).
    `roots` (the Python API's `data_roots`) are checked the same way; `text` entries win. A Cityscapes root given by
    name is in both (the mapping then says it was named, not a bare path).

    A bare PATH is returned as the first element; the suite decides which dataset it is
    (`bench.data.roots.resolve_data`).
    """
    out: dict[str, str] = {}
    for name, path in (roots or {}).items():
        out[_data_name(name, "data_roots")] = str(path)
    if text is None or str(text).strip() == "":
        return out.get("cityscapes"), out
    text = str(text).strip()
    head = text.split(",", 1)[0]
    if "=" not in head or "/" in head.split("=", 1)[0]:
        return text, out  # a bare path (which may itself hold '=' or ',' after its first '/')
    cityscapes = None
    for entry in split_list(text):
        name, sep, path = entry.partition("=")
        key = _data_name(name, field)
        if not sep or not path.strip():
            raise ConfigError(field, f"{entry!r} has no path; write {name.strip()}=PATH")
        if key == "cityscapes":
            cityscapes = path.strip()
        out[key] = path.strip()  # "cityscapes" kept too: it says the root was named, not a bare path
    return cityscapes or out.get("cityscapes"), out


def _dataset(name: Any) -> str:
    """`RunConfig.dataset`: a name of `DATASETS` (`coco-stuff` spells `coco_stuff`)."""
    if not isinstance(name, str) or dataset_key(name) not in DATASETS:
        known = ", ".join(n.replace("_", "-") for n in DATASETS)
        raise ConfigError("dataset", f"{name!r} is not a dataset; choose one of {known}")
    return dataset_key(name)


def _data_name(name: str, field: str) -> str:
    key = dataset_key(name)
    if key not in DATA_NAMES:
        import difflib

        close = difflib.get_close_matches(key, DATA_NAMES, n=1, cutoff=0.5)
        hint = f"did you mean {close[0].replace('_', '-')}? " if close else ""
        raise ConfigError(
            field,
            f"unknown dataset {name.strip()!r}; {hint}name one of {', '.join(n.replace('_', '-') for n in DATA_NAMES)} "
            "(e.g. --data cityscapes=/data/cityscapes,acdc=/data/acdc), or give one bare PATH",
        )
    return key


def parse_grid(backends: Any, precisions: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`backends` and `deploy_precisions` as tuples of known names (a comma list is split)."""
    from segbench.bench.results.schema import DEPLOY_BACKENDS, DEPLOY_PRECISIONS

    names = split_list(backends, "backends")
    for name in names:
        if name not in DEPLOY_BACKENDS:
            raise ConfigError("backends", f"{name!r} is not a backend; choose from {', '.join(DEPLOY_BACKENDS)}")
    chosen = split_list(precisions, "deploy_precisions")
    for name in chosen:
        if name not in DEPLOY_PRECISIONS:
            raise ConfigError(
                "deploy_precisions", f"{name!r} is not a precision; choose from {', '.join(DEPLOY_PRECISIONS)}"
            )
    return names, chosen


def parse_workers(value: int | str, auto: Callable[[], int], field: str = "workers") -> int:
    """A number of worker processes: an integer >= 0 (or its text), or "auto" (then `auto()`)."""
    if value == "auto":
        return auto()
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise ConfigError(field, f"{value!r} is not a number of processes; give an integer >= 0 or auto")
    return int(text)


def expand_models(value: str | Sequence[str] | None, field: str = "models") -> tuple[str, ...]:
    """`--models` entries from a comma list, with the shorthand of the command line (`segformer-b0,b5` ->
    `segformer-b0, segformer-b5`: a name that is not registered inherits the family, the part before the first `-`,
    of the name before it). A registry entry must be registered (or an entry-point plugin, or a `<head>:<backbone>`
    composition); a source entry (`[NAME=]hf:...`, `py:...`, `torchscript:...`, `onnx:...`) is kept as typed and
    checked when it is built (`segbench.models.sources`).
    """
    from segbench import models
    from segbench.models.sources import SourceError, parse_model_spec

    known = set(models.list_models()) | set(models.list_plugin_models())
    tokens = split_list(value, field)
    if not tokens:
        raise ConfigError(field, f"no model names in {value!r}; give a comma list such as segformer-b0,b5")
    out: list[str] = []
    previous = None
    for token in tokens:
        try:
            spec = parse_model_spec(token)
        except SourceError as e:
            raise ConfigError(field, str(e)) from None
        if spec.kind != "registry":
            out.append(token)
            continue
        name = spec.target
        if name not in known and ":" not in name and previous:
            candidate = f"{previous.split('-')[0]}-{name}"
            if candidate in known:
                name = candidate
        if name not in known and ":" not in name:
            raise ConfigError(field, models.MODELS.unknown_message(spec.target))
        previous = name
        out.append(name if spec.name == spec.target else f"{spec.name}={name}")
    return tuple(out)


def split_sources(entries: Sequence[str], sources: Mapping[str, str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """`--models` entries -> (model names, {name: source} for every entry that is not a plain registry name).

    A source is `<kind>:<target>` (`hf:`, `py:`, `torchscript:`, `onnx:`) or a registry name given another name
    (`b0=segformer-b0`). Names already in `sources` (a config read back from run.json) keep their source.
    """
    from segbench.models.sources import SourceError, parse_model_spec

    names, out = [], dict(sources)
    for entry in entries:
        try:
            spec = parse_model_spec(entry)
        except SourceError as e:
            raise ConfigError("models", str(e)) from None
        names.append(spec.name)
        if spec.kind != "registry":
            out[spec.name] = f"{spec.kind}:{spec.target}"
        elif spec.name != spec.target:
            out[spec.name] = spec.target
    return tuple(names), out


def _positive_int(value: Any, field: str, what: str = "a positive integer") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, f"must be {what}, got {value!r}")
    return value


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
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, list | tuple)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)
    ):
        raise ConfigError(name, f"must be a positive int or an (H, W) pair of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be True or False, got {value!r}")
    return value


def _text(value: Any, field: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, f"must be a non-empty string{' or None' if optional else ''}, got {value!r}")
    return value


def _path(value: Any, field: str, optional: bool = True) -> str | None:
    """A path given as a string or an `os.PathLike` (kept as a string, so that the config round-trips through JSON)."""
    if value is None and optional:
        return None
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ConfigError(field, f"must be a path (a string or a Path){' or None' if optional else ''}, got {value!r}")
    return os.fspath(value)


def _mapping(value: Any, field: str, values: str = "strings") -> dict[str, Any]:
    """A mapping of names to strings (or paths, `values="paths"`), as a plain dict."""
    if not isinstance(value, Mapping):
        raise ConfigError(field, f"must be a mapping (dict) of names to {values}, got {value!r}")
    out = {}
    for key, item in value.items():
        ok = isinstance(item, str | os.PathLike) if values == "paths" else isinstance(item, str)
        if not isinstance(key, str) or not ok:
            raise ConfigError(field, f"must map names to {values}; got {key!r}: {item!r}")
        out[key] = os.fspath(item)
    return out


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
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise ConfigError("mode", f"inference mode {self.mode!r} unknown; choose one of {', '.join(MODES)}")
        check_device(self.device)
        check_precision(self.precision, self.device)
        _positive_int(self.batch_size, "batch_size")
        _flag(self.flip, "flip")
        _flag(self.channels_last, "channels_last")
        object.__setattr__(self, "crop", _pair(self.crop, "crop"))
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))

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
    """What a run measures and where it writes: every setting that can change a number is here, and recorded in the
    run folder. The command line fills one of these; so can Python code. Every field is checked when the config is
    made (`ConfigError` names the field).

    `device`, `precision`, `batch_size` and `channels_last` are the hardware knobs: they override those fields of the
    inference spec (the suite's protocol: mode, crop, stride, flip).

    Attributes:
        suite: suite name, recorded in every row.
        suite_version: suite version; a resume against a run of another version refuses.
        models: model names (a comma list is expanded as on the command line: `"segformer-b0,b5"`, every name
            registered); () takes the suite's default models.
        weights: model name -> checkpoint path or Hugging Face id; these entries win over `weights_text`.
        weights_text: the command line's `--weights`: a folder of checkpoints and/or `model=path` pairs. The runner
            resolves it per model (explicit pair, folder, the suite's shipped weights, the local Hugging Face cache).
        data_root: the root of the run's `dataset` (None: its environment variable, e.g. `CITYSCAPES_DATASET`), or
            the command line's `name=path,...` text over `DATA_NAMES` (split into this field and `data_roots`). A
            bare path is the root of the suite's dataset, except for a suite that reads only real-world datasets:
            then it is that suite's one dataset.
        data_roots: roots by dataset name (`ade20k`, `acdc`, `dark_zurich`, `foggy_cityscapes`, ...; None or
            missing: their environment variables `ADE20K_DATASET`, `ACDC_DATASET`, ...; Foggy Cityscapes lies in
            the Cityscapes root).
        split: dataset split.
        corrupted_root: optional folder of pre-generated corrupted images.
        out_dir: folder that holds run folders (`<out_dir>/<run_id>/`).
        run_id: run folder name; None makes `<suite>-<UTC time>` (or, with `resume`, picks the latest run of the suite).
        device: "cpu", "cuda" or "cuda:<i>" (under torchrun, each rank uses `cuda:<LOCAL_RANK % visible GPUs>`).
        precision: one of `PRECISIONS` ("fp32", "fp16", "bf16"; fp16 needs CUDA), or None: not chosen, so accuracy
            runs in fp32 and an efficiency probe times the suite's own precisions (the plan decides,
            `bench.run.plan.plan_run`). A given precision replaces the probe's too.
        batch_size: images per batch (crops per forward pass in slide mode).
        workers: DataLoader worker processes, or "auto" (`default_workers(device)`).
        corruptions: corruption names (or a comma list) narrowing the suite's; () keeps the suite's.
        severities: severities 1-5 (or a comma list) applied to every corruption; () keeps each corruption's
            severities in the suite (1-5 for a run without a suite).
        max_images: evaluate only the first N images (sorted by id); None for all.
        only: "accuracy" or "efficiency" to run one kind of cell; None for both.
        resume: continue an existing run folder; finished cells are kept and not recomputed.
        quiet: no progress bars or progress lines (CI logs).
        seed: base seed of the corruptions and of random initialisation.
        allow_random_weights: run models without a checkpoint (tests, smoke runs) instead of refusing.
        inference: the inference protocol; None uses the caller's (suite's) spec or `InferenceSpec()`.
        fast: build SegFormer models with their fast path (`SegFormer.fast_path`: folded decoder, banded CPU blocks; the
            same function up to rounding).
        channels_last: NHWC input to the model.
        compile: run accuracy cells through `torch.compile(model)` and time latency compiled (the first batch of
            each input size compiles: about 40 s for SegFormer-B0 on 2 CPU cores).
        reference_model: model whose scores are the reference of CE / mCE in the run summary (must be in `models`).
        dataset: the dataset of the clean and corrupted conditions (`bench.results.axes.DATASETS`: "cityscapes",
            "ade20k", "voc", "coco_stuff", "folder"); its class table (`classes`) scores the run and sets every
            model's class count (`num_classes`). A suite sets it.
        sources: model name -> where it comes from, for every model that is not a plain registry name:
            `hf:<folder or id>`, `py:<module or file>:<factory>`, `torchscript:<file>`, `onnx:<file>`, or the
            registry name of an aliased model. Filled from `[NAME=]SOURCE` entries of `models`.
        model_args: keyword arguments of `py:` factories (a `k=v,...` text is parsed as on the command line).
        label_map: a JSON file mapping the dataset's class names to a model's label names (`hf:`, and sources that
            declare class names).
        model_meta: a JSON file declaring normalisation, input range and a trained flag for `py:`, `torchscript:`
            and `onnx:` models (see `segbench.models.adapter`).
        backends: deployment backends (or a comma list) narrowing a deploy suite's grid; () keeps the suite's.
        deploy_precisions: deployment precisions (fp32, bf16, fp16, int8; or a comma list) narrowing the grid.
        attacks: adversarial attacks (`pgd`, `segpgd`, `cospgd`; or a comma list) added to the conditions, or
            replacing a suite's (`bench.run.attack_options.select_attacks`); () keeps the suite's.
        norm: the attacks' norm, "linf" or "l2"; None: the suite's, else linf.
        eps: the attacks' budgets in [0, 1] pixel units ("0.25/255,8/255" or numbers); (): the suite's, else
            `bench.results.axes.DEFAULT_EPS`.
        attack_steps, attack_step_size: steps and step size of every attack; None: the suite's, else 10 steps of
            `2.5 * eps / steps`.
        random_start: start each attack from a random point of the budget, seeded per image (False: the clean image).
        shard: "I/N": evaluate only share I (0-based) of N of every condition's images, the share torchrun's rank I
            of N would take (`shard_indices`), into a shard folder that `segbench merge` joins with the others. The
            cost probe and the gallery run in shard 0 only. None: all images.
        command: the command line recorded in env.json (None: `sys.argv`).
    """

    suite: str = "custom"
    suite_version: str = "0"
    models: tuple[str, ...] = ()
    weights: dict[str, str] = field(default_factory=dict)
    weights_text: str | None = None
    data_root: str | None = None
    data_roots: dict[str, str] = field(default_factory=dict)
    split: str = "val"
    corrupted_root: str | None = None
    out_dir: str = "runs"
    run_id: str | None = None
    device: str = "cpu"
    precision: str | None = None
    batch_size: int = 1
    workers: int | str = "auto"
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    max_images: int | None = None
    only: str | None = None
    resume: bool = False
    quiet: bool = False
    seed: int = 0
    allow_random_weights: bool = False
    inference: InferenceSpec | None = None
    fast: bool = False
    channels_last: bool = False
    compile: bool = False
    reference_model: str | None = None
    dataset: str = "cityscapes"
    sources: dict[str, str] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    label_map: str | None = None
    model_meta: str | None = None
    backends: tuple[str, ...] = ()
    deploy_precisions: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()
    norm: str | None = None
    eps: tuple[float, ...] = ()
    attack_steps: int | None = None
    attack_step_size: float | None = None
    random_start: bool = True
    shard: str | None = None
    command: list[str] | None = None

    def __post_init__(self) -> None:
        self._check_types()
        entries = expand_models(self.models) if isinstance(self.models, str) else split_list(self.models, "models")
        self.models, self.sources = split_sources(entries, self.sources)
        self.model_args = parse_model_args_field(self.model_args)
        twice = sorted({m for m in self.models if self.models.count(m) > 1})
        if twice:
            raise ConfigError("models", f"{', '.join(twice)} listed more than once")
        self.data_root, self.data_roots = parse_data(self.data_root, self.data_roots)
        self.corruptions = parse_corruptions(self.corruptions)
        self.severities = parse_severities(self.severities)
        self.backends, self.deploy_precisions = parse_grid(self.backends, self.deploy_precisions)
        self._parse_attack_options()
        self.shard = parse_shard(self.shard)
        check_device(self.device)
        if self.precision is not None:
            check_precision(self.precision, self.device)
        _positive_int(self.batch_size, "batch_size")
        self.dataset = _dataset(self.dataset)
        self.workers = parse_workers(self.workers, lambda: default_workers(self.device))
        if not isinstance(self.only, str | None) or self.only not in ONLY:
            raise ConfigError("only", f"{self.only!r} unknown; choose one of {', '.join(map(str, ONLY[1:]))} or None")
        if self.max_images is not None:
            _positive_int(self.max_images, "max_images", "a positive integer or None")
        if self.reference_model is not None and self.models and self.reference_model not in self.models:
            raise ConfigError(
                "reference_model", f"{self.reference_model!r} is not among the models ({', '.join(self.models)})"
            )
        self.inference = _inference(self.inference)
        self._check_files()

    def _check_types(self) -> None:
        """The fields that need no parsing: each of its type (paths as strings, mappings as dicts), else a
        `ConfigError` naming the field."""
        for name in ("suite", "suite_version", "split"):
            _text(getattr(self, name), name)
        for name in ("weights_text", "reference_model"):
            _text(getattr(self, name), name, optional=True)
        for name in ("resume", "quiet", "allow_random_weights", "fast", "channels_last", "compile"):
            _flag(getattr(self, name), name)
        for name in ("data_root", "corrupted_root", "label_map", "model_meta"):
            setattr(self, name, _path(getattr(self, name), name))
        self.out_dir = _path(self.out_dir, "out_dir", optional=False)
        if Path(self.out_dir).exists() and not Path(self.out_dir).is_dir():
            raise ConfigError(
                "out_dir", f"{self.out_dir} is a file, not a folder; give the folder that holds run folders"
            )
        if self.run_id is not None:
            if _text(self.run_id, "run_id") in (".", "..") or "/" in self.run_id:
                raise ConfigError("run_id", f"{self.run_id!r} is not a folder name; give a name without '/'")
            run_dir = Path(self.out_dir) / self.run_id
            if run_dir.exists() and not run_dir.is_dir():
                from segbench.bench.results.targets import describe

                raise ConfigError("run_id", f"{run_dir} is {describe(run_dir)}, not a run folder; give another one")
        self.weights = _mapping(self.weights, "weights", "paths")
        self.data_roots = _mapping(self.data_roots, "data_roots", "paths")
        self.sources = _mapping(self.sources, "sources")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("seed", f"must be an integer >= 0, got {self.seed!r}")
        if self.command is not None:
            self.command = _sequence(self.command, "command", "a list of strings (an argv) or None", str)

    def _parse_attack_options(self) -> None:
        from segbench.bench.run import attack_options as options

        try:
            self.attacks = options.parse_attacks(self.attacks)
            self.norm = options.parse_norm(self.norm)
            self.eps = options.parse_eps_list(self.eps)
            self.attack_steps = options.parse_steps(self.attack_steps)
            self.attack_step_size = options.parse_step_size(self.attack_step_size)
        except options.AttackOptionError as e:
            raise ConfigError(e.field, e.problem) from None
        _flag(self.random_start, "random_start")

    def _check_files(self) -> None:
        """`label_map` and `model_meta`: files that exist and read as what they declare (checked now, so that a
        mistake is one line before the run, naming the file)."""
        from segbench.models.sources import SourceError, read_label_map

        for name in ("label_map", "model_meta"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(name, f"{path}: no such file; give a JSON file")
        if self.label_map is not None:
            try:
                read_label_map(self.label_map, self._class_names())
            except SourceError as e:
                raise ConfigError("label_map", str(e)) from None
        if self.model_meta is not None:
            from segbench.models.adapter import parse_declaration, read_declaration_file

            try:
                parse_declaration(read_declaration_file(self.model_meta), self.model_meta)
            except SourceError as e:
                raise ConfigError("model_meta", str(e)) from None

    @property
    def classes(self) -> ClassTable:
        """The class table the run scores with (names, palette, ignore index): its dataset's, recorded in run.json.
        A folder dataset's comes from the folder's dataset.json (`DataError` when it cannot be read)."""
        from segbench.bench.data.datasets import get_dataset

        return get_dataset(self.dataset, self.root_of(self.dataset)).classes

    def _class_names(self) -> tuple[str, ...]:
        """The dataset's class names, or () while a folder dataset's root is not known yet (the plan checks again)."""
        from segbench.bench.data.errors import DataError

        try:
            return self.classes.names if self.classes.is_named else ()
        except DataError:
            return ()

    @property
    def shard_part(self) -> tuple[int, int] | None:
        """`shard` as (index, count), or None."""
        if self.shard is None:
            return None
        index, count = self.shard.split("/")
        return int(index), int(count)

    @property
    def num_classes(self) -> int:
        """The number of classes of the run's dataset: what every model is built with."""
        return self.classes.num_classes

    def root_of(self, dataset: str) -> str | None:
        """The root given for `dataset` (the run's own or a real-world one); None: its environment variable decides.
        A bare `data_root` is the run's dataset's root; Foggy Cityscapes lies in the Cityscapes root unless given its
        own."""
        if dataset == self.dataset:
            return self.data_roots.get(dataset) or self.data_root
        if dataset == "cityscapes":
            return self.data_roots.get(dataset)
        cityscapes = self.data_root if self.dataset == "cityscapes" else self.data_roots.get("cityscapes")
        return self.data_roots.get(dataset) or (cityscapes if dataset == "foggy_cityscapes" else None)

    def inference_spec(self, protocol: InferenceSpec | None = None) -> InferenceSpec:
        """The spec a run uses: the protocol (`self.inference`, else `protocol`, else defaults) with this config's
        device, precision, batch size and channels_last."""
        base = self.inference or protocol or InferenceSpec()
        return dataclasses.replace(
            base,
            device=self.device,
            precision=self.precision or "fp32",
            batch_size=self.batch_size,
            channels_last=self.channels_last or base.channels_last,
        )

    def settings(self) -> dict[str, Any]:
        """The settings beside the inference protocol and the weights that can change a number, as the run folder
        records them (`run.json`) and a resume compares them."""
        return {
            "fast": self.fast,
            "precision": self.precision or "fp32",
            "channels_last": self.channels_last,
            "compile": self.compile,
            "batch_size": self.batch_size,
            "sources": dict(self.sources),
            "model_args": dict(self.model_args),
            "label_map": _file_digest(self.label_map),
            "model_meta": _file_digest(self.model_meta),
        }

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["inference"] = self.inference.to_dict() if self.inference else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """The config `to_dict` wrote (a config recorded before datasets were named holds `num_classes`, 19, and read
        Cityscapes)."""
        data = dict(data)
        legacy = data.pop("num_classes", None)
        if legacy is not None and "dataset" not in data:
            if legacy != 19:
                raise ValueError(f"a config of {legacy} classes without a dataset: name its dataset")
            data["dataset"] = "cityscapes"
        return cls(**_known(cls, data))


def _inference(value: Any) -> InferenceSpec | None:
    """`RunConfig.inference`: None, an `InferenceSpec`, or its dict (as run.json records it)."""
    if value is None or isinstance(value, InferenceSpec):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError("inference", f"must be an InferenceSpec, its dict or None, got {value!r}")
    try:
        return InferenceSpec.from_dict(value)
    except ConfigError as e:
        raise ConfigError("inference", f"{e.field}: {e.problem}") from None
    except ValueError as e:
        raise ConfigError("inference", str(e)) from None


def parse_shard(value: Any, field: str = "shard") -> str | None:
    """`shard`: "I/N" with 0 <= I < N (e.g. "0/4", or `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`), or None."""
    if value is None:
        return None
    index, sep, count = str(value).strip().partition("/") if isinstance(value, str) else ("", "", "")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise ConfigError(field, f"expected I/N with 0 <= I < N (e.g. 0/4: the first of four shares), got {value!r}")
    return f"{int(index)}/{int(count)}"


def parse_model_args_field(value: Any) -> dict[str, Any]:
    """`model_args` as a dict: a mapping (of names) as it is, a `k=v,...` text (or several) parsed as on the command
    line."""
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise ConfigError("model_args", f"must map argument names (strings) to values, got {dict(value)!r}")
        return dict(value)
    if not isinstance(value, str):
        value = _sequence(value, "model_args", "a mapping, a k=v,... text or a list of them", str)
    try:
        return parse_model_args(value)
    except ValueError as e:
        raise ConfigError("model_args", str(e)) from None


def _file_digest(path: str | None) -> str | None:
    """sha256 of a small settings file (a label map, a model declaration), so that a resume sees a changed file."""
    if path is None:
        return None
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
    return dict(data)
