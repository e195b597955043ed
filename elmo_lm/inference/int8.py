"""int8 matmuls: weights quantised once per output channel, activations per call (dynamic quantisation).

The GEMM is PyTorch's own quantised dynamic linear (`torch.ops.quantized.linear_dynamic`): each
call quantises its float32 input to 8 bits with one scale for the call (the range of that input),
multiplies in int8 with int32 accumulation and returns float32 scaled back by the input's and each
output channel's scale. The weights are packed by one of PyTorch's quantised engines, fbgemm or
oneDNN (`ENGINE`), which pick their AVX2, AVX-512 or VNNI code paths for the CPU themselves.

Measured on an AMD EPYC (family 26, AVX-512 VNNI), 1 thread, fastest of 25: the LSTM step's
`(32, 512) x (512, 16384)` ran 0.9 ms in int8 against 3.5 ms packed float32, the projection
`(32, 4096) x (4096, 512)` 0.21 against 0.93 ms, the highway `(1000, 2048) x (2048, 2048)` 11 against
39 ms (oneDNN's engine; fbgemm's was as fast at the steps and up to 1.6x slower at large row counts).
Relative error of one matmul: about 1.2% with 8-bit inputs, 2.0% with 7-bit ones (`reduce_range`).

One scale per call fails rows much smaller than the call's largest: on the bundled (trained) model,
the LSTM's projection `o * tanh(c) -> m` quantised so made the worst token's cosine to float32 0.946
at the top layer (mean 0.99953). Weights quantised with `per_row_inputs` therefore quantise each
input row with its own scale (symmetric, 8 bits) and multiply through `torch._int_mm` (int8 x int8
-> int32, exact; oneDNN's VNNI kernels where the CPU has them): the worst token 0.998, mean 0.99992.
At the projection's `(32, 4096) x (4096, 512)` that took 0.22 ms against the per-call path's 0.21.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

import torch

from ..cpu_features import this_cpu


def _engines() -> tuple[str, ...]:
    try:
        return tuple(torch.backends.quantized.supported_engines)
    except (AttributeError, RuntimeError):
        return ()


ENGINE = next((engine for engine in ("onednn", "fbgemm", "x86") if engine in _engines()), None)
"""The quantised engine that packs int8 weights (None where this PyTorch build has none): oneDNN's
where present (as fast as fbgemm's at the LSTM steps, 1.3-1.7x faster at the CNN's, the highway's and
the input projection's row counts on the AMD EPYC), else fbgemm's."""

AVAILABLE = ENGINE is not None and hasattr(torch.ops.quantized, "linear_dynamic") and hasattr(torch, "_int_mm")
"""Whether int8 matmuls can run in this PyTorch build."""


def has_vnni(flags: frozenset[str]) -> bool:
    """Whether CPU flags include an 8-bit dot product instruction (AVX-512 VNNI or AVX-VNNI)."""
    return "avx512_vnni" in flags or "avx_vnni" in flags


REDUCE_RANGE: bool | None = None
"""Whether inputs are quantised to 7 bits instead of 8; None: `reduce_range` decides from the flags."""


@lru_cache(maxsize=1)
def _reduce_range_here() -> bool:
    cpu = this_cpu()
    return not (cpu is not None and has_vnni(cpu[1]))


def reduce_range() -> bool:
    """Whether inputs are quantised to 7 bits instead of 8 (read from the CPU's flags on first use).

    Without VNNI, the int8 kernels multiply pairs of bytes into 16-bit sums (`vpmaddubsw`), which
    saturate for 8-bit inputs; PyTorch's answer is 7-bit inputs (`reduce_range`), at about 1.7x the
    error. With VNNI, the dot product accumulates in 32 bits and full 8-bit inputs are safe. Where
    the flags cannot be read, the safe 7 bits."""
    return _reduce_range_here() if REDUCE_RANGE is None else REDUCE_RANGE


class Int8Weight(NamedTuple):
    """A weight `(N, K)` quantised per output channel for `linear` (from `quantize`)."""

    shape: tuple[int, int]
    """`(N, K)`."""
    packed: torch.ScriptObject | None = None
    """The engine's packed int8 weight with its `(N,)` scales, opaque (inputs quantised per call)."""
    columns: torch.Tensor | None = None
    """`(K, N)` int8, the transposed weight for `torch._int_mm` (inputs quantised per row)."""
    scales: torch.Tensor | None = None
    """`(N,)` float32: the scales of `columns`."""


@contextlib.contextmanager
def _engine(name: str) -> Iterator[None]:
    """PyTorch's quantised engine set to `name` for the duration (it is a global setting)."""
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


def quantize(weight: torch.Tensor, per_row_inputs: bool = False, engine: str | None = None) -> Int8Weight:
    """`weight` `(N, K)` (float, CPU) in int8: each row scaled by its largest magnitude over 127, then packed
    for the engine (inputs quantised per call) or, with `per_row_inputs`, kept for `torch._int_mm`.

    Symmetric (zero point 0), so that zero stays exact (the CNN's zero taps, padding).
    """
    if not AVAILABLE:
        raise RuntimeError("this PyTorch build has no quantised engine for int8 matmuls")
    weight = weight.detach().float().contiguous()  # (N, K)
    shape = (weight.shape[0], weight.shape[1])
    scales = (weight.abs().amax(dim=1) / 127).clamp_(min=1e-12)  # (N,)
    if per_row_inputs:
        columns = torch.round(weight / scales[:, None]).to(torch.int8).t().contiguous()  # (K, N)
        return Int8Weight(shape, columns=columns, scales=scales)
    scales = scales.double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)  # (N,)
    with _engine(engine or ENGINE), warnings.catch_warnings():
        # PyTorch marks its quantised tensor constructors deprecated (in favour of torchao); they are
        # still the way into its shipped int8 kernels.
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)  # (N, K)
        packed = torch.ops.quantized.linear_prepack(quantized, None)
    return Int8Weight(shape, packed=packed)


def linear(x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`x @ weight.T + bias` for float32 x `(M, K)`, quantised per call -> float32 `(M, N)`."""
    if weight.columns is not None:
        return _linear_per_row(x.float(), weight, bias)
    if x.shape[0] == 0:
        out = x.new_empty(0, weight.shape[0], dtype=torch.float32)  # (0, N)
    else:
        out = torch.ops.quantized.linear_dynamic(x.float().contiguous(), weight.packed, reduce_range())  # (M, N)
    return out if bias is None else out.add_(bias)


def _linear_per_row(x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None) -> torch.Tensor:
    """`linear` with each row of x `(M, K)` quantised with its own scale (symmetric, 8 bits)."""
    row_scales = x.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(127)  # (M, 1)
    quantized = torch.div(x, row_scales).round_().to(torch.int8)  # (M, K)
    sums = torch._int_mm(quantized, weight.columns)  # (M, N) int32
    out = torch.mul(sums, weight.scales, out=sums.view(torch.float32))  # (M, N), in place: element by element
    out.mul_(row_scales)
    return out if bias is None else out.add_(bias)
