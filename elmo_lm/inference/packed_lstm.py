"""Both directions' LSTMP stacks over packed rows, for inference (exact in float32).

Rows are sorted by length and packed time-major: step t computes only the first `batch_sizes[t]`
sorted rows, so there is no padding work and no masking. Each chunk of steps gets its input
projection from one batched matmul over both directions; the per-step loop does only the
recurrence, in place. Layers read their input from and write their output to rows of the
caller's grid (the result tensor), through `RunPlan.index`.

float32 keeps the parameters' row layout (gates `(D, b, 4C)`); bfloat16 runs transposed (gates
`(D, 4C, b)`, weights as `(4C, P)` rows), where bfloat16 matmuls at batch 32 ran about 1.7x faster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import torch

from .workspace import cast_weights, matmul_dtype, scratch

if TYPE_CHECKING:
    from ..model import LstmpStack, LstmState

MAX_CHUNK_ROWS = 1024
"""At most this many packed rows per input-projection chunk: larger matmuls gain nothing more."""


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


def _lstm_weights(lstm: LstmpStack, dtype: torch.dtype, transposed: bool) -> list[tuple[torch.Tensor, ...]]:
    """Per layer: input, recurrent and projection weights in `dtype` (`(D, P, 4C)`, `(D, P, 4C)`,
    `(D, C, P)`, or with the last two dimensions swapped when `transposed`), and the bias `(D, 4C)`
    with the forget bias added, in `dtype`."""
    from ..model import FORGET_BIAS

    L, C = lstm.config.n_layers, lstm.config.lstm_dim
    names = ("input_weight", "recurrent_weight", "projection_weight")
    swap = frozenset(f"{name}.{layer}" for name in names for layer in range(L)) if transposed else frozenset()
    weights = cast_weights(lstm, dtype, swap)
    layers = []
    for layer in range(L):
        bias = lstm.bias[layer].detach().float().clone()  # (D, 4C)
        bias[:, 2 * C : 3 * C] += FORGET_BIAS
        layers.append((*(weights[f"{name}.{layer}"] for name in names), bias.to(dtype)))
    return layers


def run_packed(lstm: LstmpStack, grid: torch.Tensor, plan: RunPlan, layer_stride: int,
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
    from ..model import LstmState

    config, dtype = lstm.config, matmul_dtype(precision)
    L, P, C = config.n_layers, config.projection_dim, config.lstm_dim
    picked = slice(directions[0], directions[-1] + 1)  # a view of the stacked weights, never a copy
    D, B = len(directions), len(plan.order)
    halves = [grid[:, d * P : (d + 1) * P] for d in directions]  # each (R, P)
    if state is None:
        h0 = grid.new_zeros(L, D, B, P)  # (L, D, B, P)
        c0 = grid.new_zeros(L, D, B, C)  # (L, D, B, C)
    else:
        h0 = state.h[:, picked][:, :, plan.order].float()  # (L, D, B, P), sorted rows
        c0 = state.c[:, picked][:, :, plan.order].float()  # (L, D, B, C)
    row_bytes = D * 4 * C * torch.finfo(dtype).bits // 8  # one packed row of input gates
    max_rows = max(1, min(MAX_CHUNK_ROWS, chunk_bytes // row_bytes))
    transposed = dtype != torch.float32
    weights = _lstm_weights(lstm, dtype, transposed)
    final_h, final_c = [], []
    for layer in range(L):
        w_input, w_recurrent, w_projection, bias = (w[picked] for w in weights[layer])
        h, c = h0[layer].contiguous(), c0[layer].contiguous()  # (D, B, P), (D, B, C)
        residual = layer > 0 and config.use_skip_connections
        if transposed:
            c = _run_layer_transposed(halves, plan, layer * layer_stride, layer_stride, h, c, w_input, w_recurrent,
                                      w_projection, bias, max_rows, residual, config)
        else:
            uses_distinct = layer == 0 and distinct is not None and distinct[0].shape[0] < plan.index.shape[1] \
                and distinct[0].shape[0] * row_bytes <= chunk_bytes
            _run_layer(halves, plan, layer * layer_stride, layer_stride, h, c, w_input, w_recurrent, w_projection,
                       bias, max_rows, residual, config, distinct if uses_distinct else None)
        final_h.append(h)
        final_c.append(c)
    unsort = torch.argsort(plan.order)  # (B,)
    return LstmState(torch.stack(final_h)[:, :, unsort], torch.stack(final_c)[:, :, unsort])


def _gather_inputs(halves: list[torch.Tensor], rows: torch.Tensor, offset: int) -> torch.Tensor:
    """`(D, n, P)` float32: for each direction, grid rows `rows[d] + offset`."""
    D, n = rows.shape
    x = scratch("x", (D, n, halves[0].shape[1]), halves[0].dtype, halves[0].device)  # (D, n, P)
    for d, half in enumerate(halves):
        torch.index_select(half, 0, rows[d] + offset, out=x[d])
    return x


def _scatter_outputs(halves: list[torch.Tensor], rows: torch.Tensor, offset: int, out: torch.Tensor) -> None:
    """Write `out` `(D, n, P)` to grid rows `rows[d] + offset`."""
    for d, half in enumerate(halves):
        half.index_copy_(0, rows[d] + offset, out[d])


def _run_layer(halves: list[torch.Tensor], plan: RunPlan, offset: int, layer_stride: int, h: torch.Tensor,
               c: torch.Tensor, w_input: torch.Tensor, w_recurrent: torch.Tensor, w_projection: torch.Tensor,
               bias: torch.Tensor, max_rows: int, residual: bool, config,
               distinct: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """One float32 layer over the packed rows; updates `h` `(D, B, P)` and `c` `(D, B, C)` in place.

    Reads grid rows `plan.index + offset`, writes rows `plan.index + offset + layer_stride`.
    With `distinct`, the input projection of each distinct token is computed once and gathered.
    """
    D, P, C = h.shape[0], h.shape[2], c.shape[2]
    token_gates = None
    if distinct is not None:
        U = distinct[0].shape[0]
        token_gates = _input_gates(scratch("gates", (D, U, 4 * C), w_input.dtype, h.device),
                                   distinct[0].expand(D, U, P), w_input, bias)  # (D, U, 4C)
    for first, last in plan.chunks(max_rows):
        lo, hi = plan.offsets[first], plan.offsets[last]
        rows = plan.index[:, lo:hi]  # (D, n)
        x = gates = None
        if token_gates is None:
            x = _gather_inputs(halves, rows, offset)  # (D, n, P)
            gates = _input_gates(scratch("gates", (D, hi - lo, 4 * C), w_input.dtype, h.device), x, w_input,
                                 bias)  # (D, n, 4C)
        out = scratch("out", (D, hi - lo, P), h.dtype, h.device)  # (D, n, P)
        for t in range(first, last):
            b, at = plan.batch_sizes[t], plan.offsets[t] - lo
            if token_gates is not None:  # gathered step by step
                step_gates = scratch("step", (D, b, 4 * C), w_input.dtype, h.device)  # (D, b, 4C)
                for d in range(D):
                    torch.index_select(token_gates[d], 0, distinct[1][d, lo + at : lo + at + b], out=step_gates[d])
            else:
                step_gates = gates[:, at : at + b]  # (D, b, 4C)
            out[:, at : at + b] = _step(step_gates, h, c, b, w_recurrent, w_projection, config)
        if residual:
            out += x  # residual after the clip; the state keeps m_t
        _scatter_outputs(halves, rows, offset + layer_stride, out)


def _run_layer_transposed(halves: list[torch.Tensor], plan: RunPlan, offset: int, layer_stride: int,
                          h: torch.Tensor, c: torch.Tensor, w_input: torch.Tensor, w_recurrent: torch.Tensor,
                          w_projection: torch.Tensor, bias: torch.Tensor, max_rows: int, residual: bool,
                          config) -> torch.Tensor:
    """One bfloat16 layer in the transposed layout (gates `(D, 4C, b)`, weights `(D, 4C, P)` and
    `(D, P, C)`), the layout in which bfloat16 matmuls at batch 32 run fastest.

    Updates `h` `(D, B, P)` in place; returns the final cell `(D, B, C)`.
    """
    D, P, C = h.shape[0], h.shape[2], c.shape[2]
    dtype = w_recurrent.dtype
    cell = c.transpose(1, 2).contiguous()  # (D, C, B), float32
    h_low = h.transpose(1, 2).to(dtype).contiguous()  # (D, P, B)
    for first, last in plan.chunks(max_rows):
        lo, hi = plan.offsets[first], plan.offsets[last]
        rows = plan.index[:, lo:hi]  # (D, n)
        x = _gather_inputs(halves, rows, offset)  # (D, n, P)
        gates = scratch("gates", (D, 4 * C, hi - lo), dtype, h.device)  # (D, 4C, n)
        gates.copy_(bias[:, :, None].expand_as(gates))
        gates.baddbmm_(w_input, x.to(dtype).transpose(1, 2))
        out = scratch("out", (D, hi - lo, P), h.dtype, h.device)  # (D, n, P)
        for t in range(first, last):
            b, at = plan.batch_sizes[t], plan.offsets[t] - lo
            m = _step_transposed(gates[:, :, at : at + b], h_low, cell, w_recurrent, w_projection, config)  # (D, P, b)
            out[:, at : at + b] = m.transpose(1, 2)
            h[:, :b] = m.transpose(1, 2)
        if residual:
            out += x
        _scatter_outputs(halves, rows, offset + layer_stride, out)
    return cell.transpose(1, 2)


def _input_gates(buffer: torch.Tensor, x: torch.Tensor, w_input: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`x @ W + b` `(D, n, 4C)` for x `(D, n, P)`, written into `buffer` (bias first, then the matmul in place)."""
    buffer.copy_(bias[:, None].expand_as(buffer))
    return buffer.baddbmm_(x, w_input)


