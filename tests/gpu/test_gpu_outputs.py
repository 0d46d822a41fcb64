"""Accuracy on the device: GPU against CPU confusion matrices and no host sync per batch; NaN and out-of-memory cells;
fp16, bf16 and each SDPA backend on SegFormer-B5 at 1024x2048; the confusion counter's device path."""

from __future__ import annotations

import contextlib
import functools
import inspect
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from segbench import models, suites
from segbench.bench.deploy.backends import AutocastModule
from segbench.bench.measure.clock import Clock
from segbench.bench.measure.latency import strict_fp32
from segbench.bench.measure.metrics import ConfusionCounter, mean_iou
from segbench.bench.results.store import RunStore
from segbench.bench.run import accuracy
from segbench.bench.run.config import InferenceSpec, RunConfig
from segbench.bench.run.outcome import RunFailed, RunResult
from segbench.bench.run.runner import run
from segbench.models.base import WeightsInfo
from segbench.models.user import first_line

DEMO = suites.get_suite("demo")
GPU_PRECISIONS = ("fp32", "fp16")
"""The accuracy test's precisions on a GPU: fp32, compared with the CPU, then the half precision."""


def _cells(result: RunResult) -> dict[str, torch.Tensor]:
    """Confusion matrix of every finished cell of a run, by cell id."""
    return {cid: torch.tensor(rec["confusion_matrix"]) for cid, rec in RunStore(result.run_dir).finished().items()}


