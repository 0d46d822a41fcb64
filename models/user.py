"""The user's own models: `py:MODULE_OR_FILE:FACTORY` and installed plugins (the `segbench.models` entry points).

`py:./my_model.py:build` imports the file (under a private module name, with its folder on `sys.path` while it
imports and while the factory runs, so that its sibling modules are found); `py:mypkg.models:build` imports the
module. The target is split at its last `:`. The factory is then called as
``build(num_classes=19, **model_args)`` with the `--model-args key=value,...` of the command line
(`parse_model_args`). An installed package registers models by name in its `pyproject.toml`::

    [project.entry-points."segbench.models"]
    mynet = "mypkg.models:build"

and `--models mynet` builds it the same way (`load_entry_point`; a built-in name of the registry wins).

**The contract.** The factory returns an `nn.Module` whose forward takes a normalised float batch `(B, 3, H, W)`
and returns logits `(B, num_classes, h, w)` at any stride (segbench resizes them). Every forward's output shape is
checked (rank 4, `num_classes` channels); anything else is a one-line `SourceError`.

**The declaration** (`segbench_meta`): what the model expects, as a dict (or a `ModelMeta`, for its mean, std,
output stride and window). segbench looks for it, first found wins, in
1. `--model-meta FILE` (`BuildRequest.meta`), which overrides what the code says;
2. the returned module's attribute `segbench_meta`;
3. a module-level `segbench_meta` in the factory's Python module;
4. the returned module's own `meta`, if it is a `ModelMeta` (a registry model the factory built), and its
   `weights_info` for `trained`.

Keys (all optional; any other key is an error):
* `mean`, `std`: RGB, in the units of `input_range`. Default: ImageNet's, (0.485, 0.456, 0.406) and
  (0.229, 0.224, 0.225).
* `input_range`: "0-1" (default) or "0-255": the units of the pixel values `v` the normalisation starts from; the
  model sees `(v - mean) / std`. With "0-255", `mean` and `std` must be given in 0-255 units (mmseg's
  [123.675, 116.28, 103.53] / [58.395, 57.12, 57.375], or [0, 0, 0] / [1, 1, 1] for raw pixels). segbench
  stores them as `ModelMeta` does, in [0, 1] units (divided by 255), which gives the same input exactly
  (`(img / 255 - mean / 255) / (std / 255) = (img - mean) / std`).
* `trained`: True when the factory loads trained weights. Default False: the model counts as randomly initialised,
  and a run refuses it without `--allow-random-weights`, unless `--weights FILE` is given.
* `output_stride` (default 4), `eval_crop` and `eval_stride` (an int or [H, W]; default 1024 and 768, the stride
  defaults to the crop when only the crop is given): the sliding window of the suite's slide mode.
* `class_names`: the model's output channels by name; when given, they are matched to the dataset's classes
  (`sources.map_labels`, with `--label-map`), so a model with another class order or extra classes scores right,
  and the model must return `len(class_names)` channels instead of `num_classes`.

**Weights.** Weights the factory loads (`trained`) are recorded as "user-provided", fingerprinted by the sha256 of
the state dict. `--weights FILE` (safetensors or a weights-only torch file, or a Hugging Face folder) is loaded
strictly into the returned module, as for built-in models.

The result is a `SourceModel`: the user's module (the only parameters), with `meta`, `weights_info` and
`source_info`, as every source gives.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbench.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelMeta, WeightsInfo
from segbench.models.checkpoint import CheckpointError, load_strict, read_state_dict, resolve_weights, sha256_file
from segbench.models.sources import BuildRequest, SourceError, SourceInfo, map_labels

ENTRY_POINT_GROUP = "segbench.models"
"""The entry-point group in which installed packages register model factories by name."""

DECLARATION_KEYS = ("mean", "std", "input_range", "trained", "output_stride", "eval_crop", "eval_stride", "class_names")
"""The keys of a model declaration (`segbench_meta`, a sidecar JSON, `--model-meta`)."""

INPUT_RANGES = {"0-1": 1.0, "0-255": 255.0}
_DEFAULTS = ModelMeta(name="", family="", backbone="", head="", num_classes=0)


def first_line(error: BaseException) -> str:
    """`TypeName: first line of the message` (the message alone if it already names the type), at most 200 chars."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__name__
    return (f"{name}: {text}" if text and not text.startswith(name) else text or name)[:200]


