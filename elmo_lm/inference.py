"""Inference kernels: the model's function computed with less work, used when nothing needs gradients.

`elmo_lm.model` calls these whenever grad mode is off or no tensor involved requires grad; the
autograd path there stays the plain reference. Each trick below is exact in float32:

- Token encoder: a convolution window lying wholly in a token's trailing padding characters has
  the same value for every token, so each convolution runs only over the positions a token fills
  (tokens sorted by that length and cut to it, chunk by chunk) and the all-padding window is
  computed once and joins the max. Convolution activations stay bounded per chunk.
- LSTM: rows sorted by length and packed time-major, so each step computes only the rows still
  running (no padding work, no masking); the input projection of a chunk of steps is one batched
  matmul over both directions, the per-step loop does only the recurrence, with in-place
  element-wise updates; layer outputs are read from and written to the caller's output tensor.
- Stateless sentences all start with `<S>` (forward) and `</S>` (backward) from zero state: that
  first step is computed once for the batch, and the boundary outputs that the caller drops are
  not computed (`contextualize_inference` with `return_state=False`).

`precision="bfloat16"` (an explicit option, never the default) runs the matmuls in bfloat16 with
the cell state, the gates and the clips in float32; the precomputed input projection is kept in
bfloat16. The bfloat16 copies of the weights are cached on the module, not in its state dict.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .chars import PAD_CHAR

if TYPE_CHECKING:
    from .model import BiLMOutput, ElmoBiLM, LstmpStack, LstmState, TokenEncoder

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""The names `precision` accepts and the matmul dtype each selects."""

PAD_ID = PAD_CHAR + 1
"""The padding character after the inference shift of +1."""

MAX_CHUNK_ROWS = 1024
"""At most this many packed rows per input-projection chunk: larger matmuls gain nothing more."""

GATHER_ROWS = 16384
"""Rows copied per step when filling the output's token layer (bounds the temporary)."""


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


def release_scratch() -> None:
    """Free this thread's work buffers (they are otherwise kept for the next call)."""
    _scratch.__dict__.pop("buffers", None)


def matmul_dtype(precision: str) -> torch.dtype:
    """The dtype of the matmuls for a precision name; raises ValueError for an unknown name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
    return PRECISIONS[precision]


def needs_autograd(module: nn.Module, *tensors: torch.Tensor | None) -> bool:
    """True when grad mode is on and the module's parameters or any given tensor require grad."""
    if not torch.is_grad_enabled():
        return False
    if any(t is not None and t.requires_grad for t in tensors):
        return True
    return any(p.requires_grad for p in module.parameters())


def cast_weights(module: nn.Module, dtype: torch.dtype, transpose: frozenset[str] = frozenset()
                 ) -> dict[str, torch.Tensor]:
    """The module's parameters by name, detached, in `dtype`; those named in `transpose` with their
    last two dimensions swapped and made contiguous.

    A parameter already in that dtype and layout is returned as is (float32 weights are never
    copied); the others are copies cached on the module (a plain attribute, outside the state
    dict), rebuilt when a parameter changes.
    """
    named = dict(module.named_parameters())
    views = {name: (p.detach().transpose(-1, -2) if name in transpose else p.detach()) for name, p in named.items()}
    needed = {name for name, v in views.items() if v.dtype != dtype or not v.is_contiguous()}
    if not needed:
        return views
    signature = tuple((p.data_ptr(), p._version, name in needed) for name, p in named.items())
    key = (dtype, transpose)
    cache = module.__dict__.setdefault("_cast_cache", {})
    if key not in cache or cache[key][0] != signature:
        cache.pop(key, None)  # release the old copies before making new ones
        cache[key] = (signature, {name: views[name].to(dtype).contiguous() for name in needed})
    return {**views, **cache[key][1]}


def keep_weights_in(model: ElmoBiLM, precision: str) -> None:
    """Convert a model used only for inference to keep its weight matrices in `precision`.

    The kernels then read the weights as they are instead of caching a converted copy beside
    them: bfloat16 halves the model's memory. Biases stay float32. The LSTM weights are stored
    in the transposed layout the bfloat16 loop reads (same shape and state-dict keys, other
    strides). Such a model no longer runs the float32 autograd path (the embedder does this only
    to a model it loaded itself).
    """
    dtype = matmul_dtype(precision)
    if dtype == torch.float32:
        return
    with torch.no_grad():
        for name, parameter in model.token_encoder.named_parameters():
            if name.endswith("weight"):
                parameter.data = parameter.data.to(dtype)
        lstm = model.lstm
        for weights in (lstm.input_weight, lstm.recurrent_weight, lstm.projection_weight):
            for parameter in weights:
                parameter.data = parameter.data.transpose(-1, -2).to(dtype).contiguous().transpose(-1, -2)
    for module in (model.token_encoder, lstm):
        module.__dict__.pop("_cast_cache", None)


