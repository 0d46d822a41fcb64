"""The adapter every model source goes through: any `nn.Module` given segbench's interface.

A source (`py:`, an entry-point plugin, an in-memory module, `torchscript:`, `onnx:`) hands its module to `wrap`
with its checked declaration and gets a `SourceModel`: the module (the only parameters) with `meta` (normalisation,
output stride, sliding window), `weights_info` and `source_info`, as the runner takes every model. Its forward checks
the output's shape (`check_logits`: rank 4, the declared channels; anything else is a one-line `SourceError`) and,
when the model's classes were matched by name, picks the dataset's classes out of its channels. (`hf:` models come
with their own wrapper, `models/hf.py`, which reads the same facts from the model's configs.)

**The declaration**: what the model expects, as a dict (or a `ModelMeta`, for its mean, std, output stride and
window), from a model's `segbench_meta`, a sidecar JSON file or `--model-meta FILE` (where each source looks for it:
`models/user.py`, `models/exported.py`). `parse_declaration` checks it. Keys (all optional; any other key is an
error):
* `mean`, `std`: RGB, in the units of `input_range`. Default: ImageNet's, (0.485, 0.456, 0.406) and
  (0.229, 0.224, 0.225).
* `input_range`: "0-1" (default) or "0-255": the units of the pixel values `v` the normalisation starts from; the
  model sees `(v - mean) / std`. With "0-255", `mean` and `std` must be given in 0-255 units (mmseg's
  [123.675, 116.28, 103.53] / [58.395, 57.12, 57.375], or [0, 0, 0] / [1, 1, 1] for raw pixels). segbench
  stores them as `ModelMeta` does, in [0, 1] units (divided by 255), which gives the same input exactly
  (`(img / 255 - mean / 255) / (std / 255) = (img - mean) / std`).
* `trained`: True when the model's own weights are trained. Default False: the model counts as randomly
  initialised, and a run refuses it without `--allow-random-weights`, unless `--weights FILE` is given.
* `output_stride` (default 4), `eval_crop` and `eval_stride` (an int or [H, W]; default 1024 and 768, the stride
  defaults to the crop when only the crop is given): the sliding window of the suite's slide mode.
* `class_names`: the model's output channels by name; when given, they are matched to the dataset's classes
  (`sources.map_labels`, with `--label-map`), so a model with another class order or extra classes scores right,
  and the model must return `len(class_names)` channels instead of `num_classes`.

**Weights.** `--weights FILE` (safetensors or a weights-only torch file, or a Hugging Face folder) is loaded strictly
into the module (`load_weights_file`), as for built-in models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbench.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelMeta, WeightsInfo
from segbench.models.checkpoint import CheckpointError, load_strict, read_state_dict, resolve_weights, sha256_file
from segbench.models.sources import BuildRequest, SourceError, SourceInfo, first_line, json_kind, map_labels

DECLARATION_KEYS = ("mean", "std", "input_range", "trained", "output_stride", "eval_crop", "eval_stride", "class_names")
"""The keys of a model declaration (`segbench_meta`, a sidecar JSON, `--model-meta`)."""

INPUT_RANGES = {"0-1": 1.0, "0-255": 255.0}
_DEFAULTS = ModelMeta(name="", family="", backbone="", head="", num_classes=0)


# --------------------------------------------------------------------------------------------------------------------
# The declaration
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    """What a user model expects and declares, checked (see the module docstring for the keys).

    Attributes:
        mean, std: RGB, in [0, 1] units (`ModelMeta`'s), whatever `input_range` they were given in.
        input_range: "0-1" or "0-255", as declared.
        trained: whether the model's own weights are trained.
        output_stride, eval_crop, eval_stride: as in `ModelMeta`.
        class_names: the output channels by name, or None (channels are the dataset's classes in order).
        origin: where it came from ("defaults", "--model-meta", "segbench_meta of <module>", a file, ...).
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_range: str = "0-1"
    trained: bool = False
    output_stride: int = _DEFAULTS.output_stride
    eval_crop: tuple[int, int] = _DEFAULTS.eval_crop
    eval_stride: tuple[int, int] = _DEFAULTS.eval_stride
    class_names: tuple[str, ...] | None = None
    origin: str = "defaults"


def _triple(value: Any, key: str, where: str, positive: bool) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or (positive and min(out) <= 0):
        need = "3 positive numbers" if positive else "3 numbers"
        raise SourceError(f"{where}: {key} must be {need} (RGB), got {value!r}")
    return out  # type: ignore[return-value]


def _pair(value: Any, key: str, where: str) -> tuple[int, int]:
    pair = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, (list, tuple))
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)
    ):
        raise SourceError(f"{where}: {key} must be a positive int or [H, W], got {value!r}")
    return int(pair[0]), int(pair[1])


