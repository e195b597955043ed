"""int8 matmuls: weights quantised once per output channel, activations per call (dynamic quantisation).

Each call quantises its float32 input to 8 bits with one scale for the call (the range of that
input, chosen as PyTorch's dynamic linear chooses it), multiplies in int8 with int32 accumulation
and returns float32 scaled back by the input's and each output channel's scale. The GEMM is
oneDNN's int8 linear as PyTorch ships it (`torch.ops.onednn.qlinear_pointwise`, the kernel behind
Inductor's x86 quantisation), which picks its AVX2, AVX-512 or VNNI code path for the CPU itself.
It keeps only its packed copy of a weight: PyTorch's dynamic linear on the oneDNN engine
(`torch.ops.quantized.linear_dynamic`, used before and still the fallback where the build lacks
oneDNN, with fbgemm's engine where that is the one) also keeps the unpacked int8 weight, which cost
the original model 67 MB. Results equal that kernel's up to where an input lands on a rounding
boundary.

Measured on an AMD EPYC (family 26, AVX-512 VNNI), 1 thread, fastest of 25: the LSTM step's
`(32, 512) x (512, 16384)` ran 0.9 ms in int8 against 3.5 ms packed float32, the projection
`(32, 4096) x (4096, 512)` 0.21 against 0.93 ms, the highway `(1000, 2048) x (2048, 2048)` 11 against
39 ms (oneDNN; fbgemm's engine was as fast at the steps and up to 1.6x slower at large row counts).
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

import numpy as np
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


ONEDNN_QLINEAR = hasattr(torch.ops, "onednn") and hasattr(torch.ops.onednn, "qlinear_prepack") \
    and hasattr(torch.ops.onednn, "qlinear_pointwise") and torch.backends.mkldnn.is_available()
"""Whether oneDNN's int8 linear (`torch.ops.onednn.qlinear_*`, which Inductor's quantisation uses)
is in this build: weights packed once and kept only packed, inputs quantised per call here."""

QUANTIZE_BLOCK_ELEMENTS = 2**20
"""Rows of a float weight are quantised in blocks of about this many elements, so that quantising
a matrix holds a few MB of temporaries, not several float copies of it."""


class Int8Weight(NamedTuple):
    """A weight `(N, K)` quantised per output channel for `linear` (from `quantize`)."""

    shape: tuple[int, int]
    """`(N, K)`."""
    packed: torch.ScriptObject | None = None
    """The engine's packed int8 weight with its `(N,)` scales, opaque (inputs quantised per call;
    where `ONEDNN_QLINEAR` is missing)."""
    columns: torch.Tensor | None = None
    """`(K, N)` int8, the transposed weight for `torch._int_mm` (inputs quantised per row)."""
    scales: torch.Tensor | None = None
    """`(N,)` float32: the scales of `columns` or `onednn`."""
    onednn: torch.Tensor | None = None
    """oneDNN's packed int8 weight (opaque), the only copy kept (inputs quantised per call)."""
    zero_points: torch.Tensor | None = None
    """`(N,)` long zeros, for `onednn`."""


@contextlib.contextmanager
def _engine(name: str) -> Iterator[None]:
    """PyTorch's quantised engine set to `name` for the duration (it is a global setting)."""
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


