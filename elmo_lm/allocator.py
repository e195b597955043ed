"""What the C library's allocator does with freed memory: keep it for reuse, or give it back.

These settings apply to the whole process, so the library changes them only when asked
(`train(tune_allocator=True)`, `Embedder(tune_allocator=True)`); the `elmo` command asks.
Training keeps freed memory: large temporaries then do not come from fresh pages each time.

glibc serves allocations above its mmap threshold (at most 32 MB) with fresh pages from the
kernel and hands them back when freed, so every large temporary pays a page fault per 4 KB page
on first touch. In a training step, whose temporaries are hundreds of MB (the sampled softmax's
`(N, S)` logits, the LSTM's gates), that cost more than the arithmetic (a step took 2.4x as long;
`benchmarks/RESULTS-kernels.md`). With mmap off and no trimming, freed blocks stay in the heap and
are reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

GLIBC_MMAP_MAX = 65536
"""glibc's default limit on mapped blocks (`keep_freed_memory` sets it to 0)."""

HEAP_CAP_BYTES = 4 * 2**20
"""`return_large_blocks`: blocks above this size are mapped and unmapped, freed memory above it returned."""


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to reuse freed memory instead of returning it (for this process).

    The process's resident size then stays at its peak. Returns False where the C library has
    no `mallopt` (not glibc): nothing changes there.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def return_large_blocks() -> bool:
    """Fix glibc's mmap and trim thresholds at `HEAP_CAP_BYTES` (for this process).

    By default glibc raises both after large blocks are freed (up to 32 MB and 64 MB), and that
    much freed memory then stays in the process (about 40 MB of the small model's float32
    embedding peak, at the same speed). Not used for bfloat16 embedding, whose many mid-sized
    buffers then fault in fresh pages (slower), nor in training. Figures: `benchmarks/RESULTS-kernels.md`.
    Returns False where the C library has no `mallopt`.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)) and bool(mallopt(M_MMAP_THRESHOLD, HEAP_CAP_BYTES)) \
        and bool(mallopt(M_TRIM_THRESHOLD, HEAP_CAP_BYTES))


def release_free_memory() -> None:
    """Give the heap's free memory back to the system (glibc's `malloc_trim`; no-op elsewhere).

    After a model is loaded, the freed temporaries of reading and converting its weights stay in
    the heap (glibc raises its mmap threshold to the size of the blocks freed); trimming returns
    them: 45 MB for the original model's float32 weights.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _libc() -> ctypes.CDLL | None:
    """The C library, or None where it cannot be opened."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None


def _mallopt():
    """glibc's `mallopt(param, value)`, or None (another C library)."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return mallopt
