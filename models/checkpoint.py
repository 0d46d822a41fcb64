"""Reading checkpoints safely and loading them strictly, for every model family.

Formats read: safetensors, and torch pickles through `torch.load(..., weights_only=True)` only (never arbitrary
unpickling). A checkpoint may be a file, a Hugging Face model folder (`config.json` + `model.safetensors` or
`pytorch_model.bin`), or a Hugging Face hub id (`org/name`, `org/name@revision`) that is already in the local cache,
looked up through `huggingface_hub` itself with local files only: nothing here reaches the network.

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
    """The local Hugging Face hub cache, found the way `huggingface_hub` finds it, from the environment as it is now.

    `huggingface_hub` reads its variables once, when it is imported: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`,
    else `HF_HOME`/hub, else `XDG_CACHE_HOME`/huggingface/hub, else ~/.cache/huggingface/hub, with `~` and `$VAR`
    expanded. To follow a variable set after that import (by a launcher or a test) without hand-copying those rules,
    this runs a private copy of the installed `huggingface_hub.constants` (module-level reads of the environment,
    nothing else) and takes its `HF_HUB_CACHE`; the imported module is left as it is, so a value patched into it in
    this process is not seen. Should that copy fail, the imported `huggingface_hub.constants.HF_HUB_CACHE` is used.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("huggingface_hub.constants")
        fresh = importlib.util.module_from_spec(spec)  # not entered in sys.modules
        spec.loader.exec_module(fresh)
        return Path(fresh.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001 - an unusual install: the hub's own import-time value
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)


def split_hub_id(source: str) -> tuple[str, str | None] | None:
    """`org/name` or `org/name@revision` as (repo id, revision or None); None when `source` is no hub id.

    The revision is a branch, a tag or a full commit hash, as `huggingface_hub` takes them (it may hold `/`, as
    `refs/pr/1` does). Only the repo id is checked here; whether the revision is cached is for `hub_snapshot` to say.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id, at, revision = source.partition("@")
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")) or (at and not revision.strip()):
        return None
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return None
    return repo_id, revision.strip() or None


def hub_snapshot(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The snapshot folder of `repo_id` at `revision` in the local Hugging Face cache, or None; never downloads.

    Looked up by `huggingface_hub.snapshot_download(..., local_files_only=True)`, so exactly as the hub does offline:
    a branch or tag through `refs/<revision>` (`main` when `revision` is None), a 40-hex commit hash directly, and
    a snapshot the hub knows to be incomplete counts as missing.

    Args:
        repo_id: ``org/name``.
        revision: a branch, tag or commit hash; None for the default branch.
        cache_dir: the hub cache; None for `hf_cache_dir()`.
    """
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir or hf_cache_dir(), local_files_only=True
        )
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError, an incomplete snapshot), or a bad id
        return None
    return Path(folder)


def _cached_revisions(repo_id: str, cache_dir: Path) -> str:
    """What the cache holds of `repo_id`, for an error message: ``main, v1 -> <commit>; <commit>`` (or "")."""
    from huggingface_hub import scan_cache_dir

    try:
        repos = [r for r in scan_cache_dir(cache_dir).repos if r.repo_id == repo_id and r.repo_type == "model"]
    except Exception:  # noqa: BLE001 - only a hint: no cache folder, or one the hub cannot read
        return ""
    shown = []
    for rev in sorted((rev for repo in repos for rev in repo.revisions), key=lambda r: (not r.refs, r.commit_hash)):
        shown.append(f"{', '.join(sorted(rev.refs))} -> {rev.commit_hash}" if rev.refs else rev.commit_hash)
    return "; ".join(shown)


def _hub_error(source: str, repo_id: str, revision: str | None) -> CheckpointError:
    cache = hf_cache_dir()
    where = f"{repo_id} at revision {revision!r}" if revision else repo_id
    cached = _cached_revisions(repo_id, cache)
    held = f" (it holds {repo_id} at: {cached}; pick one with {repo_id}@REVISION)" if cached else ""
    fetch = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    return CheckpointError(
        f"weights {source!r}: not a file or folder, and {where} is not in the local Hugging Face cache "
        f"({cache}){held}; segbench never downloads: on a machine with network run `{fetch}` (`huggingface-cli "
        "download` with an older huggingface_hub) and bring that cache here (HF_HUB_CACHE or HF_HOME), or pass a "
        "local folder or file"
    )


