"""Work buffers of the inference kernels, kept from call to call (per thread)."""

from __future__ import annotations

import math
import threading

import torch

_scratch = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A work buffer of this thread, reused from call to call (uninitialised).

    Large fresh allocations come from new pages, and the first touch of each page costs as much
    as a matmul over it; reusing the buffer avoids that. Buffers of one name share memory.
    """
    buffers = _scratch.__dict__.setdefault("buffers", {})
    key = (name, dtype, device, torch.is_inference_mode_enabled())
    numel = math.prod(shape)
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffers.pop(key, None)  # release the smaller buffer first
        buffer = buffers[key] = torch.empty(numel, dtype=dtype, device=device)
    return buffer[:numel].view(shape)
