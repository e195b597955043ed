"""`x @ W.T + b` through the fastest CPU matmul path for each shape: oneDNN, and MKL on Intel CPUs.

PyTorch sends float32 matmuls to MKL, which takes a slow code path on AMD CPUs: measured on an
AMD EPYC (2 cores, AVX-512), oneDNN's linear ran 2-4x faster at every shape of the model (the
LSTM's `(32, 512) x (512, 16384)` step: 2.7 ms against 7.7 ms in float32; the character CNN's
windows, the highway layers) and matched or beat MKL in bfloat16. Weights are given in
`F.linear`'s layout `(N, K)`; a contiguous one is fastest, a transposed view works too (about
1.3x slower at batch 32). `pack` turns a weight into oneDNN's own blocked layout, a copy that is
faster again at small batches (the per-step recurrent matmul). On Intel CPUs, `pack` gives float32
weights MKL's packed layout instead, faster still there (see `pack`). The arithmetic is ordinary
float32 (or bfloat16 with float32 accumulation): results differ from MKL's only by rounding.

Where oneDNN is missing (another build, another device), everything falls back to `F.linear`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .cpu_features import is_intel
from .scratch import scratch

_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)

ROW_QUANTUM = 64
"""Matmuls of more rows than this run on a multiple of it (zero rows added, their results dropped).

oneDNN builds and caches a kernel for each distinct shape (up to 1,024 of them): without this,
every batch's distinct-token count and chunk size is a new shape, and a long file fills that
cache with kernels (tens of MB).
"""

STEP_QUANTUM = 8
"""The same for smaller matmuls (the LSTM steps): their time goes to reading the weights, so a
few more rows cost next to nothing. Up to this many rows run as they are: there, padding cost
more than it saved (one row padded to 8 took 1.3-2x as long as one row alone, measured on a
Xeon), and a step of a single long sentence has one row."""


def _has_ops(backend: str, *names: str) -> bool:
    """Whether `torch.backends.<backend>` is available and `torch.ops.<backend>` has these ops."""
    try:
        return bool(getattr(torch.backends, backend).is_available()) \
            and all(hasattr(getattr(torch.ops, backend), name) for name in names)
    except (AttributeError, RuntimeError):
        return False


ONEDNN = _has_ops("mkldnn", "_linear_pointwise", "_reorder_linear_weight")
"""Whether this PyTorch build has the oneDNN linear kernels."""


MKL_PACKED = _has_ops("mkl", "_mkl_linear", "_mkl_reorder_linear_weight")
"""Whether this PyTorch build has MKL's packed float32 matmul (`torch.ops.mkl._mkl_linear`)."""

MKL_PACK_ROWS = 32
"""The row count MKL packs a weight for. The packed copy serves any row count (`_mkl_linear` is
told each call's own), but MKL picks its blocking for this one: the embedder's batch size. On a
Xeon, packing for 32 rows ran the original model's steps faster than packing for 8 or 128."""


class MklPacked(NamedTuple):
    """A float32 weight `(N, K)` in MKL's packed layout, for `linear` (from `pack_mkl`)."""

    data: torch.Tensor
    """MKL's packed copy, opaque."""
    shape: torch.Tensor
    """A zero-stride `(N, K)` float32 stand-in: the kernel reads only its sizes and dtype."""


def _usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return ONEDNN and x.device.type == "cpu" and x.dtype in _ONEDNN_DTYPES and x.dtype == weight.dtype