# ---- token encoder ----

def content_extent(char_ids: torch.Tensor) -> torch.Tensor:
    """`(N,)`: the number of leading slots of each token `(N, S)` up to its last non-padding char."""
    S = char_ids.shape[1]
    positions = torch.arange(1, S + 1, device=char_ids.device)  # (S,)
    return ((char_ids != PAD_ID) * positions).amax(dim=1).clamp_(min=1)  # (N,)


def _chunks(extents: list[int], bytes_per_token: Callable[[int], int], budget: int) -> Iterator[tuple[int, int]]:
    """(start, end) over tokens sorted by extent: chunks whose work fits `budget` at their longest extent."""
    start, N = 0, len(extents)
    while start < N:
        end = min(N, start + max(1, budget // bytes_per_token(extents[start])))
        end = min(end, start + max(1, budget // bytes_per_token(extents[end - 1])))
        yield start, end
        start = end


def _window_weights(encoder: TokenEncoder, weights: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """All convolutions as one matrix over windows of the widest width: `(widest * e, F)` (rows
    (tap, char dim); taps past a filter's width are zero) and the biases `(F,)`."""
    filters = encoder.config.filters
    widest = max(width for width, _ in filters)
    blocks = []
    for i, (width, count) in enumerate(filters):
        kernel = weights[f"convolutions.{i}.weight"]  # (n_i, e, w)
        kernel = F.pad(kernel, (0, widest - width))  # (n_i, e, widest)
        blocks.append(kernel.permute(2, 1, 0).reshape(-1, count))  # (widest * e, n_i)
    biases = torch.cat([weights[f"convolutions.{i}.bias"] for i in range(len(filters))])  # (F,)
    return torch.cat(blocks, dim=1).contiguous(), biases.float()


def encode_tokens_inference(encoder: TokenEncoder, char_ids: torch.Tensor, precision: str,
                            chunk_bytes: int) -> torch.Tensor:
    """Token vectors `(N, P)` for character ids `(N, S)`, equal to `TokenEncoder`'s autograd path.

    All convolutions run as one matmul over windows of the widest width (narrower filters have
    zero taps), and only over windows that start inside a chunk's longest token (tokens sorted
    by length): a window starting at or after a token's last character is all padding and has
    one value for every token, computed once. Max over windows, then the bias and activation.
    """
    config = encoder.config
    dtype = matmul_dtype(precision)
    weights = cast_weights(encoder, dtype)
    N, S = char_ids.shape
    e, widths = config.char_embed_dim, torch.tensor([w for w, n in config.filters for _ in range(n)])  # (F,)
    widest = int(widths.max())
    output = torch.empty(N, config.projection_dim, device=char_ids.device)  # (N, P)
    if N == 0:
        return output
    window_weight, bias = _window_weights(encoder, weights)  # (widest * e, F), (F,)
    table = weights["char_embedding.weight"]  # (262, e)
    padding = _padding_window(table, window_weight)  # (F,)
    extent = content_extent(char_ids)  # (N,)
    order = torch.argsort(extent)  # (N,), shortest first
    extents = extent[order].tolist()
    F_ = config.n_filters
    group = max(1, chunk_bytes // (4 * 4 * F_))  # tokens whose highway layers run together (4 (n, F) buffers)

    def bytes_per_token(K: int) -> int:  # the window matrix and the matmul output of one token
        return 4 * K * (widest * e + F_)

    for first in range(0, N, group):
        last = min(N, first + group)
        features = torch.empty(last - first, F_, device=char_ids.device)  # (g, F)
        for start, end in _chunks(extents[first:last], bytes_per_token, chunk_bytes):
            rows = order[first + start : first + end]  # (n,)
            n, K = end - start, extents[first + end - 1]  # windows start at 0 .. K-1
            ids = char_ids[rows, : min(S, K + widest - 1)]  # (n, span)
            if K + widest - 1 > S:  # windows near the end read past the last slot: padding, times zero taps
                ids = F.pad(ids, (0, K + widest - 1 - S), value=PAD_ID)
            chars = F.embedding(ids, table)  # (n, K + widest - 1, e)
            windows = chars.unfold(1, widest, 1).transpose(2, 3).reshape(n * K, widest * e)  # (n*K, widest*e)
            responses = torch.mm(windows, window_weight).view(n, K, F_)  # (n, K, F)
            if K > S - widest:  # some windows run past the last slot for the wider filters: not windows at all
                valid = torch.arange(K)[:, None] <= S - widths[None, :]  # (K, F)
                responses = responses.masked_fill(~valid, float("-inf"))
            features[start:end] = responses.amax(dim=1)  # (n, F)
            # An all-padding window exists in every token of the chunk for filters with K <= S - w.
            joins = (K <= S - widths).to(features.device)  # (F,)
            features[start:end] = torch.where(joins, torch.maximum(features[start:end], padding), features[start:end])
        features += bias
        output[order[first:last]] = _highway_and_projection(encoder, weights, features, dtype)  # (g, P)
    return output


def _padding_window(table: torch.Tensor, window_weight: torch.Tensor) -> torch.Tensor:
    """`(F,)`: each convolution (without bias) over padding characters alone."""
    pad = table[PAD_ID].repeat(window_weight.shape[0] // table.shape[1])  # (widest * e,)
    return (pad[None, :] @ window_weight)[0].float()  # (F,)


def _highway_and_projection(encoder: TokenEncoder, weights: dict[str, torch.Tensor], features: torch.Tensor,
                            dtype: torch.dtype) -> torch.Tensor:
    """Activation, highway layers and projection of max-pooled features `(n, F)` (overwritten) -> `(n, P)`.

    In place, with the autograd path's arithmetic: `x = g * t + (1 - g) * x`.
    """
    x = features.relu_() if encoder.config.activation == "relu" else features.tanh_()  # (n, F), float32
    for k in range(encoder.config.n_highway):
        x_low = x.to(dtype)
        gate = F.linear(x_low, weights[f"highway_carry.{k}.weight"], weights[f"highway_carry.{k}.bias"])  # (n, F)
        gate = gate.float().sigmoid_()
        transform = F.linear(x_low, weights[f"highway_transform.{k}.weight"], weights[f"highway_transform.{k}.bias"])
        del x_low
        transform = transform.float().relu_().mul_(gate)  # (n, F): g * t
        x = transform.add_(gate.neg_().add_(1).mul_(x))  # (n, F): g * t + (1 - g) * x
        del gate
    return F.linear(x.to(dtype), weights["projection.weight"], weights["projection.bias"]).float()  # (n, P)


# ---- LSTM ----

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
    from .model import FORGET_BIAS

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
    from .model import LstmState

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


# ---- the whole model ----

def _fill_token_layer(grid: torch.Tensor, vectors: torch.Tensor, index: torch.Tensor, real: torch.Tensor,
                      offset: int) -> None:
    """Write layer 0 of `grid` `(B, L+1, W, 2P)`: `[v ; v]` where `real` `(B, W)` is True.

    Position t of the grid takes `v = vectors[index[b, t + offset]]`.
    """
    B, layers, W, P2 = grid.shape
    P = P2 // 2
    flat = grid.view(B * layers * W, P2)  # (R, 2P)
    positions = real.flatten().nonzero().squeeze(1)  # (N,) = b * W + t
    source = index[:, offset : offset + W].flatten()  # (B*W,)
    for start in range(0, positions.shape[0], GATHER_ROWS):
        chunk = positions[start : start + GATHER_ROWS]  # (n,)
        rows = (chunk // W) * (layers * W) + chunk % W  # (n,) grid rows of layer 0
        chosen = vectors[source[chunk]]  # (n, P)
        flat[:, :P].index_copy_(0, rows, chosen)
        flat[:, P:].index_copy_(0, rows, chosen)


def _token_rows(grid_rows: torch.Tensor, index: torch.Tensor, row_stride: int, offset: int) -> torch.Tensor:
    """The row of `vectors` behind each packed element: `index[b, t + offset]` for grid row `b * row_stride + t`."""
    batch_row, position = grid_rows // row_stride, grid_rows % row_stride  # each (D, N)
    return index[batch_row, position + offset]  # (D, N)


def _same_boundaries(vectors: torch.Tensor, index: torch.Tensor, lengths: torch.Tensor) -> bool:
    """Whether every row starts with the same vector and ends with the same vector."""
    B = index.shape[0]
    if B == 0:
        return False
    first = vectors[index[:, 0]]  # (B, P)
    last = vectors[index[torch.arange(B), lengths - 1]]  # (B, P)
    return torch.equal(first, first[:1].expand_as(first)) and torch.equal(last, last[:1].expand_as(last))


def _boundary_state(model: ElmoBiLM, first: torch.Tensor, last: torch.Tensor, precision: str,
                    chunk_bytes: int) -> LstmState:
    """State `(L, 2, 1, .)` after the forward LM read `first` and the backward LM read `last` from zeros."""
    L, P = model.config.n_layers, model.config.projection_dim
    grid = first.new_zeros(1, L + 1, 1, 2 * P)  # (1, L+1, 1, 2P)
    grid[0, 0, 0, :P] = first
    grid[0, 0, 0, P:] = last
    plan = plan_runs(torch.ones(1, dtype=torch.long), L + 1, (False, False))
    return run_packed(model.lstm, grid.view(-1, 2 * P), plan, 1, None, precision, chunk_bytes)


def contextualize_inference(model: ElmoBiLM, vectors: torch.Tensor, index: torch.Tensor, mask: torch.Tensor,
                            state: LstmState | None, keep_boundaries: bool, return_state: bool,
                            precision: str, chunk_bytes: int) -> BiLMOutput:
    """`ElmoBiLM.contextualize` for token vectors given as rows of `vectors` and an index.

    Args:
        vectors: `(U, P)` token vectors; index: `(B, T+2)` long, the row of `vectors` at each
            position of `<S> w1 .. wn </S>` (any valid row at padding); mask: `(B, T+2)` bool.
        return_state: False allows the stateless shortcut (no final state is returned then).
    """
    from .model import BiLMOutput, LstmState

    config = model.config
    L, P = config.n_layers, config.projection_dim
    B, T2 = index.shape
    T = T2 - 2
    lengths = mask.sum(dim=1)  # (B,), n + 2
    inner_mask = torch.arange(T, device=mask.device)[None, :] < (lengths - 2)[:, None]  # (B, T)
    if state is None and not keep_boundaries and not return_state and _same_boundaries(vectors, index, lengths):
        # Every row starts from zeros with <S> (forward) and </S> (backward): one step serves all
        # rows, and the outputs at the boundaries, which the caller drops, are never computed.
        grid = vectors.new_zeros(B, L + 1, T, 2 * P)  # (B, L+1, T, 2P)
        _fill_token_layer(grid, vectors, index, inner_mask, offset=1)
        first = _boundary_state(model, vectors[index[0, 0]], vectors[index[0, lengths[0] - 1]], precision,
                                chunk_bytes)  # (L, 2, 1, .)
        start = LstmState(first.h.expand(-1, -1, B, -1), first.c.expand(-1, -1, B, -1))
        plan = plan_runs(lengths - 2, (L + 1) * T, (False, True))
        distinct = (vectors, _token_rows(plan.index, index, (L + 1) * T, offset=1))
        run_packed(model.lstm, grid.view(-1, 2 * P), plan, T, start, precision, chunk_bytes, distinct=distinct)
        return BiLMOutput(grid, inner_mask, None)
    grid = vectors.new_zeros(B, L + 1, T2, 2 * P)  # (B, L+1, T+2, 2P)
    _fill_token_layer(grid, vectors, index, mask, offset=0)
    plan = plan_runs(lengths, (L + 1) * T2, (False, True))
    distinct = (vectors, _token_rows(plan.index, index, (L + 1) * T2, offset=0))
    final = run_packed(model.lstm, grid.view(-1, 2 * P), plan, T2, state, precision, chunk_bytes, distinct=distinct)
    if keep_boundaries:
        return BiLMOutput(grid, mask, final)
    inner = grid[:, :, 1 : T + 1]  # (B, L+1, T, 2P), a view
    inner.mul_(inner_mask[:, None, :, None])  # zero where `</S>` was
    return BiLMOutput(inner, inner_mask, final)
