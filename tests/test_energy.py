"""bench/measure/energy.py: energy and power through NVML, with a stand-in `pynvml`; and how measure_latency, the
efficiency rows and hardware_info carry them."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import types

import pytest
import torch
from torch import nn

from segbench.bench.measure import efficiency as efficiency_mod
from segbench.bench.measure import energy as energy_mod
from segbench.bench.measure import latency as latency_mod
from segbench.bench.measure.efficiency import efficiency_sweep, hardware_info, nvml_state
from segbench.bench.measure.energy import (
    POWER_SAMPLING,
    TOTAL_ENERGY,
    EnergyMeter,
    EnergyWindow,
    NvmlUnavailable,
    integrate_power,
    nvml_device,
    pci_bus_id,
)
from segbench.bench.measure.latency import LatencyStats, measure_latency, time_callable


class FakeNVMLError(Exception):
    """pynvml.NVMLError stands in for every NVML failure (its subclasses are per return code)."""


def fake_pynvml(energy: bool = True, power: bool = True) -> types.ModuleType:
    """A `pynvml` with two GPUs at PCI 3B and 5E (NVML's order), read from attributes the test sets.

    `energy_mj`: the energy counter; `power_mw`: the power reading (a number or a function of nothing); `energy` /
    `power` False: the GPU does not support that reading (NVMLError, as before Volta).
    """
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = FakeNVMLError
    nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM, nvml.NVML_FEATURE_ENABLED = 1, 2, 1
    nvml.handles = {"00000000:3B:00.0": "gpu-3b", "00000000:5E:00.0": "gpu-5e"}
    nvml.uuids = {"GPU-aaaa-0001": "gpu-3b", "GPU-aaaa-0002": "gpu-5e"}
    nvml.refcount, nvml.energy_mj, nvml.power_mw, nvml.power_reads = 0, 5_000_000, 250_000, 0

    def init():
        nvml.refcount += 1

    def shutdown():
        nvml.refcount -= 1

    def by_bus(bus):
        if bus not in nvml.handles:
            raise FakeNVMLError("Not Found")
        return nvml.handles[bus]

    def by_uuid(uuid):
        if uuid not in nvml.uuids:
            raise FakeNVMLError("Not Found")
        return nvml.uuids[uuid]

    def total_energy(handle):
        if not energy:
            raise FakeNVMLError("Not Supported")
        return nvml.energy_mj

    def power_usage(handle):
        if not power:
            raise FakeNVMLError("Not Supported")
        nvml.power_reads += 1
        return nvml.power_mw() if callable(nvml.power_mw) else nvml.power_mw

    nvml.nvmlInit, nvml.nvmlShutdown = init, shutdown
    nvml.nvmlDeviceGetHandleByPciBusId, nvml.nvmlDeviceGetHandleByUUID = by_bus, by_uuid
    nvml.nvmlDeviceGetTotalEnergyConsumption, nvml.nvmlDeviceGetPowerUsage = total_energy, power_usage
    return nvml


def props(device: int | torch.device, pci: bool = True) -> types.SimpleNamespace:
    """torch's properties of cuda:<index> when CUDA_VISIBLE_DEVICES=1,0: cuda:0 is NVML's second GPU (5E)."""
    index = device if isinstance(device, int) else torch.device(device).index
    bus, uuid = ((0x5E, "aaaa-0002"), (0x3B, "aaaa-0001"))[index]
    ids = {"pci_domain_id": 0, "pci_bus_id": bus, "pci_device_id": 0} if pci else {}
    return types.SimpleNamespace(uuid=uuid, **ids)


@pytest.fixture()
def gpus(monkeypatch):
    """Two fake CUDA devices (cuda:0 current) in the reverse of NVML's order; device synchronisation is a no-op."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", props)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.version, "hip", None)


@pytest.fixture()
def nvml(monkeypatch, gpus):
    fake = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


# --------------------------------------------------------------------------------------------------------------------
# Finding the GPU
# --------------------------------------------------------------------------------------------------------------------


def test_pci_bus_id_is_nvml_s_form():
    assert pci_bus_id(types.SimpleNamespace(pci_domain_id=1, pci_bus_id=0x3B, pci_device_id=4)) == "00000001:3B:04.0"
    assert pci_bus_id(types.SimpleNamespace(pci_bus_id=0x3B)) is None  # a torch without all three ids


def test_the_handle_is_the_torch_device_s_gpu_not_nvml_s_index(nvml, monkeypatch):
    for device, handle in (("cuda:0", "gpu-5e"), ("cuda:1", "gpu-3b"), ("cuda", "gpu-5e")):
        with nvml_device(device) as (module, found):
            assert module is nvml and found == handle and nvml.refcount == 1
        assert nvml.refcount == 0  # shut down after the block
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props(index, pci=False))
    with nvml_device("cuda:1") as (_, found):  # no PCI ids in this torch: the UUID
        assert found == "gpu-3b"


