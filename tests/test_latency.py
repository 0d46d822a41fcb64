"""bench/measure/latency.py: what a measurement runs on and records (device index, TF32, SDPA kernel, Dynamo), and CUDA
memory with stand-ins for torch.cuda."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segbench.bench.measure import latency
from segbench.bench.measure.latency import (
    FP32_PRECISION_SETTINGS,
    fp32_precision,
    measure_latency,
    resolve_device,
    sdpa_backend,
    tf32_flags,
    time_callable,
)

MIB = 2**20


class Logged(nn.Module):
    """A small conv net that notes each forward call in `log`, and what TF32 allowed while it ran."""

    def __init__(self, log: list):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.register_buffer("scale", torch.ones(16, 1, 1))
        self.log = log

    def forward(self, x):
        self.log.append(("forward", tf32_flags()))
        return self.conv(x) * self.scale


class Attention(nn.Module):
    """Self-attention over the pixels through SDPA, 2 heads of 4 channels; `strided`: q, k and v transposed so that
    their last axis is not contiguous (which ATen's CPU flash kernel does not take)."""

    def __init__(self, strided: bool = False):
        super().__init__()
        self.qkv = nn.Linear(3, 3 * 8)
        self.strided = strided

    def forward(self, x):
        t = x.flatten(2).transpose(1, 2)  # B, N, 3
        if self.strided:
            qkv = self.qkv.weight @ x.flatten(2)  # B, 3 * 8, N
            q, k, v = qkv.reshape(x.shape[0], 3, 2, 4, -1).permute(1, 0, 2, 4, 3)  # each B, heads, N, 4
        else:
            q, k, v = self.qkv(t).reshape(x.shape[0], -1, 3, 2, 4).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v)


@pytest.fixture
def keep_numerics():
    """Give back the process's fp32 settings after a test that changes them (parents before their operators)."""
    saved, matmul, cudnn = fp32_precision(), torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    yield
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = cudnn
    for path, value in saved.items():
        latency._backend(path).fp32_precision = value
    assert fp32_precision() == saved


# --------------------------------------------------------------------------------------------------------------------
# Device index (issue 16, item 1)
# --------------------------------------------------------------------------------------------------------------------


def test_resolve_device_adds_the_current_gpu_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is kept
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cuda") == torch.device("cuda")  # left for measure_latency to report


def test_moved_counts_every_weight_however_the_device_is_spelled():
    # tensors carry a canonical device ("cpu", "cuda:0"); the device asked for may be spelled otherwise ("cpu:0",
    # "cuda"), and a test of t.device == device then dropped every weight from the peak
    model = Logged([])
    expected = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    with latency.moved_for_timing(model, torch.device("cpu", 0), channels_last=False) as weight_bytes:
        assert weight_bytes == expected == (16 * 3 * 9 + 16 + 16) * 4


