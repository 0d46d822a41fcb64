"""The one clock behind every timing segbench takes: latency samples, calibrated-latency pairs and cell phases.

On the CPU (and any device that is not CUDA) a mark is a reading of ``time.perf_counter``. On a CUDA device a mark
is a ``torch.cuda.Event`` recorded on that device's current stream (``torch.cuda.current_stream(device)``: the
measured device, which need not be the current one), and the only waits are for that device:

- read at once: `elapsed_ms(start, end)` waits for the `end` event, so a per-call timing covers the GPU work and not
  just its launch (`time_ms` times one call that way);
- read at the end: `add(key, start, end)` only files the pair, and `seconds()` waits once, for the latest mark, and
  then reads every pair filed since the last `seconds()`: many marks, one wait, and nothing in between holds the host.

`synchronize()` waits for all the measured device's work (all its streams), as before a first timed call.

Example:
    >>> clock = Clock("cpu")
    >>> start = clock.mark()
    >>> clock.add(("cell", "model"), start, clock.mark())
    >>> clock.seconds()[("cell", "model")] >= 0.0
    True
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Any

import torch

Mark = Any
"""What `Clock.mark` returns: a ``time.perf_counter`` reading (seconds) or a recorded ``torch.cuda.Event``."""


class Clock:
    """Marks in time on one device, read at once (`elapsed_ms`) or accumulated and read once (`add`, `seconds`).

    Args:
        device: where the timed work runs: ``"cuda"``, ``"cuda:1"``... use CUDA events on that device's current
            stream (taken when the clock is made); anything else the host clock.
        timer: the host clock, ``time.perf_counter`` by default (a stand-in lets tests control time).

    Attributes:
        device: the measured device.
        cuda: whether marks are CUDA events.
        kind: ``"cuda.Event"`` or ``"perf_counter"``, for the record of how a number was taken.
    """

    def __init__(self, device: str | torch.device = "cpu", timer: Callable[[], float] | None = None) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.kind = "cuda.Event" if self.cuda else "perf_counter"
        self._stream = torch.cuda.current_stream(self.device) if self.cuda else None
        self._timer = timer
        self._latest: Mark = None  # the last CUDA event recorded: once it is done, every earlier one is
        self._pending: list[tuple[Hashable, Mark, Mark]] = []
        self._totals: defaultdict[Hashable, float] = defaultdict(float)

    def synchronize(self) -> None:
        """Wait for every stream of the measured device (nothing to wait for on the CPU)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def mark(self) -> Mark:
        """A point in time: a host clock reading, or a CUDA event recorded on the measured device's stream."""
        if not self.cuda:
            return (self._timer or time.perf_counter)()
        event = torch.cuda.Event(enable_timing=True)
        event.record(self._stream)
        self._latest = event
        return event

    def elapsed_ms(self, start: Mark, end: Mark) -> float:
        """Milliseconds from `start` to `end`, read now (on CUDA: after waiting for `end` to be reached)."""
        if not self.cuda:
            return (end - start) * 1e3
        end.synchronize()
        return start.elapsed_time(end)

    def time_ms(self, fn: Callable[[], Any]) -> float:
        """Milliseconds of one call of `fn()`, read at once (its result is dropped)."""
        start = self.mark()
        fn()
        return self.elapsed_ms(start, self.mark())

    def add(self, key: Hashable, start: Mark, end: Mark) -> None:
        """Count the time from `start` to `end` towards `key`; on CUDA it is read later, by `seconds`, without a wait
        now."""
        if self.cuda:
            self._pending.append((key, start, end))
        else:
            self._totals[key] += end - start

    def seconds(self) -> defaultdict[Hashable, float]:
        """Seconds per key of everything `add`ed so far; a key never added reads 0.0.

        On CUDA this is the one wait: for the latest mark, which the device reaches after every earlier one.
        """
        if self._pending:
            self._latest.synchronize()
            for key, start, end in self._pending:
                self._totals[key] += start.elapsed_time(end) / 1e3
            self._pending.clear()
        return defaultdict(float, self._totals)