# --------------------------------------------------------------------------------------------------------------------
# --model-args
# --------------------------------------------------------------------------------------------------------------------


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes: `a=[1,2],b='x,y'` -> [`a=[1,2]`, `b='x,y'`]."""
    parts, depth, quote, start, escaped = [], 0, "", 0, False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _literal(text: str) -> Any:
    """A Python literal where the text is one (`3`, `1e-3`, `True`, `None`, `[1, 2]`, `'x'`), else the text itself.

    `true`, `false`, `none` and `null` in any case are the booleans and None too (quote them to pass the words).
    """
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_model_args(text: str | Iterable[str] | None) -> dict[str, Any]:
    """`--model-args "depth=2,widths=[8,16],act=gelu,pretrained=false"` -> the factory's keyword arguments.

    Items are split at commas outside brackets and quotes; values are Python literals where they parse
    (`ast.literal_eval`: ints, floats, strings in quotes, lists, tuples, dicts), booleans and None also in lower case
    (`true`, `false`, `none`, `null`), and the plain text otherwise. Several texts (a repeated option) are joined.

    Raises:
        SourceError: an item without `=`, a key that is not an identifier, a key given twice, or `num_classes`
            (segbench passes that one itself).
    """
    texts = [] if text is None else [text] if isinstance(text, str) else list(text)
    out: dict[str, Any] = {}
    for part in (p for t in texts for p in _split_top_level(t)):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise SourceError(f"--model-args: {part.strip()!r} is not key=value (e.g. --model-args depth=2,act=gelu)")
        if key == "num_classes":
            raise SourceError("--model-args: num_classes is set by segbench from the dataset; leave it out")
        if key in out:
            raise SourceError(f"--model-args: {key} is given twice")
        out[key] = _literal(value)
    return out


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
    if input_range not in INPUT_RANGES:
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
        raise SourceError(f'{path}: a model declaration must be a JSON object ({{"mean": [...], ...}})')
    return data


# --------------------------------------------------------------------------------------------------------------------
# The wrapper every user source returns
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


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict: each entry's name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# py: targets
# --------------------------------------------------------------------------------------------------------------------


def split_target(target: str, label: str) -> tuple[str, str]:
    """`./my_model.py:build` -> (`./my_model.py`, `build`): split at the last colon.

    Raises:
        SourceError: no colon, or nothing on one side of it.
    """
    where, colon, factory = target.rpartition(":")
    if not colon or not where.strip() or not factory.strip():
        raise SourceError(f"{label}: give MODULE_OR_FILE:FACTORY, e.g. py:./my_model.py:build or py:mypkg.models:build")
    return where.strip(), factory.strip()


def is_file_target(where: str) -> bool:
    """A target names a file when it ends in `.py` or holds a path separator; otherwise it is a dotted module."""
    return where.endswith(".py") or "/" in where or os.sep in where


@contextlib.contextmanager
def _on_path(folder: str | None) -> Iterator[None]:
    """`folder` first on `sys.path` inside the block (so that a file's sibling modules import), then removed."""
    if folder is None:
        yield
        return
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _import_file(path: Path, label: str) -> Any:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_segbench_py_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SourceError(f"{label}: {path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001 - the user's code: any failure, SystemExit included, is one line
        sys.modules.pop(name, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise SourceError(f"{label}: {path} does not import: {first_line(e)}") from None
    return module


def _import_module(name: str, label: str) -> Any:
    try:
        return importlib.import_module(name)
    except BaseException as e:  # noqa: BLE001 - the user's code: any failure, SystemExit included, is one line
        if isinstance(e, KeyboardInterrupt):
            raise
        if isinstance(e, ModuleNotFoundError) and e.name and (name == e.name or name.startswith(e.name + ".")):
            hint = f"; for the file ./{name}.py write py:./{name}.py:..." if Path(f"{name}.py").is_file() else ""
            raise SourceError(
                f"{label}: no module named {e.name!r} (install it, or put its folder on PYTHONPATH){hint}"
            ) from None
        raise SourceError(f"{label}: module {name} does not import: {first_line(e)}") from None


def _module_version(module_name: str) -> dict[str, str]:
    """The installed distribution that provides a module's top-level package, and its version (or nothing)."""
    top = module_name.split(".")[0]
    try:
        dists = importlib.metadata.packages_distributions().get(top, [])
    except Exception:  # noqa: BLE001 - provenance only
        return {}
    if not dists:
        return {}
    try:
        return {"package": dists[0], "version": importlib.metadata.version(dists[0])}
    except importlib.metadata.PackageNotFoundError:
        return {"package": dists[0]}


def _callables(module: Any) -> list[str]:
    own = [
        k
        for k, v in vars(module).items()
        if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module.__name__
    ]
    return own or [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]


def _find_factory(module: Any, factory: str, where: str, label: str) -> Callable[..., Any]:
    obj: Any = module
    for part in factory.split("."):
        if not hasattr(obj, part):
            names = _callables(module)
            shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "") if names else "none"
            raise SourceError(f"{label}: {where} has no {factory!r}; its callables: {shown}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SourceError(f"{label}: {where}:{factory} is a {type(obj).__name__}, not a factory (a callable)")
    return obj


def _json_safe(args: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in args.items():
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            out[k] = repr(v)
    return out


def _call_factory(factory: Callable[..., Any], request: BuildRequest, name: str, label: str) -> nn.Module:
    kwargs = {"num_classes": request.num_classes, **dict(request.model_args)}
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    call = f"{name}({shown})"
    try:
        model = factory(**kwargs)
    except BaseException as e:  # noqa: BLE001 - the user's code: any failure, SystemExit included, is one line
        if isinstance(e, KeyboardInterrupt):
            raise
        hint = " (check --model-args)" if isinstance(e, TypeError) and "argument" in str(e) else ""
        raise SourceError(f"{label}: {call} raised {first_line(e)}{hint}") from None
    if not isinstance(model, nn.Module):
        raise SourceError(
            f"{label}: {call} returned a {type(model).__name__}, not a torch.nn.Module; the factory must return the "
            "model (its forward: normalised images (B, 3, H, W) -> logits (B, num_classes, h, w))"
        )
    return model


def _declaration(request: BuildRequest, model: nn.Module, module: Any, where: str) -> Declaration:
    """The declaration of a factory's model, from the first place that has one (see the module docstring)."""
    label = request.spec.text
    if request.meta is not None:
        return parse_declaration(request.meta, f"{label}: --model-meta")
    if getattr(model, "segbench_meta", None) is not None:
        return parse_declaration(model.segbench_meta, f"{label}: the model's segbench_meta")
    if getattr(module, "segbench_meta", None) is not None:
        return parse_declaration(module.segbench_meta, f"{label}: segbench_meta of {where}")
    own = getattr(model, "meta", None)
    if isinstance(own, ModelMeta):
        declaration = parse_declaration(own, f"{label}: the model's meta")
        info = getattr(model, "weights_info", None)
        return replace(declaration, trained=isinstance(info, WeightsInfo) and not info.random)
    return Declaration()


def build_user_model(
    factory: Callable[..., Any],
    request: BuildRequest,
    *,
    kind: str,
    factory_name: str,
    module: Any,
    where: str,
    detail: Mapping[str, Any],
    folder: str | None = None,
) -> SourceModel:
    """Call a user factory, check what it returns, apply `--weights`, and wrap it (shared by `py:` and plugins).

    Args:
        factory: the callable.
        request: the build request.
        kind: "py" or "entry-point" (`SourceInfo.kind`).
        factory_name: its name, for messages.
        module: its Python module (a module-level `segbench_meta` is read from it).
        where: the file or module, for messages.
        detail: provenance for `SourceInfo.detail`.
        folder: a folder put first on `sys.path` while the factory runs (a file's own folder).
    """
    label = request.spec.text
    with _on_path(folder):
        model = _call_factory(factory, request, factory_name, label)
    declaration = _declaration(request, model, module, where)
    target = {"py": f"py:{request.spec.target}", "module": f"in-memory module {request.spec.name}"}.get(
        kind, f"entry point {request.spec.target}"
    )
    if request.weights is not None:
        weights_info = load_weights_file(model, request.weights, label)
    elif declaration.trained:
        own = getattr(model, "weights_info", None)
        if isinstance(own, WeightsInfo) and not own.random:  # a segbench model the factory built with weights
            weights_info = replace(own, source=f"user-provided: {target} ({own.source})", notes=list(own.notes))
        else:
            weights_info = WeightsInfo(
                source=f"user-provided: {target}", format="state-dict", sha256=state_dict_sha256(model), random=False
            )
    else:
        weights_info = WeightsInfo(
            notes=["declare trained=True in segbench_meta (or --model-meta) if the factory loads trained weights"]
        )
    info = SourceInfo(
        kind=kind,
        target=request.spec.target,
        detail={**detail, "factory": factory_name, "model_args": _json_safe(request.model_args)},
    )
    return wrap(model, request, declaration, weights_info, info, family=kind)


def load_py(request: BuildRequest) -> SourceModel:
    """Build `py:MODULE_OR_FILE:FACTORY` (see the module docstring for the contract).

    Raises:
        SourceError: one line naming the problem and what to do: a file that does not exist or does not import
            (with its exception's first line), a missing factory (listing the module's callables), a factory that
            raises or returns something that is not an `nn.Module`, a bad declaration, weights that do not load.
    """
    label = request.spec.text
    where, factory_name = split_target(request.spec.target, label)
    folder = None
    if is_file_target(where):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise SourceError(f"{label}: no such file {path}")
        folder = str(path.parent)
        with _on_path(folder):
            module = _import_file(path, label)
        detail: dict[str, Any] = {"file": str(path), "sha256": sha256_file(path)}
        where = path.name
    else:
        module = _import_module(where, label)
        detail = {"module": where, **_module_version(where)}
    factory = _find_factory(module, factory_name, where, label)
    return build_user_model(
        factory,
        request,
        kind="py",
        factory_name=factory_name,
        module=module,
        where=where,
        detail=detail,
        folder=folder,
    )


# --------------------------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------------------------


def entry_point_models() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed packages' models: entry-point name -> entry point (group `segbench.models`), read now."""
    out: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        out.setdefault(ep.name, ep)
    return out


def list_entry_point_models(pattern: str = "*") -> list[str]:
    """Entry-point model names matching a shell-style pattern, sorted (for `segbench list models`)."""
    return sorted(n for n in entry_point_models() if fnmatch.fnmatchcase(n, pattern))


def _dist_detail(ep: importlib.metadata.EntryPoint) -> dict[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return {}
    return {"package": dist.metadata["Name"] or dist.name, "version": dist.version}


def load_entry_point(request: BuildRequest) -> SourceModel:
    """Build the entry-point model named `request.spec.target` (a registry-style name), as a `py:` factory.

    Raises:
        SourceError: no such entry point, two packages registering the name differently, an entry point that does not
            load, and every failure of `load_py`'s factory call.
    """
    name, label = request.spec.target, request.spec.text
    found = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        known = ", ".join(list_entry_point_models()) or "none installed"
        raise SourceError(f"{label}: no model {name!r} in the {ENTRY_POINT_GROUP!r} entry points ({known})")
    if len({ep.value for ep in found}) > 1:
        both = "; ".join(f"{ep.value} ({_dist_detail(ep).get('package', '?')})" for ep in found)
        raise SourceError(f"{label}: two installed packages register {name!r}: {both}; uninstall one")
    ep = found[0]
    origin = f"entry point {name} = {ep.value}"
    try:
        factory = ep.load()
    except BaseException as e:  # noqa: BLE001 - the plugin's code: any failure is one line
        if isinstance(e, KeyboardInterrupt):
            raise
        raise SourceError(f"{label}: {origin} does not load: {first_line(e)}") from None
    if not callable(factory):
        raise SourceError(f"{label}: {origin} is a {type(factory).__name__}, not a factory (a callable)")
    return build_user_model(
        factory,
        request,
        kind="entry-point",
        factory_name=ep.attr or ep.value,
        module=sys.modules.get(ep.module),
        where=ep.module,
        detail={"entry_point": ep.value, **_dist_detail(ep)},
    )


def create_entry_point_model(
    name: str,
    num_classes: int = 19,
    weights: str | None = None,
    class_names: Sequence[str] = (),
    meta: Mapping[str, Any] | None = None,
    **model_args: Any,
) -> SourceModel:
    """`create_model`'s door to the entry points: build the plugin model `name` (see `load_entry_point`)."""
    from segbench.models.sources import ModelSpec

    request = BuildRequest(
        spec=ModelSpec(name, "registry", name),
        num_classes=num_classes,
        class_names=class_names,
        weights=weights,
        model_args=model_args,
        meta=meta,
    )
    return load_entry_point(request).eval()


__all__ = [
    "DECLARATION_KEYS",
    "ENTRY_POINT_GROUP",
    "Declaration",
    "SourceModel",
    "build_user_model",
    "check_logits",
    "create_entry_point_model",
    "entry_point_models",
    "list_entry_point_models",
    "load_entry_point",
    "load_module",
    "load_py",
    "load_weights_file",
    "parse_declaration",
    "parse_model_args",
    "read_declaration_file",
    "state_dict_sha256",
    "wrap",
]


def load_module(model: nn.Module, request: BuildRequest) -> SourceModel:
    """An in-memory module from the Python API (`segbench.run(..., modules={name: module})`), wrapped under the same
    declaration contract as a `py:` factory's model (its `segbench_meta`, or its own `meta`; `--weights` applies).
    The module itself is used, not a copy."""
    detail = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    return build_user_model(
        lambda **_: model, request, kind="module", factory_name="(in-memory module)", module=None,
        where="the in-memory module", detail=detail,
    )  # fmt: skip
