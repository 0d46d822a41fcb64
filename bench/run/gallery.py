"""The report's corruption gallery: one image under every condition, and each model's prediction, as PNG files.

Writes into a run folder::

    gallery/index.json                 what is where (read by the reporter)
    gallery/gt.png                     the ground truth in the dataset's palette
    gallery/input/<condition>.png      the image under each condition
    gallery/pred/<model>/<condition>.png
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
    for cond in conditions:
        ds = SegmentationDataset(
            data, data_root, split=split, max_images=image_index + 1, condition=cond, base_seed=base_seed
        )
        inputs[cond.name] = ds[image_index]["image"]
        _save(inputs[cond.name].permute(1, 2, 0).numpy(), out / "input" / f"{cond.name}.png")
        index["conditions"].append(
            {"condition": cond.name, "input": f"gallery/input/{cond.name}.png", "predictions": {}}
        )
    device = torch.device(spec.device)
    for name in model_names:
        model = build_model(name)
        for entry in index["conditions"]:
            image = inputs[entry["condition"]][None].to(device)
            pred = predict(model, image, spec.resolve(model.meta), out_size=tuple(label.shape))[0].cpu().numpy()
            rel = f"gallery/pred/{_safe(name)}/{entry['condition']}.png"
            _save(palette[pred.astype(np.uint8)], run_dir / rel)
            entry["predictions"][name] = rel
        del model
    return atomic_write_json(out / "index.json", index)
