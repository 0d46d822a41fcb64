"""Reading checkpoints safely and loading them strictly, for every model family.

Formats read: safetensors, and torch pickles through `torch.load(..., weights_only=True)` only (never arbitrary
unpickling). A checkpoint may be a file, a Hugging Face model folder (`config.json` + `model.safetensors` or
`pytorch_model.bin`), or a Hugging Face hub id that is already in the local cache: nothing here reaches the network.

Family-specific key conversion lives beside each model (a pure `state_dict -> state_dict` function); this module
only finds, reads, hashes and strictly loads.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read, converted or loaded strictly."""


@dataclass
class ResolvedWeights:
    """A weights file found on disk, with the Hugging Face `config.json` beside it when there is one."""

    file: Path
    config: dict | None
    source: str  # what the user passed


HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def hf_cache_dir() -> Path:
    """The local Hugging Face hub cache, following the hub library's environment variables."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub"


def hub_snapshot(repo_id: str) -> Path | None:
    repo = hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
    return snaps[-1] if snaps else None


def resolve_weights(weights: str | os.PathLike) -> ResolvedWeights:
    """Find a checkpoint: a file, a Hugging Face model folder, or a hub id in the local cache (offline).

    Raises:
        CheckpointError: nothing usable there; the message says where it looked and how to supply the file.
    """
    source = str(weights)
    path = Path(weights).expanduser()
    if path.is_file():
        config = path.parent / "config.json"
        return ResolvedWeights(path, _read_json(config) if config.is_file() else None, source)
    folder = path if path.is_dir() else None
    if folder is None and source.count("/") == 1 and not source.startswith((".", "/")):
        folder = hub_snapshot(source)
        if folder is None:
            raise CheckpointError(
                f"weights {source!r}: not a file or folder, and not in the local Hugging Face cache "
                f"({hf_cache_dir()}); segbench never downloads: fetch it yourself "
                f"(`huggingface-cli download {source}`) or pass a local path"
            )
    if folder is None:
        raise CheckpointError(f"weights {source!r}: no such file or folder")
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            config = folder / "config.json"
            return ResolvedWeights(folder / name, _read_json(config) if config.is_file() else None, source)
    raise CheckpointError(f"weights {source!r}: folder {folder} holds none of {', '.join(HF_WEIGHT_FILES)}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable JSON ({e})") from None


def read_state_dict(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a `weights_only` torch file, unwrapping `state_dict`/`model` wrappers."""
    file = Path(file)
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(file), device="cpu")
        else:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure becomes one clear line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{file}: cannot read it as safetensors or a weights-only torch checkpoint ({first[:200]})"
        ) from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{file}: not a state dict (a mapping of names to tensors)")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DistributedDataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def checkpoint_metadata(file: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (empty for other formats or unreadable files)."""
    if not str(file).endswith(".safetensors") or not Path(file).is_file():
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 - metadata is informational
        return {}


def sha256_file(file: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _few(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], what: str, ignore_missing: str = "") -> None:
    """Load `state_dict` into `model`, failing on any missing, unexpected or wrongly shaped key.

    Args:
        what: names the checkpoint in error messages.
        ignore_missing: a key prefix that may be missing (an encoder-only checkpoint leaves the decoder as is).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not (ignore_missing and k.startswith(ignore_missing))]
    unexpected = [k for k in state_dict if k not in own]
    if unexpected:
        raise CheckpointError(f"{what}: unexpected keys {_few(unexpected)}")
    if missing:
        raise CheckpointError(f"{what}: missing keys {_few(missing)}")
    for k, v in state_dict.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"{what}: key {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}"
            )
    model.load_state_dict(state_dict, strict=not ignore_missing)


def save_checkpoint(model: nn.Module, file: str | os.PathLike) -> Path:
    """Save a whole model's state dict as safetensors, atomically (temporary name, then rename)."""
    from safetensors.torch import save_file

    file = Path(file)
    tmp = file.with_name(file.name + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata={"format": "segbench"})
    os.replace(tmp, file)
    return file