def _step(gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor, b: int, w_recurrent: torch.Tensor,
          w_projection: torch.Tensor, config) -> torch.Tensor:
    """One float32 step of the first `b` sorted rows; updates `h` and `c` in place.

    Args:
        gates: `(D, b, 4C)` input projection plus bias of this step (overwritten).
        h: `(D, B, P)` m; c: `(D, B, C)` cell; w_recurrent `(D, P, 4C)`; w_projection `(D, C, P)`.

    Returns:
        `(D, b, P)` the new m.
    """
    C = config.lstm_dim
    z = gates.baddbmm_(h[:, :b], w_recurrent)  # (D, b, 4C)
    z[..., :C].sigmoid_()
    z[..., C : 2 * C].tanh_()
    z[..., 2 * C :].sigmoid_()
    i, j, f, o = z.split(C, dim=-1)  # each (D, b, C); TensorFlow's gate order
    cell = c[:, :b]  # (D, b, C)
    cell.mul_(f).addcmul_(i, j)
    if config.cell_clip:
        cell.clamp_(-config.cell_clip, config.cell_clip)
    hidden = torch.tanh(cell).mul_(o)  # (D, b, C)
    m = torch.bmm(hidden, w_projection)  # (D, b, P)
    if config.proj_clip:
        m.clamp_(-config.proj_clip, config.proj_clip)
    h[:, :b] = m
    return m


