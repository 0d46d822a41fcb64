"""FLOP counting with a stated convention: fvcore's tracer, torch's own counter, or the SegFormer paper's rules.

Three conventions, all reported in multiply-accumulates (one fused multiply-add = 1 MAC; GFLOPs = 2 x GMACs):

- ``"fvcore"``: fvcore's ``FlopCountAnalysis`` on a traced forward. It counts matmuls, linears and convolutions
  (without bias), norms (elements x 2 with affine at inference) and bilinear/nearest upsampling, and reports
  everything else (softmax, GELU, elementwise ops) in ``unsupported_ops``. fvcore has no rule for
  ``aten::scaled_dot_product_attention``; this module adds one, ``B * heads * Nq * Nk * (d + dv)``, i.e. the two
  matmuls ``q k^T`` and ``attn v`` exactly as fvcore would count them written out by hand.
- ``"torch"``: ``torch.utils.flop_counter.FlopCounterMode`` on a real forward: PyTorch's own formulas for the
  matmul, convolution and attention kernels it dispatches (elementwise ops, norms and upsampling uncounted), which
  report FLOPs (2 per multiply-add); halved here into MACs. It needs no tracing, so it counts models fvcore cannot
  trace; it runs without autograd, and with it only for the models whose modules take parameters as inputs
  (OneFormer), where the counter's module tracker needs it.
- ``"paper"``: the rules of mmcv's ``get_model_complexity_info`` (the counter behind the SegFormer paper's Table 1),
  re-implemented here with forward hooks keyed on the *exact* module type, as mmcv does:

  ========================================  ==============================================================
  module                                    MACs
  ========================================  ==============================================================
  ``Conv1d/2d/3d``                          ``prod(kernel) * C_in / groups * C_out * out_positions`` (+ bias:
                                            ``C_out * out_positions``)
  ``ConvTranspose2d``                       ``kh * kw * C_in * C_out / groups * in_positions`` (+ bias:
                                            ``C_out * B * H_out * H_out``, mmcv's own formula, kept as is)
  ``Linear``                                ``input elements * out_features`` (no bias)
  ``BatchNorm1d/2d/3d``, ``GroupNorm``,     input elements, x2 with an affine transform
  ``InstanceNorm1d/2d/3d``, ``LayerNorm``
  ``ReLU``, ``PReLU``, ``ELU``,             output elements
  ``LeakyReLU``, ``ReLU6``
  max/avg/adaptive pooling (1d/2d/3d)       input elements
  ``Upsample``                              output elements
  ========================================  ==============================================================

  Everything else is not counted: other module types (GELU, Dropout, SyncBatchNorm, subclasses of the types above),
  and every functional call (``F.interpolate``, matmuls, softmax, ``F.scaled_dot_product_attention``). The SegFormer
  authors added the attention matmuls by hand (``tools/get_flops.py`` of the NVlabs release):
  ``2 * h * w * (h // r) * (w // r) * dim`` per block, where ``h x w`` is the block's token grid and ``r`` the stride
  of its reduction conv. The paper convention adds that term for every ``models.segformer.EfficientSelfAttention``
  call. mmcv divides by the batch size; here totals are for the whole batch in both conventions (use
  ``batch_size=1`` for per-image numbers). The paper convention only needs shapes, so it runs the forward on the
  ``meta`` device (no arithmetic, seconds even for B5 at 1024x2048) and falls back to a real forward for models
  that cannot run on ``meta``.
"""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch
from torch import nn

CONVENTIONS = ("fvcore", "paper", "torch")
DEFAULT_CONVENTIONS = ("fvcore", "paper")
"""What a sweep counts for the registry's models unless told otherwise (a suite's `EfficiencySpec.conventions`)."""


