"""Lazily compiled numba kernels shared by the CPU fast paths (metrics, label maps).

numba is imported on the first call only, so importing `bench` stays cheap and GPU-only runs never load it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable


@functools.cache
def compiled(fn: Callable) -> Callable:
    """`fn` compiled by numba in nopython mode, releasing the GIL (so chunks can run in parallel threads).

    `cache=True` keeps the machine code in `bench/__pycache__` (or numba's user cache), so later processes skip the
    compilation (about 1 s per kernel); numba refuses caching when no cache folder is writable, and then the kernel is
    compiled once per process instead.
    """
    from numba import njit

    try:
        return njit(nogil=True, cache=True)(fn)
    except RuntimeError:
        return njit(nogil=True)(fn)
