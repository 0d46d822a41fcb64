"""Where a model comes from: the registry, a Hugging Face model, the user's own code, or an exported file.

One `--models` syntax names them all (the same text in the Python API)::

    segformer-b0                                   a registered name (also `<head>:<timm model>`)
    hf:nvidia/segformer-b0-finetuned-cityscapes... a transformers segmentation model: a folder, or an id in the
                                                   local Hugging Face cache (never downloaded)
    py:./my_model.py:build  py:mypkg.models:build  the user's factory, called with `num_classes` and --model-args
    torchscript:/deploy/model.pt                   a TorchScript file
    onnx:/deploy/model.onnx                        an ONNX file, run by ONNX Runtime

An optional `NAME=` prefix names the model in results and the report (`mynet=py:./my_model.py:build`).

Whatever the source, the runner gets the same thing: an `nn.Module` whose forward takes a normalised float image
batch `(B, 3, H, W)` and returns class scores `(B, num_classes, h, w)` in the dataset's class order, at any stride,
and which carries
* `meta` (`ModelMeta`): normalisation (RGB mean/std of images scaled to [0, 1]), output stride, sliding window;
* `weights_info` (`WeightsInfo`): where the weights came from, their hash, whether they are trained;
* `source_info` (`SourceInfo`): the source's provenance, recorded in run.json and shown in the report.

This module holds the syntax and what a source's loader is given and gives (`BuildRequest`, `SourceInfo`,
`SourceError`, class matching by name); `segbench.models.build_from_source` calls the loader, which lives with its
source (`models/hf.py`, `models/user.py`, `models/exported.py`; the shared wrapper is `models/adapter.py`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE_KINDS = ("hf", "py", "torchscript", "onnx")
"""The prefixes of the sources beside the registry (`<kind>:<target>`)."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*(@[A-Za-z0-9._+-]+)?")
"""What a `NAME=` prefix (or a name derived from a source) may be: it becomes a results value and part of file names.
Registry names also take `:` (`<head>:<timm model>`); a deployment variant is `<name>@<backend>-<precision>`
(`bench.results.variant_name`)."""


class SourceError(ValueError):
    """A model source that cannot be used (one line: what and where, and what to do)."""