@dataclass
class FlopCount:
    """A FLOP count that states what it counted.

    Attributes:
        gmacs: total multiply-accumulates for the whole batch, in units of 1e9.
        gflops: ``2 * gmacs`` (a multiply-add counted as two floating-point operations).
        by_module: GMACs per encoder stage / decoder part (see `module_groups`), plus ``"<module>.(other)"`` for
            what a top-level module computes outside those parts (a decoder's upsampling) and ``"(other)"`` for what
            the model computes outside its top-level modules. The values sum to ``gmacs``.
        uncounted: what the counter saw but did not count, ``{op or module type: occurrences}`` (fvcore's
            ``unsupported_ops()``; for the paper convention, called leaf modules without a rule).
        counter: the counter, its version and convention, in words.
        convention: ``"fvcore"`` or ``"paper"``.
        input_size: (H, W) of the counted input.
        batch_size: batch size of the counted input.
    """

    gmacs: float
    by_module: dict[str, float]
    uncounted: dict[str, int]
    counter: str
    convention: str
    input_size: tuple[int, int]
    batch_size: int = 1
    gflops: float = field(init=False)

    def __post_init__(self) -> None:
        self.gflops = 2.0 * self.gmacs


@dataclass
class SlidingWindowFlops:
    """Cost of sliding-window inference: the per-crop count times the number of windows.

    Attributes:
        per_crop: the count for one crop (crop clipped to the image, as mmseg does).
        grid: number of windows along (H, W).
        num_crops: ``grid[0] * grid[1]``.
        gmacs: ``per_crop.gmacs * num_crops``.
        gflops: ``2 * gmacs``.
        image_size, crop, stride: the geometry, (H, W) each.
    """

    per_crop: FlopCount
    grid: tuple[int, int]
    image_size: tuple[int, int]
    crop: tuple[int, int]
    stride: tuple[int, int]
    num_crops: int = field(init=False)
    gmacs: float = field(init=False)
    gflops: float = field(init=False)

    def __post_init__(self) -> None:
        self.num_crops = self.grid[0] * self.grid[1]
        self.gmacs = self.per_crop.gmacs * self.num_crops
        self.gflops = 2.0 * self.gmacs


# --------------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------------


def _check_size(pair: Any, what: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair (H, W) of positive ints, got {pair!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{what} must be a pair (H, W) of positive ints, got {pair!r}")
    return h, w


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention {convention!r}: use one of {', '.join(CONVENTIONS)}")


def _example_input(model: nn.Module, input_size: tuple[int, int], batch_size: int) -> torch.Tensor:
    """A zero (B, 3, H, W) batch on the model's device, in its floating-point dtype."""
    ref = next((t for t in model.parameters() if t.is_floating_point()), None)
    if ref is None:
        return torch.zeros(batch_size, 3, *input_size)
    return torch.zeros(batch_size, 3, *input_size, dtype=ref.dtype, device=ref.device)


def module_groups(model: nn.Module) -> list[str]:
    """Names of the parts a per-module breakdown reports: the children of each top-level module.

    ``nn.ModuleList`` / ``nn.ModuleDict`` containers are expanded one level (they have no forward of their own), so
    a SegFormer gives ``backbone.stages.0`` .. ``backbone.stages.3`` and ``decode_head.proj.0`` .. ``decode_head.fuse``,
    ``decode_head.classifier``. A top-level module without children is its own group.
    """

    def expand(prefix: str, module: nn.Module) -> list[str]:
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            return [f"{prefix}.{n}" for n, _ in module.named_children()]
        return [prefix]

    groups: list[str] = []
    for name, child in model.named_children():
        kids = list(child.named_children())
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)) or not kids:
            groups.extend(expand(name, child) if kids else [name])
            continue
        for kid_name, kid in kids:
            groups.extend(expand(f"{name}.{kid_name}", kid))
    return groups


def _group(model: nn.Module, cumulative: Callable[[str], int], total: int) -> dict[str, float]:
    """GMACs per group, given a function returning the cumulative MACs of a module name.

    What a top-level module computes outside its listed parts (e.g. a decoder's functional upsampling) goes to
    ``"<module>.(other)"``; what the model computes outside every top-level module to ``"(other)"``.
    """
    groups = module_groups(model)
    out = {g: cumulative(g) / 1e9 for g in groups}
    top_level = [name for name, _ in model.named_children()]
    for parent in top_level:
        parts = [g for g in groups if g.startswith(parent + ".")]
        own = cumulative(parent) - sum(cumulative(g) for g in parts) if parts else 0
        if own:
            out[f"{parent}.(other)"] = own / 1e9
    rest = total - sum(cumulative(name) for name in top_level)
    if rest:
        out["(other)"] = rest / 1e9
    return out