def _changed_pixels(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(cells whose matrices differ, pixels that changed class at least) between two runs' matrices."""
    if a.keys() != b.keys():
        raise ValueError(f"the runs have different cells: {sorted(a)} vs {sorted(b)}")
    diff = [int((a[k] - b[k]).abs().sum()) // 2 for k in a]
    return sum(d > 0 for d in diff), sum(diff)


# --------------------------------------------------------------------------------------------------------------------
# GPU against CPU, and no host sync per batch
# --------------------------------------------------------------------------------------------------------------------


class SyncWatch:
    """Host syncs that CUDA's sync debug mode reports inside some functions, by function and call number.

    Each watched function runs with ``torch.cuda.set_sync_debug_mode("warn")`` and its own warnings record; a sync
    warning is kept as (function, call number, place), any other warning is passed on unchanged. Calls are numbered
    per function and first argument (the model of `predict`, the counter or clock of a method: one per cell), so that
    call 1 is a cell's first batch, which may make a cached tensor once.

    Args:
        targets: (owner, attribute) of each function to watch; one that is missing is left out (see `watched`).
    """

    def __init__(self, targets: Sequence[tuple[Any, str]]):
        self.targets = [(o, a) for o, a in targets if hasattr(o, a)]
        self.watched = [f"{getattr(o, '__name__', type(o).__name__)}.{a}" for o, a in self.targets]
        self.calls: dict[tuple[str, int], int] = {}
        self.syncs: list[tuple[str, int, str]] = []
        self._saved: list[tuple[Any, str, Any]] = []
        self._seen: list[Any] = []  # first arguments kept alive, so that their ids stay theirs

    def __enter__(self) -> SyncWatch:
        for (owner, attr), label in zip(self.targets, self.watched):
            self._saved.append((owner, attr, inspect.getattr_static(owner, attr)))  # as stored: put back unchanged
            setattr(owner, attr, self._wrap(getattr(owner, attr), label))
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, attr, original in reversed(self._saved):
            setattr(owner, attr, original)
        self._saved.clear()
        self._seen.clear()

    def _wrap(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def watched(*args: Any, **kwargs: Any) -> Any:
            key = (label, id(args[0]) if args else 0)
            if key not in self.calls:
                self._seen.append(args[0] if args else None)
            call = self.calls[key] = self.calls.get(key, 0) + 1
            previous = torch.cuda.get_sync_debug_mode()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    result = fn(*args, **kwargs)
                finally:
                    torch.cuda.set_sync_debug_mode(previous)
            for w in caught:
                if "synchroniz" in str(w.message):
                    self.syncs.append((label, call, f"{Path(w.filename).name}:{w.lineno}"))
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            return result

        return watched

    def after_first_call(self) -> list[tuple[str, int, str]]:
        """Syncs in any call but the first with the same first argument (a cell's first batch)."""
        return [s for s in self.syncs if s[1] > 1]


@dataclass(frozen=True)
class AccuracyPlan:
    """The accuracy tests' runs: on a GPU the demo models (trained on synthetic scenes, so that few pixels sit near a
    tie) on 4 scenes of 128x256; on the CPU the tiny test variants on 2 scenes of 64x128 (a determinism check).

    Attributes:
        models: the two models; weights: their checkpoints; root: the scenes; slide: the sliding window (3x3
        windows on these scenes); label: what the rows say about it; out: the runs' folder.
    """

    models: tuple[str, ...]
    weights: dict[str, str]
    root: Path
    slide: InferenceSpec
    label: str
    out: Path

    @classmethod
    def for_device(cls, device: torch.device, scenes: Callable[..., Path], out: Path) -> AccuracyPlan:
        if device.type == "cuda":
            names, weights, n, size = DEMO.default_models, dict(DEMO.weights), 4, (128, 256)
        else:
            names, weights, n, size = ("segformer-tiny", "fcn-mit-tiny"), {}, 2, (64, 128)
        slide = InferenceSpec(
            mode="slide", crop=(size[0] // 2, size[1] // 2), stride=(size[0] * 3 // 8, size[1] * 3 // 8)
        )
        label = f"{', '.join(names)}; {n} scenes {size[0]}x{size[1]}, clean + fog-2, batch 2"
        return cls(names, weights, scenes(n, size), slide, label, out)

    def run(self, device: str, precision: str, mode: str, workers: int) -> dict[str, torch.Tensor]:
        """The confusion matrices of one run, by cell id."""
        config = RunConfig(
            suite="gpu-check",
            models=self.models,
            weights=self.weights,
            data_root=str(self.root),
            out_dir=str(self.out),
            run_id=f"accuracy-{device.replace(':', '')}-{precision}-{mode}-w{workers}",
            device=device,
            precision=precision,
            batch_size=2,
            workers=workers,
            allow_random_weights=True,
            quiet=True,
        )
        return _cells(run(config, ["clean", "fog-2"], self.slide if mode == "slide" else InferenceSpec(mode="whole")))


@pytest.mark.gpu(budget_s=50)
def test_accuracy_cpu_workers(cpu_mode, rows, scenes, tmp_path):
    """Two tiny models on synthetic scenes (clean, fog-2), whole and slide: 0 and 2 DataLoader workers give equal
    confusion matrices on the CPU."""
    plan = AccuracyPlan.for_device(cpu_mode, scenes, tmp_path)
    for mode in ("whole", "slide"):
        reference = plan.run("cpu", "fp32", mode, 0)
        cells, pixels = _changed_pixels(reference, plan.run("cpu", "fp32", mode, 2))
        figure = f"{len(reference) - cells} of {len(reference)} matrices equal"
        rows.judged(cells == 0, f"cpu 2 workers = 0 workers ({mode})", figure, f"{pixels} px differ; {plan.label}")


@pytest.mark.gpu(budget_s=50)
def test_accuracy_cuda(cuda, rows, scenes, tmp_path):
    """The demo models on synthetic scenes (clean, fog-2), whole and slide, 2 workers: fp32 (TF32 off) equals the CPU,
    fp16 stays within 1 mIoU point, and CUDA's sync debug mode finds no host sync in the per-batch calls."""
    plan = AccuracyPlan.for_device(cuda, scenes, tmp_path)
    reference = {mode: plan.run("cpu", "fp32", mode, 0) for mode in ("whole", "slide")}
    targets = [(accuracy, "predict"), (ConfusionCounter, "add"), (Clock, "mark"), (Clock, "add")]
    gpu: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    with SyncWatch(targets) as watch:
        for precision in GPU_PRECISIONS:
            for mode in ("whole", "slide"):
                with strict_fp32() if precision == "fp32" else contextlib.nullcontext():
                    gpu[precision, mode] = plan.run(str(cuda), precision, mode, 2)
    for mode in ("whole", "slide"):
        ref, got = reference[mode], gpu["fp32", mode]
        cells, pixels = _changed_pixels(ref, got)
        figure = f"{len(ref) - cells} of {len(ref)} matrices equal" + (f", >= {pixels} px differ" if cells else "")
        rows.judged(cells == 0, f"GPU fp32 = CPU fp32 ({mode})", figure, f"TF32 off, 2 workers; {plan.label}")
    half = GPU_PRECISIONS[1]
    for mode in ("whole", "slide"):
        fp32, fp16 = gpu["fp32", mode], gpu[half, mode]
        delta = max(abs(100 * (mean_iou(fp16[k]) - mean_iou(fp32[k]))) for k in fp32)
        _, pixels = _changed_pixels(fp32, fp16)
        rows.judged(
            delta <= 1.0,
            f"GPU {half} vs fp32 ({mode})",
            f"max |dmIoU| {delta:.3f} pt",
            f">= {pixels} px changed class; bound 1 pt",
        )
    late = watch.after_first_call()
    first = [s for s in watch.syncs if s[1] == 1]
    places = ", ".join(sorted({f"{f} in {where}" for f, _, where in late})) or "none"
    calls = sum(watch.calls.values())
    detail = f"watched {', '.join(watch.watched)} ({calls} calls); after a cell's first batch: {places}"
    if first:
        detail += f"; in a first batch only: {', '.join(sorted({f'{f} in {w}' for f, _, w in first}))}"
    rows.judged(not late, "no host sync per batch", f"{len(late)} syncs", detail)


def test_sync_watch_keeps_syncs_after_a_first_call_and_passes_other_warnings_on(monkeypatch):
    """The accuracy test's host-sync finder, with CUDA's debug-mode switch stood in for (not a gpu test)."""
    modes = []
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    calls = []

    def step(model: object) -> int:  # a function of the per-batch loop, as `accuracy.predict` is
        calls.append(len(calls) + 1)
        warnings.warn("a model's own warning", stacklevel=1)
        if len(calls) in (1, 3, 4):  # set-up syncs in each cell's first batch, and one in a later batch
            warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
        return len(calls)

    loop = types.SimpleNamespace(step=step)
    with warnings.catch_warnings(record=True) as passed_on:
        warnings.simplefilter("always")
        with SyncWatch([(loop, "step"), (loop, "absent")]) as watch:
            first, second = object(), object()  # two cells' models
            assert [loop.step(first) for _ in range(3)] == [1, 2, 3]
            assert loop.step(second) == 4  # a second cell's first batch
    assert loop.step is step  # put back
    assert watch.watched == ["SimpleNamespace.step"] and sorted(watch.calls.values()) == [1, 3]
    assert [call for _, call, where in watch.syncs] == [1, 3, 1]
    assert {where for _, _, where in watch.syncs} == {f"{Path(__file__).name}:{step.__code__.co_firstlineno + 4}"}
    assert [call for _, call, _ in watch.after_first_call()] == [3]
    assert [str(w.message) for w in passed_on] == ["a model's own warning"] * 4
    assert modes == ["warn", 0] * 4


# --------------------------------------------------------------------------------------------------------------------
# Faulty models
# --------------------------------------------------------------------------------------------------------------------


class Faulty(nn.Module):
    """A stand-in model that fails on purpose: NaN logits (``"nan"``), or an allocation of four times the device's
    memory in its forward (``"oom"``: a real CUDA out-of-memory error)."""

    def __init__(self, name: str, fault: str, num_classes: int = 19):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)
        self.fault = fault
        self.meta = models.ModelMeta(name, "stand-in", "none", "conv", num_classes, output_stride=1)
        self.weights_info = WeightsInfo(random=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fault == "oom":
            total = torch.cuda.get_device_properties(x.device).total_memory
            torch.empty(4 * total, dtype=torch.uint8, device=x.device)
        return self.conv(x) * float("nan")


@pytest.mark.gpu(budget_s=25)
def test_faulty_models_fail_only_their_cells(device, why_no_cuda, rows, scenes, tmp_path):
    """A run with a NaN model (and on a GPU an out-of-memory model) beside SegFormer-tiny on clean and fog-1: only
    the faulty models' cells fail, each with its message, and the others finish."""
    cuda = device.type == "cuda"
    faulty = {"nan-stand-in": "nan", **({"oom-stand-in": "oom"} if cuda else {})}

    def factory(name: str, **kwargs: Any) -> nn.Module:
        return Faulty(name, faulty[name]) if name in faulty else models.create_model(name, **kwargs)

    conditions = ("clean", "fog-1")
    config = RunConfig(
        suite="gpu-check",
        models=(*faulty, "segformer-tiny"),
        data_root=str(scenes(2, (64, 128))),
        out_dir=str(tmp_path / "runs"),
        run_id="faults",
        device=str(device),
        batch_size=2,
        allow_random_weights=True,
        quiet=True,
    )
    resident = torch.cuda.memory_allocated(device) if cuda else 0
    with pytest.raises(RunFailed) as raised:  # the run with faulty models fails, after finishing the others
        run(config, conditions, InferenceSpec(mode="whole"), model_factory=factory)
    result = raised.value.result
    finished = sorted(result.computed)
    others_ok = finished == [f"segformer-tiny__{c}" for c in conditions]
    where = "checked on the device, read once per condition" if cuda else "checked per batch on the CPU"
    nan = {c: result.failed.get(f"nan-stand-in__{c}", "") for c in conditions}
    ok = others_ok and all(f"cell nan-stand-in__{c}" in m and "produced NaN or inf logits" in m for c, m in nan.items())
    figure = f"{sum(map(bool, nan.values()))} of 2 cells failed, {len(finished)} others finished"
    rows.judged(ok, "NaN model", figure, f"{where}: {nan['clean'] or result.failed}")
    if not cuda:
        rows.skipped("out-of-memory model", why_no_cuda)
        return
    oom = {c: result.failed.get(f"oom-stand-in__{c}", "") for c in conditions}
    ok = others_ok and all("out of memory" in m and "lower the batch size" in m for m in oom.values())
    left = (torch.cuda.memory_allocated(device) - resident) / 2**20
    figure = f"{sum(map(bool, oom.values()))} of 2 cells failed, {len(finished)} others finished"
    rows.judged(ok, "out-of-memory model", figure, f"{left:+.0f} MiB allocated after the run; {oom['clean']}")


# --------------------------------------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------------------------------------


def _sdpa_backends() -> list[tuple[str, Any]]:
    from torch.nn.attention import SDPBackend

    names = (
        ("flash", "FLASH_ATTENTION"),
        ("efficient", "EFFICIENT_ATTENTION"),
        ("cudnn", "CUDNN_ATTENTION"),
        ("math", "MATH"),
    )
    return [(name, getattr(SDPBackend, member)) for name, member in names if hasattr(SDPBackend, member)]


@pytest.mark.gpu(budget_s=30)
def test_numerics(cuda, rows, seeded):
    """SegFormer-B5 (seeded random weights) at 1024x2048: fp16 and bf16 against fp32 (TF32 off), and fp16 under each
    SDPA backend against the math backend and fp32. Bound: 5% of the largest fp32 logit."""
    from torch.nn.attention import sdpa_kernel

    name, size, short = "segformer-b5", (1024, 2048), "B5"
    model = seeded(name).to(cuda)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(cuda)

    def logits(precision: str) -> torch.Tensor:
        with torch.inference_mode():
            return AutocastModule(model, precision, cuda.type)(x).float()

    with strict_fp32():
        ref = logits("fp32")
    scale = float(ref.abs().max())
    bound = 0.05 * scale
    where = f"{size[0]}x{size[1]}, TF32 off"
    rows.judged(bool(torch.isfinite(ref).all()), f"{short} fp32 finite", f"max |logit| {scale:.3f}", where)
    for precision in ("fp16", "bf16"):
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            rows.skipped(f"{short} {precision} - fp32", "bf16 not supported on this GPU")
            continue
        out = logits(precision)
        finite, diff = bool(torch.isfinite(out).all()), float((out - ref).abs().max())
        agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
        rows.judged(
            finite and diff <= bound,
            f"{short} {precision} - fp32",
            f"max |diff| {diff:.4f}",
            f"finite={finite}, bound {bound:.4f}; argmax agrees on {100 * agree:.2f}% of pixels",
        )
    outs: dict[str, torch.Tensor] = {}
    errors: dict[str, str] = {}
    for backend, member in _sdpa_backends():
        try:
            with sdpa_kernel(member):
                outs[backend] = logits("fp16")
        except RuntimeError as exc:  # no kernel of this backend for these inputs on this GPU
            errors[backend] = first_line(exc)
    math_out = outs.get("math")
    for backend, _ in _sdpa_backends():
        if backend in errors:
            rows.skipped(f"SDPA {backend} (fp16)", f"not available here: {errors[backend]}"[:160])
            continue
        out = outs[backend]
        finite = bool(torch.isfinite(out).all())
        vs_ref = float((out - ref).abs().max())
        vs_math = float((out - math_out).abs().max()) if math_out is not None else float("nan")
        ok = finite and vs_ref <= bound and (math_out is None or vs_math <= bound)
        rows.judged(
            ok,
            f"SDPA {backend} (fp16)",
            f"max |diff| {vs_math:.4f} vs math",
            f"{vs_ref:.4f} vs fp32; finite={finite}; bound {bound:.4f}",
        )


# --------------------------------------------------------------------------------------------------------------------
# The confusion counter
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu(budget_s=15)
def test_confusion_counter(device, rows):
    """`ConfusionCounter` on random 2x1024x2048 labels (10% ignored): its device path (the GPU; on the CPU the
    `cpu_kernel=False` path) against the CPU's numba kernel, for uint8 and int64 labels, and out-of-range values."""
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 19, (2, 1024, 2048), generator=g, dtype=torch.uint8)
    target = torch.randint(0, 19, (2, 1024, 2048), generator=g, dtype=torch.uint8)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    labelled = int((target != 255).sum())
    where = str(device) if device.type == "cuda" else "cpu, cpu_kernel=False"

    def counted(p: torch.Tensor, t: torch.Tensor, on_device: bool) -> torch.Tensor:
        if not on_device:
            counter = ConfusionCounter(19, device="cpu")
        else:
            counter = ConfusionCounter(19, device=device, cpu_kernel=False)
            p, t = p.to(device), t.to(device)
        counter.add(p, t)
        return counter.matrix().cpu()

    for dtype in (torch.uint8, torch.int64):
        p, t = pred.to(dtype), target.to(dtype)
        kernel, on_device = counted(p, t, False), counted(p, t, True)
        same = torch.equal(kernel, on_device) and int(kernel.sum()) == labelled
        figure = f"{labelled:,} px, {'equal' if same else 'differ'}"
        rows.judged(same, f"device = CPU kernel ({str(dtype).replace('torch.', '')})", figure, where)
    bad = pred.clone()
    bad[0, 0, 0] = 200
    raised = []
    for on_device in (False, True):
        try:
            counted(bad, target, on_device)
        except ValueError:
            raised.append(on_device)
    rows.judged(len(raised) == 2, "out-of-range value raises", f"{len(raised)} of 2 paths raised", where)
