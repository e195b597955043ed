"""`x @ W.T + b` through the fastest CPU matmul path for each shape: oneDNN, and MKL on Intel CPUs.

PyTorch sends float32 matmuls to MKL, which takes a slow code path on AMD CPUs, where oneDNN's
linear ran 2-4x faster at every shape of the model and matched or beat MKL in bfloat16 (figures:
`benchmarks/RESULTS-kernels.md`). Weights are given in `F.linear`'s layout `(N, K)`; a contiguous
one is fastest, a transposed view works too (slower at batch 32). `pack` turns a weight into oneDNN's own blocked layout, a copy that is
faster again at small batches (the per-step recurrent matmul). On Intel CPUs, `pack` gives float32
weights MKL's packed layout instead, faster still there (see `pack`). The arithmetic is ordinary
float32 (or bfloat16 with float32 accumulation): results differ from MKL's only by rounding.

Where oneDNN is missing (another build, another device), everything falls back to `F.linear`; so
do bfloat16 matmuls on a CPU without bfloat16 instructions (computed in float32, `cpu_features`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..cpu_features import bfloat16_runs, is_intel
from . import int8
from .scratch import scratch
from .tuning import packing_for

ROW_QUANTUM = 64
"""Matmuls of more rows than this run on a multiple of it (zero rows added, their results dropped).

oneDNN builds and caches a kernel for each distinct shape (up to 1,024 of them): without this,
every batch's distinct-token count and chunk size is a new shape, and a long file fills that
cache with kernels (tens of MB).
"""

STEP_QUANTUM = 8
"""The same for smaller matmuls (the LSTM steps): their time goes to reading the weights, so a
few more rows cost next to nothing. Up to this many rows run as they are: there, padding cost
more than it saved (`benchmarks/RESULTS-kernels.md`), and a step of a single long sentence has one row."""


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
told each call's own), but MKL picks its blocking for this one: the embedder's batch size (faster than
8 or 128 on a Xeon, `benchmarks/RESULTS-kernels.md`)."""


class MklPacked(NamedTuple):
    """A float32 weight `(N, K)` in MKL's packed layout, for `linear` (from `pack_mkl`)."""

    data: torch.Tensor
    """MKL's packed copy, opaque."""
    shape: torch.Tensor
    """A zero-stride `(N, K)` float32 stand-in: the kernel reads only its sizes and dtype."""


def _onednn_takes(dtype: torch.dtype) -> bool:
    """Whether oneDNN's matmuls take this dtype here: float32, and bfloat16 on a CPU with its instructions."""
    return dtype == torch.float32 or (dtype == torch.bfloat16 and bfloat16_runs())


def _usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return ONEDNN and x.device.type == "cpu" and x.dtype == weight.dtype and _onednn_takes(x.dtype)


def _bfloat16_without_instructions(x: torch.Tensor) -> bool:
    """A bfloat16 matmul on a CPU without bfloat16 instructions (computed in float32 instead)."""
    return x.dtype == torch.bfloat16 and x.device.type == "cpu" and not bfloat16_runs()


def linear(x: torch.Tensor, weight: torch.Tensor | MklPacked | int8.Int8Weight, bias: torch.Tensor | None = None,
           into_buffer: bool = False) -> torch.Tensor:
    """`x @ weight.T + bias`: x `(M, K)`, weight `(N, K)` (plain, from `pack` or `int8.quantize`),
    bias `(N,)` -> `(M, N)`.

    The result has x's dtype (a float32 bias is fine with bfloat16 inputs; float32 for an int8
    weight). With `into_buffer`, the result may be written into one work buffer that such calls
    share (where `writes_into_buffers`): it is then valid until the next call with `into_buffer`.
    """
    if isinstance(weight, int8.Int8Weight):
        return int8.linear(x, weight, bias)
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
    if _bfloat16_without_instructions(x):  # exact products of the bfloat16 values, float32 sums
        return F.linear(x.float(), weight.float(), None if bias is None else bias.float()).to(x.dtype)
    return F.linear(x, weight, None if bias is None else bias.to(x.dtype))


MKL_INTO_BUFFERS: bool | None = None
"""Whether `linear(..., into_buffer=True)` writes into the result buffer (see `writes_into_buffers`);
None: on an Intel CPU (read on first use, not at import)."""

RESULT_BUFFER = "linear result"
"""The scratch buffer `linear(..., into_buffer=True)` writes into: one for all such calls, so that
the character CNN's and the LSTM's results take the memory of the larger, not of both."""


def writes_into_buffers(x: torch.Tensor, weight: torch.Tensor | MklPacked) -> bool:
    """Whether `linear(x, weight, into_buffer=True)` writes into the result buffer: float32 on an
    Intel CPU with a plain weight, where MKL's matmul (which can) runs about as fast as oneDNN's
    (which cannot).

    A large result in fresh memory pays a page fault per 4 KB on first touch (`elmo embed` has glibc
    map every block above 4 MB afresh, `elmo_lm.allocator`): the buffer made the small model's
    passes faster and left the original's unchanged (`benchmarks/RESULTS-kernels.md`).
    """
    into_buffers = is_intel() if MKL_INTO_BUFFERS is None else MKL_INTO_BUFFERS
    return into_buffers and x.dtype == torch.float32 and x.device.type == "cpu" \
        and isinstance(weight, torch.Tensor) and weight.layout == torch.strided and weight.dtype == torch.float32


def pack(weight: torch.Tensor) -> torch.Tensor | MklPacked:
    """A packed copy of a weight `(N, K)` for `linear`'s small-batch calls (the weight itself where
    neither library can take it).

    Float32 weights on an Intel CPU go to MKL, whose packed matmul ran faster than oneDNN's there at
    the LSTM steps' shapes, in the same memory; elsewhere oneDNN's blocked layout (on AMD, MKL takes a
    slow code path). Figures: `benchmarks/RESULTS-kernels.md`. Where `elmo tune` measured this CPU
    (`tuning`), its choice for the weight's shape wins: MKL's, oneDNN's or none ("plain").
    """
    float32_cpu = weight.device.type == "cpu" and weight.dtype == torch.float32
    measured = packing_for(tuple(weight.shape)) if float32_cpu else None
    if measured == "plain":
        return weight.contiguous()
    if MKL_PACKED and float32_cpu and (measured == "mkl" or (measured is None and is_intel())):
        return pack_mkl(weight)
    return pack_onednn(weight)


def pack_onednn(weight: torch.Tensor) -> torch.Tensor:
    """oneDNN's blocked copy of a weight `(N, K)` (the weight itself where oneDNN is missing)."""
    if not (ONEDNN and weight.device.type == "cpu" and _onednn_takes(weight.dtype)):
        return weight
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous())


def pack_mkl(weight: torch.Tensor) -> MklPacked:
    """MKL's packed copy of a float32 CPU weight `(N, K)` (requires `MKL_PACKED`)."""
    N, K = weight.shape
    data = torch.ops.mkl._mkl_reorder_linear_weight(weight.contiguous(), MKL_PACK_ROWS)
    return MklPacked(data, weight.new_zeros(()).expand(N, K))