def _prefix_sum(per_module: dict[str, int]) -> Callable[[str], int]:
    def cumulative(group: str) -> int:
        return sum(v for k, v in per_module.items() if k == group or k.startswith(group + "."))

    return cumulative


# --------------------------------------------------------------------------------------------------------------------
# fvcore convention
# --------------------------------------------------------------------------------------------------------------------


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: MACs of ``q k^T`` plus ``attn v``.

    ``q``: (..., Nq, d), ``k``: (..., Nk, d), ``v``: (..., Nk, dv) -> ``prod(q.shape[:-1]) * Nk * (d + dv)``, i.e.
    ``B * heads * Nq * Nk * (d + dv)``. Softmax, scaling and masking are elementwise and not counted, as elsewhere
    in fvcore.
    """
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


def _fvcore_version() -> str:
    try:
        return metadata.version("fvcore")
    except metadata.PackageNotFoundError:
        return "unknown"


def _count_fvcore(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, float], dict[str, int]]:
    with warnings.catch_warnings():  # fvcore's import touches the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, (x,))
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    fv_logger = logging.getLogger("fvcore")
    level = fv_logger.level
    fv_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            total = int(analysis.total())
            per_module = analysis.by_module()
            unsupported = dict(analysis.unsupported_ops())
    finally:
        fv_logger.setLevel(level)
    by_module = _group(model, lambda g: int(per_module.get(g, 0)), total)
    return total, by_module, unsupported


def _torch_version() -> str:
    return torch.__version__


def _count_torch(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, float], dict[str, int]]:
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.no_grad(), FlopCounterMode(display=False) as mode:
            model(x)
    except RuntimeError:  # its module tracker fails without autograd on modules that take a parameter as an input
        with FlopCounterMode(display=False) as mode:  # (OneFormer): count again with grad mode on
            model(x)
    root = type(model).__name__
    per_module = {name: sum(ops.values()) for name, ops in mode.get_flop_counts().items()}  # cumulative per module
    total = int(mode.get_total_flops()) // 2
    by_module = _group(model, lambda g: int(per_module.get(f"{root}.{g}", 0)) // 2, total)
    return total, by_module, {}


# --------------------------------------------------------------------------------------------------------------------
# Paper convention (mmcv get_model_complexity_info rules + SegFormer's hand-added attention)
# --------------------------------------------------------------------------------------------------------------------


def _first_tensor(args: tuple) -> torch.Tensor:
    return args[0]


def _conv_macs(m: nn.Module, args: tuple, out: torch.Tensor) -> int:
    positions = out.shape[0] * math.prod(out.shape[2:])
    macs = math.prod(m.kernel_size) * (m.in_channels // m.groups) * m.out_channels * positions
    return macs + (m.out_channels * positions if m.bias is not None else 0)


def _deconv_macs(m: nn.Module, args: tuple, out: torch.Tensor) -> int:
    x = _first_tensor(args)
    kh, kw = m.kernel_size
    macs = kh * kw * m.in_channels * (m.out_channels // m.groups) * x.shape[0] * x.shape[2] * x.shape[3]
    # mmcv multiplies the bias term by the output height twice (not height x width); kept to match its counts.
    return macs + (m.out_channels * out.shape[0] * out.shape[2] * out.shape[2] if m.bias is not None else 0)


def _linear_macs(m: nn.Module, args: tuple, out: torch.Tensor) -> int:
    return _first_tensor(args).numel() * out.shape[-1]


def _norm_macs(m: nn.Module, args: tuple, out: torch.Tensor) -> int:
    affine = bool(getattr(m, "affine", False) or getattr(m, "elementwise_affine", False))
    return _first_tensor(args).numel() * (2 if affine else 1)


def _output_elements(m: nn.Module, args: tuple, out: torch.Tensor) -> int:
    return out.numel()


def _input_elements(m: nn.Module, args: tuple, out: torch.Tensor) -> int:
    return _first_tensor(args).numel()


def _rules(types: Iterable[type], rule: Callable) -> dict[type, Callable]:
    return dict.fromkeys(types, rule)


PAPER_RULES: dict[type, Callable[[nn.Module, tuple, Any], int]] = {
    **_rules((nn.Conv1d, nn.Conv2d, nn.Conv3d), _conv_macs),
    nn.ConvTranspose2d: _deconv_macs,
    nn.Linear: _linear_macs,
    **_rules(
        (
            nn.BatchNorm1d,
            nn.BatchNorm2d,
            nn.BatchNorm3d,
            nn.GroupNorm,
            nn.InstanceNorm1d,
            nn.InstanceNorm2d,
            nn.InstanceNorm3d,
            nn.LayerNorm,
        ),
        _norm_macs,
    ),
    **_rules((nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6), _output_elements),
    **_rules(
        (
            nn.MaxPool1d,
            nn.MaxPool2d,
            nn.MaxPool3d,
            nn.AvgPool1d,
            nn.AvgPool2d,
            nn.AvgPool3d,
            nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d,
            nn.AdaptiveMaxPool3d,
            nn.AdaptiveAvgPool1d,
            nn.AdaptiveAvgPool2d,
            nn.AdaptiveAvgPool3d,
        ),
        _input_elements,
    ),
    nn.Upsample: _output_elements,
}
"""mmcv's module -> MACs rules, matched on the exact type (a subclass is not counted, as in mmcv)."""


