"""Shared pieces of the dataset readers' tests: mIoU through the benchmark's pieces and by plain numpy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from segbench.bench.data.datasets import Dataset
from segbench.bench.data.loading import SegmentationDataset
from segbench.bench.measure.metrics import confusion_matrix, mean_iou


def random_prediction(shape: tuple[int, int], index: int, num_classes: int) -> np.ndarray:
    """The fixed random prediction of image `index` (uniform over the classes)."""
    return np.random.default_rng([2024, index]).integers(0, num_classes, size=shape).astype(np.uint8)


def benchmark_miou(dataset: Dataset, root: Path) -> float:
    """mIoU of `random_prediction` against the labels `SegmentationDataset` gives, summed by the benchmark's
    confusion matrix (predictions at the label's size)."""
    items = SegmentationDataset(dataset, root, resize=False)
    n, ignore = dataset.classes.num_classes, dataset.classes.ignore_index
    cm = torch.zeros((n, n), dtype=torch.int64)
    for index in range(len(items)):
        label = items[index]["label"]
        pred = torch.from_numpy(random_prediction(tuple(label.shape), index, n))
        cm += confusion_matrix(pred, label, n, ignore)
    return mean_iou(cm)


def numpy_miou(labels: list[np.ndarray], num_classes: int, ignore: int = 255) -> float:
    """mIoU of `random_prediction` against `labels` (train ids), per class from pixel masks: the mean over the classes
    present in the ground truth or the prediction of |gt & pred| / |gt | pred|, ignored pixels left out."""
    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    for index, label in enumerate(labels):
        pred = random_prediction(label.shape, index, num_classes)
        scored = label != ignore
        for c in range(num_classes):
            gt_c, pred_c = (label == c) & scored, (pred == c) & scored
            inter[c] += np.count_nonzero(gt_c & pred_c)
            union[c] += np.count_nonzero(gt_c | pred_c)
    present = union > 0
    return float(np.mean(inter[present] / union[present]))


@pytest.fixture()
def miou_pair() -> Callable[[Dataset, Path, list[np.ndarray]], tuple[float, float]]:
    """`miou_pair(dataset, root, labels)` -> (the benchmark's mIoU, numpy's mIoU from `labels`)."""

    def pair(dataset: Dataset, root: Path, labels: list[np.ndarray]) -> tuple[float, float]:
        return benchmark_miou(dataset, root), numpy_miou(labels, dataset.classes.num_classes)

    return pair