def test_nvml_device_refuses_in_one_line(nvml, monkeypatch):
    def reason(device="cuda:0") -> str:
        with pytest.raises(NvmlUnavailable) as e, nvml_device(device):
            pass
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "the device is cpu" in reason("cpu")
    nvml.handles.clear()
    assert reason().startswith("NVML finds no GPU at PCI 00000000:5E:00.0 (cuda:0)")
    assert nvml.refcount == 0  # initialised, then shut down although the lookup failed

    def no_driver():
        raise FakeNVMLError("Driver Not Loaded")

    nvml.nvmlInit = no_driver
    assert reason() == "NVML did not initialise (FakeNVMLError: Driver Not Loaded)"
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert "nvidia-ml-py package (pynvml) is not installed" in reason()


# --------------------------------------------------------------------------------------------------------------------
# Energy windows
# --------------------------------------------------------------------------------------------------------------------


def test_total_energy_counter_gives_joules_per_image_and_watts(nvml):
    with EnergyMeter("cuda:1") as meter:
        assert meter.source == TOTAL_ENERGY and meter.reason is None
        with meter.window() as window:
            time.sleep(0.05)
            nvml.energy_mj += 42_000  # 42 J over the window
    reading = window.reading
    assert window.reason is None and reading.source == TOTAL_ENERGY
    assert reading.energy_j == pytest.approx(42.0)
    assert reading.per_item(20) == pytest.approx(2.1)  # e.g. 10 calls x batch 2
    assert 0.05 <= reading.seconds < 5 and reading.power_w == pytest.approx(42.0 / reading.seconds)
    assert nvml.refcount == 0 and nvml.power_reads == 0  # closed; the counter alone was read


def test_a_counter_that_did_not_advance_gives_no_reading_and_says_why(nvml):
    with EnergyMeter("cuda:0") as meter, meter.window() as window:
        pass
    assert window.reading is None and "no energy over the" in window.reason and "time more calls" in window.reason


def test_without_an_energy_counter_power_is_sampled_and_integrated(monkeypatch, gpus):
    nvml = fake_pynvml(energy=False)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    with EnergyMeter("cuda:0", interval_s=0.005) as meter:
        assert meter.source == POWER_SAMPLING
        with meter.window() as window:
            time.sleep(0.1)
    reading = window.reading
    assert reading.source == POWER_SAMPLING and 0.1 <= reading.seconds < 5
    assert reading.power_w == pytest.approx(250.0)  # a constant 250 W, integrated over the window
    assert reading.energy_j == pytest.approx(250.0 * reading.seconds)
    assert nvml.power_reads >= 5  # the background thread read it during the window, not just at both ends
    assert not [t for t in threading.enumerate() if t.name == "segbench-power-sampler"]


def test_sampling_follows_a_change_of_power(monkeypatch, gpus):
    nvml = fake_pynvml(energy=False)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    high = threading.Event()
    nvml.power_mw = lambda: 300_000 if high.is_set() else 100_000
    with EnergyMeter("cuda:0", interval_s=0.002) as meter, meter.window() as window:
        time.sleep(0.15)
        high.set()
        time.sleep(0.15)
    assert 150 < window.reading.power_w < 250  # about half the window at each power, 200 W