def segformer_attention_macs(h: int, w: int, sr_ratio: int, dim: int, batch_size: int = 1) -> int:
    """The SegFormer authors' hand-added attention term: ``2 * h * w * (h // r) * (w // r) * dim`` per image.

    ``h x w`` tokens attend to the ``(h // r) x (w // r)`` reduced sequence; the two matmuls (``q k^T`` and
    ``attn v``) each cost ``N * N_r * dim`` multiply-adds summed over heads.
    """
    return 2 * h * w * (h // sr_ratio) * (w // sr_ratio) * dim * batch_size


def _attention_types() -> tuple[type, ...]:
    try:
        from segbench.models.segformer import EfficientSelfAttention
    except ImportError:  # models.segformer not importable: no hand-added term applies
        return ()
    return (EfficientSelfAttention,)


def _attention_hook(record: Callable[[int], None]) -> Callable:
    def hook(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        # forward(x, h, w): bind by position so that the hook does not depend on the parameter names
        signature = inspect.signature(module.forward)
        bound = signature.bind(*args, **kwargs).arguments
        x, h, w = (bound[p] for p in list(signature.parameters)[:3])
        record(segformer_attention_macs(int(h), int(w), module.sr_ratio, module.dim, x.shape[0]))

    return hook


def _meta_forward(model: nn.Module, x: torch.Tensor) -> None:
    """Run the forward on the meta device: shapes without arithmetic (module hooks fire as usual)."""
    from torch.func import functional_call

    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    meta = {k: torch.empty_like(v, device="meta") for k, v in tensors.items()}
    with torch.no_grad():
        functional_call(model, meta, (x.to("meta"),))


def _count_paper(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, float], dict[str, int]]:
    per_module: Counter[str] = Counter()
    uncounted: Counter[str] = Counter()
    handles = []
    attention = _attention_types()

    def add(name: str) -> Callable[[int], None]:
        def record(macs: int) -> None:
            per_module[name] += int(macs)

        return record

    def counted(name: str, rule: Callable) -> Callable:
        record = add(name)
        return lambda m, args, out: record(rule(m, args, out))

    def skipped(m: nn.Module, args: tuple, out: Any) -> None:
        uncounted[f"{type(m).__module__}.{type(m).__qualname__}"] += 1

    for name, module in model.named_modules():
        rule = PAPER_RULES.get(type(module))
        if rule is not None:
            handles.append(module.register_forward_hook(counted(name, rule)))
        elif attention and isinstance(module, attention):
            handles.append(module.register_forward_hook(_attention_hook(add(name)), with_kwargs=True))
        elif not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(skipped))
    try:
        try:
            _meta_forward(model, x)
        except (NotImplementedError, RuntimeError):  # data-dependent code (.item(), ...): run it for real
            per_module.clear()
            uncounted.clear()
            with torch.inference_mode():
                model(x)
    finally:
        for handle in handles:
            handle.remove()
    total = sum(per_module.values())
    return total, _group(model, _prefix_sum(per_module), total), dict(uncounted)


