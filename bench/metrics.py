"""Segmentation metrics as pure functions over a confusion matrix.

The confusion matrix has rows indexed by ground truth and columns by prediction, both in train ids
(`0 .. num_classes - 1`). Pixels whose ground truth is `ignore_index` are left out. Matrices are integer
(int64) and additive, so per-image, per-batch and per-rank matrices are simply summed.

Equality with the official Cityscapes evaluator
(`cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`, checked in `tests/test_metrics.py`):

* The official confusion matrix lives in label-id space (34 ids). Its IoU for a class is
  `tp / (tp + fp + fn)` where `fn` is the row sum minus `tp` and `fp` counts the column only over rows of
  ground-truth labels that are evaluated (pixels whose ground truth is ignored never count as false
  positives). That is exactly dropping the ignored pixels and computing IoU on the 19 x 19 matrix here.
* A class with `tp + fp + fn == 0` (absent from ground truth and never predicted) is NaN; a class absent
  from ground truth but predicted somewhere scores 0 (`tp = fn = 0`, `fp > 0`). Same here.
* The class average ("Score Average") skips NaN entries: a nan-mean over the 19 classes. Same here.
* The official script has no usable pixel accuracy (its per-image `evalPixelAccuracy` mode inverts the
  ignore mask), so `pixel_accuracy` and `mean_class_accuracy` follow the common definitions
  (mmseg's `aAcc` and `mAcc`): correct / labelled pixels, and the nan-mean of per-class recall.
"""

from __future__ import annotations

import numpy as np
import torch

# Cityscapes train-id class names, in train-id order (cityscapesscripts.helpers.labels).
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int = 19, ignore_index: int = 255
) -> torch.Tensor:
    """Count (ground truth, prediction) pairs over all pixels.

    Each pixel's pair is encoded as one integer `target * 256 + pred` and counted with one `bincount` on the
    tensors' own device (numpy's bincount for CPU tensors: same result, about 3x faster than torch's on CPU).
    Every byte value gets its own bin, so out-of-range ids show up in bins outside the `num_classes` block and are
    reported instead of being miscounted; ignored pixels land in row `ignore_index` and are dropped.

    Args:
        pred: predicted train ids, any integer dtype (uint8 is fastest), any shape.
        target: ground-truth train ids, same shape as `pred`; `ignore_index` marks unlabelled pixels.
        num_classes: number of classes.
        ignore_index: ground-truth value left out of the matrix.

    Returns:
        int64 tensor `(num_classes, num_classes)`, rows ground truth, columns prediction, on `pred`'s device.

    Raises:
        ValueError: shapes differ, or a value lies outside `[0, num_classes)` (other than `ignore_index` in
            the ground truth).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != ground-truth shape {tuple(target.shape)}")
    if pred.dtype.is_floating_point or target.dtype.is_floating_point or torch.bool in (pred.dtype, target.dtype):
        raise ValueError(f"expected integer label tensors, got {pred.dtype} and {target.dtype}")
    n = num_classes
    pred = pred.reshape(-1)
    target = target.reshape(-1).to(pred.device)
    if n > 256 or not 0 <= ignore_index < 256:
        return _confusion_matrix_masked(pred, target, n, ignore_index)
    # Ids outside a byte would alias into other bins: rule them out first (argmax output is int64).
    for values, limit in ((pred, n), (target, 256)):
        if values.dtype != torch.uint8 and values.numel():
            lo, hi = torch.aminmax(values)
            if int(lo) < 0 or int(hi) >= limit:
                _raise_range(pred, target, n, ignore_index)
    index = torch.add(pred.to(torch.int32), target.to(torch.int32), alpha=256)  # target * 256 + pred; int32 is fastest
    if index.device.type == "cpu":
        counts = torch.from_numpy(np.bincount(index.numpy(), minlength=256 * 256))
    else:
        counts = torch.bincount(index, minlength=256 * 256)
    full = counts.reshape(256, 256)
    cm = full[:n, :n]
    # every labelled pixel must fall in the class block, and ignored pixels need valid predictions too (one sync)
    stray = full.sum() - full[ignore_index].sum() - cm.sum() + full[ignore_index, n:].sum()
    if int(stray):
        _raise_range(pred, target, n, ignore_index)
    return cm.clone()


def _confusion_matrix_masked(pred: torch.Tensor, target: torch.Tensor, n: int, ignore_index: int) -> torch.Tensor:
    """General path (more than 256 classes or an ignore index outside a byte): mask, then bincount."""
    pred, target = pred.long(), target.long()
    valid = target != ignore_index
    if bool(((valid & ((target < 0) | (target >= n))) | (pred < 0) | (pred >= n)).any()):
        _raise_range(pred, target, n, ignore_index)
    return torch.bincount(target[valid] * n + pred[valid], minlength=n * n).reshape(n, n)


def _raise_range(pred: torch.Tensor, target: torch.Tensor, n: int, ignore_index: int) -> None:
    pred, target = pred.long(), target.long()
    bad_pred = torch.unique(pred[(pred < 0) | (pred >= n)])[:5].tolist()
    bad_target = torch.unique(target[(target != ignore_index) & ((target < 0) | (target >= n))])[:5].tolist()
    raise ValueError(
        f"label values must lie in [0, {n}) (ground truth may also be {ignore_index}); found prediction values "
        f"{bad_pred} / ground truth values {bad_target} outside that range"
    )


def _check_cm(cm: torch.Tensor) -> torch.Tensor:
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {tuple(cm.shape)}")
    return cm.double()


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Intersection over union per class: `tp / (tp + fp + fn)`.

    Args:
        cm: confusion matrix (rows ground truth, columns prediction).

    Returns:
        float64 tensor `(C,)`; NaN for a class absent from both ground truth and prediction, 0 for a class
        predicted but absent from ground truth (as in the official Cityscapes evaluator).
    """
    cm = _check_cm(cm)
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over the classes whose IoU is defined (nan-mean), as the official evaluator averages.

    Returns NaN when no class is defined (empty matrix).
    """
    return _nanmean(iou_per_class(cm))


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Correctly labelled pixels over all labelled (not ignored) pixels; NaN for an empty matrix."""
    cm = _check_cm(cm)
    total = cm.sum()
    return float(cm.diagonal().sum() / total) if total > 0 else float("nan")


def class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Per-class recall `tp / (tp + fn)`; NaN for a class absent from ground truth."""
    cm = _check_cm(cm)
    gt = cm.sum(1)
    return torch.where(gt > 0, cm.diagonal() / gt.clamp(min=1), torch.full_like(gt, float("nan")))


def mean_class_accuracy(cm: torch.Tensor) -> float:
    """Nan-mean of per-class recall over classes present in the ground truth (mmseg's `mAcc`)."""
    return _nanmean(class_accuracy(cm))


def _nanmean(values: torch.Tensor) -> float:
    defined = values[~torch.isnan(values)]
    return float(defined.mean()) if defined.numel() else float("nan")
