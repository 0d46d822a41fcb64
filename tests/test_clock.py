"""The one timing clock (bench/measure/clock.py): host time on the CPU, CUDA events on the measured device's stream."""

from __future__ import annotations

import time

import pytest
import torch

from segbench.bench.measure import latency
from segbench.bench.measure.clock import Clock


def test_cpu_clock_times_a_sleep():
    clock = Clock("cpu")
    assert clock.kind == "perf_counter" and not clock.cuda
    ms = clock.time_ms(lambda: time.sleep(0.02))
    assert 19.0 <= ms < 200.0
    start = clock.mark()
    time.sleep(0.01)
    middle = clock.mark()
    time.sleep(0.02)
    clock.add("a", start, middle)
    clock.add("b", middle, clock.mark())
    clock.add("a", start, middle)
    seconds = clock.seconds()
    assert 0.019 <= seconds["a"] < 0.2 and 0.019 <= seconds["b"] < 0.2
    assert seconds["never added"] == 0.0
    assert clock.elapsed_ms(start, middle) == pytest.approx((middle - start) * 1e3)


def test_cpu_clock_takes_a_stand_in_timer():
    now = iter([1.0, 1.25, 2.0, 2.5])
    clock = Clock("cpu", timer=lambda: next(now))
    assert clock.time_ms(lambda: None) == pytest.approx(250.0)
    clock.add((0, 1), clock.mark(), clock.mark())
    assert dict(clock.seconds()) == {(0, 1): pytest.approx(0.5)}


class _FakeCuda:
    """Stand-ins for `torch.cuda.Event`, `current_stream` and `synchronize` that log what is recorded and waited on,
    with event times from a counter (1 ms a tick)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, current: str = "cuda:0"):
        self.log: list[tuple] = []
        ticks = iter(range(1000))
        log = self.log

        class Event:
            def __init__(self, enable_timing: bool = False):
                assert enable_timing
                self.t: int | None = None

            def record(self, stream=None):
                log.append(("record", stream))
                self.t = next(ticks)

            def synchronize(self):
                log.append(("event wait", self.t))

            def elapsed_time(self, end) -> float:
                assert self.t is not None and end.t is not None, "read before both were recorded"
                return float(end.t - self.t)

        def current_stream(device=None):
            device = torch.device(device) if device is not None else None
            return ("stream of", str(device) if device is not None and device.index is not None else current)

        def synchronize(device=None):
            device = torch.device(device) if device is not None else None
            log.append(("device sync", str(device) if device is not None and device.index is not None else current))

        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "current_stream", current_stream)
        monkeypatch.setattr(torch.cuda, "synchronize", synchronize)

    def waits(self) -> list[tuple]:
        return [entry for entry in self.log if entry[0] != "record"]

    def streams(self) -> set:
        return {entry[1] for entry in self.log if entry[0] == "record"}


def test_cuda_clock_records_and_syncs_the_measured_device(monkeypatch):
    fake = _FakeCuda(monkeypatch, current="cuda:0")
    clock = Clock("cuda:1")
    assert clock.kind == "cuda.Event" and clock.cuda
    clock.synchronize()
    assert clock.time_ms(lambda: None) == 1.0
    assert fake.streams() == {("stream of", "cuda:1")}  # not the current device's stream
    assert fake.waits() == [("device sync", "cuda:1"), ("event wait", 1)]  # the measured device, then its end event


def test_cuda_clock_deferred_reads_wait_once(monkeypatch):
    fake = _FakeCuda(monkeypatch, current="cuda:0")
    clock = Clock(torch.device("cuda", 1))
    for cell in (0, 1, 0):
        t0 = clock.mark()
        t1 = clock.mark()
        clock.add((cell, 0), t0, t1)
        clock.add((cell, 1), t1, clock.mark())
    assert fake.waits() == []  # nothing held the host while marking
    seconds = clock.seconds()
    assert fake.waits() == [("event wait", 8)]  # one wait, for the latest mark
    assert dict(seconds) == {(0, 0): 0.002, (0, 1): 0.002, (1, 0): 0.001, (1, 1): 0.001}
    assert clock.seconds() == seconds and fake.waits() == [("event wait", 8)]  # nothing new: no second wait
    assert seconds[5, 0] == 0.0  # a cell that never ran
    assert fake.streams() == {("stream of", "cuda:1")}


def test_latency_and_calibrated_pairs_use_the_measured_device(monkeypatch):
    fake = _FakeCuda(monkeypatch, current="cuda:0")
    stats = latency.time_callable(lambda: None, warmup=1, iters=3, device="cuda:1", cv_threshold=10.0)
    assert stats.clock == "cuda.Event" and stats.samples == [1.0, 1.0, 1.0]
    assert fake.streams() == {("stream of", "cuda:1")}
    assert {w for w in fake.waits() if w[0] == "device sync"} == {("device sync", "cuda:1")}
    fake.log.clear()
    model_ms, calib_ms = latency.timed_pairs(lambda: None, lambda: None, warmup=1, iters=2, device="cuda:1")
    assert model_ms == calib_ms == [1.0, 1.0]
    assert fake.streams() == {("stream of", "cuda:1")}
    waits = fake.waits()
    assert waits[0] == ("device sync", "cuda:1") and all(w[0] == "event wait" for w in waits[1:])
    assert len(waits) == 1 + 2 * (1 + 2)  # every timed call waited for, never a sync of another device