_COUNTERS = {
    "fvcore": "fvcore {version} FlopCountAnalysis, 1 fused multiply-add = 1 flop (reported as GMACs), "
    "+ aten::scaled_dot_product_attention handle B*heads*Nq*Nk*(d+dv); elementwise ops, softmax, GELU uncounted",
    "torch": "torch {torch_version} torch.utils.flop_counter.FlopCounterMode on a real forward (matmul, conv and "
    "attention kernels by PyTorch's own formulas; elementwise ops, norms and upsampling uncounted); its FLOPs halved "
    "into GMACs",
    "paper": "paper convention: mmcv get_model_complexity_info module rules re-implemented in segbench "
    "(1 multiply-add = 1, conv bias counted, norms/activations by elements, functional ops and attention matmuls "
    "uncounted) + SegFormer's hand-added attention 2*h*w*(h//r)*(w//r)*dim per block; reported as GMACs",
}


def count_flops(
    model: nn.Module, input_size: tuple[int, int] = (512, 512), convention: str = "fvcore", batch_size: int = 1
) -> FlopCount:
    """Count the multiply-accumulates of one forward pass of `model` on a (batch_size, 3, H, W) input.

    Args:
        model: an image model taking (B, 3, H, W). It is run in eval mode (its mode is restored afterwards).
        input_size: (H, W) of the input.
        convention: ``"fvcore"`` (traced, real forward), ``"torch"`` (PyTorch's FlopCounterMode, real forward) or
            ``"paper"`` (mmcv rules + SegFormer attention term, shapes-only forward). See the module docstring for
            exactly what each counts.
        batch_size: batch size of the input; totals are for the whole batch.

    Returns:
        The count, with its per-module breakdown, what it left out, and the counter's description.
    """
    _check_convention(convention)
    input_size = _check_size(input_size, "input_size")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = _example_input(model, input_size, batch_size)
    was_training = model.training
    model.eval()
    try:
        count = {"fvcore": _count_fvcore, "torch": _count_torch, "paper": _count_paper}[convention]
        total, by_module, uncounted = count(model, x)
    finally:
        model.train(was_training)
    return FlopCount(
        gmacs=total / 1e9,
        by_module=by_module,
        uncounted=uncounted,
        counter=_COUNTERS[convention].format(version=_fvcore_version(), torch_version=_torch_version()),
        convention=convention,
        input_size=input_size,
        batch_size=batch_size,
    )


def sliding_window_grid(image_size: tuple[int, int], crop: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """Number of windows along H and W, as mmseg's ``slide_inference`` lays them out.

    ``grids = max(size - crop + stride - 1, 0) // stride + 1`` per axis; windows at the border are shifted back
    inside the image, so every window has the crop's size (clipped to the image).
    """
    (h, w), (ch, cw), (sh, sw) = image_size, crop, stride
    return max(h - ch + sh - 1, 0) // sh + 1, max(w - cw + sw - 1, 0) // sw + 1


def sliding_window_flops(
    model: nn.Module,
    image_size: tuple[int, int] = (1024, 2048),
    crop: tuple[int, int] = (1024, 1024),
    stride: tuple[int, int] = (768, 768),
    convention: str = "fvcore",
) -> SlidingWindowFlops:
    """Cost of sliding-window inference over one image: per-crop count x number of windows (batch 1).

    Overlapping windows are each counted in full, as they are computed in full; the cost of stitching the logits
    together is not counted.
    """
    image_size = _check_size(image_size, "image_size")
    crop = _check_size(crop, "crop")
    stride = _check_size(stride, "stride")
    grid = sliding_window_grid(image_size, crop, stride)
    crop_size = (min(crop[0], image_size[0]), min(crop[1], image_size[1]))
    per_crop = count_flops(model, crop_size, convention=convention, batch_size=1)
    return SlidingWindowFlops(per_crop=per_crop, grid=grid, image_size=image_size, crop=crop, stride=stride)
