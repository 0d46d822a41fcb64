"""Confusion-matrix metrics vs the official Cityscapes evaluator: same numbers, how much faster.

    python -m benchmarks.bench_metrics [--pairs 20] [--size 1024 2048] [--device cpu] [--threads N]

Both sides see the same 20 prediction / ground-truth pairs at 1024x2048 (random labels with 10% ignored pixels and
30% of predictions wrong). The official evaluator (`cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`)
reads label-id PNGs; its time is given with and without decoding them (decoding measured separately with PIL, as the
evaluator does). Ours runs on label tensors already in memory (in a run, the DataLoader has decoded them), and is
timed for the confusion matrix of every pair plus per-class IoU and mIoU.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from segbench.bench.measure.metrics import confusion_matrix, iou_per_class, mean_iou
from segbench.bench.results.classes import CITYSCAPES


def make_pairs(n: int, size: tuple[int, int], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        gt = rng.integers(0, 19, size=size, dtype=np.uint8)
        gt[rng.random(size) < 0.1] = 255
        pred = np.where(gt == 255, 0, gt).astype(np.uint8)
        wrong = rng.random(size) < 0.3
        pred[wrong] = rng.integers(0, 19, size=int(wrong.sum()), dtype=np.uint8)
        pairs.append((pred, gt))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 2048), metavar=("H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (the official code uses one)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each side; best and median are shown")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cs_eval
    from cityscapesscripts.helpers.labels import labels

    to_label_id = np.zeros(256, dtype=np.uint8)
    for label in labels:
        if 0 <= label.trainId < 255:
            to_label_id[label.trainId] = label.id

    pairs = make_pairs(args.pairs, tuple(args.size))
    with tempfile.TemporaryDirectory() as tmp:
        preds, gts = [], []
        for i, (pred, gt) in enumerate(pairs):
            preds.append(f"{tmp}/city_000000_{i:06d}_pred.png")
            gts.append(f"{tmp}/city_000000_{i:06d}_gtFine_labelIds.png")
            Image.fromarray(to_label_id[pred]).save(preds[-1])
            Image.fromarray(to_label_id[gt]).save(gts[-1])
        cs_args = copy.copy(cs_eval.args)
        cs_args.evalInstLevelScore, cs_args.JSONOutput, cs_args.quiet = False, False, True
        official_times, decode_times = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            official = cs_eval.evaluateImgLists(preds, gts, cs_args)
            official_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            for p, g in zip(preds, gts):
                np.array(Image.open(p)), np.array(Image.open(g))
            decode_times.append(time.perf_counter() - t)

    device = torch.device(args.device)
    tensors = [(torch.from_numpy(p).to(device), torch.from_numpy(g).to(device)) for p, g in pairs]
    confusion_matrix(*tensors[0])  # warm-up (allocator, CUDA context)
    ours_times = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        cm = torch.zeros(19, 19, dtype=torch.int64, device=device)
        for p, g in tensors:
            cm += confusion_matrix(p, g)
        iou, miou = iou_per_class(cm), mean_iou(cm)
        ours_times.append(time.perf_counter() - t)

    same = all(
        (math.isnan(official["classScores"][n]) and math.isnan(v)) or official["classScores"][n] == float(v)
        for n, v in zip(CITYSCAPES.names, iou.cpu())
    )
    diff = abs(miou - official["averageScoreClasses"])
    print(
        f"{args.pairs} pairs at {args.size[0]}x{args.size[1]}, torch {torch.__version__}, device {device}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"seconds for {args.pairs} pairs, best and median of {args.repeats} runs each:")
    for name, stat in (("best", min), ("median", statistics.median)):
        t_official, t_decode, t_ours = stat(official_times), stat(decode_times), stat(ours_times)
        print(
            f"  {name:<6}: official evaluator {t_official:.3f} s (PNG decoding {t_decode:.3f} s); "
            f"ours {t_ours:.3f} s (numba kernel, {torch.get_num_threads()} threads) -> "
            f"{t_official / t_ours:.1f}x end to end, {(t_official - t_decode) / t_ours:.1f}x excluding decoding"
        )
    print(
        f"mIoU official {official['averageScoreClasses']:.15f} ours {miou:.15f} |diff| {diff:.1e}; "
        f"per-class IoU identical: {same}"
    )


if __name__ == "__main__":
    main()
