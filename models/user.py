"""The user's own models: `py:MODULE_OR_FILE:FACTORY` and installed plugins (the `segbench.models` entry points).

`py:./my_model.py:build` imports the file (under a private module name, with its folder on `sys.path` while it
imports and while the factory runs, so that its sibling modules are found); `py:mypkg.models:build` imports the
module. The target is split at its last `:`. The factory is then called as
``build(num_classes=19, **model_args)`` with the `--model-args key=value,...` of the command line
(`segbench.bench.run.model_args`). An installed package registers models by name in its `pyproject.toml`::

    [project.entry-points."segbench.models"]
    mynet = "mypkg.models:build"

and `--models mynet` builds it the same way (`load_entry_point`; a built-in name of the registry wins).

**The contract.** The factory returns an `nn.Module` whose forward takes a normalised float batch `(B, 3, H, W)`
and returns logits `(B, num_classes, h, w)` at any stride (segbench resizes them). Every forward's output shape is
checked (rank 4, `num_classes` channels); anything else is a one-line `SourceError`.

**The declaration** (`segbench_meta`): what the model expects (its keys: `models/adapter.py`). segbench looks for
it, first found wins, in
1. `--model-meta FILE` (`BuildRequest.meta`), which overrides what the code says;
2. the returned module's attribute `segbench_meta`;
3. a module-level `segbench_meta` in the factory's Python module;
4. the returned module's own `meta`, if it is a `ModelMeta` (a registry model the factory built), and its
   `weights_info` for `trained`.

**Weights.** Weights the factory loads (`trained`) are recorded as "user-provided", fingerprinted by the sha256 of
the state dict. `--weights FILE` (safetensors or a weights-only torch file, or a Hugging Face folder) is loaded
strictly into the returned module, as for built-in models.

The result is a `SourceModel` (`models/adapter.py`): the user's module (the only parameters), with `meta`,
`weights_info` and `source_info`, as every source gives.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from segbench.models.adapter import Declaration, SourceModel, load_weights_file, parse_declaration, wrap
from segbench.models.base import ModelMeta, WeightsInfo
from segbench.models.checkpoint import sha256_file, state_dict_sha256
from segbench.models.sources import BuildRequest, ModelSpec, SourceError, SourceInfo, first_line

ENTRY_POINT_GROUP = "segbench.models"
"""The entry-point group in which installed packages register model factories by name."""


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
    except BaseException as e:
        sys.modules.pop(name, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise SourceError(f"{label}: {path} does not import: {first_line(e)}") from None
    return module


def _import_module(name: str, label: str) -> Any:
    try:
        return importlib.import_module(name)
    except BaseException as e:
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
    except BaseException as e:
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
    except BaseException as e:
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
    request = BuildRequest(
        spec=ModelSpec(name, "registry", name),
        num_classes=num_classes,
        class_names=class_names,
        weights=weights,
        model_args=model_args,
        meta=meta,
    )
    return load_entry_point(request).eval()


# --------------------------------------------------------------------------------------------------------------------
# In-memory modules (the Python API)
# --------------------------------------------------------------------------------------------------------------------


def load_module(model: nn.Module, request: BuildRequest) -> SourceModel:
    """An in-memory module from the Python API (`segbench.run(..., modules={name: module})`), wrapped under the same
    declaration contract as a `py:` factory's model (its `segbench_meta`, or its own `meta`; `--weights` applies).
    The module itself is used, not a copy."""
    detail = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    return build_user_model(
        lambda **_: model,
        request,
        kind="module",
        factory_name="(in-memory module)",
        module=None,
        where="the in-memory module",
        detail=detail,
    )


__all__ = [
    "ENTRY_POINT_GROUP",
    "build_user_model",
    "create_entry_point_model",
    "entry_point_models",
    "list_entry_point_models",
    "load_entry_point",
    "load_module",
    "load_py",
]
