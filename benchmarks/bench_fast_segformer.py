"""SegFormer speed, side by side in one process: transformers' reference vs this suite's faithful and fast paths.

    python -m benchmarks.bench_fast_segformer --variants b0,b2 --size 1024x2048 --iters 3

All three models share the same random weights (the reference's, loaded through `weights=`); the script prints the
median wall time per image, the throughput ratios, and the largest logit difference relative to the reference's
largest logit. CPU fp32 unless `--device cuda`. Needs the test extra (transformers).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from segbench import models
from segbench.bench.run.allocator import retain_freed_memory
from segbench.models.segformer import DECODER_WIDTH, MIT_CONFIGS


def _time_interleaved(fns: list, x: torch.Tensor, warmup: int, iters: int, device: str) -> list[tuple[float, object]]:
    """Median seconds per call of each function, timed round-robin so that background load hits all alike."""
    times: list[list[float]] = [[] for _ in fns]
    outs: list[object] = [None] * len(fns)
    cuda = torch.device(device).type == "cuda"  # "cuda", "cuda:1", ...: the host clock waits for the GPU's work
    with torch.inference_mode():
        for it in range(warmup + iters):
            for i, fn in enumerate(fns):
                if cuda:
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                outs[i] = fn(x)
                if cuda:
                    torch.cuda.synchronize(device)
                if it >= warmup:
                    times[i].append(time.perf_counter() - t0)
    return [(statistics.median(t), o) for t, o in zip(times, outs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="b0,b2")
    ap.add_argument("--size", default="1024x2048", help="HxW")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()
    import transformers

    malloc = retain_freed_memory()  # as run_bench.py does; SEGBENCH_MALLOC=system for the C library's default

    h, w = (int(v) for v in args.size.lower().split("x"))
    print(
        f"# device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"transformers={transformers.__version__} input=1x3x{h}x{w} fp32 warmup={args.warmup} iters={args.iters}\n"
        f"# allocator: {malloc}"
    )
    print(
        "variant | reference s/img | faithful s/img | fast s/img | faithful/ref speed | fast/ref speed | "
        "max|diff| faithful | max|diff| fast (rel. to max|ref|)"
    )
    for variant in args.variants.split(","):
        cfg = MIT_CONFIGS[variant]
        config = transformers.SegformerConfig(
            hidden_sizes=list(cfg.embed_dims),
            depths=list(cfg.depths),
            num_attention_heads=list(cfg.num_heads),
            decoder_hidden_size=DECODER_WIDTH[variant],
            num_labels=19,
        )
        torch.manual_seed(0)
        ref = transformers.SegformerForSemanticSegmentation(config).eval().to(args.device)
        with tempfile.TemporaryDirectory() as tmp:
            ref.save_pretrained(tmp)
            faithful = models.create_model(f"segformer-{variant}", weights=tmp, ln_eps=1e-5).to(args.device)
            fast = models.create_model(f"segformer-{variant}", weights=tmp, ln_eps=1e-5, fast=True).to(args.device)
        x = torch.randn(1, 3, h, w, device=args.device)
        if args.channels_last:
            fast = fast.to(memory_format=torch.channels_last)
        (t_ref, y_ref), (t_faith, y_faith), (t_fast, y_fast) = _time_interleaved(
            [lambda t, m=ref: m(pixel_values=t).logits, faithful, fast], x, args.warmup, args.iters, args.device
        )
        scale = y_ref.abs().max().item()
        d_faith = (y_faith - y_ref).abs().max().item() / scale
        d_fast = (y_fast - y_ref).abs().max().item() / scale
        print(
            f"{variant} | {t_ref:.2f} | {t_faith:.2f} | {t_fast:.2f} | {t_ref / t_faith:.2f}x | "
            f"{t_ref / t_fast:.2f}x | {d_faith:.1e} | {d_fast:.1e}"
        )
        del ref, faithful, fast


if __name__ == "__main__":
    main()