def resolve_weights(weights: str | os.PathLike) -> ResolvedWeights:
    """Find a checkpoint: a file, a Hugging Face model folder, or a hub id in the local cache (offline).

    A hub id is ``org/name`` (the default branch) or ``org/name@revision`` (a branch, tag or commit hash that the
    local cache holds), looked up as `huggingface_hub` does (`hub_snapshot`).

    Raises:
        CheckpointError: nothing usable there; the message says where it looked and how to supply the file.
    """
    source = str(weights)
    path = Path(weights).expanduser()
    if path.is_file():
        config = path.parent / "config.json"
        return ResolvedWeights(path, _read_json(config) if config.is_file() else None, source)
    folder = path if path.is_dir() else None
    hub = split_hub_id(source) if folder is None else None
    if hub is not None:
        folder = hub_snapshot(*hub)
        if folder is None:
            raise _hub_error(source, *hub)
    if folder is None:
        raise CheckpointError(f"weights {source!r}: no such file or folder")
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            config = folder / "config.json"
            return ResolvedWeights(folder / name, _read_json(config) if config.is_file() else None, source)
    raise CheckpointError(f"weights {source!r}: folder {folder} holds none of {', '.join(HF_WEIGHT_FILES)}")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable JSON ({e}); restore it from the checkpoint's files") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a config.json (not a JSON object); restore it from the checkpoint's files")
    return data


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


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict: each entry's name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _few(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


KNOWN_LABEL_SPACES: dict[int, tuple[str, str]] = {
    19: ("Cityscapes", "cityscapes"),
    21: ("Pascal VOC", "voc"),
    150: ("ADE20K", "ade20k"),
    171: ("COCO-Stuff", "coco-stuff"),
}
"""Class count -> (dataset, suite) of the label spaces public checkpoints are trained on: where a checkpoint of that
many classes most likely comes from, and the suite that evaluates it."""


def class_count_message(
    source: str, ckpt_classes: int, run_classes: int, dataset: str | None = None, alternative: str = ""
) -> str:
    """One line for a checkpoint whose classifier has another class count than the run's dataset.

    E.g. ``x.pth: a 150-class checkpoint (ADE20K), but the run's dataset has 19 classes (cityscapes); run it on
    --suite ade20k (in Python: num_classes=150)``.

    Args:
        source: the checkpoint as the user named it.
        ckpt_classes: rows of the checkpoint's classifier.
        run_classes: classes of the run's dataset (the model's `num_classes`).
        dataset: the run's dataset name, when known; else guessed from `run_classes` (`KNOWN_LABEL_SPACES`).
        alternative: another way out, for the Python hint (", or reinit_classifier=True ...").
    """
    known = KNOWN_LABEL_SPACES.get(ckpt_classes)
    ckpt = f"a {ckpt_classes}-class checkpoint" + (f" ({known[0]})" if known else "")
    run_name = dataset or KNOWN_LABEL_SPACES.get(run_classes, ("", ""))[1]
    run = f"the run's dataset has {run_classes} classes" + (f" ({run_name})" if run_name else "")
    where = f"run it on --suite {known[1]}" if known else f"run it on a dataset of {ckpt_classes} classes"
    return f"{source}: {ckpt}, but {run}; {where} (in Python: num_classes={ckpt_classes}{alternative})"


def check_class_count(
    state_dict: dict[str, torch.Tensor], key: str, model: nn.Module, source: str, dataset: str | None = None
) -> None:
    """Refuse a checkpoint whose classifier `key` has another class count than `model` (`class_count_message`).

    The count is the classifier's first dimension (its output rows); a state dict without `key` passes (an
    encoder-only checkpoint, or one that `load_strict` will name as incomplete).
    """
    own = model.state_dict().get(key)
    theirs = state_dict.get(key)
    if own is None or theirs is None or theirs.ndim == 0 or theirs.shape[0] == own.shape[0]:
        return
    raise CheckpointError(class_count_message(source, int(theirs.shape[0]), int(own.shape[0]), dataset))


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
