"""Which checkpoint each model of a run gets: explicit `model=path` pairs, a folder, a suite's shipped demo weights,
or the local Hugging Face cache. Offline only: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from segbench.models.checkpoint import HF_WEIGHT_FILES, hub_snapshot

# The authors' checkpoints on the Hugging Face hub, by dataset, used when they are already in the local cache.
HF_CITYSCAPES_IDS = {f"segformer-b{i}": f"nvidia/segformer-b{i}-finetuned-cityscapes-1024-1024" for i in range(6)}
HF_ADE20K_IDS = {
    **{f"segformer-b{i}": f"nvidia/segformer-b{i}-finetuned-ade-512-512" for i in range(5)},
    "segformer-b5": "nvidia/segformer-b5-finetuned-ade-640-640",  # B5's ADE20K release is the 640x640 one
}
HF_IDS = {"cityscapes": HF_CITYSCAPES_IDS, "ade20k": HF_ADE20K_IDS}
"""The authors' checkpoints by the run's dataset (the real-world datasets use Cityscapes-trained models)."""
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class WeightsError(ValueError):
    """A --weights argument that cannot be used."""


def parse_weights_arg(text: str | None, models: list[str]) -> tuple[dict[str, str], Path | None]:
    """Split `--weights` into explicit `model=path` pairs and an optional folder.

    Accepted: `FOLDER`, `model=path[,model=path...]`, or both (`FOLDER,model=path`). A path may also be a Hugging Face
    hub id in the local cache, `org/name` or `org/name@revision` (a branch, tag or commit hash), resolved when the
    model is built (`models.checkpoint.resolve_weights`).
    """
    pairs: dict[str, str] = {}
    folder = None
    if not text:
        return pairs, folder
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if "=" in part:
            name, _, path = part.partition("=")
            if name not in models:
                raise WeightsError(f"--weights names model {name!r}, which is not in --models ({', '.join(models)})")
            pairs[name] = path
        else:
            if folder is not None:
                raise WeightsError(f"--weights lists two folders ({folder}, {part}); give one, plus model=path pairs")
            folder = Path(part).expanduser()
            if not folder.is_dir():
                raise WeightsError(f"--weights folder {folder} does not exist; pass a folder or model=path pairs")
    return pairs, folder


def find_in_folder(folder: Path, model: str) -> str | None:
    """`<folder>/<model>.{safetensors,pth,pt,bin}` or a Hugging Face model folder `<folder>/<model>/`."""
    for suffix in CHECKPOINT_SUFFIXES:
        if (folder / f"{model}{suffix}").is_file():
            return str(folder / f"{model}{suffix}")
    sub = folder / model
    if sub.is_dir() and any((sub / f).is_file() for f in HF_WEIGHT_FILES):
        return str(sub)
    return None


def resolve_model_weights(
    models: list[str],
    weights_arg: str | None = None,
    suite_weights: dict[str, str] | None = None,
    dataset: str = "cityscapes",
) -> dict[str, str | None]:
    """The checkpoint for each model (None: none found, the model would run at random init).

    Order: an explicit `model=path`, then the `--weights` folder, then the suite's own weights (the demo's synthetic
    checkpoints), then the authors' checkpoint for the run's `dataset` in the local Hugging Face cache (`HF_IDS`; its
    default branch, looked up through `huggingface_hub` with local files only).
    """
    hub = HF_IDS.get(dataset, {})
    pairs, folder = parse_weights_arg(weights_arg, models)
    out: dict[str, str | None] = {}
    for model in models:
        found = pairs.get(model)
        if found is None and folder is not None:
            found = find_in_folder(folder, model)
        if found is None and suite_weights and model in suite_weights:
            found = suite_weights[model]
        if found is None and model in hub and hub_snapshot(hub[model]) is not None:
            found = hub[model]
        out[model] = found
    return out
