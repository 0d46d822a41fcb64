"""GPU energy and power over a window of work, read through NVML (``nvidia-ml-py``, imported as ``pynvml``; install
it with ``pip install 'segbench[nvml]'``).

A window's energy comes from the first of two NVML readings the GPU offers:

- ``nvml_total_energy``: ``nvmlDeviceGetTotalEnergyConsumption``, the board's energy counter (millijoules since the
  driver was loaded; Volta and newer), read when the window opens and when it closes. NVML updates the counter every
  20-100 ms, so a window should last well over 100 ms; one over which it did not advance gives no reading.
- ``nvml_power_sampling``: ``nvmlDeviceGetPowerUsage`` (milliwatts), read when the window opens, every
  `SAMPLE_INTERVAL_S` by a background thread, and when it closes, integrated with the trapezoidal rule. On Ampere and
  newer (except GA100) NVML returns power averaged over the last second, which smooths a short window.

NVML numbers GPUs in PCI order and knows nothing of ``CUDA_VISIBLE_DEVICES`` or ``CUDA_DEVICE_ORDER``, so the GPU of a
torch device is looked up by the PCI address torch reports for it (``torch.cuda.get_device_properties``: domain, bus
and device ids), or by its UUID where torch has no PCI ids; never by index. `nvml_device` is that one lookup, for the
energy meter and for the clocks, power limit and persistence mode that `bench.measure.efficiency.hardware_info` records.

The energy is the whole board's (under MIG, the whole GPU's: NVML has no per-instance energy), other processes' work
on it included; the window spans wall time, so the idle gaps between timed calls are in it too.

Example (on a GPU with nvidia-ml-py):
    >>> with EnergyMeter("cuda") as meter, meter.window() as window:  # doctest: +SKIP
    ...     run_the_work()
    >>> window.reading.energy_j, window.reading.power_w, window.reading.source  # doctest: +SKIP
    (41.7, 208.5, 'nvml_total_energy')
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

TOTAL_ENERGY = "nvml_total_energy"
POWER_SAMPLING = "nvml_power_sampling"
SAMPLE_INTERVAL_S = 0.02
"""Seconds between power readings of the sampling fall-back."""

NVML_INSTALL = "pip install 'segbench[nvml]'"


class NvmlUnavailable(RuntimeError):
    """NVML cannot read this device; the message is one line saying why."""


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------------------------
# NVML for a torch device
# --------------------------------------------------------------------------------------------------------------------


def pci_bus_id(props: Any) -> str | None:
    """NVML's form of a GPU's PCI address (``"00000000:3B:00.0"``, domain:bus:device.function) from torch's device
    properties (``pci_domain_id``, ``pci_bus_id``, ``pci_device_id``); None when this torch does not report them."""
    ids = [getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id")]
    if any(not isinstance(i, int) for i in ids):
        return None
    return "{:08X}:{:02X}:{:02X}.0".format(*ids)


def _handle(nvml: Any, device: torch.device) -> Any:
    """The NVML handle of torch's `device` (a CUDA device with its index), by PCI address, else by UUID."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        props = torch.cuda.get_device_properties(index)
    except Exception as exc:  # noqa: BLE001 - no CUDA, or no such device
        raise NvmlUnavailable(f"torch cannot describe cuda:{index} ({_line(exc)})") from None
    bus = pci_bus_id(props)
    uuid = getattr(props, "uuid", None)
    try:
        if bus is not None:
            return nvml.nvmlDeviceGetHandleByPciBusId(bus)
        if uuid is not None:
            return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
    except Exception as exc:  # noqa: BLE001 - pynvml.NVMLError and its per-code subclasses
        where = f"PCI {bus}" if bus is not None else f"UUID GPU-{uuid}"
        raise NvmlUnavailable(f"NVML finds no GPU at {where} (cuda:{index}): {_line(exc)}") from None
    raise NvmlUnavailable(f"torch {torch.__version__} reports neither the PCI address nor the UUID of cuda:{index}")


