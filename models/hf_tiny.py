"""Random-init transformers segmentation models that predict many classes: what tests and benchmarks build offline.

No checkpoint can be downloaded here, so the `hf:` source is exercised on models built from tiny configurations and
saved with `save_pretrained`. A random network as transformers initialises it predicts one class everywhere, which
would test little; `liven` and `calibrate_classifiers` make its predictions vary across the image. The
configurations themselves (their sizes) belong to each caller: tests want milliseconds, benchmarks realistic widths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

PROCESSORS = {
    "segformer": "SegformerImageProcessor",
    "upernet": "SegformerImageProcessor",
    "dpt": "DPTImageProcessor",
    "beit": "BeitImageProcessor",
    "data2vec-vision": "BeitImageProcessor",
    "mobilenet_v2": "MobileNetV2ImageProcessor",
    "mobilevit": "MobileViTImageProcessor",
    "mobilevitv2": "MobileViTImageProcessor",
    "mask2former": "Mask2FormerImageProcessor",
    "maskformer": "MaskFormerImageProcessor",
    "oneformer": "OneFormerImageProcessor",
}
"""The image processor class of each model type (what `save_pretrained` writes as preprocessor_config.json)."""

NORMS = (torch.nn.BatchNorm2d, torch.nn.LayerNorm, torch.nn.GroupNorm)


def model_type(name: str) -> str:
    """A variant name (`upernet-swin`) -> its transformers model type (`upernet`)."""
    return name.split("-")[0] if name.startswith("upernet") else name


def tiny_tokenizer(transformers: Any) -> Any:
    """A CLIP tokenizer over single letters (no merges): enough to tokenize OneFormer's task text offline."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {tok: i for i, tok in enumerate([*letters, *(c + "</w>" for c in letters)])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return transformers.CLIPTokenizer(vocab=vocab, merges=[])


def make_processor(
    transformers: Any, mtype: str, mean: tuple[float, ...], std: tuple[float, ...], task_seq_len: int = 8
) -> Any:
    """The model type's image processor with `mean` / `std` (MobileViT's never normalises), OneFormer's with the
    tiny tokenizer."""
    cls = getattr(transformers, PROCESSORS[mtype])
    image_processor = cls() if mtype.startswith("mobilevit") else cls(image_mean=mean, image_std=std)
    if mtype == "oneformer":
        return transformers.OneFormerProcessor(
            image_processor, tiny_tokenizer(transformers), task_seq_length=task_seq_len
        )
    return image_processor


def liven(model: torch.nn.Module) -> torch.nn.Module:
    """Weights of unit gain (1/sqrt(fan-in)) and non-trivial norms, so that a random model's signal survives its depth.

    transformers' own initialisation (std 0.02, and near-zero BatchNorm weights in some families) lets the signal
    die out in a random model; labels that are one class everywhere would test little.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, NORMS) and module.weight is not None:
                module.weight.normal_(1.0, 0.1)
                module.bias.normal_(0.0, 0.1)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
        for p in model.parameters():
            if p.ndim > 1:
                p.normal_(0.0, p[0].numel() ** -0.5)
        for module in model.modules():  # distinct queries (and other embeddings) at unit scale
            if isinstance(module, torch.nn.Embedding):
                module.weight.normal_(0.0, 1.0)
    return model


def calibrate_classifiers(model: torch.nn.Module, run: Callable[[], Any], num_labels: int) -> None:
    """Standardise the outputs of class-score and mask-embedding layers over one `run()`: zero mean, unit spread each.

    In a random network a constant offset per class outweighs the spatial variation (one class wins everywhere),
    and the queries of a mask-classification model are near copies (one mask, one class). Standardised, the winner
    changes across the image. Layers: every Conv2d / Linear with `num_labels` outputs (semantic heads, auxiliary heads
    included) or `num_labels + 1` (query classifiers, made peaked by a gain of 4), and the mask-embedding MLPs.
    """
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None]
    mask_embedders = {m for name, m in model.named_modules() if "mask_embed" in name}
    layers = [m for m in layers if m.weight.shape[0] in (num_labels, num_labels + 1) or m in mask_embedders]
    seen: dict[torch.nn.Module, list[torch.Tensor]] = {m: [] for m in layers}
    hooks = [m.register_forward_hook(lambda m, args, out: seen[m].append(out)) for m in layers]
    with torch.no_grad():
        run()
        for h in hooks:
            h.remove()
        for m, outs in seen.items():
            dim = 1 if isinstance(m, torch.nn.Conv2d) else -1
            flat = torch.cat([o.movedim(dim, -1).reshape(-1, o.shape[dim]) for o in outs])
            gain = 4.0 if m.weight.shape[0] == num_labels + 1 else 1.0  # peaked class probabilities per query
            mean, std = flat.mean(0), flat.std(0).clamp_min(1e-6) / gain
            m.weight.div_(std.view(-1, *[1] * (m.weight.ndim - 1)))
            m.bias.sub_(mean).div_(std)