def test_trapezoidal_integration():
    assert integrate_power([(0.0, 100_000), (1.0, 300_000), (3.0, 300_000)]) == pytest.approx(200 + 600)
    assert integrate_power([(5.0, 1_000)]) == 0.0


def test_a_failing_block_stops_the_sampler_and_raises(monkeypatch, gpus):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy=False))
    with pytest.raises(ZeroDivisionError), EnergyMeter("cuda:0") as meter, meter.window():
        raise ZeroDivisionError("the work failed")
    assert not [t for t in threading.enumerate() if t.name == "segbench-power-sampler"]


def test_no_reading_without_pynvml_on_the_cpu_or_with_neither_reading(monkeypatch, gpus):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    meter = EnergyMeter("cuda:0")
    with meter.window() as window:
        pass
    assert meter.source is None and window.reading is None
    assert window.reason == meter.reason and "nvidia-ml-py" in meter.reason and "segbench[nvml]" in meter.reason

    cpu = EnergyMeter("cpu")
    assert cpu.source is None and cpu.reason == "NVML reads NVIDIA GPUs; the device is cpu"

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy=False, power=False))
    neither = EnergyMeter("cuda:0")
    assert neither.source is None and neither.reason.startswith("NVML reads neither the energy counter")


# --------------------------------------------------------------------------------------------------------------------
# measure_latency: one window per attempt, the kept attempt's energy
# --------------------------------------------------------------------------------------------------------------------


