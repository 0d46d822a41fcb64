"""Tests for bench/measure/efficiency.py (with bench/measure/flops.py and bench/measure/latency.py): parameters, FLOPs,
latency, sweeps."""

from __future__ import annotations

import csv
import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segbench import models
from segbench.bench.measure import efficiency as efficiency_mod
from segbench.bench.measure import flops as flops_mod
from segbench.bench.measure import latency as latency_mod
from segbench.bench.measure.efficiency import (
    cityscapes_resolutions,
    count_flops,
    count_params,
    efficiency_sweep,
    hardware_info,
    measure_latency,
    module_groups,
    segformer_attention_macs,
    sliding_window_flops,
    sliding_window_grid,
    summarize,
    time_callable,
)
from segbench.bench.measure.latency import model_peak_bytes
from segbench.bench.results.schema import COLUMNS

PAPER_TABLE = Path(__file__).parent / "data" / "segformer_paper_table1.csv"
VARIANTS = ["b0", "b1", "b2", "b3", "b4", "b5"]


def paper_rows() -> dict[str, dict[str, str]]:
    with open(PAPER_TABLE, newline="", encoding="utf-8") as f:
        return {row["variant"]: row for row in csv.DictReader(f)}


# --------------------------------------------------------------------------------------------------------------------
# Small hand-countable modules
# --------------------------------------------------------------------------------------------------------------------


class Conv(nn.Module):
    def __init__(self, bias: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=bias)

    def forward(self, x):
        return self.conv(x)


class LinearOverWidth(nn.Module):
    """A single Linear applied over the last (width) axis of a (B, 3, H, W) input."""

    def __init__(self, width: int, out: int):
        super().__init__()
        self.fc = nn.Linear(width, out)

    def forward(self, x):
        return self.fc(x)


