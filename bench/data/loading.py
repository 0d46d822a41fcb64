"""Any dataset's images, clean or under one corruption condition, as a torch Dataset for the accuracy loop.

The corruption is applied in `__getitem__`, inside DataLoader workers, to the image at its own size, seeded per image
by `bench.data.corruptions.condition_seed` (image id, corruption, severity, base seed), so the bytes never depend on
the worker count, order or rank. With `corrupted_root` the corrupted images are read from a generate-c folder
instead (`<root>/<corruption>/<severity>/<sample.corrupted_rel>`); its manifest must match the dataset, seed
protocol, base seed and split. The dataset's protocol then resizes the image (mmseg's keep-ratio resize); the label
keeps its size, and predictions are resized to it before scoring (`bench.measure.inference.predict(out_size=...)`).

Each item is `dict(image=uint8 tensor (3, h, w) RGB, label=uint8 tensor (H, W) class indices with the ignore index
where not scored, id=sample id)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from segbench.bench.data.corruptions import SEED_PROTOCOL, condition_seed, corrupt
from segbench.bench.data.datasets import Dataset, Sample
from segbench.bench.data.errors import DataError, DataNotFoundError
from segbench.bench.data.images import read_image
from segbench.bench.results.axes import CLEAN, Condition
from segbench.bench.results.files import CORRUPTED, DamagedFileError

MANIFEST = "manifest.json"


def read_manifest(folder: str | Path) -> dict:
    """Reads the manifest.json of a generate-c output folder, checked (`bench.results.files.CORRUPTED`).

    Raises:
        DataNotFoundError: no manifest.
        DataError: unreadable or damaged manifest.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not found; is {folder} a folder written by generate-c?")
    try:
        return CORRUPTED.read(path)
    except DamagedFileError as exc:
        raise DataError(str(exc)) from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}); regenerate the folder with generate-c") from None


def check_manifest(manifest: dict, path: str | Path, base_seed: int, split: str, dataset: str = "cityscapes") -> None:
    """Refuses a pre-generated folder whose dataset, seed protocol, base seed or split differ from the requested ones.
    A manifest written before datasets were named holds Cityscapes."""
    expected = {"seed_protocol": SEED_PROTOCOL, "base_seed": int(base_seed), "split": split}
    found = dict(manifest)
    if (found.get("dataset") or "cityscapes") != dataset:
        raise DataError(
            f"{Path(path) / MANIFEST}: generated from {found.get('dataset') or 'cityscapes'} but this run reads "
            f"{dataset}; give the --corrupted-data folder generated from {dataset} (generate-c --dataset {dataset})"
        )
    for key, want in expected.items():
        if found.get(key) != want:
            raise DataError(
                f"{Path(path) / MANIFEST}: {key} is {found.get(key)!r} but this run needs {want!r}; regenerate the "
                "folder with generate-c or corrupt on the fly"
            )


def item(image: np.ndarray, label: np.ndarray, sample_id: str) -> dict:
    """A loader's item: `dict(image=uint8 tensor (3, H, W) RGB, label=uint8 tensor (H, W), id=sample_id)`."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        "label": torch.from_numpy(label),
        "id": sample_id,
    }


def label_size_error(label_path: Path, image: np.ndarray, label: np.ndarray) -> DataError:
    """An image and its label of different sizes: one line naming the label file."""
    return DataError(
        f"{label_path}: label is {label.shape[0]}x{label.shape[1]} px but the image is "
        f"{image.shape[0]}x{image.shape[1]} px"
    )


def corrupted_path(corrupted_root: str | Path, condition: Condition, sample: Sample) -> Path:
    """`<corrupted_root>/<corruption>/<severity>/<sample.corrupted_rel>`: where generate-c writes the sample."""
    return Path(corrupted_root) / str(condition.corruption) / str(condition.severity) / sample.corrupted_rel


class SegmentationDataset(torch.utils.data.Dataset):
    """The first `max_images` samples of `dataset`'s `split` under `condition` (clean or a corruption).

    Args:
        dataset: the dataset value (`bench.data.datasets.get_dataset`).
        root: its root (None: its environment variable).
        split: the split to read ("val").
        max_images: the first N samples in the reader's order (None or 0: all).
        condition: clean or a corruption (real-world conditions are datasets of their own).
        base_seed: the seed protocol's base seed.
        corrupted_root: a generate-c folder to read corrupted images from, instead of corrupting on the fly.
        resize: apply the dataset's protocol resize (False: the image at its own size).
    """

    def __init__(
        self,
        dataset: Dataset,
        root: str | Path | None = None,
        split: str = "val",
        max_images: int | None = None,
        condition: Condition | str = CLEAN,
        base_seed: int = 0,
        corrupted_root: str | Path | None = None,
        resize: bool = True,
    ) -> None:
        self.dataset = dataset
        self.root = dataset.resolve_root(root)
        self.split = split
        self.condition = Condition.parse(condition) if isinstance(condition, str) else condition
        if self.condition.is_real:
            raise ValueError(f"{self.condition.name}: a real-world condition reads its own dataset")
        self.base_seed = int(base_seed)
        self.resize = resize
        self.samples = dataset.samples(self.root, split, max_images)
        self.corrupted_root = Path(corrupted_root) if corrupted_root is not None else None
        if self.corrupted_root is not None and not self.condition.is_clean:
            manifest = read_manifest(self.corrupted_root)
            check_manifest(manifest, self.corrupted_root, self.base_seed, split, dataset.name)
            for sample in self.samples:
                path = corrupted_path(self.corrupted_root, self.condition, sample)
                if not path.is_file():
                    raise DataNotFoundError(
                        f"{path}: not found in the pre-generated folder; run generate-c for {self.condition.name}"
                    )

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> np.ndarray:
        """The sample's image under the condition, at its own size (before the protocol's resize)."""
        sample, condition = self.samples[index], self.condition
        if condition.is_clean:
            return read_image(sample.image, self.dataset.grayscale)
        if self.corrupted_root is not None:
            return read_image(corrupted_path(self.corrupted_root, condition, sample))
        seed = condition_seed(sample.id, condition.corruption, condition.severity, self.base_seed)
        return corrupt(read_image(sample.image, self.dataset.grayscale), condition.corruption, condition.severity, seed)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        label = self.dataset.read_label(sample)
        image = self.image(index)
        if image.shape[:2] != label.shape:
            raise self._size_error(sample, image, label)
        if self.resize:
            image = self.dataset.protocol.resize(image)
        return item(image, label, sample.id)

    def _size_error(self, sample: Sample, image: np.ndarray, label: np.ndarray) -> DataError:
        """An image and label of different sizes: a pre-generated image is named as the culprit (a folder generated
        from other images), else the label."""
        got, want = f"{image.shape[0]}x{image.shape[1]} px", f"{label.shape[0]}x{label.shape[1]} px"
        if self.corrupted_root is not None and not self.condition.is_clean:
            path = corrupted_path(self.corrupted_root, self.condition, sample)
            return DataError(
                f"{path}: pre-generated image of {got}, but its label {sample.label.name} is {want}: the "
                f"--corrupted-data folder {self.corrupted_root} was generated from other images; generate it again "
                "from this --data (generate-c), or leave --corrupted-data out to corrupt on the fly"
            )
        return label_size_error(sample.label, image, label)