class FakeGpu:
    """Stand-ins for the torch.cuda calls of a measurement on GPU 1 (the current device), with the work itself on
    the CPU: a model moved "to CUDA" and the CUDA input stay CPU tensors. Memory calls are logged with their device
    in the model's log, so their order against the forward calls shows; ``memory_allocated`` reports `resident`
    bytes and ``max_memory_allocated`` `resident + activations`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, log: list, resident: int, activations: int):
        self.moved_to: list[torch.device] = []
        self.input_device: list[torch.device] = []
        ticks = iter(range(10_000))

        class Event:
            def __init__(self, enable_timing: bool = False):
                self.t = None

            def record(self, stream=None):
                self.t = next(ticks)

            def synchronize(self):
                pass

            def elapsed_time(self, end):
                return float(end.t - self.t)

        def logged(name, value=None):
            def call(device=None):
                log.append((name, torch.device(device)))
                return value

            return call

        real_to, real_randn = nn.Module.to, torch.randn

        def to(module, *args, **kwargs):
            if args and isinstance(args[0], (str, torch.device)) and torch.device(args[0]).type == "cuda":
                self.moved_to.append(torch.device(args[0]))
                args = args[1:]
            return real_to(module, *args, **kwargs) if args or kwargs else module

        def randn(*size, device=None, **kwargs):
            self.input_device.append(torch.device(device))
            return real_randn(*size, **kwargs)

        for name, value in {
            "is_available": lambda: True,
            "current_device": lambda: 1,
            "get_device_name": lambda device=None: "Fake GPU",
            "current_stream": lambda device=None: ("stream of", str(device)),
            "Event": Event,
            "synchronize": logged("sync"),
            "memory_allocated": logged("allocated", resident),
            "reset_peak_memory_stats": logged("reset peak"),
            "max_memory_allocated": logged("max allocated", resident + activations),
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)
        monkeypatch.setattr(nn.Module, "to", to)
        monkeypatch.setattr(torch, "randn", randn)


def test_cuda_measurement_on_the_current_gpu_counts_the_weights(monkeypatch):
    log: list = []
    model = Logged(log)
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    batch, size = 2, (8, 12)
    own = weights + batch * 3 * size[0] * size[1] * 4
    fake = FakeGpu(monkeypatch, log, resident=500 * MIB + own, activations=7 * MIB)
    stats = measure_latency(model, size, batch, device="cuda", warmup=2, iters=3, cv_threshold=10.0)
    assert stats.device == "cuda:1" and stats.device_name == "Fake GPU" and stats.clock == "cuda.Event"
    assert fake.moved_to == fake.input_device == [torch.device("cuda", 1)]
    assert {entry[1] for entry in log if entry[0] != "forward"} == {torch.device("cuda", 1)}
    # weights + input + activations, without the 500 MiB of other tensors: the weights are in (issue 16, item 1)
    assert stats.peak_memory_mib == pytest.approx((own + 7 * MIB) / MIB, rel=1e-12)
    assert stats.memory_kind == "cuda_max_allocated_model"


def test_cuda_peak_memory_is_reset_after_the_warm_up(monkeypatch):
    log: list = []
    FakeGpu(monkeypatch, log, resident=100 * MIB, activations=MIB)
    warmup, iters = 3, 4
    measure_latency(Logged(log), (8, 8), device="cuda:1", warmup=warmup, iters=iters, cv_threshold=10.0)
    kinds = [entry[0] for entry in log]
    forwards = [i for i, kind in enumerate(kinds) if kind == "forward"]
    assert len(forwards) == 1 + warmup + iters  # the SDPA probe, the warm-up, the timed calls
    reset = kinds.index("reset peak")
    assert kinds.count("reset peak") == 1
    # after the probe and every warm-up call (cudnn.benchmark trials, compilation), before the first timed call
    assert forwards[warmup] < reset < forwards[warmup + 1]
    assert kinds[reset - 2 : reset] == ["sync", "allocated"]  # the resident bytes, read once the warm-up is done
    assert kinds.index("max allocated") > forwards[-1]


def test_time_callable_calls_after_warmup_between_warmup_and_timing():
    calls: list[str] = []
    hook = lambda: calls.append("hook")  # noqa: E731
    time_callable(lambda: calls.append("call"), warmup=2, iters=3, cv_threshold=1e9, max_retries=0, after_warmup=hook)
    assert calls == ["call", "call", "hook", "call", "call", "call"]


# --------------------------------------------------------------------------------------------------------------------
# TF32 (item 8)
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "turn_on",
    [
        "legacy",  # torch.backends.cuda.matmul.allow_tf32 = True (cudnn.allow_tf32 is True by default)
        "float32_matmul_precision",  # torch.set_float32_matmul_precision("medium"): also bf16 in oneDNN on the CPU
        "fp32_precision",  # the newer process-wide switch, which the legacy flags do not undo
    ],
)
def test_fp32_is_strict_during_a_measurement_and_restored_after(turn_on, keep_numerics):
    if turn_on == "legacy":
        torch.backends.cuda.matmul.allow_tf32 = True
    elif turn_on == "float32_matmul_precision":
        torch.set_float32_matmul_precision("medium")
    else:
        torch.backends.fp32_precision = "tf32"
    before = fp32_precision()
    assert tf32_flags() == {"tf32_matmul": True, "tf32_cudnn": True}
    log: list = []
    stats = measure_latency(Logged(log), (8, 8), warmup=1, iters=2, max_retries=0)
    assert {entry[1]["tf32_matmul"] or entry[1]["tf32_cudnn"] for entry in log} == {False}  # every call
    assert (stats.tf32_matmul, stats.tf32_cudnn) == (False, False)
    assert fp32_precision() == before and tf32_flags() == {"tf32_matmul": True, "tf32_cudnn": True}


def teststrict_fp32_turns_off_every_setting(keep_numerics):
    torch.backends.fp32_precision = "tf32"
    with latency.strict_fp32():
        assert set(fp32_precision().values()) == {"ieee"} and set(FP32_PRECISION_SETTINGS) == set(fp32_precision())
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32  # readable
        assert torch.get_float32_matmul_precision() == "highest"


def test_tf32_flags_match_the_legacy_flags(keep_numerics):
    for matmul in (False, True):
        for cudnn in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = matmul
            torch.backends.cudnn.allow_tf32 = cudnn
            assert tf32_flags() == {"tf32_matmul": matmul, "tf32_cudnn": cudnn}


# --------------------------------------------------------------------------------------------------------------------
# SDPA kernel (item 8)
# --------------------------------------------------------------------------------------------------------------------


def run(model: nn.Module, x: torch.Tensor, autocast: bool = False):
    def call():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model(x)

    return call


def test_sdpa_backend_names_the_kernel_aten_selects():
    model, x = Attention().eval(), torch.randn(1, 3, 4, 4)
    assert sdpa_backend(run(model, x)) == "flash_attention"  # ATen's CPU flash kernel
    assert sdpa_backend(run(model, x, autocast=True)) == "flash_attention"
    assert sdpa_backend(run(Logged([]), x)) is None  # no attention
    assert sdpa_backend(run(Attention(strided=True).eval(), x)) == "math"  # what these arguments select, flash on
    flash = torch.backends.cuda.flash_sdp_enabled()
    torch.backends.cuda.enable_flash_sdp(False)
    try:
        assert sdpa_backend(run(model, x)) == "math"
        assert measure_latency(model, (4, 4), warmup=1, iters=2, max_retries=0).sdpa_backend == "math"
    finally:
        torch.backends.cuda.enable_flash_sdp(flash)
    assert measure_latency(model, (4, 4), warmup=1, iters=2, max_retries=0).sdpa_backend == "flash_attention"


# --------------------------------------------------------------------------------------------------------------------
# torch.compile (item 3)
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def eager_backend(monkeypatch):
    """torch.compile through Dynamo with the "eager" backend (no Inductor: milliseconds); records the arguments."""
    calls: list[dict] = []
    real = torch.compile

    def compile(model, **kwargs):
        calls.append(kwargs)
        return real(model, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch, "compile", compile)
    yield calls
    torch._dynamo.reset()


def test_compiled_measurements_are_static_and_fresh_per_configuration(eager_backend):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    sizes = [(8, 8), (12, 12), (16, 8), (8, 8)]
    runs = [measure_latency(model, size, compile=True, warmup=2, iters=3, max_retries=0) for size in sizes]
    assert eager_backend == [{"dynamic": False}] * 4
    # without a reset, the second size recompiled the forward (and made sizes symbolic), and from the 9th
    # configuration on Dynamo ran it eagerly, while every row said compiled=True
    assert [(r.compiled, r.dynamo_recompiles, r.dynamo_eager_fallback) for r in runs] == [(True, 0, False)] * 4
    plain = measure_latency(model, (8, 8), warmup=1, iters=2, max_retries=0)
    assert (plain.compiled, plain.dynamo_recompiles, plain.dynamo_eager_fallback) == (False, None, None)


class Drifting(nn.Module):
    """A model whose forward reads a counter it changes: Dynamo guards on the value and recompiles every call."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x) * self.calls


