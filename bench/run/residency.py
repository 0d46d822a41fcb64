"""Model residency: which models are loaded on the device, and the out-of-memory policy.

Accuracy cells of one condition are evaluated together, every model on each batch, so every model of a run stays
loaded (built once, seeded, so random init is identical on every rank and every resume); only one runs at a time, so
activations are never held for two. The policy when memory runs out:

1. the models do not fit together (while loading them, or a model runs out of memory beside the others): go on one
   model at a time (`Residency.alone`), the cell that ran out tried again first;
2. a model does not fit even alone: its cells fail with a message saying what to change; the run goes on.

Out of memory is any error `bench.run.oom.is_out_of_memory` says it is (cuBLAS and cuDNN report theirs as plain
`RuntimeError`s); any other error goes on up. The device's cache is emptied after the `except` block
(`free_device_memory`), once the error's traceback no longer holds the failed call's tensors.

Every decision is taken on every rank alike (`distributed.any_failed`), so that no rank waits in a collective alone.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from segbench.bench.run import distributed
from segbench.bench.run.config import RunConfig
from segbench.bench.run.oom import is_out_of_memory
from segbench.bench.run.outcome import CellError
from segbench.models.sources import parse_model_spec

T = TypeVar("T")
ModelFactory = Callable[..., nn.Module]
"""`factory(name, num_classes=..., weights=...) -> nn.Module`."""


def model_factory(config: RunConfig, modules: Mapping[str, nn.Module] | None = None) -> ModelFactory:
    """`factory(name, **kwargs) -> model` for the models of `config`, whatever their source.

    A registry name goes to `models.create_model` (with SegFormer's folded-decoder fast path when `config.fast`;
    other families have none and are built as they are); a name in `config.sources` to its source
    (`segbench.models.sources`: `hf:`, `py:`, `torchscript:`, `onnx:`, or an aliased registry name); a name in
    `modules` (the Python API's in-memory modules) is that very module, under the `py:` declaration contract.
    """
    from segbench import models

    def create(name: str, **kwargs: Any) -> nn.Module:
        if modules and name in modules:
            return _from_source(name, "module", config, kwargs, module=modules[name])
        source = config.sources.get(name)
        if source is not None and parse_model_spec(source).kind != "registry":
            return _from_source(name, source, config, kwargs)
        registry = source or name
        if config.fast and registry in models.list_models_grouped().get("segformer", ()):
            kwargs["fast"] = True
        return models.create_model(registry, **kwargs)

    return create


def _from_source(
    name: str, source: str, config: RunConfig, kwargs: dict[str, Any], module: nn.Module | None = None
) -> nn.Module:
    from segbench.models import build_from_source
    from segbench.models.adapter import read_declaration_file
    from segbench.models.sources import BuildRequest, ModelSpec, read_label_map
    from segbench.models.user import load_module

    spec = ModelSpec(name, "py", "(in-memory)") if module is not None else parse_model_spec(f"{name}={source}")
    request = BuildRequest(
        spec=spec,
        num_classes=kwargs.get("num_classes", config.num_classes),
        class_names=config.classes.names if config.classes.is_named else (),
        weights=kwargs.get("weights"),
        model_args=config.model_args,
        label_map=read_label_map(config.label_map) if config.label_map else None,
        meta=read_declaration_file(config.model_meta) if config.model_meta else None,
    )
    return load_module(module, request).eval() if module is not None else build_from_source(request)


def free_device_memory() -> None:
    """Give the device's cached blocks back (a no-op where CUDA never started).

    Call it after the `except` block of an out-of-memory error, never inside: until the block ends, the error's
    traceback holds the frames of the failed call, and with them its activations, so their memory cannot go back.
    """
    gc.collect()
    torch.cuda.empty_cache()


def resolve_weights(config: RunConfig, shipped: dict[str, str] | None = None) -> dict[str, str]:
    """The checkpoint of each model of `config` that has one: `config.weights`, else what `config.weights_text`
    names, else `shipped` (a suite's own weights), else the authors' checkpoint in the local Hugging Face cache."""
    from segbench.bench.run.weights import resolve_model_weights

    found = resolve_model_weights(list(config.models), config.weights_text, shipped, config.dataset)
    return {m: w for m, w in found.items() if w is not None} | config.weights


class ModelSlot:
    """Builds models (seeded) and keeps them loaded on the device, each built once until released."""

    def __init__(self, config: RunConfig, device: torch.device, factory: ModelFactory | None = None):
        self.config, self.device = config, device
        self.factory = factory or model_factory(config)
        self.models: dict[str, nn.Module] = {}
        self.compiled: dict[str, nn.Module] = {}

    def build(self, name: str) -> nn.Module:
        torch.manual_seed(self.config.seed)
        model = self.factory(name, num_classes=self.config.num_classes, weights=self.config.weights.get(name))
        info = getattr(model, "weights_info", None)
        if (info is None or info.random) and not self.config.allow_random_weights:
            notes = "".join(f"; {note}" for note in getattr(info, "notes", ()))  # e.g. how a py: model says trained
            raise ValueError(
                f"model {name} has no trained weights (random init); give a checkpoint (--weights {name}=PATH, or "
                f"RunConfig.weights), or run it untrained for a smoke run (--allow-random-weights){notes}"
            )
        return model.eval()

    def get(self, name: str) -> nn.Module:
        if name not in self.models:
            model = self.build(name).to(self.device)
            if self.config.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self.models[name] = model
        return self.models[name]

    def for_inference(self, name: str) -> nn.Module:
        """The model for accuracy cells: `get(name)`, wrapped once in `torch.compile` when the config asks for it.
        (Efficiency cells take the plain model: FLOP counters trace it, and the latency timer compiles on its own.)"""
        model = self.get(name)
        if not self.config.compile:
            return model
        if name not in self.compiled:
            self.compiled[name] = torch.compile(model)
        return self.compiled[name]

    def release(self, keep: Sequence[str] = ()) -> None:
        """Unload every model but those named in `keep` (and give their memory back to the device)."""
        for name in [n for n in self.models if n not in keep]:
            del self.models[name]
            self.compiled.pop(name, None)
        free_device_memory()


class Residency:
    """What is loaded: every model of the run together while they fit (`together`), else one model at a time."""

    def __init__(self, slot: ModelSlot, names: Sequence[str], ctx: distributed.DistContext):
        self.slot, self.names, self.ctx = slot, tuple(names), ctx
        self.together = True
        self.ran_out_elsewhere = False  # the last load that did not fit ran out of memory on another rank only

    @property
    def beside_others(self) -> bool:
        """Whether a model runs with the run's other models loaded (so out of memory may be theirs, not its own)."""
        return self.together and len(self.names) > 1

    def load_all(self) -> None:
        """Load every model of the run; when they do not fit together, go on one model at a time."""
        if not self._fits(lambda: [self.slot.get(name) for name in self.names]):
            self.alone("while loading the models " + ", ".join(self.names) + " together")

    def with_model(self, name: str, use: Callable[[nn.Module], T]) -> T:
        """`use(model)` with `name` loaded (alone when the models do not fit together).

        Raises:
            ValueError: the model does not fit on the device even alone (on every rank).
        """
        if not self.together:
            self.slot.release(keep=(name,))
        if not self._fits(lambda: self.slot.get(name)):
            raise ValueError(
                f"out of memory while loading the model {name} on {self.ctx.device}, with no other model loaded: use "
                "a device with more memory, or leave this model out (--models)"
            )
        return use(self.slot.get(name))

    def on_this_rank(self, name: str) -> nn.Module:
        """`name` loaded on this rank only (alone when the models do not fit together), with no collective: for work
        one rank does while the others wait, such as rank 0's gallery."""
        if not self.together:
            self.slot.release(keep=(name,))
        return self.slot.get(name)

    def load(self, names: Sequence[str]) -> list[nn.Module] | CellError:
        """The models of a group, loaded (the others unloaded first when one model at a time); on every rank, a
        `CellError` (out of memory while loading) when they do not fit on some rank."""
        if not self.together:
            self.slot.release(keep=names)
        if not self._fits(lambda: [self.slot.get(name) for name in names]):
            where = " on another rank" if self.ran_out_elsewhere else ""
            return CellError(f"CUDA out of memory{where} while loading {', '.join(names)}", True, loading=True)
        return [self.slot.get(name) for name in names]

    def alone(self, what: str) -> None:
        """From here on one model at a time (each condition's images are then read, and corrupted, once per model)."""
        self.together = False
        self.slot.release()
        if self.ctx.is_main:
            print(
                f"note: out of memory on {self.ctx.device} {what}: going on one model at a time (each condition's "
                "images are then read, and corrupted, once per model)",
                file=sys.stderr,
            )

    def _fits(self, load: Callable[[], Any]) -> bool:
        """Run `load`; False on every rank (with every model unloaded) when it ran out of memory on any rank."""
        try:
            load()
            fits = True
        except Exception as exc:  # out of memory in any form (cuBLAS, cuDNN...); anything else goes on up
            if not is_out_of_memory(exc):
                raise
            fits = False
        self.ran_out_elsewhere = fits
        if distributed.any_failed(not fits, self.ctx):
            self.slot.release()
            return False
        return True
