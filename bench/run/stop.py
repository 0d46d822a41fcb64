"""How a run stops when it is told to: Ctrl-C (SIGINT) and SIGTERM alike.

SLURM, Kubernetes and `kill` send SIGTERM at preemption and time limits; Python's default for it ends the process on
the spot, with no cleanup. While `stop_on_signals` is active, SIGTERM raises `Stopped` (a `KeyboardInterrupt`), so a
run stops as it does on Ctrl-C: the finished cells stay, results.csv and summary.csv are gathered from them, the run
folder's lock is released, and one line says how to resume. The command line then exits with the signal's
conventional code (`exit_code`: 128 + the signal's number, 143 for SIGTERM and 130 for SIGINT).
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any


class Stopped(KeyboardInterrupt):
    """A stop asked for by a signal; `signum` says which. A KeyboardInterrupt, so code that handles Ctrl-C handles
    every stop."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


_requested: list[int] = []
"""Signals received inside `stop_on_signals`, in order. An exception raised by a signal handler can be swallowed
(Python prints "Exception ignored in ..." when the signal lands inside a fork callback or a `__del__`), so the
request is also kept here, and `check_stop` raises it again at the next safe point."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    _requested.append(signum)
    raise Stopped(signum)


def check_stop() -> None:
    """Raise `Stopped` if a stop was asked for and its exception was lost; call it between units of work (cells,
    batches, images)."""
    if _requested:
        raise Stopped(_requested[-1])


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise `Stopped` inside the block (in the main thread, and only where a signal still has
    Python's default handling: a handler the caller installed is left alone); the previous handlers are restored
    after. A stop whose exception was swallowed is raised again when the block ends, so the caller still learns of
    it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = {signal.SIGTERM: (signal.SIG_DFL, None), signal.SIGINT: (signal.default_int_handler,)}
    previous = {signum: signal.getsignal(signum) for signum in defaults}
    mine = [signum for signum, handler in previous.items() if handler in defaults[signum]]
    if not mine:
        yield
        return
    _requested.clear()
    hook = sys.unraisablehook
    sys.unraisablehook = functools.partial(_quiet_stops, hook)
    for signum in mine:
        signal.signal(signum, _raise_stopped)
    try:
        yield
        check_stop()
    finally:
        for signum in mine:
            signal.signal(signum, previous[signum])
        sys.unraisablehook = hook
        _requested.clear()


def _quiet_stops(hook: Any, unraisable: Any) -> None:
    """`sys.unraisablehook` that keeps quiet about a swallowed `Stopped` (`check_stop` raises it again) and, once a
    stop was asked for, about the cleanup errors it causes in `__del__` methods (a DataLoader iterator interrupted
    while it started its workers); every other unraisable exception is passed on."""
    if not isinstance(unraisable.exc_value, Stopped) and not _requested:
        hook(unraisable)


def quiet_exit() -> None:
    """For a process that exits because it was stopped: keep quiet about errors in `__del__` methods from here on
    (objects a stop interrupted half-built, such as a DataLoader iterator, fail when they are collected)."""
    sys.unraisablehook = lambda unraisable: None


def exit_code(stop: KeyboardInterrupt) -> int:
    """The conventional exit code of a process a signal stopped: 128 + its number (Ctrl-C: 130, SIGTERM: 143)."""
    return 128 + getattr(stop, "signum", signal.SIGINT)
