"""Metrics equal the official Cityscapes evaluator on the same predictions."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segbench.bench.measure.metrics import (
    class_accuracy,
    confusion_matrix,
    iou_per_class,
    mean_class_accuracy,
    mean_iou,
    pixel_accuracy,
)
from segbench.bench.results.classes import CITYSCAPES

cs_eval = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
from cityscapesscripts.helpers.labels import labels as CS_LABELS  # noqa: E402

TRAIN_TO_LABEL_ID = np.zeros(256, dtype=np.uint8)  # train id 255 -> label id 0 ("unlabeled", ignored)
for _label in CS_LABELS:
    if 0 <= _label.trainId < 255:
        TRAIN_TO_LABEL_ID[_label.trainId] = _label.id


def official_scores(preds: list[np.ndarray], gts: list[np.ndarray], folder: Path) -> dict:
    """Run the official evaluator on train-id arrays, written as label-id PNGs the way it expects."""
    pred_files, gt_files = [], []
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        stem = f"testcity_000000_{i:06d}"
        pred_files.append(str(folder / f"{stem}_pred.png"))
        gt_files.append(str(folder / f"{stem}_gtFine_labelIds.png"))
        Image.fromarray(TRAIN_TO_LABEL_ID[pred]).save(pred_files[-1])
        Image.fromarray(TRAIN_TO_LABEL_ID[gt]).save(gt_files[-1])
    args = copy.copy(cs_eval.args)
    args.evalInstLevelScore = False  # needs instanceIds files; nIoU is not what we compare
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    return cs_eval.evaluateImgLists(pred_files, gt_files, args)


def random_pair(rng: np.random.Generator, shape=(48, 96), absent=(), noise=0.3) -> tuple[np.ndarray, np.ndarray]:
    present = [c for c in range(19) if c not in absent]
    gt = rng.choice(present, size=shape).astype(np.uint8)
    gt[rng.random(shape) < 0.1] = 255
    pred = gt.copy()
    flip = rng.random(shape) < noise
    pred[flip] = rng.integers(0, 19, size=int(flip.sum()))
    pred[pred == 255] = rng.integers(0, 19, size=int((pred == 255).sum()))
    return pred, gt


def ours(preds, gts) -> torch.Tensor:
    return sum(confusion_matrix(torch.from_numpy(p), torch.from_numpy(g)) for p, g in zip(preds, gts))


def assert_equal_to_official(preds, gts, tmp_path):
    official = official_scores(preds, gts, tmp_path)
    cm = ours(preds, gts)
    iou = iou_per_class(cm)
    for c, name in enumerate(CITYSCAPES.names):
        expected = official["classScores"][name]
        if math.isnan(expected):
            assert math.isnan(iou[c]), name
        else:
            assert float(iou[c]) == pytest.approx(expected, rel=1e-12, abs=1e-15), name
    assert mean_iou(cm) == pytest.approx(official["averageScoreClasses"], rel=1e-12)
    # the official matrix in label-id space reduces to ours on the evaluated ids (ignored GT rows dropped)
    official_cm = np.array(official["confMatrix"], dtype=np.int64)
    ids = TRAIN_TO_LABEL_ID[:19].astype(int)
    assert np.array_equal(official_cm[np.ix_(ids, ids)], cm.numpy())
    return official, iou


def test_equals_official_all_classes_present(tmp_path):
    rng = np.random.default_rng(0)
    pairs = [random_pair(rng) for _ in range(4)]
    _, iou = assert_equal_to_official([p for p, _ in pairs], [g for _, g in pairs], tmp_path)
    assert not torch.isnan(iou).any()


def test_equals_official_with_absent_classes(tmp_path):
    rng = np.random.default_rng(1)
    absent = (3, 12, 16, 17)
    pairs = [random_pair(rng, absent=absent) for _ in range(3)]
    preds = [p for p, _ in pairs]
    for p in preds:  # classes 16 and 17: never predicted either -> NaN; 3 and 12: predicted -> IoU 0
        p[np.isin(p, (16, 17))] = 0
    official, iou = assert_equal_to_official(preds, [g for _, g in pairs], tmp_path)
    assert math.isnan(iou[16]) and math.isnan(iou[17])
    assert iou[3] == 0 and iou[12] == 0
    assert math.isnan(official["classScores"]["train"]) and official["classScores"]["wall"] == 0


def test_confusion_matrix_hand_example():
    target = torch.tensor([[0, 0, 1], [2, 255, 1]])
    pred = torch.tensor([[0, 1, 1], [2, 2, 0]])
    cm = confusion_matrix(pred, target, num_classes=4)
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert cm.dtype == torch.int64 and torch.equal(cm, expected)
    iou = iou_per_class(cm)
    assert iou[:3].tolist() == pytest.approx([1 / 3, 1 / 3, 1.0]) and math.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    assert pixel_accuracy(cm) == pytest.approx(3 / 5)
    assert class_accuracy(cm)[:3].tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert mean_class_accuracy(cm) == pytest.approx(2 / 3)


def test_confusion_matrix_is_additive_and_on_device():
    rng = np.random.default_rng(2)
    p1, g1 = random_pair(rng)
    p2, g2 = random_pair(rng)
    both = confusion_matrix(torch.from_numpy(np.stack([p1, p2])), torch.from_numpy(np.stack([g1, g2])))
    assert torch.equal(both, ours([p1, p2], [g1, g2]))
    assert both.sum() == int((g1 != 255).sum() + (g2 != 255).sum())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_confusion_matrix_dtypes_agree_with_masked_path(dtype):
    from segbench.bench.measure.metrics import _confusion_matrix_masked

    rng = np.random.default_rng(3)
    p, g = random_pair(rng)
    pred, target = torch.from_numpy(p).to(dtype), torch.from_numpy(g).to(dtype)
    cm = confusion_matrix(pred, target)
    assert torch.equal(cm, _confusion_matrix_masked(pred.reshape(-1), target.reshape(-1), 19, 255))
    # an ignore index outside a byte takes the masked path and gives the same counts
    target_300 = target.long().masked_fill(target.long() == 255, 300)
    assert torch.equal(confusion_matrix(pred, target_300, ignore_index=300), cm)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 19\)"):
        confusion_matrix(torch.tensor([19]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[0, 19\)"):
        confusion_matrix(torch.tensor([0]), torch.tensor([40]))
    with pytest.raises(ValueError, match=r"\[261\]"):  # would alias to (1, 5) with a 256-wide encoding
        confusion_matrix(torch.tensor([261, 0]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"\[19\]"):  # a bad prediction on an ignored pixel is still bad
        confusion_matrix(torch.tensor([19], dtype=torch.uint8), torch.tensor([255], dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[-1\]"):
        confusion_matrix(torch.tensor([-1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="square"):
        iou_per_class(torch.zeros(3, 4))


def test_empty_matrix_is_nan():
    cm = torch.zeros(19, 19, dtype=torch.long)
    assert math.isnan(mean_iou(cm)) and math.isnan(pixel_accuracy(cm)) and math.isnan(mean_class_accuracy(cm))


def test_cpu_pair_count_chunks_and_layouts_agree(monkeypatch):
    import segbench.bench.measure.metrics as metrics

    rng = np.random.default_rng(4)
    p, g = random_pair(rng)
    pred, target = torch.from_numpy(p), torch.from_numpy(g)
    reference = _confusion_matrix_reference(p, g)
    monkeypatch.setattr(metrics, "_MIN_CHUNK", 1000)  # several threads, each counting its own slice
    with torch.inference_mode():
        threads = torch.get_num_threads()
        torch.set_num_threads(3)
        try:
            assert torch.equal(confusion_matrix(pred, target), reference)
            # non-contiguous views and a wider dtype take the same kernel
            assert torch.equal(confusion_matrix(pred.t(), target.t()), reference)
            assert torch.equal(
                confusion_matrix(pred.long()[:, ::2], target[:, ::2]), _confusion_matrix_reference(p[:, ::2], g[:, ::2])
            )
            with pytest.raises(ValueError, match=r"\[8589934592\]"):  # outside a byte in the last chunk only
                bad = target.long().reshape(-1).clone()
                bad[-1] = 2**33
                confusion_matrix(pred.reshape(-1), bad)
        finally:
            torch.set_num_threads(threads)


def _confusion_matrix_reference(p: np.ndarray, g: np.ndarray) -> torch.Tensor:
    keep = g != 255
    return torch.from_numpy(np.bincount(g[keep].astype(np.int64) * 19 + p[keep], minlength=361).reshape(19, 19))


@pytest.mark.parametrize("cpu_kernel", [True, False])  # False: the device path (index_add_), run on the CPU here
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_confusion_counter_sums_batches_and_checks_once_at_the_end(cpu_kernel, dtype):
    from segbench.bench.measure.metrics import ConfusionCounter

    rng = np.random.default_rng(5)
    pairs = [random_pair(rng) for _ in range(3)]
    counter = ConfusionCounter(19, cpu_kernel=cpu_kernel)
    for p, g in pairs:
        counter.add(torch.from_numpy(p).to(dtype), torch.from_numpy(g).to(dtype))
    expected = sum(_confusion_matrix_reference(p, g) for p, g in pairs)
    assert torch.equal(counter.matrix(), expected)

    # bad values are counted, not raised, until matrix(): 19 predicted on an ignored pixel, 40 as ground truth,
    # and (wider dtypes) values outside a byte, which must not alias into another pair's bin
    counter.add(torch.tensor([19, 0, 3], dtype=dtype), torch.tensor([255, 40, 3], dtype=dtype))
    if dtype == torch.int64:
        counter.add(torch.tensor([261, -1]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"prediction values \[19\] / ground truth values \[40\]") as info:
        counter.matrix()
    assert ("2 values outside [0, 256)" in str(info.value)) == (dtype == torch.int64)
    counts = counter.counts[:-1].reshape(256, 256)
    assert counts[1, 5] == expected[1, 5] and counts[1, 255] == 0  # (0, 261) and (2, -1) would alias there
    assert counts[3, 3] == expected[3, 3] + 1


def test_confusion_counter_with_many_classes_takes_the_masked_path():
    from segbench.bench.measure.metrics import ConfusionCounter

    counter = ConfusionCounter(300, ignore_index=299)
    counter.add(torch.tensor([0, 280, 5]), torch.tensor([0, 280, 299]))
    cm = counter.matrix()
    assert cm.shape == (300, 300) and cm[0, 0] == 1 and cm[280, 280] == 1 and cm.sum() == 2
