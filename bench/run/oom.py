"""Out of memory, told apart from every other error.

PyTorch raises ``torch.OutOfMemoryError`` when its CUDA caching allocator fails, but cuBLAS, cuDNN, cuFFT and cuSOLVER
report a failed allocation as a plain RuntimeError with their status in the message, a CUDA call outside the allocator
as "CUDA error: out of memory", and the CPU allocator as a RuntimeError too. `is_out_of_memory` knows them all, so
that a sweep can record one configuration as out of memory and go on, and a runner can retry a model alone.

Example::

    failed = False
    try:
        rows = measure(model, size)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        failed = True
    if failed:  # outside the except block, whose traceback held the failed call's activations
        torch.cuda.empty_cache()
"""

from __future__ import annotations

import torch

OUT_OF_MEMORY_MESSAGES = (
    "CUDA out of memory",  # the caching allocator (torch.OutOfMemoryError), also when re-raised as another type
    "CUDA error: out of memory",  # cudaErrorMemoryAllocation from a CUDA call outside the caching allocator
    "CUBLAS_STATUS_ALLOC_FAILED",  # cuBLAS: cublasCreate, workspaces
    "CUDNN_STATUS_ALLOC_FAILED",  # cuDNN 8
    "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",  # cuDNN 9
    "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED",  # cuDNN 9 (CUDNN_STATUS_ALLOC_FAILED's new name)
    "CUFFT_ALLOC_FAILED",
    "CUSOLVER_STATUS_ALLOC_FAILED",
    "Triton Error [CUDA]: out of memory",  # a compiled kernel's launch
    "DefaultCPUAllocator: can't allocate memory",  # the CPU allocator
)
"""Substrings of the messages PyTorch's RuntimeErrors carry when an allocation failed (from libtorch_cuda's and the
NVIDIA libraries' status strings)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from (``torch.compile`` wraps errors in BackendCompilerFailed), is
    a failed allocation: ``torch.OutOfMemoryError`` (= ``torch.cuda.OutOfMemoryError``), Python's ``MemoryError``, or
    a RuntimeError with one of `OUT_OF_MEMORY_MESSAGES` (CUDA, cuBLAS, cuDNN, cuFFT, cuSOLVER, Triton, CPU allocator).

    Recover outside the ``except`` block: until it ends, the exception's traceback holds the failed call's frames, and
    through them its activations, so ``torch.cuda.empty_cache()`` belongs after it.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
            return True
        if isinstance(exc, RuntimeError) and any(message in str(exc) for message in OUT_OF_MEMORY_MESSAGES):
            return True
        exc = exc.__cause__ or getattr(exc, "inner_exception", None)
    return False