@contextlib.contextmanager
def nvml_device(device: str | torch.device) -> Iterator[tuple[Any, Any]]:
    """NVML opened for the GPU of torch's `device` for the block: yields ``(pynvml, handle)``; NVML is shut down after
    (``nvmlInit``/``nvmlShutdown`` are reference-counted, so blocks may nest).

    Raises:
        NvmlUnavailable: one line: not a CUDA device, a ROCm build, nvidia-ml-py not installed, NVML did not initialise
            (no driver), or NVML does not find the GPU.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise NvmlUnavailable(f"NVML reads NVIDIA GPUs; the device is {device}")
    if torch.version.hip:
        raise NvmlUnavailable("NVML reads NVIDIA GPUs; this torch is a ROCm build")
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable(f"the nvidia-ml-py package (pynvml) is not installed ({NVML_INSTALL})") from None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver or library: NVMLError_LibraryNotFound, _DriverNotLoaded...
        raise NvmlUnavailable(f"NVML did not initialise ({_line(exc)})") from None
    try:
        yield pynvml, _handle(pynvml, device)
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


# --------------------------------------------------------------------------------------------------------------------
# Readings
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyReading:
    """The energy of one window.

    Attributes:
        energy_j: joules the board used over the window.
        seconds: the window's wall time.
        source: ``"nvml_total_energy"`` or ``"nvml_power_sampling"``.
    """

    energy_j: float
    seconds: float
    source: str

    @property
    def power_w(self) -> float:
        """Mean power over the window (W): ``energy_j / seconds``."""
        return self.energy_j / self.seconds

    def per_item(self, items: int) -> float:
        """Joules per item when the window did `items` items of work (images, calls)."""
        return self.energy_j / items


@dataclass
class EnergyWindow:
    """What `EnergyMeter.window` yields; filled in when the block ends: the `reading`, or the one-line `reason` there
    is none."""

    reading: EnergyReading | None = None
    reason: str | None = None


def integrate_power(samples: Sequence[tuple[float, float]]) -> float:
    """Joules from (seconds, milliwatts) samples in time order, by the trapezoidal rule."""
    return sum((p0 + p1) / 2 * (t1 - t0) for (t0, p0), (t1, p1) in zip(samples, samples[1:])) / 1e3


class _EnergyCounter:
    """``nvmlDeviceGetTotalEnergyConsumption`` (mJ) at the start and the end."""

    def __init__(self, nvml: Any, handle: Any, interval_s: float):
        self._read = lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        self._start_mj = self._read()
        self._t0 = time.perf_counter()

    def cancel(self) -> None:
        pass

    def stop(self) -> tuple[float, float]:
        seconds = time.perf_counter() - self._t0
        return (self._read() - self._start_mj) / 1e3, seconds


class _PowerSampler:
    """``nvmlDeviceGetPowerUsage`` (mW) at the start, every `interval_s` on a background thread, and at the end."""

    def __init__(self, nvml: Any, handle: Any, interval_s: float):
        self._read = lambda: nvml.nvmlDeviceGetPowerUsage(handle)
        self._interval_s = interval_s
        self._samples = [self._sample()]
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="segbench-power-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> tuple[float, float]:
        t = time.perf_counter()
        return t, float(self._read())

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._samples.append(self._sample())
            except Exception as exc:  # noqa: BLE001 - reported by stop()
                self._error = exc
                return

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()

    def stop(self) -> tuple[float, float]:
        self.cancel()
        if self._error is not None:
            raise self._error
        self._samples.append(self._sample())
        return integrate_power(self._samples), self._samples[-1][0] - self._samples[0][0]


_PROBES = {TOTAL_ENERGY: _EnergyCounter, POWER_SAMPLING: _PowerSampler}


class EnergyMeter:
    """The energy of `device`'s GPU over windows of work (`window`), while the meter is open (it opens NVML when made;
    use it as a context manager, or `close()` it).

    A meter for a device NVML cannot read (the CPU, no nvidia-ml-py, no driver, a GPU NVML does not find, or one that
    reports neither energy nor power) is made all the same: `source` is None, `reason` says why in one line, and its
    windows give no reading, with that reason.

    Args:
        device: the torch device measured (``"cuda"``: the current GPU).
        interval_s: seconds between power readings when the GPU has no energy counter.

    Attributes:
        source: ``"nvml_total_energy"``, ``"nvml_power_sampling"``, or None.
        reason: why `source` is None (else None).
    """

    def __init__(self, device: str | torch.device, interval_s: float = SAMPLE_INTERVAL_S):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.source: str | None = None
        self.reason: str | None = None
        self._nvml: Any = None
        self._handle: Any = None
        self._stack = contextlib.ExitStack()
        try:
            self._nvml, self._handle = self._stack.enter_context(nvml_device(self.device))
            self.source = self._choose_source()
        except NvmlUnavailable as exc:
            self._stack.close()
            self.reason = str(exc)

    def _choose_source(self) -> str:
        """The energy counter where the GPU has one, else power sampling; raises `NvmlUnavailable` with neither."""
        try:
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            return TOTAL_ENERGY
        except Exception as exc:  # noqa: BLE001 - NVMLError_NotSupported before Volta; anything else alike
            counter = _line(exc)
        try:
            self._nvml.nvmlDeviceGetPowerUsage(self._handle)
            return POWER_SAMPLING
        except Exception as exc:  # noqa: BLE001
            raise NvmlUnavailable(
                f"NVML reads neither the energy counter ({counter}) nor the power ({_line(exc)}) of {self.device}"
            ) from None

    def close(self) -> None:
        """Shut NVML down (a later window's reads fail, so it gives no reading)."""
        self._stack.close()

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def window(self) -> Iterator[EnergyWindow]:
        """Measure the block: the device is synchronised before the first reading and after the block (so the window
        holds the device work launched in it); the yielded `EnergyWindow` is filled in when the block ends without an
        exception."""
        result = EnergyWindow()
        if self.source is None:
            result.reason = self.reason
            yield result
            return
        self._synchronize()
        try:
            probe = _PROBES[self.source](self._nvml, self._handle, self.interval_s)
        except Exception as exc:  # noqa: BLE001 - a read that failed now although it worked when the meter opened
            result.reason = f"NVML read failed at the start of the window ({_line(exc)})"
            yield result
            return
        try:
            yield result
        except BaseException:
            probe.cancel()
            raise
        self._synchronize()
        try:
            energy_j, seconds = probe.stop()
        except Exception as exc:  # noqa: BLE001
            result.reason = f"NVML read failed at the end of the window ({_line(exc)})"
            return
        if energy_j <= 0 or seconds <= 0:
            result.reason = (
                f"{self.source}: no energy over the {seconds * 1e3:.0f} ms window (NVML updates its readings every "
                "20-100 ms: time more calls)"
            )
            return
        result.reading = EnergyReading(energy_j, seconds, self.source)


__all__ = [
    "POWER_SAMPLING",
    "SAMPLE_INTERVAL_S",
    "TOTAL_ENERGY",
    "EnergyMeter",
    "EnergyReading",
    "EnergyWindow",
    "NvmlUnavailable",
    "integrate_power",
    "nvml_device",
    "pci_bus_id",
]