def parse_declaration(raw: Mapping[str, Any] | ModelMeta, where: str) -> Declaration:
    """Check a declaration (a dict of `DECLARATION_KEYS`, or a `ModelMeta`) and bring mean/std to [0, 1] units.

    Args:
        raw: the declaration.
        where: names it in error messages (and becomes `Declaration.origin`).

    Raises:
        SourceError: an unknown key or a bad value, naming it.
    """
    if isinstance(raw, ModelMeta):
        keys = ("mean", "std", "output_stride", "eval_crop", "eval_stride")
        raw = {k: getattr(raw, k) for k in keys}
    if not isinstance(raw, Mapping):
        raise SourceError(f"{where}: must be a dict (or a ModelMeta), got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(DECLARATION_KEYS))
    if unknown:
        raise SourceError(f"{where}: unknown keys {', '.join(map(str, unknown))}; known: {', '.join(DECLARATION_KEYS)}")
    input_range = raw.get("input_range", "0-1")
    if not isinstance(input_range, str) or input_range not in INPUT_RANGES:
        raise SourceError(f"{where}: input_range must be one of {', '.join(INPUT_RANGES)}, got {input_range!r}")
    scale = INPUT_RANGES[input_range]
    if scale != 1.0 and not ("mean" in raw and "std" in raw):
        raise SourceError(
            f"{where}: input_range {input_range!r} needs mean and std in those units "
            "(e.g. [123.675, 116.28, 103.53] and [58.395, 57.12, 57.375], or [0, 0, 0] and [1, 1, 1] for raw pixels)"
        )
    mean = _triple(raw.get("mean", IMAGENET_MEAN), "mean", where, positive=False)
    std = _triple(raw.get("std", IMAGENET_STD), "std", where, positive=True)
    trained = raw.get("trained", False)
    if not isinstance(trained, bool):
        raise SourceError(f"{where}: trained must be true or false, got {trained!r}")
    stride = raw.get("output_stride", _DEFAULTS.output_stride)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise SourceError(f"{where}: output_stride must be a positive int, got {stride!r}")
    crop = _pair(raw["eval_crop"], "eval_crop", where) if "eval_crop" in raw else _DEFAULTS.eval_crop
    default_stride = crop if "eval_crop" in raw else _DEFAULTS.eval_stride
    window_stride = _pair(raw["eval_stride"], "eval_stride", where) if "eval_stride" in raw else default_stride
    names = raw.get("class_names")
    listed = isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names)
    if names is not None and not listed:
        raise SourceError(f"{where}: class_names must be a non-empty list of names, got {names!r}")
    return Declaration(
        mean=tuple(m / scale for m in mean),  # type: ignore[arg-type]
        std=tuple(s / scale for s in std),  # type: ignore[arg-type]
        input_range=input_range,
        trained=trained,
        output_stride=stride,
        eval_crop=crop,
        eval_stride=window_stride,
        class_names=tuple(names) if names is not None else None,
        origin=where,
    )


