"""Keep freed memory in the process, so that every image's large buffers reuse pages instead of faulting in new ones.

glibc's malloc hands blocks above its mmap threshold (at most 32 MiB) straight to the kernel, and gives them back on
`free`. A 1024x2048 RGB image in float64 is 48 MiB, and a model's activations at that size are tens of MiB each,
so on the CPU every image would allocate fresh pages and the kernel would zero them again: on the 2-core machine this
project is developed on, that page-fault work was about a third of a (folded-decoder) SegFormer-B0 forward pass at
512x1024 (about 410 ms against 258 ms) and is about 15% of a corruption. SegFormer's fast path now keeps its own
large buffers (`models.segformer_fast.banded_block`, the folded decoder's kept buffers) and depends on this little.
Setting `M_MMAP_MAX` to 0 serves every block from the heap, and a large `M_TRIM_THRESHOLD` keeps the heap's freed top,
so the next image finds its memory ready. The peak memory is unchanged; the process just does not return it between
images.

The setting is made once by the command-line entry point (`run_bench.py`), before any worker process is forked:
DataLoader workers and generate-c's processes inherit it. It is recorded in env.json and with every efficiency
figure (`hardware_info()["allocator"]`), since it changes CPU latency. `SEGBENCH_MALLOC=system` leaves the C
library's defaults alone; so does an allocator preloaded with `LD_PRELOAD` (jemalloc, tcmalloc), which has its own
caching.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # bytes (mallopt takes a C int): freed heap memory is kept up to 2 GiB

_state = "system default"


def describe() -> str:
    """The allocator setting this process runs with, for provenance records."""
    return _state


def retain_freed_memory() -> str:
    """Make glibc malloc serve every block from its heap and keep freed memory (see the module docstring).

    Returns:
        What is now in effect (the same text as `describe()`): the glibc setting, or why the default is kept (not
        glibc, `SEGBENCH_MALLOC=system`, or a preloaded allocator).
    """
    global _state
    preloaded = os.environ.get("LD_PRELOAD", "")
    if os.environ.get("SEGBENCH_MALLOC", "").lower() == "system":
        _state = "system default (SEGBENCH_MALLOC=system)"
    elif preloaded:
        _state = f"system default with LD_PRELOAD={preloaded}"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _state = "system default (not glibc)"
    else:
        libc = ctypes.CDLL(None)  # the C library this process already runs on (no library search at start-up)
        if libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
            _state = "glibc malloc, heap only (M_MMAP_MAX=0), freed memory kept (M_TRIM_THRESHOLD=2 GiB)"
        else:  # pragma: no cover - mallopt refuses only invalid values
            _state = "system default (mallopt refused)"
    return _state