def linear(x: torch.Tensor, weight: torch.Tensor | MklPacked, bias: torch.Tensor | None = None,
           into_buffer: bool = False) -> torch.Tensor:
    """`x @ weight.T + bias`: x `(M, K)`, weight `(N, K)` (plain or from `pack`), bias `(N,)` -> `(M, N)`.

    The result has x's dtype (a float32 bias is fine with bfloat16 inputs). With `into_buffer`,
    the result may be written into one work buffer that such calls share (where
    `writes_into_buffers`): it is then valid until the next call with `into_buffer`.
    """
    if into_buffer and writes_into_buffers(x, weight):
        out = scratch(RESULT_BUFFER, (x.shape[0], weight.shape[0]), x.dtype, x.device)  # (M, N)
        x = x.contiguous()
        return torch.mm(x, weight.t(), out=out) if bias is None else torch.addmm(bias, x, weight.t(), out=out)
    if isinstance(weight, MklPacked):
        # Passing M as the packing row count makes the kernel use the packed copy for any M.
        return torch.ops.mkl._mkl_linear(x.contiguous(), weight.data, weight.shape, bias, x.shape[0])
    if weight.layout == torch._mkldnn or _usable(x, weight):
        M = x.shape[0]
        quantum = ROW_QUANTUM if M > ROW_QUANTUM else STEP_QUANTUM
        if M > STEP_QUANTUM and M % quantum:
            padded = x.new_zeros(M + quantum - M % quantum, x.shape[1])  # (M', K)
            padded[:M] = x
            return torch.ops.mkldnn._linear_pointwise(padded, weight, bias, "none", [], "")[:M]
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")
    return F.linear(x, weight, None if bias is None else bias.to(x.dtype))


MKL_INTO_BUFFERS = is_intel()
"""Whether `linear(..., into_buffer=True)` writes into the result buffer (see `writes_into_buffers`)."""

RESULT_BUFFER = "linear result"
"""The scratch buffer `linear(..., into_buffer=True)` writes into: one for all such calls, so that
the character CNN's and the LSTM's results take the memory of the larger, not of both."""


def writes_into_buffers(x: torch.Tensor, weight: torch.Tensor | MklPacked) -> bool:
    """Whether `linear(x, weight, into_buffer=True)` writes into the result buffer: float32 on an
    Intel CPU with a plain weight, where MKL's matmul (which can) runs about as fast as oneDNN's
    (which cannot).

    A large result in fresh memory pays a page fault per 4 KB on first touch (the embedder has
    glibc map every block above 4 MB afresh, `elmo_lm.allocator`). Measured on a Xeon: the small
    model's LSTM input projection `(875, 128) x (128, 4096)` took 9.8 ms in fresh memory and 4.3
    ms into a buffer, the character CNN's `(4000, 112) x (112, 2048)` 21.9 and 13.7 ms, the
    original's `(384, 512) x (512, 16384)` 38 ms either way; whole passes: small +16%, original
    unchanged.
    """
    return MKL_INTO_BUFFERS and x.dtype == torch.float32 and x.device.type == "cpu" \
        and isinstance(weight, torch.Tensor) and weight.layout == torch.strided and weight.dtype == torch.float32


def pack(weight: torch.Tensor) -> torch.Tensor | MklPacked:
    """A packed copy of a weight `(N, K)` for `linear`'s small-batch calls (the weight itself where
    neither library can take it).

    Float32 weights on an Intel CPU go to MKL: measured on a Xeon at the LSTM steps' shapes and 1-64
    rows, MKL's packed matmul ran 1.1-1.4x faster than oneDNN's (whole passes: original model +8%,
    small +14%), in the same memory. Elsewhere oneDNN's blocked layout: on an AMD EPYC, MKL took a
    slow code path (above), and its packed matmul was not measured there.
    """
    if MKL_PACKED and is_intel() and weight.device.type == "cpu" and weight.dtype == torch.float32:
        return pack_mkl(weight)
    return pack_onednn(weight)


def pack_onednn(weight: torch.Tensor) -> torch.Tensor:
    """oneDNN's blocked copy of a weight `(N, K)` (the weight itself where oneDNN is missing)."""
    if not (ONEDNN and weight.device.type == "cpu" and weight.dtype in _ONEDNN_DTYPES):
        return weight
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous())


def pack_mkl(weight: torch.Tensor) -> MklPacked:
    """MKL's packed copy of a float32 CPU weight `(N, K)` (requires `MKL_PACKED`)."""
    N, K = weight.shape
    data = torch.ops.mkl._mkl_reorder_linear_weight(weight.contiguous(), MKL_PACK_ROWS)
    return MklPacked(data, weight.new_zeros(()).expand(N, K))
