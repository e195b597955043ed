"""Both directions' LSTMP stacks over packed rows, for inference (exact in float32).

Rows are sorted by length and packed time-major: step t computes only the first `batch_sizes[t]`
sorted rows, so there is no padding work and no masking. Within a layer the directions run one
after the other (each step then reads one direction's weights, which was faster on the original
model than alternating directions step by step). Each chunk of steps gets its input projection
from one batched matmul; the per-step loop does only the recurrence, in place. Layers read their
input from and write their output to rows of the caller's grid (the result tensor), through
`RunPlan.index`.

Every matmul goes through `matmul.linear` (faster than PyTorch's default on AMD CPUs), with
the weights in `F.linear`'s layout; the per-step weights are packed where that fits (`matmul.pack`:
MKL's layout for float32 on Intel CPUs, oneDNN's elsewhere).
In bfloat16 the matmuls run in bfloat16, the cell, the activations and the clips in float32.
The measurements behind these choices: `benchmarks/RESULTS-kernels.md`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from ..bilm_types import FORGET_BIAS, LstmState
from ..cpu_features import is_intel
from .int8 import Int8Weight, quantize
from .matmul import ONEDNN, linear, pack
from .precision import current_precision, matmul_dtype
from .scratch import scratch
from .tuning import chunk_rows_for, tanh_via_sigmoid_for
from .weights import PACKED_STEP_WEIGHTS, cached_on_module, cast_weights, int8_weights, to_meta

INFERENCE_LSTM_CHUNK_BYTES = 24 * 2**20
"""Upper bound on the precomputed input projection held at once, most of inference's working memory:
one direction's gates at a time (256 rows of the original model's, or its layer-0 gates for up to
384 distinct tokens of a batch; 16 MB left the distinct-token shortcut unused in the bench's longer
batches, and ran slower)."""

MAX_CHUNK_ROWS = 1024
"""At most this many packed rows per input-projection chunk: larger matmuls gain nothing more (fewer
where this CPU's tuning measured a smaller chunk faster, `tuning.chunk_rows_for`)."""


def default_chunk_rows(lstm_dim: int, chunk_bytes: int = INFERENCE_LSTM_CHUNK_BYTES) -> int:
    """Rows of an input-projection chunk without tuning: as many packed rows of one direction's input gates
    (float32, `4 * lstm_dim` values) as `chunk_bytes` holds, at most `MAX_CHUNK_ROWS`."""
    return max(1, min(MAX_CHUNK_ROWS, chunk_bytes // (4 * lstm_dim * 4)))


PACK_LIMIT_BYTES = 128 * 2**20
"""Pack the per-step weights (a copy beside the parameters, faster at batch 32) when the
copies take at most this much: the small and the bfloat16 original models, not the float32
original (168 MB), whose peak memory would pass 1 GB. A model converted by `keep_weights_in` (the
embedder's own) keeps these weights only packed, whatever their size."""


class RunPlan(NamedTuple):
    """Rows of a batch sorted by length and packed time-major, for the packed LSTM loop."""

    order: torch.Tensor
    """(B,): the batch row of each sorted row, longest first."""
    batch_sizes: list[int]
    """Rows still running at each step: the first `batch_sizes[t]` sorted rows."""
    offsets: list[int]
    """Packed position of each step's first row; one more entry, the total."""
    index: torch.Tensor
    """(D, N): for each packed element (step t, sorted row r), the grid row it reads, per direction."""

    def chunks(self, max_rows: int) -> Iterator[tuple[int, int]]:
        """(first, last) step ranges of at most `max_rows` packed rows (at least one step each)."""
        first, steps = 0, len(self.batch_sizes)
        while first < steps:
            last = first + 1
            while last < steps and self.offsets[last + 1] - self.offsets[first] <= max_rows:
                last += 1
            yield first, last
            first = last


def plan_runs(lengths: torch.Tensor, row_stride: int, reverse: tuple[bool, ...]) -> RunPlan:
    """Plan the packed loop over rows of the given `lengths` `(B,)`.

    Position t of batch row b is grid row `b * row_stride + t`; a direction with `reverse` True
    reads each row backwards within its length (position `lengths[b] - 1 - t` at step t).
    """
    lengths = lengths.cpu()
    order = torch.argsort(lengths, descending=True, stable=True)  # (B,)
    sorted_lengths = lengths[order]  # (B,)
    steps = int(sorted_lengths[0]) if len(order) else 0
    running = torch.arange(steps)[:, None] < sorted_lengths[None, :]  # (steps, B)
    batch_sizes = running.sum(dim=1).tolist()
    offsets = [0]
    for size in batch_sizes:
        offsets.append(offsets[-1] + size)
    t, r = running.nonzero(as_tuple=True)  # (N,) each, time-major
    base = order[r] * row_stride  # (N,)
    index = torch.stack([base + (sorted_lengths[r] - 1 - t if backwards else t) for backwards in reverse])  # (D, N)
    return RunPlan(order, batch_sizes, offsets, index)


LSTM_MATRICES = ("input_weight", "recurrent_weight", "projection_weight")
"""The LSTM's weight matrices, per layer `(D, K, N)` (stored transposed by `keep_weights_in`)."""


def quantize_lstm_weight(name: str, parameter: torch.Tensor) -> list[Int8Weight]:
    """One layer's `name` parameter (one of `LSTM_MATRICES`, `(D, K, N)`) in int8 per direction
    (`int8.quantize`, per output channel; the projection's inputs quantised per row, see `int8`)."""
    return [quantize(matrix, name == "projection_weight") for matrix in parameter.detach().transpose(-1, -2)]


def quantize_lstm(lstm: nn.Module, release: bool, ready: dict[str, list[Int8Weight]] | None = None
                  ) -> list[tuple[list[Int8Weight], ...]]:
    """Per layer, the input, recurrent and projection weights per direction in int8
    (`quantize_lstm_weight`), taken from `ready` (by parameter name, e.g. "input_weight.0") where
    there. With `release`, each float parameter becomes a meta placeholder once quantised."""
    ready = ready or {}
    layers = []
    for layer in range(lstm.config.n_layers):
        kinds = []
        for name in LSTM_MATRICES:
            parameters = getattr(lstm, name)
            done = ready.get(f"{name}.{layer}")
            kinds.append(done if done is not None else quantize_lstm_weight(name, parameters[layer]))
            if release:
                to_meta(parameters, str(layer))
        layers.append(tuple(kinds))
    return layers


def _lstm_weights(lstm: nn.Module, precision: str) -> list[tuple]:
    """Per layer, in `F.linear`'s layout: input and recurrent weights `(D, 4C, P)`, projection
    `(D, P, C)` in the precision's dtype, and the bias `(D, 4C)` with the forget bias added, float32.

    The parameters hold `(D, P, 4C)` / `(D, C, P)`; their transposes are views (contiguous when
    `keep_weights_in` stored them transposed), copied only for another dtype. The per-step
    weights (recurrent and projection) are packed when `pack_step_weights` allows. For int8, lists
    over directions of `int8.Int8Weight` take the matrices' place.
    """
    L = lstm.config.n_layers
    if precision == "int8":
        quantized = int8_weights(lstm, quantize_lstm)
        return [(*quantized[layer], _bias(lstm, layer, FORGET_BIAS)) for layer in range(L)]
    dtype = matmul_dtype(precision)
    swap = frozenset(f"{name}.{layer}" for name in LSTM_MATRICES for layer in range(L))
    weights = cast_weights(lstm, dtype, swap)
    packed = packed_step_weights(lstm, weights, dtype)
    layers = []
    for layer in range(L):
        bias = _bias(lstm, layer, FORGET_BIAS)  # (D, 4C)
        w_input = weights[f"input_weight.{layer}"]  # (D, 4C, P)
        w_recurrent, w_projection = packed[layer] if packed else (
            weights[f"recurrent_weight.{layer}"], weights[f"projection_weight.{layer}"])
        layers.append((w_input, w_recurrent, w_projection, bias))
    return layers


def _bias(lstm: nn.Module, layer: int, forget_bias: float) -> torch.Tensor:
    """`(D, 4C)` float32: a layer's bias with the forget bias added to the forget gate's block."""
    C = lstm.config.lstm_dim
    bias = lstm.bias[layer].detach().float().clone()  # (D, 4C)
    bias[:, 2 * C : 3 * C] += forget_bias
    return bias


def packed_step_weights(lstm: nn.Module, weights: dict[str, torch.Tensor], dtype: torch.dtype
                        ) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None:
    """Packed (`matmul.pack`) recurrent and projection weights per layer and direction (cached on the
    module), or None when oneDNN is missing or the copies would exceed `PACK_LIMIT_BYTES`."""
    owned = lstm.__dict__.get(PACKED_STEP_WEIGHTS)
    if owned is not None:  # kept only packed, by `keep_weights_in`
        if owned[0] != dtype:
            raise ValueError(f"this model keeps its LSTM step weights only in {owned[0]} for inference "
                             f"(keep_weights_in); it cannot run in {dtype}")
        return owned[1]
    L = lstm.config.n_layers
    size = sum(weights[f"{name}.{layer}"].numel() for name in ("recurrent_weight", "projection_weight")
               for layer in range(L)) * torch.finfo(dtype).bits // 8
    if not ONEDNN or size > PACK_LIMIT_BYTES or lstm.bias[0].device.type != "cpu":
        return None
    signature = tuple((p.data_ptr(), p._version, p.dtype) for p in lstm.parameters())
    return cached_on_module(lstm, ("packed", dtype), signature, lambda: [
        ([pack(w) for w in weights[f"recurrent_weight.{layer}"]],
         [pack(w) for w in weights[f"projection_weight.{layer}"]]) for layer in range(L)])


def run_stack(lstm: nn.Module, x: torch.Tensor, lengths: torch.Tensor, state: LstmState | None,
              chunk_bytes: int = INFERENCE_LSTM_CHUNK_BYTES) -> tuple[list[torch.Tensor], LstmState]:
    """`LstmpStack.forward` of a `model.LstmpStack` without autograd, in the current precision.

    Args:
        x: `(D, B, T, P)` layer-0 input of each direction, in reading order; lengths: `(D, B)`.
        state: initial state, zeros when None.

    Returns:
        Each layer's output `(D, B, T, P)` (values past a row's length unspecified) and the final state.
    """
    precision = current_precision()
    D, B, T, P = x.shape
    L = lstm.config.n_layers
    grid = x.new_zeros(B, L + 1, T, 2 * P)  # (B, L+1, T, 2P): layer 0 the input, then each output
    grid[:, 0, :, :P] = x[0]
    grid[:, 0, :, P:] = x[1]
    flat = grid.view(-1, 2 * P)  # (B*(L+1)*T, 2P)
    if torch.equal(lengths[0], lengths[1]):
        plan = plan_runs(lengths[0], (L + 1) * T, (False, False))
        final = run_packed(lstm, flat, plan, T, state, precision, chunk_bytes)
    else:  # each direction with its own lengths
        finals = [run_packed(lstm, flat, plan_runs(lengths[d], (L + 1) * T, (False,)), T, state, precision,
                             chunk_bytes, directions=(d,)) for d in range(D)]
        final = LstmState(torch.cat([f.h for f in finals], dim=1), torch.cat([f.c for f in finals], dim=1))
    outputs = [torch.stack([grid[:, layer, :, :P], grid[:, layer, :, P:]]) for layer in range(1, L + 1)]
    return outputs, final  # each output (D, B, T, P)


def run_packed(lstm: nn.Module, grid: torch.Tensor, plan: RunPlan, layer_stride: int,
               state: LstmState | None, precision: str, chunk_bytes: int,
               directions: tuple[int, ...] = (0, 1), distinct: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> LstmState:
    """Run every layer over a grid, reading and writing it in place; return the final state.

    Args:
        grid: `(R, D*P)` rows of a contiguous grid; direction d uses columns `d*P:(d+1)*P`. Layer
            l reads rows `plan.index[d] + l * layer_stride` and writes its output (skip
            connection included) to the same rows plus `layer_stride`.
        plan: from `plan_runs`; one `plan.index` row per entry of `directions`.
        state: initial state `(L, 2, B, .)` in batch order; zeros when None.
        directions: which of the model's directions to run (both share the plan).
        distinct: `(vectors (U, P), rows (D, N))` when layer 0's input is `vectors[rows]`: the input
            projection of a repeated token is then computed once (when U < N and it fits).

    Returns:
        The state after each row's last step `(L, len(directions), B, .)`, in batch order.
    """
    config, dtype = lstm.config, matmul_dtype(precision)
    L, P, C = config.n_layers, config.projection_dim, config.lstm_dim
    D, B = len(directions), len(plan.order)
    plan = plan._replace(order=plan.order.to(grid.device), index=plan.index.to(grid.device))  # planned on the CPU
    halves = [grid[:, d * P : (d + 1) * P] for d in directions]  # each (R, P)
    if state is None:
        h0 = grid.new_zeros(L, D, B, P)  # (L, D, B, P)
        c0 = grid.new_zeros(L, D, B, C)  # (L, D, B, C)
    else:
        picked = slice(directions[0], directions[-1] + 1)
        h0 = state.h[:, picked][:, :, plan.order].float()  # (L, D, B, P), sorted rows
        c0 = state.c[:, picked][:, :, plan.order].float()  # (L, D, B, C)
    row_bytes = 4 * C * 4  # one packed row of one direction's input gates (float32; one direction at a time)
    max_rows = min(default_chunk_rows(C, chunk_bytes), chunk_rows_for((4 * C, P)) or MAX_CHUNK_ROWS)
    final_h, final_c = [], []
    for layer, weights in enumerate(_lstm_weights(lstm, precision)):
        weights = tuple([w[d] for d in directions] for w in weights)  # per direction
        h, c = h0[layer].contiguous(), c0[layer].contiguous()  # (D, B, P), (D, B, C)
        residual = layer > 0 and config.use_skip_connections
        uses_distinct = layer == 0 and distinct is not None and distinct[0].shape[0] < plan.index.shape[1] \
            and distinct[0].shape[0] * row_bytes <= chunk_bytes
        _run_layer(halves, plan, layer * layer_stride, layer_stride, h, c, weights, max_rows, residual, config,
                   dtype, distinct if uses_distinct else None)
        final_h.append(h)
        final_c.append(c)
    unsort = torch.argsort(plan.order)  # (B,)
    return LstmState(torch.stack(final_h)[:, :, unsort], torch.stack(final_c)[:, :, unsort])


def _run_layer(halves: list[torch.Tensor], plan: RunPlan, offset: int, layer_stride: int, h: torch.Tensor,
               c: torch.Tensor, weights: tuple[list[torch.Tensor], ...], max_rows: int, residual: bool, config,
               dtype: torch.dtype, distinct: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """One layer over the packed rows; updates `h` `(D, B, P)` and `c` `(D, B, C)` in place.

    One direction after the other: a step then reads one direction's weights, not both (a thread per
    direction was no faster).
    """
    for d in range(h.shape[0]):
        _run_direction(halves[d], plan, d, offset, layer_stride, h[d], c[d], tuple(w[d] for w in weights),
                       max_rows, residual, config, dtype, None if distinct is None else (distinct[0], distinct[1][d]))


def _run_direction(half: torch.Tensor, plan: RunPlan, d: int, offset: int, layer_stride: int, h: torch.Tensor,
                   c: torch.Tensor, weights: tuple[torch.Tensor, ...], max_rows: int, residual: bool, config,
                   dtype: torch.dtype, distinct: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """One direction of one layer; updates `h` `(B, P)` and `c` `(B, C)` in place.

    Reads grid rows `plan.index[d] + offset` of `half` `(R, P)` and writes rows `plan.index[d] +
    offset + layer_stride`. With `distinct` `(vectors (U, P), rows (N,))`, the input projection of
    each distinct token is computed once and gathered. The matmuls run in `dtype`; the cell, the
    gates' activations and the clips in float32.
    """
    w_input, w_recurrent, w_projection, bias = weights
    h_low = h if dtype == torch.float32 else h.to(dtype)  # (B, P): the recurrent matmul's input
    token_gates = None
    if distinct is not None:
        token_gates = linear(distinct[0].to(dtype), w_input, bias, into_buffer=True).float()  # (U, 4C)
    for first, last in plan.chunks(max_rows):
        lo, hi = plan.offsets[first], plan.offsets[last]
        rows = plan.index[d, lo:hi] + offset  # (n,)
        x = gates = None  # release the previous chunk's before computing this chunk's
        if token_gates is None or residual:
            x = scratch("x", (hi - lo, half.shape[1]), half.dtype, half.device)  # (n, P)
            torch.index_select(half, 0, rows, out=x)
        if token_gates is None:
            gates = linear(x.to(dtype), w_input, bias, into_buffer=True).float()  # (n, 4C)
        out = scratch("out", (hi - lo, h.shape[1]), h.dtype, h.device)  # (n, P)
        for t in range(first, last):
            b, at = plan.batch_sizes[t], plan.offsets[t] - lo
            if token_gates is not None:  # gathered step by step
                step_gates = token_gates.index_select(0, distinct[1][lo + at : lo + at + b])  # (b, 4C)
            else:
                step_gates = gates[at : at + b]  # (b, 4C)
            out[at : at + b] = _step(step_gates, h, c, h_low, w_recurrent, w_projection, config)
        if residual:
            out += x  # residual after the clip; the state keeps m_t
        half.index_copy_(0, rows + layer_stride, out)


SMALL_TANH_ELEMENTS = 16384
"""Below this many elements `_tanh_` calls PyTorch's tanh: one operation instead of four, whose
fixed costs outweigh tanh's slower arithmetic there (a single long sentence steps with one row)."""

TANH_VIA_SIGMOID: bool | None = None
"""Whether `_tanh_` computes large tensors as `2 * sigmoid(2x) - 1`; None: where the CPU is not
Intel's (read on first use, not at import): on an AMD EPYC PyTorch's sigmoid ran much faster than
its tanh, on a Xeon as fast (`benchmarks/RESULTS-kernels.md`)."""


def _via_sigmoid(x: torch.Tensor) -> bool:
    """Whether `_tanh_` and `_tanh` compute tanh of `x` as `2 * sigmoid(2x) - 1` (large CPU tensors
    only): `TANH_VIA_SIGMOID` when set, else `elmo tune`'s measurement on this CPU, else not on Intel."""
    if x.numel() < SMALL_TANH_ELEMENTS or x.device.type != "cpu":
        return False
    if TANH_VIA_SIGMOID is not None:
        return TANH_VIA_SIGMOID
    measured = tanh_via_sigmoid_for(x.numel())
    return not is_intel() if measured is None else measured


def _tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place; for large tensors where `TANH_VIA_SIGMOID`, as `2 * sigmoid(2x) - 1`, which
    is exact up to float32 rounding (absolute error below 1e-7)."""
    if not _via_sigmoid(x):
        return x.tanh_()
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh into a new tensor, computed as `_tanh_` does."""
    if not _via_sigmoid(x):
        return torch.tanh(x)
    return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _step(gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor, h_low: torch.Tensor, w_recurrent: torch.Tensor,
          w_projection: torch.Tensor, config) -> torch.Tensor:
    """One step of one direction for the first b sorted rows; updates `h`, `c` and `h_low` in place.

    Args:
        gates: `(b, 4C)` input projection plus bias of this step, float32.
        h: `(B, P)` m, float32; c: `(B, C)` cell, float32; h_low: `(B, P)` m in the matmul dtype
            (h itself in float32); w_recurrent `(4C, P)`; w_projection `(P, C)` (plain or packed).

    Returns:
        `(b, P)` the new m, float32 (a view of `h`).
    """
    C, b = config.lstm_dim, gates.shape[0]
    z = linear(h_low[:b], w_recurrent)  # (b, 4C) in the matmul dtype
    z = z.add_(gates) if z.dtype == gates.dtype else torch.add(gates, z)  # (b, 4C) float32
    z[:, :C].sigmoid_()
    _tanh_(z[:, C : 2 * C])
    z[:, 2 * C :].sigmoid_()
    i, j, f, o = z.split(C, dim=1)  # each (b, C); TensorFlow's gate order
    cell = c[:b]  # (b, C)
    cell.mul_(f).addcmul_(i, j)
    if config.cell_clip:
        cell.clamp_(-config.cell_clip, config.cell_clip)
    hidden = _tanh(cell).mul_(o)  # (b, C)
    m = linear(hidden.to(h_low.dtype), w_projection)  # (b, P) in the matmul dtype
    if config.proj_clip:
        m.clamp_(-config.proj_clip, config.proj_clip)  # exact in bfloat16 too: the clip is a bfloat16 number
    h[:b] = m
    if h_low is not h:
        h_low[:b] = m
    return h[:b]