def read_declaration_file(path: str | os.PathLike) -> dict[str, Any]:
    """A declaration JSON file (`--model-meta FILE`, or a sidecar `<model file>.segbench.json`) as a dict.

    Raises:
        SourceError: unreadable, not JSON, or not a JSON object.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"{path}: cannot read it as a JSON model declaration ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise SourceError(
            f'{path}: a model declaration must be a JSON object ({{"mean": [...], "trained": true, ...}}), '
            f"not {json_kind(data)}"
        )
    return data


# --------------------------------------------------------------------------------------------------------------------
# The wrapper: SourceModel
# --------------------------------------------------------------------------------------------------------------------


def check_logits(out: Any, channels: int, label: str, what: str) -> None:
    """Raise `SourceError` unless `out` is a tensor `(B, channels, h, w)` (shape only: no sync, no copy).

    Args:
        out: what the model returned.
        channels: the channels it must have.
        label: the source as the user wrote it (`py:./m.py:build`).
        what: the expected channels in words (`num_classes=19`).
    """
    need = f"segbench needs logits (B, {what}, h, w)"
    if not isinstance(out, torch.Tensor):
        hint = " (return the tensor itself: model(x)['out'] for torchvision models)" if isinstance(out, dict) else ""
        raise SourceError(f"{label}: the model returned a {type(out).__name__}; {need}{hint}")
    if out.dim() != 4 or out.shape[1] != channels:
        raise SourceError(f"{label}: the model returned shape {tuple(out.shape)}; {need}")


class SourceModel(nn.Module):
    """A model from a user source, as the runner takes every model: `meta`, `weights_info`, `source_info`.

    Holds the user's module as its only child (`model`), so its parameters are exactly the user module's. Each
    forward checks the output's shape (`check_logits`) and, when the model's classes were matched by name, picks the
    dataset's classes out of its channels.

    Attributes:
        model: the user's module (or the ONNX Runtime module of `exported.load_onnx`).
        meta: normalisation, output stride and sliding window.
        weights_info: where the weights came from.
        source_info: the source's provenance.
        num_parameters: the model's parameter count: the module's own, or for an ONNX graph (which has no torch
            parameters) the element count of its weight initializers.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        meta: ModelMeta,
        weights_info: WeightsInfo,
        source_info: SourceInfo,
        label: str,
        channels: int,
        channel_index: Sequence[int] | None = None,
        num_parameters: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.meta = meta
        self.weights_info = weights_info
        self.source_info = source_info
        self.label = label
        self.channels = channels
        self.expected = f"num_classes={channels}" if channel_index is None else f"{channels} class_names"
        index = None if channel_index is None else torch.tensor(list(channel_index), dtype=torch.long)
        self.register_buffer("channel_index", index, persistent=False)
        own = {id(p): p.numel() for p in model.parameters()}
        self.num_parameters = sum(own.values()) if num_parameters is None else int(num_parameters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        check_logits(out, self.channels, self.label, self.expected)
        return out if self.channel_index is None else out.index_select(1, self.channel_index)


def wrap(
    model: nn.Module,
    request: BuildRequest,
    declaration: Declaration,
    weights_info: WeightsInfo,
    source_info: SourceInfo,
    *,
    family: str,
    num_parameters: int | None = None,
) -> SourceModel:
    """Wrap a user module as a `SourceModel`: its `ModelMeta` from the declaration, its classes matched by name.

    Raises:
        SourceError: the declared class names do not cover the dataset's classes, or a `--label-map` without
            declared class names.
    """
    label = request.spec.text
    channels, index = request.num_classes, None
    if declaration.class_names is not None:
        channels = len(declaration.class_names)
        if request.class_names:
            index = map_labels(declaration.class_names, request.class_names, request.label_map, what=label)
            if index == list(range(channels)):
                index = None  # the same classes in the same order
        elif channels != request.num_classes:
            raise SourceError(
                f"{label}: declares {channels} class_names but the dataset has {request.num_classes} classes, "
                "and no class names to match them by"
            )
    elif request.label_map:
        raise SourceError(f"{label}: --label-map needs the model's class names (class_names in its declaration)")
    meta = ModelMeta(
        name=request.spec.name,
        family=family,
        backbone=type(model).__name__,
        head="",
        num_classes=request.num_classes,
        mean=declaration.mean,
        std=declaration.std,
        output_stride=declaration.output_stride,
        eval_crop=declaration.eval_crop,
        eval_stride=declaration.eval_stride,
    )
    detail = dict(source_info.detail)
    detail["declaration"] = declaration.origin
    if declaration.class_names is not None:
        detail["class_names"] = list(declaration.class_names)
    source_info = replace(source_info, detail=detail)
    return SourceModel(
        model,
        meta=meta,
        weights_info=weights_info,
        source_info=source_info,
        label=label,
        channels=channels,
        channel_index=index,
        num_parameters=num_parameters,
    )


def load_weights_file(module: nn.Module, weights: str, label: str) -> WeightsInfo:
    """`--weights` for a user model: read the checkpoint safely and load it strictly into `module`.

    Args:
        module: the user's module (its own state-dict keys, not the wrapper's).
        weights: a file, a Hugging Face model folder, or a hub id in the local cache.
        label: the source, for messages.

    Raises:
        SourceError: the checkpoint is not found or not readable, or its keys or shapes do not match the module.
    """
    try:
        resolved = resolve_weights(weights)
        state = read_state_dict(resolved.file)
        load_strict(module, state, f"--weights {resolved.file}")
    except CheckpointError as e:
        raise SourceError(f"{label}: {e}") from None
    return WeightsInfo(
        source=str(weights),
        path=str(resolved.file),
        format="safetensors" if resolved.file.suffix == ".safetensors" else "torch",
        sha256=sha256_file(resolved.file),
        random=False,
    )


__all__ = [
    "DECLARATION_KEYS",
    "Declaration",
    "SourceModel",
    "check_logits",
    "load_weights_file",
    "parse_declaration",
    "read_declaration_file",
    "wrap",
]