def _int8_rows(weight: torch.Tensor, scales: torch.Tensor, reciprocal: bool) -> torch.Tensor:
    """`round(weight / scales[:, None])` as int8 `(N, K)`, a block of rows at a time (any strides);
    with `reciprocal`, as `round(weight * (1 / scales[:, None]))`, PyTorch's own quantisers' rounding."""
    N, K = weight.shape
    out = torch.empty(N, K, dtype=torch.int8)  # (N, K)
    rows = max(1, QUANTIZE_BLOCK_ELEMENTS // max(1, K))
    for start in range(0, N, rows):
        block = weight[start : start + rows].to(torch.float32, copy=True)  # (r, K)
        part = scales[start : start + rows, None]  # (r, 1)
        out[start : start + rows] = (block.mul_(part.reciprocal()) if reciprocal else block.div_(part)).round_()
    return out


def quantize(weight: torch.Tensor, per_row_inputs: bool = False, engine: str | None = None) -> Int8Weight:
    """`weight` `(N, K)` (float, CPU, any strides) in int8: each row scaled by its largest magnitude
    over 127, then packed by oneDNN (`ONEDNN_QLINEAR`; else by the engine) for inputs quantised per
    call, or, with `per_row_inputs`, kept for `torch._int_mm`. `engine` forces one of PyTorch's
    quantised engines ("onednn", "fbgemm") instead of oneDNN's own int8 linear.

    Symmetric (zero point 0), so that zero stays exact (the CNN's zero taps, padding). No float copy
    of the weight is made (a weight in `F.linear`'s layout may be a transposed view): the original
    model's peak at load stays one layer's float32 matrix above the int8 model.
    """
    if not AVAILABLE:
        raise RuntimeError("this PyTorch build has no quantised engine for int8 matmuls")
    weight = weight.detach()  # (N, K)
    shape = (weight.shape[0], weight.shape[1])
    largest = torch.maximum(weight.amax(dim=1), weight.amin(dim=1).neg_()).float()  # (N,), no temporary |weight|
    scales = (largest / 127).clamp_(min=1e-12)  # (N,)
    values = _int8_rows(weight, scales, reciprocal=not per_row_inputs)  # (N, K) int8
    if per_row_inputs:
        return Int8Weight(shape, columns=values.t().contiguous(), scales=scales)
    zero_points = torch.zeros(shape[0], dtype=torch.long)  # (N,)
    if ONEDNN_QLINEAR and engine is None:
        return Int8Weight(shape, scales=scales, onednn=torch.ops.onednn.qlinear_prepack(values, None),
                          zero_points=zero_points)
    with _engine(engine or ENGINE), warnings.catch_warnings():
        # PyTorch marks its quantised tensor constructors deprecated (in favour of torchao); they are
        # still the way into its shipped int8 kernels.
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch._make_per_channel_quantized_tensor(values, scales.double(), zero_points, 0)  # (N, K)
        packed = torch.ops.quantized.linear_prepack(quantized, None)
    return Int8Weight(shape, packed=packed)


def linear(x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`x @ weight.T + bias` for float32 x `(M, K)`, quantised per call -> float32 `(M, N)`."""
    if weight.columns is not None:
        return _linear_per_row(x.float(), weight, bias)
    if x.shape[0] == 0:
        out = x.new_empty(0, weight.shape[0], dtype=torch.float32)  # (0, N)
    elif weight.onednn is not None:
        out = _linear_onednn(x.float().contiguous(), weight)  # (M, N)
    else:
        out = torch.ops.quantized.linear_dynamic(x.float().contiguous(), weight.packed, reduce_range())  # (M, N)
    return out if bias is None else out.add_(bias)


def input_qparams(low: float, high: float, reduce: bool) -> tuple[float, int]:
    """Scale and zero point of an unsigned 8-bit (7-bit when `reduce`) input in `[low, high]`, chosen
    as PyTorch's dynamic linear chooses them (`ChooseQuantizationParams`): the range widened to hold
    zero, the zero point from whichever end loses less, rounded and clamped."""
    qmin, qmax = 0, 127 if reduce else 255
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / (qmax - qmin)
    if float(np.float32(scale)) == 0.0 or np.isinf(np.float32(1.0) / np.float32(scale)):
        scale = 0.1
    from_min, from_max = qmin - low / scale, qmax - high / scale
    zero = from_min if abs(qmin) - abs(low / scale) < abs(qmax) - abs(high / scale) else from_max
    return float(np.float32(scale)), int(min(qmax, max(qmin, round(zero))))


def _linear_onednn(x: torch.Tensor, weight: Int8Weight) -> torch.Tensor:
    """`x @ weight.T` `(M, N)` through oneDNN's int8 linear, x `(M, K)` quantised with one scale."""
    low, high = torch.aminmax(x)
    scale, zero = input_qparams(float(low), float(high), reduce_range())  # one scale for the call
    qmax = 127 if reduce_range() else 255
    inverse = float(np.float32(1.0) / np.float32(scale))
    M = x.shape[0]
    quantized = x.new_full((_padded_rows(M), x.shape[1]), zero, dtype=torch.uint8)  # (M', K): extra rows are 0.0
    quantized[:M] = torch.mul(x, inverse).round_().add_(zero).clamp_(0, qmax)  # as PyTorch rounds
    out = torch.ops.onednn.qlinear_pointwise(quantized, scale, zero, weight.onednn, weight.scales,
                                             weight.zero_points, None, 1.0, 0, torch.float32, "none", [], "")
    return out[:M]  # (M, N)


def _padded_rows(M: int) -> int:
    """The row count oneDNN's int8 linear runs for M rows: M up to 8, else rounded up to a multiple of 8
    (up to 64) or of 64. oneDNN keeps a kernel with its own buffers for each shape it meets (up to 1,024):
    400 distinct row counts held 200 MB at the original size's `(M, 512) x (512, 16384)`, the padded
    counts a few MB."""
    if M <= 8:
        return M
    quantum = 8 if M <= 64 else 64
    return -(-M // quantum) * quantum


def _linear_per_row(x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None) -> torch.Tensor:
    """`linear` with each row of x `(M, K)` quantised with its own scale (symmetric, 8 bits)."""
    row_scales = x.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(127)  # (M, 1)
    quantized = torch.div(x, row_scales).round_().to(torch.int8)  # (M, K)
    sums = torch._int_mm(quantized, weight.columns)  # (M, N) int32
    out = torch.mul(sums, weight.scales, out=sums.view(torch.float32))  # (M, N), in place: element by element
    out.mul_(row_scales)
    return out if bias is None else out.add_(bias)
