"""The precision of the inference matmuls: chosen by the caller around a call, read by the kernels.

Precision enters at the entry points (`Embedder`, `Elmo`, `elmo embed --precision`), which run the
model inside `use_precision(name)`; the model's own signatures carry no precision. Like
`torch.autocast`, the choice is a context variable: it holds for the calls made inside the `with`
block, in this thread (or task) only, and is float32 outside any block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int8": torch.float32}
"""The names `precision` accepts and the dtype of the matmuls' inputs each selects ("int8": float32
inputs, quantised per call by `int8.linear`, against int8 weights; "float16": meant for GPUs)."""

_current: ContextVar[str] = ContextVar("elmo_lm_precision", default="float32")


def matmul_dtype(precision: str) -> torch.dtype:
    """The dtype of the matmuls for a precision name; raises ValueError for an unknown name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
    return PRECISIONS[precision]


def current_precision() -> str:
    """The precision chosen by the innermost `use_precision` block ("float32" outside any)."""
    return _current.get()


@contextmanager
def use_precision(precision: str) -> Iterator[None]:
    """Run the inference kernels called inside the block in `precision` (a name of `PRECISIONS`).

    Every precision but float32 is for inference only: the model's autograd path raises ValueError
    inside such a block.
    """
    matmul_dtype(precision)  # validates the name
    token = _current.set(precision)
    try:
        yield
    finally:
        _current.reset(token)
