"""What the C library's allocator does with freed memory: keep it for reuse, or give it back.

Training keeps it: large temporaries then do not come from fresh pages each time.

glibc serves allocations above its mmap threshold (at most 32 MB) with fresh pages from the
kernel and hands them back when freed, so every large temporary pays a page fault per 4 KB page
on first touch. In a training step, whose temporaries are hundreds of MB (the sampled softmax's
`(N, S)` logits, the LSTM's gates), that cost more than the arithmetic: 4.5 s against 1.9 s per
step for an LSTM 1024 -> 128 model at batch 128 (benchmarks/train_speed.py). With mmap off and
no trimming, freed blocks stay in the heap and are reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc's allocator to reuse freed memory instead of returning it (once per process).

    The process's resident size then stays at its peak. Returns False where the C library has
    no `mallopt` (not glibc): nothing changes there.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def release_free_memory() -> None:
    """Give the heap's free memory back to the system (glibc's `malloc_trim`; no-op elsewhere).

    After a model is loaded, the freed temporaries of reading and converting its weights stay in
    the heap (glibc raises its mmap threshold to the size of the blocks freed); trimming returns
    them: 45 MB for the original model's float32 weights.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
