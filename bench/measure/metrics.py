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

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from segbench.bench.measure._numba import compiled
from segbench.bench.results.classes import ClassTable
from segbench.bench.results.schema import (
    MEAN_ACC,
    MIOU,
    NUM_IMAGES,
    PIXEL_ACC,
    THROUGHPUT,
    class_metric_name,
    make_row,
    time_metric_name,
)

PAIR_BINS = 256 * 256
"""Bins of the pair histogram: `target * 256 + pred` for every pair of byte values (one more counts the rest)."""


class ConfusionCounter:
    """A confusion matrix summed over batches on the labels' device, with the range check once, at the end.

    Each pixel's pair is encoded as one integer `target * 256 + pred` and counted into 65536 bins: on the CPU by a
    numba kernel that reads the label bytes once, in parallel chunks (see `_count_pairs_cpu`); elsewhere by one
    `index_add_` on the tensors' own device, which (unlike `torch.bincount` or a range check read back per batch)
    never waits for the device, so a GPU loop runs without a host sync. Every byte value gets its own bin, so
    out-of-range ids show up in bins outside the `num_classes` block (values outside a byte in one extra bin) and
    are reported by `matrix()` instead of being miscounted; ignored pixels land in row `ignore_index` and are dropped.

    Args:
        num_classes: number of classes.
        ignore_index: ground-truth value left out of the matrix.
        device: where the counts live (that of the labels passed to `add`).
        cpu_kernel: count CPU tensors with the numba kernel (False: the device path, for tests).
    """

    def __init__(
        self, num_classes: int = 19, ignore_index: int = 255, device: str | torch.device = "cpu", cpu_kernel=True
    ):
        self.n, self.ignore_index, self.device = num_classes, ignore_index, torch.device(device)
        self.cpu_kernel = cpu_kernel
        self.general = num_classes > 256 or not 0 <= ignore_index < 256  # mask and bincount (checks each batch)
        size = num_classes * num_classes if self.general else PAIR_BINS + 1
        if self.device.type == "cpu":  # numpy's zeros: a torch fill this size would wake torch's thread pool
            self.counts = torch.from_numpy(np.zeros(size, dtype=np.int64))
        else:
            self.counts = torch.zeros(size, dtype=torch.int64, device=self.device)

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count the pairs of one batch: predicted and ground-truth train ids of the same shape, any integer dtype
        (uint8 is fastest)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != ground-truth shape {tuple(target.shape)}")
        if pred.dtype.is_floating_point or target.dtype.is_floating_point or torch.bool in (pred.dtype, target.dtype):
            raise ValueError(f"expected integer label tensors, got {pred.dtype} and {target.dtype}")
        pred = pred.reshape(-1).to(self.device)
        target = target.reshape(-1).to(self.device)
        if self.general:
            self.counts += _confusion_matrix_masked(pred, target, self.n, self.ignore_index).reshape(-1)
        elif pred.device.type == "cpu" and self.cpu_kernel:
            counts = self.counts.numpy()  # the same memory
            counts[PAIR_BINS] += _count_pairs_cpu(pred, target, counts[:PAIR_BINS])
        else:
            index = torch.add(pred.to(torch.int32), target.to(torch.int32), alpha=256)  # target * 256 + pred
            inside = None
            for values in (pred, target):  # a value outside a byte would alias into another pair's bin
                if values.dtype != torch.uint8:
                    ok = (values >= 0) & (values < 256)
                    inside = ok if inside is None else inside & ok
            if inside is not None:
                index = torch.where(inside, index, PAIR_BINS)
            self.counts.index_add_(0, index, torch.ones((), dtype=torch.int64, device=self.device).expand_as(index))

    def matrix(self) -> torch.Tensor:
        """The `(num_classes, num_classes)` int64 matrix so far (rows ground truth, columns prediction), on `device`.

        Raises:
            ValueError: a value lay outside `[0, num_classes)` (other than `ignore_index` in the ground truth).
        """
        n, ignore = self.n, self.ignore_index
        if self.general:
            return self.counts.reshape(n, n).clone()
        cpu = self.device.type == "cpu"
        counts = self.counts.numpy() if cpu else self.counts  # numpy on the CPU: no torch thread-pool wake-ups
        full, outside = counts[:PAIR_BINS].reshape(256, 256), counts[PAIR_BINS]
        cm = full[:n, :n]
        # every labelled pixel must fall in the class block, and ignored pixels need valid predictions too (one sync)
        stray = outside + full.sum() - full[ignore].sum() - cm.sum() + full[ignore, n:].sum()
        if int(stray):
            full = torch.as_tensor(full)
            bad_pred = (torch.nonzero(full[:, n:].sum(0)).flatten() + n)[:5].tolist()
            rows = full[n:].sum(1) > 0  # ground-truth values n..255
            if ignore >= n:
                rows[ignore - n] = False
            bad_target = (torch.nonzero(rows).flatten() + n)[:5].tolist()
            beyond = f", and {int(outside)} values outside [0, 256)" if int(outside) else ""
            raise ValueError(
                f"label values must lie in [0, {n}) (ground truth may also be {ignore}); found prediction values "
                f"{bad_pred} / ground truth values {bad_target} outside that range{beyond}"
            )
        return torch.from_numpy(cm.copy()) if cpu else cm.clone()


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int = 19, ignore_index: int = 255
) -> torch.Tensor:
    """Count (ground truth, prediction) pairs over all pixels (one batch of a `ConfusionCounter`).

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
    counter = ConfusionCounter(num_classes, ignore_index, pred.device)
    counter.add(pred, target)
    try:
        return counter.matrix()
    except ValueError:  # name the very values, those outside a byte too
        _raise_range(pred.reshape(-1), target.reshape(-1).to(pred.device), num_classes, ignore_index)
        raise


def _count_pairs_kernel(pred: np.ndarray, target: np.ndarray, counts: np.ndarray) -> int:
    """Adds each pixel's `target * 256 + pred` to `counts` (65536 bins); returns how many values lay outside a byte.

    Plain Python here; `bench.measure._numba.compiled` compiles it with numba (`nogil`, so chunks run in parallel
    threads).
    """
    outside = 0
    for i in range(pred.size):
        p = np.int64(pred[i])
        t = np.int64(target[i])
        if 0 <= p < 256 and 0 <= t < 256:
            counts[(t << 8) | p] += 1
        else:
            outside += 1
    return outside


_MIN_CHUNK = 1 << 19  # pixels per thread: below this, starting a thread costs more than it saves


def _count_pairs_cpu(pred: torch.Tensor, target: torch.Tensor, counts: np.ndarray) -> int:
    """Adds the pair histogram of flat CPU label tensors to `counts` (65536 bins); returns how many pixels had a
    value outside [0, 256).

    One pass over the bytes with no index array (numpy's and torch's bincount need an int32/int64 index, i.e. 4-8
    bytes written and read back per pixel): about 4x faster than `np.bincount` on one core, and split into contiguous
    chunks counted by up to `torch.get_num_threads()` threads. Pure numpy and numba: a torch op here would wake
    torch's thread pool, whose spinning threads then compete with the counting threads.
    """
    kernel = compiled(_count_pairs_kernel)
    p, t = pred.numpy(), target.numpy()
    chunks = max(1, min(torch.get_num_threads(), p.size // _MIN_CHUNK))
    if chunks == 1:
        return kernel(p, t, counts)
    bounds = np.linspace(0, p.size, chunks + 1).astype(np.int64)
    partial = np.zeros((chunks - 1, 256 * 256), dtype=np.int64)
    outside_per = [0] * chunks

    def work(k: int) -> None:
        a, b = bounds[k], bounds[k + 1]
        outside_per[k] = kernel(p[a:b], t[a:b], counts if k == 0 else partial[k - 1])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, chunks)]
    for thread in threads:
        thread.start()
    work(0)
    for thread in threads:
        thread.join()
    counts += partial.sum(0)
    return sum(outside_per)


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


def accuracy_rows(
    model: str,
    suite: str,
    condition: Any,
    cm: torch.Tensor,
    classes: ClassTable,
    timing: Mapping[str, float] | None = None,
    num_images: int | None = None,
) -> list[dict[str, Any]]:
    """Tidy rows of an accuracy cell: miou, pixel_acc, mean_acc, iou_<class> (percent), num_images, timing.

    Args:
        model: model name.
        suite: suite name.
        condition: a `bench.results.Condition` (name, corruption, severity, category); a real-world or attack
            condition's rows have no severity, an attack's has the attack's name as its corruption.
        cm: the cell's confusion matrix.
        classes: the class table scored with (its names in train-id order; as many as the matrix has rows).
        timing: seconds per phase (`model`, `data`, `metric`, `total`).
        num_images: images evaluated.
    """
    if classes.num_classes != cm.shape[0]:
        raise ValueError(f"{classes.num_classes} class names for a {cm.shape[0]}-class confusion matrix")
    place = {
        "model": model,
        "suite": suite,
        "condition": condition.name,
        "corruption": condition.corruption_column,
        "category": condition.category,
        "severity": condition.severity_column,
    }
    rows = [
        make_row(MIOU, 100 * mean_iou(cm), **place),
        make_row(PIXEL_ACC, 100 * pixel_accuracy(cm), **place),
        make_row(MEAN_ACC, 100 * mean_class_accuracy(cm), **place),
    ]
    rows += [make_row(class_metric_name(n), 100 * float(v), **place) for n, v in zip(classes.names, iou_per_class(cm))]
    if num_images is not None:
        rows.append(make_row(NUM_IMAGES, num_images, **place))
    for phase, seconds in (timing or {}).items():
        rows.append(make_row(time_metric_name(phase), seconds, **place))
    if timing and num_images and timing.get("total"):
        rows.append(make_row(THROUGHPUT, num_images / timing["total"], **place))
    return rows