def first_line(error: BaseException) -> str:
    """`TypeName: first line of the message` (the message alone if it already names the type), at most 200 chars."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__name__
    return (f"{name}: {text}" if text and not text.startswith(name) else text or name)[:200]


@dataclass(frozen=True)
class ModelSpec:
    """One entry of `--models`.

    Attributes:
        name: the name in results (the `NAME=` prefix, else the registry name or a name derived from the target).
        kind: "registry" or one of `SOURCE_KINDS`.
        target: the registry name, or what follows `<kind>:`.
    """

    name: str
    kind: str
    target: str

    @property
    def text(self) -> str:
        """The spec as the user would type it (for provenance and messages)."""
        body = self.target if self.kind == "registry" else f"{self.kind}:{self.target}"
        return body if self.name == self._default_name() else f"{self.name}={body}"

    def _default_name(self) -> str:
        return self.target if self.kind == "registry" else default_name(self.kind, self.target)


@dataclass(frozen=True)
class SourceInfo:
    """Provenance of a model's source, recorded in run.json / env.json and shown in the report.

    Attributes:
        kind: "registry", "hf", "py", "entry-point", "torchscript", "onnx" or "module" (an in-memory module).
        target: what was named (registry name, hub id or folder, module and factory, file).
        detail: source-specific facts (architecture, model type, revision, file hash, label mapping, library versions).
        flop_conventions: the FLOP counters that apply to it (`bench.measure.flops`: "fvcore" and "torch" for a module
        that
            runs in PyTorch; none for an exported file; "paper" only for the registry's SegFormer family).
    """

    kind: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)
    flop_conventions: tuple[str, ...] = ("fvcore", "torch")


def default_name(kind: str, target: str) -> str:
    """A results name for a source without `NAME=`: the last path or id component, without its suffix."""
    last = re.split(r"[/\\:]", target.rstrip("/\\"))[-1] or target
    stem = re.sub(r"\.(py|pt|pth|ts|onnx)$", "", last)
    clean = re.sub(r"[^A-Za-z0-9._+-]+", "-", stem).strip("-") or kind
    return clean


def parse_model_spec(text: str) -> ModelSpec:
    """`[NAME=]SOURCE` -> `ModelSpec` (the registry is checked by the caller; sources are checked when built).

    Raises:
        SourceError: an empty target, or a `NAME=` prefix that is not a plain name.
    """
    text = text.strip()
    name, eq, body = text.partition("=")
    if not eq or ":" in name or "/" in name:  # `=` inside a path or an id is not a name prefix
        name, body = "", text
    kind, colon, target = body.partition(":")
    if colon and kind in SOURCE_KINDS:
        if not target.strip():
            raise SourceError(f"{text!r}: nothing after '{kind}:'; e.g. {EXAMPLES[kind]}")
        spec_name = name or default_name(kind, target)
        spec = ModelSpec(spec_name, kind, target.strip())
    else:
        spec = ModelSpec(name or body, "registry", body)
    if not NAME_PATTERN.fullmatch(spec.name.replace(":", "-") if spec.kind == "registry" and not name else spec.name):
        raise SourceError(f"{text!r}: model name {spec.name!r} must be letters, digits and . _ + - (NAME=SOURCE)")
    return spec


EXAMPLES = {
    "hf": "hf:/ckpt/upernet-convnext-small or hf:openmmlab/upernet-convnext-small (in the local cache)",
    "py": "py:./my_model.py:build or py:mypkg.models:build",
    "torchscript": "torchscript:/deploy/model.pt",
    "onnx": "onnx:/deploy/model.onnx",
}


@dataclass(frozen=True)
class BuildRequest:
    """What a source loader is given.

    Attributes:
        spec: the parsed `--models` entry.
        num_classes: classes of the dataset's label space.
        class_names: the dataset's class names in train-id order (sources map their labels onto these by name).
        weights: a checkpoint for the model (`--weights`), or None.
        model_args: `--model-args` (the user's factory's keyword arguments).
        label_map: dataset class name -> the model's label name (`--label-map FILE`), or None.
        meta: normalisation and input declaration for exported files (`--model-meta` / a sidecar), or None.
    """

    spec: ModelSpec
    num_classes: int
    class_names: Sequence[str]
    weights: str | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)
    label_map: Mapping[str, str] | None = None
    meta: Mapping[str, Any] | None = None


def label_key(name: str) -> str:
    """`Traffic Light`, `traffic_light`, `traffic-light` -> `trafficlight`: how labels are matched by name."""
    return re.sub(r"[^a-z0-9]+", "", str(name).lower())


def map_labels(
    model_labels: Sequence[str],
    dataset_classes: Sequence[str],
    label_map: Mapping[str, str] | None = None,
    what: str = "the model",
) -> list[int]:
    """For each dataset class (in train-id order) the index of the model's output channel that scores it.

    Matched by name (`label_key`: case, spaces and punctuation aside, so HF's ADE20K ``"bed "`` is ``bed``), so a
    model whose classes come in another order still scores right. `label_map` (dataset class -> model label)
    overrides or completes the matching. The model's labels that match no dataset class are left out of the scores
    (a pixel it gives them goes to its best dataset class).

    Raises:
        SourceError: a dataset class with no model label (naming them, and `--label-map FILE`), one that two model
            labels match (naming both), or a label map that is not one (`check_label_map`) or names labels the
            model does not have.
    """
    index: dict[str, int] = {}
    twins: dict[str, list[int]] = {}  # label_key -> every model class of that name, where there are several
    for i, label in enumerate(model_labels):
        key = label_key(label)
        if key in index:
            twins.setdefault(key, [index[key]]).append(i)
        index.setdefault(key, i)
    checked = check_label_map(label_map, dataset_classes, f"{what}: --label-map") if label_map is not None else {}
    given = {label_key(k): v for k, v in checked.items()}
    unknown = sorted(v for v in given.values() if label_key(v) not in index)
    if unknown:
        raise SourceError(f"{what}: --label-map names labels it does not have: {', '.join(unknown)}")
    out, missing = [], []
    for name in dataset_classes:
        target = label_key(given.get(label_key(name), name))
        if target in twins:
            same = " and ".join(f"{model_labels[i]!r} (class {i})" for i in twins[target])
            raise SourceError(
                f"{what}: its labels {same} both match the dataset's class {name!r} (names match whatever their "
                "case, spaces and punctuation); give each class a distinct name in the model's labels (id2label)"
            )
        if target in index:
            out.append(index[target])
        else:
            missing.append(name)
    if missing:
        shown = ", ".join(list(model_labels)[:12]) + (" ..." if len(model_labels) > 12 else "")
        raise SourceError(
            f"{what}: its labels do not cover the dataset's classes {', '.join(missing)} (its labels: {shown}); "
            "pass --label-map FILE (JSON: dataset class -> the model's label) if they go by other names"
        )
    return out


LABEL_MAP_EXAMPLE = '{"vegetation": "tree", "traffic sign": "signboard"}'


def json_kind(value: Any) -> str:
    """A JSON value's kind in words ("a list", "a number", ...), for messages about a file that holds the wrong one."""
    kinds = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def check_label_map(data: Any, dataset_classes: Sequence[str], where: str) -> dict[str, str]:
    """A label map checked: a mapping of the dataset's class names (matched as `label_key` does, so `traffic_sign`
    is `traffic sign`) to the model's label names.

    Args:
        data: the map (a JSON file's content, or a dict from the Python API).
        dataset_classes: the dataset's class names; () when unknown (then the keys are not checked).
        where: names the map in messages (the file, or `--label-map`).

    Raises:
        SourceError: not a mapping, a value that is not a name, or a key that is no class of the dataset (naming
            it, with the closest class names).
    """
    if not isinstance(data, Mapping):
        raise SourceError(
            f"{where}: a label map is an object of dataset class -> the model's label name "
            f"(e.g. {LABEL_MAP_EXAMPLE}), not {json_kind(data)}"
        )
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str) or not value.strip():
            raise SourceError(
                f"{where}: {key!r} maps to {json_kind(value)} ({value!r}); map each dataset class to the model's "
                f"label name, a string (e.g. {LABEL_MAP_EXAMPLE})"
            )
    known = {label_key(c): c for c in dataset_classes}
    unknown = [key for key in data if known and label_key(key) not in known]
    if unknown:
        names = list(dataset_classes)
        lowered = {n.lower(): n for n in names}
        hints = []
        for key in unknown:
            close = [lowered[c] for c in difflib.get_close_matches(key.lower(), list(lowered), n=3, cutoff=0.6)]
            hints.append(f"{key!r} (closest: {', '.join(close)})" if close else repr(key))
        raise SourceError(
            f"{where}: not a class of the dataset: {'; '.join(hints)}; the keys are the dataset's class names "
            f"({', '.join(names)})"
        )
    return dict(data)


def read_label_map(path: str | os.PathLike, dataset_classes: Sequence[str] = ()) -> dict[str, str]:
    """A `--label-map` JSON file, checked (`check_label_map`; its messages name the file).

    Raises:
        SourceError: unreadable, not JSON, or not a label map.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SourceError(
            f"{path}: cannot read it as JSON ({first_line(e)}); a label map is a JSON object of dataset class -> the "
            f"model's label name (e.g. {LABEL_MAP_EXAMPLE})"
        ) from None
    return check_label_map(data, dataset_classes, str(path))