class Attention(nn.Module):
    """SDPA on heads split from the input channels, or the same attention written as matmuls + softmax."""

    def __init__(self, heads: int, dim: int, dv: int, fused: bool):
        super().__init__()
        self.heads, self.fused = heads, fused
        self.q = nn.Linear(3, dim * heads)
        self.k = nn.Linear(3, dim * heads)
        self.v = nn.Linear(3, dv * heads)

    def forward(self, x):
        b = x.shape[0]
        t = x.flatten(2).transpose(1, 2)  # B, N, 3
        q = self.q(t).reshape(b, -1, self.heads, self.q.out_features // self.heads).transpose(1, 2)
        k = self.k(t[:, ::4]).reshape(b, -1, self.heads, self.k.out_features // self.heads).transpose(1, 2)
        v = self.v(t[:, ::4]).reshape(b, -1, self.heads, self.v.out_features // self.heads).transpose(1, 2)
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        attn = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)
        return attn @ v


def test_conv_flops_are_exact_in_both_conventions():
    h, w = 16, 20
    macs = 3 * 9 * 6 * h * w  # C_in * k * k * C_out per output position
    assert count_flops(Conv(bias=False), (h, w)).gmacs * 1e9 == macs
    assert count_flops(Conv(bias=True), (h, w)).gmacs * 1e9 == macs  # fvcore ignores the bias
    assert count_flops(Conv(bias=False), (h, w), "paper").gmacs * 1e9 == macs
    assert count_flops(Conv(bias=True), (h, w), "paper").gmacs * 1e9 == macs + 6 * h * w  # mmcv counts the bias


def test_depthwise_strided_conv_paper_count():
    class DW(nn.Module):
        def __init__(self):
            super().__init__()
            self.expand = nn.Conv2d(3, 6, 1, bias=False)
            self.dw = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6, bias=False)

        def forward(self, x):
            return self.dw(self.expand(x))

    h, w = 16, 20
    count = count_flops(DW(), (h, w), "paper", batch_size=2)
    expected = 2 * (3 * 6 * h * w + 9 * 6 * (h // 2) * (w // 2))
    assert count.gmacs * 1e9 == expected
    assert count.by_module == pytest.approx({"expand": 2 * 3 * 6 * h * w / 1e9, "dw": 2 * 54 * 80 / 1e9})


@pytest.mark.parametrize("convention", ["fvcore", "paper"])
def test_linear_flops_are_exact(convention):
    count = count_flops(LinearOverWidth(20, 7), (16, 20), convention, batch_size=3)
    assert count.gmacs * 1e9 == 3 * 3 * 16 * 20 * 7  # input elements x out_features (bias not counted)
    assert count.gflops == pytest.approx(2 * count.gmacs)
    assert count.convention == convention and count.input_size == (16, 20)


def test_sdpa_handle_counts_like_explicit_matmuls():
    heads, d, dv, h, w = 2, 8, 4, 8, 8
    fused = count_flops(Attention(heads, d, dv, fused=True), (h, w))
    explicit = count_flops(Attention(heads, d, dv, fused=False), (h, w))
    nq, nk = h * w, h * w // 4
    linears = nq * 3 * heads * d + nk * 3 * heads * (d + dv)
    assert fused.gmacs * 1e9 == linears + heads * nq * nk * (d + dv)
    assert fused.gmacs == pytest.approx(explicit.gmacs)
    assert "aten::scaled_dot_product_attention" not in fused.uncounted
    assert "fvcore" in fused.counter and "GMAC" in fused.counter


def test_paper_rules_follow_mmcv():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)
            self.bn_plain = nn.BatchNorm2d(3, affine=False)
            self.ln = nn.LayerNorm(8)
            self.relu = nn.ReLU()
            self.gelu = nn.GELU()
            self.pool = nn.MaxPool2d(2)
            self.up = nn.Upsample(scale_factor=2)
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            x = self.bn_plain(self.bn(x))  # 2n + n
            x = self.ln(x)  # 2n (affine LayerNorm over the width axis)
            x = self.gelu(self.relu(x))  # n (GELU is not counted)
            x = self.up(self.pool(x))  # pool: n input elements; upsample: n output elements
            x = F.interpolate(x, scale_factor=2.0)  # functional: not counted
            return self.drop(x)

    n = 3 * 8 * 8
    count = count_flops(Mixed(), (8, 8), "paper")
    assert count.gmacs * 1e9 == 2 * n + n + 2 * n + n + n + n
    assert count.by_module["gelu"] == 0
    assert count.uncounted == {"torch.nn.modules.activation.GELU": 1, "torch.nn.modules.dropout.Dropout": 1}


def test_paper_rules_match_exact_types_only():
    class MyConv(nn.Conv2d):
        pass

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = MyConv(3, 4, 1)

        def forward(self, x):
            return self.conv(x)

    assert count_flops(Wrapped(), (8, 8), "paper").gmacs == 0  # mmcv looks types up exactly
    assert count_flops(Wrapped(), (8, 8), "fvcore").gmacs * 1e9 == 3 * 4 * 64


def test_paper_convention_falls_back_to_a_real_forward_when_meta_fails():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1, bias=False)

        def forward(self, x):
            return self.conv(x) * float(x.abs().sum().item() >= 0)  # .item() cannot run on meta tensors

    assert count_flops(DataDependent(), (8, 8), "paper").gmacs * 1e9 == 3 * 4 * 64


def test_bad_flop_arguments_raise():
    with pytest.raises(ValueError, match="convention"):
        count_flops(Conv(bias=False), (8, 8), convention="ptflops")
    with pytest.raises(ValueError, match="input_size"):
        count_flops(Conv(bias=False), (8, -1))
    with pytest.raises(ValueError, match="batch_size"):
        count_flops(Conv(bias=False), (8, 8), batch_size=0)


# --------------------------------------------------------------------------------------------------------------------
# SegFormer
# --------------------------------------------------------------------------------------------------------------------


def test_by_module_breakdown_of_segformer_tiny_sums_to_total():
    model = models.create_model("segformer-tiny", num_classes=19)
    for convention in ("fvcore", "paper"):
        count = count_flops(model, (64, 96), convention)
        assert sum(count.by_module.values()) == pytest.approx(count.gmacs, rel=1e-9)
        stages = [f"backbone.stages.{i}" for i in range(4)]
        assert all(count.by_module[s] > 0 for s in stages)
        assert count.by_module["decode_head.fuse"] > 0 and count.by_module["decode_head.classifier"] > 0
    assert module_groups(model)[:4] == stages
    fv = count_flops(model, (64, 96), "fvcore")
    assert fv.by_module["decode_head.(other)"] > 0  # the decoder's functional bilinear upsampling
    assert "aten::gelu" in fv.uncounted


def test_paper_attention_term_is_the_authors_formula(monkeypatch):
    model = models.create_model("segformer-tiny", num_classes=19)
    h, w = 64, 128
    with_attention = count_flops(model, (h, w), "paper")
    expected = 0
    for stride, stage in zip(model.backbone.strides, model.backbone.stages):
        for block in stage.blocks:
            expected += segformer_attention_macs(h // stride, w // stride, block.attn.sr_ratio, block.attn.dim)
    assert expected > 0
    assert count_flops(model, (h, w), "paper", batch_size=2).gmacs == pytest.approx(2 * with_attention.gmacs)
    monkeypatch.setattr(flops_mod, "_attention_types", lambda: ())  # mmcv alone: attention matmuls not counted
    without = count_flops(model, (h, w), "paper")
    assert (with_attention.gmacs - without.gmacs) * 1e9 == pytest.approx(expected, abs=1)
    assert segformer_attention_macs(128, 128, 8, 32) == 2 * 128 * 128 * 16 * 16 * 32


def test_segformer_params_match_paper_table():
    paper = paper_rows()
    for variant in VARIANTS:
        params = count_params(models.create_model(f"segformer-{variant}", num_classes=150))
        row = paper[f"segformer-{variant}"]
        assert params.millions() == pytest.approx(float(row["total_params_m_150cls"]), abs=0.05), variant
        # paper rounds each part; B0's encoder is 3.32 M here and 3.4 in the table
        assert params.millions("backbone") == pytest.approx(float(row["encoder_params_m"]), abs=0.1), variant
        assert params.millions("head") == pytest.approx(float(row["decoder_params_m"]), abs=0.05), variant


@pytest.mark.parametrize("variant", VARIANTS)
def test_paper_convention_reproduces_segformer_table(variant):
    row = paper_rows()[f"segformer-{variant}"]
    side = int(row["ade20k_input"].split("x")[0])
    ade = count_flops(models.create_model(f"segformer-{variant}", num_classes=150), (side, side), "paper")
    assert ade.gmacs == pytest.approx(float(row["ade20k_gflops"]), rel=0.01)
    city = count_flops(models.create_model(f"segformer-{variant}", num_classes=19), (1024, 2048), "paper")
    assert city.gmacs == pytest.approx(float(row["cityscapes_gflops"]), rel=0.05)
    assert city.uncounted.get("torch.nn.modules.activation.GELU", 0) > 0


def test_fvcore_counts_attention_on_segformer_b0():
    model = models.create_model("segformer-b0", num_classes=150)
    count = count_flops(model, (512, 512), "fvcore")
    # fvcore counts the decoder's upsampling and 2x fewer norm ops, but the same matmuls: close to the paper's 8.4
    assert count.gmacs == pytest.approx(8.4, rel=0.03)
    assert not any("attention" in op for op in count.uncounted)
    # without the handle fvcore drops exactly the attention matmuls, which equal the authors' hand-added term
    from fvcore.nn import FlopCountAnalysis

    raw = FlopCountAnalysis(model, torch.zeros(1, 3, 512, 512))
    raw.unsupported_ops_warnings(False)
    raw_total = raw.total()
    assert raw.unsupported_ops()["aten::scaled_dot_product_attention"] == 8  # 2 blocks x 4 stages
    attention = sum(
        segformer_attention_macs(512 // s, 512 // s, stage.blocks[0].attn.sr_ratio, stage.blocks[0].attn.dim)
        * len(stage.blocks)
        for s, stage in zip(model.backbone.strides, model.backbone.stages)
    )
    assert count.gmacs * 1e9 - raw_total == pytest.approx(attention, abs=1)
    assert 0.5e9 < attention < 1.5e9  # "about 1 GMAC of B0's 8.5"


def test_sliding_window_grid_and_cost():
    assert sliding_window_grid((1024, 2048), (1024, 1024), (768, 768)) == (1, 3)
    assert sliding_window_grid((512, 512), (1024, 1024), (768, 768)) == (1, 1)
    assert sliding_window_grid((1025, 1024), (1024, 1024), (768, 768)) == (2, 1)
    model = models.create_model("segformer-tiny", num_classes=19)
    slide = sliding_window_flops(model, (64, 192), crop=(64, 64), stride=(48, 48), convention="paper")
    per_crop = count_flops(model, (64, 64), "paper")
    assert slide.grid == (1, 4) and slide.num_crops == 4
    assert slide.gmacs == pytest.approx(4 * per_crop.gmacs) and slide.gflops == pytest.approx(2 * slide.gmacs)
    small = sliding_window_flops(model, (48, 40), crop=(64, 64), stride=(48, 48), convention="paper")
    assert small.per_crop.input_size == (48, 40) and small.num_crops == 1


# --------------------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------------------


def test_count_params_split_and_sharing():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Conv2d(3, 8, 3)  # 8*3*9 + 8 = 224
            self.decode_head = nn.Linear(8, 4)  # 36
            self.aux = nn.Linear(8, 4, bias=False)
            self.aux.weight = self.decode_head.weight  # shared: counted once in the total

    params = count_params(Net())
    assert (params.total, params.backbone, params.head) == (260, 224, 36)
    assert params.by_module == {"backbone": 224, "decode_head": 36, "aux": 32}
    assert params.millions("backbone") == pytest.approx(224e-6)
    assert params.millions("aux") == pytest.approx(32e-6)
    with pytest.raises(ValueError, match="unknown part"):
        params.millions("neck")
    assert count_params(nn.Linear(2, 2)).backbone == 0


# --------------------------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------------------------


def test_summarize_matches_numpy():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.0]
    stats = summarize(values)
    arr = np.array(values)
    assert stats["median_ms"] == pytest.approx(np.median(arr))
    assert stats["p90_ms"] == pytest.approx(np.percentile(arr, 90))
    assert stats["p99_ms"] == pytest.approx(np.percentile(arr, 99))
    assert stats["iqr_ms"] == pytest.approx(np.percentile(arr, 75) - np.percentile(arr, 25))
    assert stats["cv"] == pytest.approx(arr.std(ddof=1) / arr.mean())
    with pytest.raises(ValueError):
        summarize([])


class FakeClock:
    """Stands in for `time` inside bench.measure.latency: calls advance it by exactly the time they pretend to take."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def spend(self, ms: float) -> None:
        self.now += ms / 1e3


def test_time_callable_excludes_warmup(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(latency_mod, "time", clock)
    calls = []

    def fn():
        calls.append(1)
        clock.spend(50.0 if len(calls) <= 3 else 2.0)  # the first three calls are slow: lazy init

    stats = time_callable(fn, warmup=3, iters=8, cv_threshold=0.1)
    assert len(calls) == 11 and stats.attempts == 1 and not stats.noisy
    assert stats.samples == pytest.approx([2.0] * 8)
    assert stats.median_ms == pytest.approx(2.0) and stats.cv == pytest.approx(0.0, abs=1e-9)
    assert stats.clock == "perf_counter"


def test_time_callable_flags_noisy_function():
    rng = random.Random(0)
    calls = []

    def fn():
        calls.append(1)
        time.sleep(rng.uniform(0.0, 0.02) if len(calls) % 3 == 0 else 0.001)  # random 0-20 ms every third call

    stats = time_callable(fn, warmup=2, iters=12, cv_threshold=0.2, max_retries=2)
    assert stats.noisy and stats.attempts == 3 and len(stats.attempt_cvs) == 3
    assert stats.cv == min(stats.attempt_cvs) > 0.2
    assert len(calls) == 2 + 3 * 12


def test_time_callable_remeasures_and_recovers(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(latency_mod, "time", clock)
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= 1 + 10:  # warm-up and the whole first attempt alternate 20 ms / 1 ms
            clock.spend(20.0 if len(calls) % 2 else 1.0)
        else:
            clock.spend(3.0 + 0.01 * (len(calls) % 3))  # then steady

    stats = time_callable(fn, warmup=1, iters=10, cv_threshold=0.3, max_retries=3)
    assert stats.attempts == 2 and stats.attempt_cvs[0] > 0.3 and not stats.noisy
    assert stats.cv == stats.attempt_cvs[1] < 0.01
    assert stats.median_ms == pytest.approx(3.01, abs=0.011) and len(calls) == 21


def test_time_callable_cuda_path_with_fake_events(monkeypatch):
    """The CUDA branch (events, synchronisation) runs here with stand-ins that read a CPU clock."""

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self, stream=None):
            assert stream == ("stream of", "cuda")  # the measured device's stream, not the current device's
            self.t = time.perf_counter()

        def synchronize(self):
            synced.append("event")

        def elapsed_time(self, end):
            return (end.t - self.t) * 1e3

    synced: list[str] = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append("device"))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream of", str(device)))
    stats = time_callable(lambda: time.sleep(0.002), warmup=1, iters=5, device="cuda", cv_threshold=10.0)
    assert stats.clock == "cuda.Event" and len(stats.samples) == 5 and stats.median_ms >= 2.0
    assert synced.count("event") == 5 and "device" in synced


def test_time_callable_rejects_bad_settings():
    with pytest.raises(ValueError):
        time_callable(lambda: None, warmup=0, iters=0)
    with pytest.raises(ValueError):
        time_callable(lambda: None, cv_threshold=0)


def test_measure_latency_cpu():
    model = models.create_model("segformer-tiny", num_classes=19)
    stats = measure_latency(model, (64, 64), batch_size=2, warmup=1, iters=4, cv_threshold=10.0)
    assert len(stats.samples) == 4 and stats.median_ms > 0
    assert stats.images_per_s == pytest.approx(2 * 1000 / stats.median_ms)
    assert stats.threads == torch.get_num_threads() and stats.device == "cpu" and stats.device_name
    assert stats.memory_kind == "cpu_process_peak_rss" and stats.peak_memory_mib > 10
    assert stats.input_size == (64, 64) and stats.batch_size == 2 and stats.precision == "fp32"
    assert stats.p90_ms >= stats.median_ms and stats.iqr_ms >= 0


def test_measure_latency_bf16_channels_last_restores_model():
    model = models.create_model("segformer-tiny", num_classes=19).train()
    stats = measure_latency(model, (64, 64), precision="bf16", channels_last=True, warmup=1, iters=2, max_retries=0)
    assert stats.precision == "bf16" and stats.channels_last and len(stats.samples) == 2
    assert model.training  # mode restored
    conv = model.backbone.stages[0].patch_embed.proj.weight
    assert conv.is_contiguous() and conv.device.type == "cpu"


@pytest.mark.parametrize("channels_last", [True, False])
def test_measure_latency_gives_back_the_very_same_weights(channels_last):
    # the fast SegFormer keeps its decoder's 1x1 convs NHWC on purpose; a latency probe must not undo that
    model = models.create_model("segformer-tiny", num_classes=19, fast=True)
    before = {n: (t.data_ptr(), t.stride(), t.clone()) for n, t in model.state_dict(keep_vars=True).items()}
    assert before["decode_head.branch.1.weight"][1][2:] != (1, 1)  # NHWC strides of a 1x1 conv weight
    measure_latency(model, (64, 64), channels_last=channels_last, warmup=1, iters=2, max_retries=0)
    after = model.state_dict(keep_vars=True)
    assert after.keys() == before.keys()
    for name, (ptr, stride, value) in before.items():
        assert (after[name].data_ptr(), after[name].stride()) == (ptr, stride), name
        assert torch.equal(after[name], value), name


def test_cuda_peak_memory_leaves_other_residents_out():
    mib = 2**20
    # 300 MiB were resident at the start, 40 of them this model's weights and input; the peak reached 500 MiB
    assert model_peak_bytes(500 * mib, 300 * mib, 40 * mib) == 240 * mib
    assert model_peak_bytes(500 * mib, 40 * mib, 40 * mib) == 500 * mib  # nothing else resident: the raw peak


def test_measure_latency_rejects_bad_arguments():
    model = nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="precision"):
        measure_latency(model, (8, 8), precision="int8")
    with pytest.raises(ValueError, match="input_size"):
        measure_latency(model, (8,))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            measure_latency(model, (8, 8), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_latency_cuda_fp16():
    model = models.create_model("segformer-tiny", num_classes=19)
    stats = measure_latency(model, (128, 256), device="cuda", precision="fp16", warmup=3, iters=10)
    assert stats.clock == "cuda.Event" and stats.memory_kind == "cuda_max_allocated_model"
    assert stats.peak_memory_mib > 0 and stats.median_ms > 0
    assert next(model.parameters()).device.type == "cpu"
    blob = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # another model's weights, say
    again = measure_latency(model, (128, 256), device="cuda", precision="fp16", warmup=3, iters=10)
    del blob
    assert abs(again.peak_memory_mib - stats.peak_memory_mib) < 16  # the 256 MiB resident elsewhere are left out


# --------------------------------------------------------------------------------------------------------------------
# Sweeps and provenance
# --------------------------------------------------------------------------------------------------------------------

BASE_COLUMNS = list(COLUMNS)


def test_efficiency_sweep_rows():
    model = models.create_model("segformer-tiny", num_classes=19)
    rows = efficiency_sweep(
        model, [(32, 64)], (1, 2), precision=("fp32", "bf16"), suite="demo", warmup=1, iters=2, max_retries=0
    )
    assert all(list(r)[: len(COLUMNS)] == BASE_COLUMNS for r in rows)
    assert {r["condition"] for r in rows} == {"efficiency"} and {r["model"] for r in rows} == {"segformer-tiny"}
    assert all(r["corruption"] is None and r["severity"] is None and r["suite"] == "demo" for r in rows)
    by_metric = {}
    for r in rows:
        by_metric.setdefault(r["metric"], []).append(r)
    assert by_metric["params"][0]["value"] == pytest.approx(count_params(model).millions())
    assert {r["convention"] for r in by_metric["gmacs"]} == {"fvcore", "paper"}
    for r in by_metric["gflops"]:
        gmacs = next(g for g in by_metric["gmacs"] if g["convention"] == r["convention"])
        assert r["value"] == pytest.approx(2 * gmacs["value"]) and r["unit"] == "GFLOP"
    assert len(by_metric["latency_median"]) == 4  # 2 batch sizes x 2 precisions
    assert {(r["batch_size"], r["precision"]) for r in by_metric["throughput"]} == {
        (1, "fp32"),
        (1, "bf16"),
        (2, "fp32"),
        (2, "bf16"),
    }
    units = {r["metric"]: r["unit"] for r in rows}
    assert units["latency_p90"] == "ms" and units["throughput"] == "img/s" and units["peak_memory"] == "MiB"
    assert all(isinstance(r["value"], float) for r in rows)
    assert "gmacs_sliding" not in by_metric  # 32x64 is smaller than the 1024x1024 eval crop
    for r in by_metric["latency_median"]:  # what each number ran under (issue 16, items 3 and 8)
        assert r["device"] == "cpu" and r["compiled"] is False
        assert r["dynamo_recompiles"] is None and r["dynamo_eager_fallback"] is None
        assert r["tf32_matmul"] is False and r["tf32_cudnn"] is False
        assert r["sdpa_backend"] in ("flash_attention", "math")  # SegFormer's attention is SDPA


def test_efficiency_sweep_sliding_rows_at_eval_resolution():
    model = models.create_model("segformer-tiny", num_classes=19)
    rows = efficiency_sweep(model, cityscapes_resolutions([1024]), conventions=("paper",), latency=False)
    whole = next(r for r in rows if r["metric"] == "gmacs")
    slide = next(r for r in rows if r["metric"] == "gmacs_sliding")
    assert whole["resolution"] == slide["resolution"] == "1024x2048" and slide["num_crops"] == 3
    per_crop = count_flops(model, (1024, 1024), "paper").gmacs
    assert slide["value"] == pytest.approx(3 * per_crop)
    assert not any(r["metric"].startswith("latency") for r in rows)
    with pytest.raises(ValueError, match="precision"):
        efficiency_sweep(model, [(64, 64)], precision="fp8")


def test_cityscapes_resolutions():
    assert cityscapes_resolutions() == [(512, 1024), (640, 1280), (768, 1536), (1024, 2048)]


def test_efficiency_sweep_records_an_oom_and_goes_on(monkeypatch):
    """One configuration out of memory (here batch 2 at the first resolution) gives one `oom` row with the latency
    rows' keys and a warning; every other configuration is still measured, and the CUDA cache is emptied once the
    exception (and the activations its traceback holds) is gone."""
    real = efficiency_mod.measure_latency
    emptied: list = []

    def measure(model, size, batch_size, device, **kwargs):
        if (size, batch_size) == ((32, 64), 2):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has 80 GiB")
        return real(model, size, batch_size, device="cpu", **kwargs)

    monkeypatch.setattr(efficiency_mod, "measure_latency", measure)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(sys.exc_info()[1]))
    model = models.create_model("segformer-tiny", num_classes=19)
    with pytest.warns(RuntimeWarning, match=r"out of memory at 32x64, batch 2, fp32 on cuda:0"):
        rows = efficiency_sweep(model, [(32, 64), (32, 32)], (1, 2), device="cuda", warmup=1, iters=2, max_retries=0)
    assert emptied == [None]  # called once, outside the except block
    oom = [r for r in rows if r["metric"] == "oom"]
    assert len(oom) == 1 and oom[0]["value"] == 1.0 and oom[0]["unit"] == "flag"
    assert (oom[0]["resolution"], oom[0]["batch_size"], oom[0]["device"]) == ("32x64", 2, "cuda:0")
    peak = next(r for r in rows if r["metric"] == "peak_memory")
    assert list(oom[0]) == list(peak)  # the same columns, in the same order
    assert oom[0]["noisy"] is None and oom[0]["memory_kind"] is None and oom[0]["device_name"] == "Fake GPU"
    measured = {(r["resolution"], r["batch_size"]) for r in rows if r["metric"] == "latency_median"}
    assert measured == {("32x64", 1), ("32x32", 1), ("32x32", 2)}  # the sweep went on after the failure


def _fake_latency(throughputs: dict, fail: set = frozenset()):
    """A `measure_latency` stand-in: `throughputs[(size, batch)]` images/s, out of memory at the pairs in `fail`."""
    from segbench.bench.measure.latency import LatencyStats, summarize

    calls: list = []

    def measure(model, size, batch_size, device, precision="fp32", **kwargs):
        calls.append((tuple(size), batch_size))
        if (tuple(size), batch_size) in fail:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        ms = 1000.0 * batch_size / throughputs[(tuple(size), batch_size)]
        stats = summarize([ms, ms])
        return LatencyStats(
            samples=[ms, ms],
            **stats,
            noisy=False,
            attempts=1,
            attempt_cvs=[0.0],
            cv_threshold=0.1,
            warmup=0,
            iters=2,
            clock="perf_counter",
            images_per_s=batch_size * 1000.0 / ms,
            peak_memory_mib=1.0,
            memory_kind="cpu_process_peak_rss",
            device="cpu",
            precision=precision,
            input_size=tuple(size),
            batch_size=batch_size,
        )

    return measure, calls


def test_batch_sizes_stop_where_throughput_stops_growing(monkeypatch):
    """With `saturation`, a resolution's batch sizes are timed in increasing order until one gains less than that
    fraction in throughput (recorded, then no larger batch); without it every batch size is timed."""
    size = (32, 64)
    throughput = {(size, 1): 10.0, (size, 2): 18.0, (size, 4): 18.5, (size, 8): 40.0}
    measure, calls = _fake_latency(throughput)
    monkeypatch.setattr(efficiency_mod, "measure_latency", measure)
    rows = efficiency_sweep(nn.Conv2d(3, 3, 1), [size], (8, 1, 4, 2), conventions=(), saturation=0.05)
    assert calls == [(size, 1), (size, 2), (size, 4)]  # 18.5 is under 5% more than 18: batch 8 is never timed
    assert [r["batch_size"] for r in rows if r["metric"] == "throughput"] == [1, 2, 4]
    calls.clear()
    efficiency_sweep(nn.Conv2d(3, 3, 1), [size], (1, 2, 4, 8), conventions=())
    assert calls == [(size, 1), (size, 2), (size, 4), (size, 8)]


def test_no_larger_batch_is_timed_after_one_runs_out_of_memory(monkeypatch):
    size = (32, 64)
    measure, calls = _fake_latency({(size, 1): 10.0, (size, 2): 19.0}, fail={(size, 4)})
    monkeypatch.setattr(efficiency_mod, "measure_latency", measure)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        rows = efficiency_sweep(nn.Conv2d(3, 3, 1), [size], (1, 2, 4, 8, 16), conventions=())
    assert calls == [(size, 1), (size, 2), (size, 4)]
    assert [(r["metric"], r["batch_size"]) for r in rows if r["metric"] in ("throughput", "oom")] == [
        ("throughput", 1),
        ("throughput", 2),
        ("oom", 4),
    ]


def test_the_latency_curve_adds_resolutions_at_batch_one(monkeypatch):
    main, small = (64, 128), (32, 64)
    measure, calls = _fake_latency({(main, 1): 5.0, (main, 2): 9.0, (small, 1): 20.0})
    monkeypatch.setattr(efficiency_mod, "measure_latency", measure)
    rows = efficiency_sweep(nn.Conv2d(3, 3, 1), [main], (1, 2), conventions=(), curve=[small, main])
    assert calls == [(main, 1), (main, 2), (small, 1)]  # the main resolution is not timed twice
    assert {r["resolution"] for r in rows if r["metric"] == "latency_median"} == {"64x128", "32x64"}


def test_efficiency_sweep_raises_other_errors(monkeypatch):
    def measure(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(efficiency_mod, "measure_latency", measure)
    with pytest.raises(RuntimeError, match="shapes"):
        efficiency_sweep(nn.Conv2d(3, 3, 1), [(8, 8)], conventions=())


def test_hardware_info_describes_the_measured_gpu(monkeypatch):
    class Props:
        def __init__(self, index):
            self.total_memory = (index + 1) * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props(torch.device(device).index))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"GPU {torch.device(device).index}")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    monkeypatch.setattr(efficiency_mod, "_gpu_driver", lambda: "580.00")
    for device, index in (("cuda:0", 0), ("cuda:1", 1), ("cuda", 1), (None, 1), ("cpu", 1)):
        info = hardware_info(device)
        assert (info["gpu_index"], info["gpu_name"], info["gpu_count"]) == (index, f"GPU {index}", 2)
        assert info["gpu_memory_mib"] == 1024 * (index + 1)


def test_environment_records_numerics_and_the_device_index(monkeypatch):
    from segbench.bench.run.provenance import environment

    env = environment(["segbench"], 0, {}, "demo", "1", "cpu")
    assert env["device"] == "cpu"
    assert env["tf32"] == latency_mod.tf32_flags() and set(env["tf32"]) == {"tf32_matmul", "tf32_cudnn"}
    assert env["fp32_precision"] == latency_mod.fp32_precision()
    assert env["sdpa_enabled"] == latency_mod.sdpa_enabled()
    assert set(env["sdpa_enabled"]) == {"flash", "mem_efficient", "cudnn", "math"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(efficiency_mod, "hardware_info", lambda device=None: {"gpu_index": torch.device(device).index})
    env = environment(["segbench"], 0, {}, "demo", "1", "cuda")
    assert env["device"] == "cuda:1" and env["hardware"] == {"gpu_index": 1}


def test_hardware_info():
    info = hardware_info()
    assert info["torch_version"] == torch.__version__ and info["cpu_model"]
    assert info["cpu_count"] >= 1 and 1 <= info["cpu_affinity"] <= info["cpu_count"]
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["cuda_available"] == torch.cuda.is_available()
    if info["cuda_available"]:
        assert info["gpu_name"] and info["cuda_version"] and info["cudnn_version"]
    else:
        assert info["gpu_name"] is None


def test_cpu_model_name_reads_proc_cpuinfo():
    name = latency_mod.cpu_model_name()
    assert isinstance(name, str) and name


def test_bench_efficiency_script_prints_tables(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_efficiency.py"
    spec = importlib.util.spec_from_file_location("bench_efficiency_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = ["--models", "segformer-tiny,segformer-b0", "--resolution", "512x512", "--num-classes", "150"]
    script.main([*args, "--no-latency"])
    out = capsys.readouterr().out
    assert "threads:" in out and "precision: fp32" in out
    b0 = next(line for line in out.splitlines() if line.strip().startswith("segformer-b0") and "512x512" not in line)
    assert "1.0029" in b0  # 512x512 with 150 classes is the paper's ADE20K setting: ratio shown
    assert "segformer-b0    512x512" in out  # the paper-ratio table


@pytest.mark.parametrize("name", ["segformer-tiny", "segformer-b0-mmseg"])
def test_fast_segformer_reports_architecture_and_executed_flops(name):
    from segbench.bench.measure.efficiency import efficiency_sweep

    faithful, fast = models.create_model(name), models.create_model(name, fast=True)
    assert fast.architecture().backbone is fast.backbone  # shares the encoder, unfolded decoder
    assert type(fast.architecture().decode_head) is type(faithful.decode_head)

    def values(model):
        rows = efficiency_sweep(model, [(64, 128)], conventions=("fvcore", "paper"), latency=False)
        return {(r["metric"], r["convention"]): r["value"] for r in rows}

    slow, quick = values(faithful), values(fast)
    for key, value in slow.items():  # params and FLOPs of the published architecture, as for the faithful model
        assert quick[key] == pytest.approx(value), key
    for convention in ("fvcore", "paper"):
        executed = quick[("gmacs_executed", convention)]
        assert 0 < executed < quick[("gmacs", convention)], convention  # the folded decoder skips the 1/4-res fuse
        assert executed == pytest.approx(count_flops(fast, (64, 128), convention=convention).gmacs)
    assert not any(metric.endswith("_executed") for metric, _ in slow)


def test_torch_counter_convention_counts_the_dispatched_kernels():
    """The "torch" convention: PyTorch's FlopCounterMode, halved into MACs; a conv's count is its textbook formula."""
    from segbench.bench.measure.flops import count_flops

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)).eval()
    count = count_flops(conv, (16, 32), convention="torch")
    assert count.gmacs * 1e9 == 3 * 9 * 8 * 16 * 32  # C_in * k*k * C_out * output positions
    assert count.convention == "torch" and "FlopCounterMode" in count.counter
    assert count_flops(conv, (16, 32), convention="fvcore").gmacs == count.gmacs