def _step_transposed(gates: torch.Tensor, h_low: torch.Tensor, cell: torch.Tensor, w_recurrent: torch.Tensor,
                     w_projection: torch.Tensor, config) -> torch.Tensor:
    """One bfloat16-matmul step of the first b sorted rows, transposed; the cell and gates in float32.

    Args:
        gates: `(D, 4C, b)` bfloat16 input projection plus bias; h_low: `(D, P, B)` bfloat16 m;
        cell: `(D, C, B)` float32; w_recurrent: `(D, 4C, P)`; w_projection: `(D, P, C)`.

    Returns:
        `(D, P, b)` the new m, float32 (also written to `h_low`).
    """
    C, b = config.lstm_dim, gates.shape[2]
    z = torch.bmm(w_recurrent, h_low[:, :, :b]).float()  # (D, 4C, b)
    z += gates
    z[:, :C].sigmoid_()
    z[:, C : 2 * C].tanh_()
    z[:, 2 * C :].sigmoid_()
    i, j, f, o = z.split(C, dim=1)  # each (D, C, b)
    c = cell[:, :, :b]  # (D, C, b)
    c.mul_(f).addcmul_(i, j)
    if config.cell_clip:
        c.clamp_(-config.cell_clip, config.cell_clip)
    hidden = torch.tanh(c).mul_(o).to(w_projection.dtype)  # (D, C, b)
    m = torch.bmm(w_projection, hidden).float()  # (D, P, b)
    if config.proj_clip:
        m.clamp_(-config.proj_clip, config.proj_clip)
    h_low[:, :, :b] = m
    return m
