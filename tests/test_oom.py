"""bench/run/oom.py: out of memory told apart from other errors, by the messages PyTorch and NVIDIA libraries raise."""

from __future__ import annotations

import pytest
import torch

from segbench.bench.run.oom import is_out_of_memory


class CompileFailed(RuntimeError):
    """Like torch._dynamo's BackendCompilerFailed: a message of its own, the original in `inner_exception`."""

    def __init__(self, inner: BaseException | None = None):
        super().__init__("backend compiler failed")
        self.inner_exception = inner


def wrapped(inner: BaseException, via: str = "cause") -> RuntimeError:
    """`inner` re-raised as another error: ``raise ... from inner``, or held in ``inner_exception``."""
    if via == "inner_exception":
        return CompileFailed(inner)
    try:
        try:
            raise inner
        except BaseException as exc:
            raise CompileFailed() from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 80 GiB"),
        MemoryError(),
        RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
        torch.AcceleratorError("CUDA error: out of memory"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED"),
        RuntimeError("cuFFT error: CUFFT_ALLOC_FAILED"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
            "allocate 1125899906842624 bytes. Error code 12 (Cannot allocate memory)"
        ),
        wrapped(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")),
        wrapped(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED"), via="inner_exception"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:30],
)
def test_is_out_of_memory(exc):
    assert is_out_of_memory(exc)


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x3)"),
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED"),
        ValueError("CUDA out of memory"),  # not an error PyTorch raises
        wrapped(RuntimeError("Triton Error [CUDA]: invalid argument")),
        CompileFailed(),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:30],
)
def test_is_not_out_of_memory(exc):
    assert not is_out_of_memory(exc)


def test_real_cpu_allocation_failure_is_out_of_memory():
    with pytest.raises(RuntimeError) as info:
        torch.empty(2**60, dtype=torch.uint8)
    assert is_out_of_memory(info.value)