def test_each_attempt_runs_in_its_own_window_and_warmup_in_none(monkeypatch):
    durations = iter([1e-3, 3e-3] * 50)  # every attempt noisy: all 1 + max_retries attempts run
    now = [0.0]
    monkeypatch.setattr(latency_mod, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    events: list[str] = []

    def call() -> None:
        events.append("call")
        now[0] += next(durations)

    @contextlib.contextmanager
    def window():
        events.append("enter")
        yield
        events.append("exit")

    stats = time_callable(call, 2, 3, cv_threshold=0.01, max_retries=2, around_attempt=window)
    assert stats.attempts == 3
    assert events == ["call"] * 2 + ["enter", "call", "call", "call", "exit"] * 3


def test_the_kept_attempt_s_window_gives_the_energy(monkeypatch, gpus):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    meter = EnergyMeter("cuda:0")
    windows = [
        EnergyWindow(energy_mod.EnergyReading(30.0, 0.2, TOTAL_ENERGY)),
        EnergyWindow(energy_mod.EnergyReading(10.0, 0.1, TOTAL_ENERGY)),  # the first lowest CV: kept
        EnergyWindow(energy_mod.EnergyReading(99.0, 0.1, TOTAL_ENERGY)),
    ]
    fields = latency_mod._energy_fields(meter, windows, [0.3, 0.05, 0.05], images=20)
    assert fields == {
        "energy_per_image_j": 0.5,
        "power_mean_w": 100.0,
        "energy_source": TOTAL_ENERGY,
        "energy_note": None,
    }
    none = latency_mod._energy_fields(meter, [EnergyWindow(reason="why not")], [0.1], images=20)
    assert none == {"energy_per_image_j": None, "power_mean_w": None, "energy_source": None, "energy_note": "why not"}
    assert set(latency_mod._energy_fields(None, [], [0.1], 1).values()) == {None}  # the CPU
    meter.close()


def test_measure_latency_on_the_cpu_has_no_energy():
    stats = measure_latency(nn.Conv2d(3, 4, 3), (16, 16), warmup=1, iters=3, max_retries=0)
    assert (stats.energy_per_image_j, stats.power_mean_w, stats.energy_source, stats.energy_note) == (None,) * 4


# --------------------------------------------------------------------------------------------------------------------
# Efficiency rows and hardware provenance
# --------------------------------------------------------------------------------------------------------------------


def latency_stats(**energy) -> LatencyStats:
    timing = {
        "samples": [2.0],
        "median_ms": 2.0,
        "p90_ms": 2.0,
        "p99_ms": 2.0,
        "iqr_ms": 0.0,
        "mean_ms": 2.0,
        "std_ms": 0.0,
        "cv": 0.0,
        "noisy": False,
        "attempts": 1,
        "attempt_cvs": [0.0],
        "cv_threshold": 0.1,
        "warmup": 1,
        "iters": 5,
        "clock": "cuda.Event",
    }
    return LatencyStats(**timing, device="cuda:0", device_name="Fake GPU", **energy)


@pytest.mark.parametrize("measured", [True, False])
def test_energy_rows_appear_only_where_measured(monkeypatch, measured):
    energy = {"energy_per_image_j": 0.75, "power_mean_w": 310.0, "energy_source": TOTAL_ENERGY} if measured else {}
    monkeypatch.setattr(efficiency_mod, "measure_latency", lambda *args, **kwargs: latency_stats(**energy))
    rows = {r["metric"]: r for r in efficiency_sweep(nn.Conv2d(3, 3, 1), [(8, 16)], (2,), conventions=())}
    if not measured:
        assert "energy_per_image" not in rows and "power_mean" not in rows and "latency_median" in rows
        return
    per_image, power, median = rows["energy_per_image"], rows["power_mean"], rows["latency_median"]
    assert (per_image["value"], per_image["unit"], power["value"], power["unit"]) == (0.75, "J", 310.0, "W")
    assert per_image["energy_source"] == power["energy_source"] == TOTAL_ENERGY
    keys = {k: v for k, v in median.items() if k not in ("metric", "value", "unit")}
    for row in (per_image, power):  # the latency rows' keys: configuration and what it was measured on
        assert {k: v for k, v in row.items() if k not in ("metric", "value", "unit", "energy_source")} == keys
    assert (per_image["resolution"], per_image["batch_size"], per_image["device_name"]) == ("8x16", 2, "Fake GPU")


def test_hardware_info_reads_clocks_power_limit_and_persistence_through_nvml(nvml, monkeypatch):
    nvml.nvmlDeviceGetClockInfo = lambda handle, kind: {("gpu-5e", 1): 1755, ("gpu-5e", 2): 3201}[handle, kind]
    nvml.nvmlDeviceGetMaxClockInfo = lambda handle, kind: {("gpu-5e", 1): 1980}[handle, kind]
    nvml.nvmlDeviceGetEnforcedPowerLimit = lambda handle: 700_000  # mW

    def persistence(handle):
        raise FakeNVMLError("Not Supported")

    nvml.nvmlDeviceGetPersistenceMode = persistence
    state = nvml_state("cuda:0")
    assert state == {
        "gpu_sm_clock_mhz": 1755,
        "gpu_mem_clock_mhz": 3201,
        "gpu_sm_clock_max_mhz": 1980,
        "gpu_power_limit_w": 700.0,
        "gpu_persistence_mode": None,
    }
    nvml.nvmlDeviceGetPersistenceMode = lambda handle: nvml.NVML_FEATURE_ENABLED
    assert nvml_state("cuda:0")["gpu_persistence_mode"] is True and nvml.refcount == 0

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Fake GPU")
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda d: types.SimpleNamespace(total_memory=1, **vars(props(d)))
    )
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    monkeypatch.setattr(efficiency_mod, "_gpu_driver", lambda: "580.00")
    info = hardware_info("cuda:0")
    assert info["gpu_sm_clock_max_mhz"] == 1980 and info["gpu_power_limit_w"] == 700.0
    assert info["gpu_persistence_mode"] is True


def test_hardware_info_has_the_nvml_keys_as_none_without_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert set(nvml_state("cpu").values()) == {None}
    info = hardware_info("cpu")
    assert set(efficiency_mod.NVML_STATE_KEYS) <= info.keys()
    if not torch.cuda.is_available():
        assert all(info[key] is None for key in efficiency_mod.NVML_STATE_KEYS)