def test_recompiles_and_eager_fallback_are_recorded(eager_backend):
    with torch._dynamo.config.patch(recompile_limit=2), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = measure_latency(Drifting(), (8, 8), compile=True, warmup=2, iters=3, max_retries=0)
    assert stats.compiled and stats.dynamo_recompiles >= 1 and stats.dynamo_eager_fallback is True
    assert any("recompilation" in str(w.message) and "eager" in str(w.message) for w in caught)


@pytest.mark.slow
def test_inductor_compiled_latency_on_cpu():
    """The real thing: Inductor compiles a tiny conv net for the CPU (needs a C compiler; seconds once cached)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    try:
        first = measure_latency(model, (16, 16), compile=True, warmup=1, iters=3, max_retries=0)
        second = measure_latency(model, (16, 24), compile=True, warmup=1, iters=3, max_retries=0)
    finally:
        torch._dynamo.reset()
    for stats in (first, second):
        assert stats.compiled and stats.dynamo_recompiles == 0 and stats.dynamo_eager_fallback is False
        assert len(stats.samples) == 3 and stats.median_ms > 0
    assert next(model.parameters()).device.type == "cpu"


def test_calibrated_latency_is_measured_like_measure_latency(monkeypatch):
    """The calibrated probe: the device with its index, strict fp32 during the timing, the model's tensors back."""
    from segbench.bench.measure import latency

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    model.to(memory_format=torch.channels_last)
    before = [(t, t.data_ptr(), t.stride()) for t in (*model.parameters(), *model.buffers())]
    seen = []
    real = latency.timed_pairs

    def spy(fn, calibrate, warmup, iters, device):
        seen.append((str(device), latency.tf32_flags()))
        return real(fn, calibrate, warmup, iters, device)

    monkeypatch.setattr(latency, "timed_pairs", spy)
    torch.backends.cudnn.allow_tf32 = True
    rows = latency.calibrated_latency(model, (16, 16), "cpu", warmup=1, iters=3)
    assert seen == [("cpu", {"tf32_matmul": False, "tf32_cudnn": False})]
    assert torch.backends.cudnn.allow_tf32  # restored afterwards
    assert {r["device"] for r in rows} == {"cpu"} and rows[0]["samples"]
    after = [(t, t.data_ptr(), t.stride()) for t in (*model.parameters(), *model.buffers())]
    assert all(a[0] is b[0] and a[1:] == b[1:] for a, b in zip(before, after))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
