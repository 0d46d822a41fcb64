"""The report's corruption gallery: one image under every condition, and each model's prediction, as PNG files.

Writes into a run folder::

    gallery/index.json                 what is where (read by the reporter)
    gallery/gt.png                     the ground truth in the dataset's palette
    gallery/input/<condition>.png      the image under each condition
    gallery/pred/<model>/<condition>.png
    gallery/attacked/<model>/<attack>.png   the image attacked against each model (the largest budget per attack)

Condition names are made file-safe (`pgd-linf-8/255` -> `pgd-linf-8_255`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segbench.bench.data.datasets import get_dataset
from segbench.bench.data.generate_c import write_png_atomic
from segbench.bench.data.loading import SegmentationDataset
from segbench.bench.measure.inference import predict
from segbench.bench.results.axes import Condition
from segbench.bench.results.classes import ClassTable, colours
from segbench.bench.results.io import atomic_write_json
from segbench.bench.run.config import InferenceSpec


def palette_lut(classes: ClassTable) -> np.ndarray:
    """(256, 3) uint8 colours by label value: the table's palette, black elsewhere (the ignore index included)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: classes.num_classes] = colours(classes)
    return lut


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _save(array: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png_atomic(array, path)
    return path.as_posix()


def gallery_attacks(conditions: Sequence[Condition]) -> list[Condition]:
    """The attack conditions the gallery shows: each attack (not the worst case) at its largest budget."""
    largest: dict[tuple, Condition] = {}
    for c in conditions:
        if c.is_attack and not c.attack.is_worst:
            key = (c.attack.name, c.attack.norm)
            if key not in largest or c.attack.eps > largest[key].attack.eps:
                largest[key] = c
    return list(largest.values())


def _attacked(
    run_dir: Path,
    entry: dict,
    cond: Condition,
    name: str,
    model: nn.Module,
    sample: dict,
    spec: InferenceSpec,
    seed: int,
    classes: ClassTable,
) -> None:
    """The gallery image attacked against `model` under `cond`, and the model's prediction of it, saved."""
    from segbench.bench.measure.attacks import attack

    device = torch.device(spec.device)
    image, label = sample["image"][None].to(device), sample["label"][None].to(device)
    resolved = spec.resolve(model.meta)
    attacked = attack(model, image, label, cond.attack, resolved, seed, [sample["id"]], classes.ignore_index)
    pred = predict(model, attacked, resolved, out_size=tuple(label.shape[-2:]))[0].cpu().numpy()
    shown = attacked[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    for kind, array in (("attacked", shown), ("pred", palette_lut(classes)[pred.astype(np.uint8)])):
        rel = f"gallery/{kind}/{_safe(name)}/{_safe(cond.name)}.png"
        _save(array, run_dir / rel)
        entry["inputs" if kind == "attacked" else "predictions"][name] = rel


def write_gallery(
    run_dir: str | Path,
    data_root: str | Path,
    conditions: Sequence[Condition],
    model_names: Sequence[str],
    build_model: Callable[[str], nn.Module],
    spec: InferenceSpec,
    split: str = "val",
    base_seed: int = 0,
    image_index: int = 0,
    dataset: str = "cityscapes",
) -> Path:
    """Corrupt one image under every condition and save it with each model's prediction; returns index.json's path.

    Args:
        build_model: name -> model in eval mode on `spec.device` (the run's weights).
        dataset: the dataset `data_root` holds (`bench.data.datasets.get_dataset`); the image is resized by its
            protocol as in the accuracy cells, and the label map drawn at the label's size.
    """
    run_dir = Path(run_dir)
    out = run_dir / "gallery"
    data = get_dataset(dataset, data_root)
    palette = palette_lut(data.classes)
    clean = SegmentationDataset(data, data_root, split=split, max_images=image_index + 1, base_seed=base_seed)
    image_id = clean.samples[image_index].id
    label = clean[image_index]["label"].numpy()
    index: dict = {"image_id": image_id, "ground_truth": "gallery/gt.png", "conditions": []}
    _save(palette[label], out / "gt.png")
    inputs = {}
    attacks = gallery_attacks(conditions)
    for cond in [c for c in conditions if not c.is_attack]:
        ds = SegmentationDataset(
            data, data_root, split=split, max_images=image_index + 1, condition=cond, base_seed=base_seed
        )
        inputs[cond.name] = ds[image_index]["image"]
        rel = f"gallery/input/{_safe(cond.name)}.png"
        _save(inputs[cond.name].permute(1, 2, 0).numpy(), run_dir / rel)
        index["conditions"].append({"condition": cond.name, "input": rel, "predictions": {}})
    index["attacks"] = [{"condition": c.name, "inputs": {}, "predictions": {}} for c in attacks]
    sample = clean[image_index]
    device = torch.device(spec.device)
    for name in model_names:
        model = build_model(name)
        for entry in index["conditions"]:
            image = inputs[entry["condition"]][None].to(device)
            pred = predict(model, image, spec.resolve(model.meta), out_size=tuple(label.shape))[0].cpu().numpy()
            rel = f"gallery/pred/{_safe(name)}/{_safe(entry['condition'])}.png"
            _save(palette[pred.astype(np.uint8)], run_dir / rel)
            entry["predictions"][name] = rel
        for entry, cond in zip(index["attacks"], attacks):
            _attacked(run_dir, entry, cond, name, model, sample, spec, base_seed, data.classes)
        del model
    return atomic_write_json(out / "index.json", index)
