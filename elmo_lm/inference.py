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
from collections.abc import Iterator
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


def cast_weights(module: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The module's parameters by name, detached, in `dtype`.

    Float32 gives the parameters themselves; other dtypes give copies cached on the module (a
    plain attribute, outside the state dict) and rebuilt when a parameter changes.
    """
    named = dict(module.named_parameters())
    if all(p.dtype == dtype for p in named.values()):
        return {name: p.detach() for name, p in named.items()}
    signature = tuple((p.data_ptr(), p._version) for p in named.values())
    cache = module.__dict__.setdefault("_cast_cache", {})
    if dtype not in cache or cache[dtype][0] != signature:
        cache.pop(dtype, None)  # release the old copies before making new ones
        cache[dtype] = (signature, {name: p.detach().to(dtype) for name, p in named.items()})
    return cache[dtype][1]


# ---- token encoder ----

def content_extent(char_ids: torch.Tensor) -> torch.Tensor:
    """`(N,)`: the number of leading slots of each token `(N, S)` up to its last non-padding char."""
    S = char_ids.shape[1]
    positions = torch.arange(1, S + 1, device=char_ids.device)  # (S,)
    return ((char_ids != PAD_ID) * positions).amax(dim=1).clamp_(min=1)  # (N,)


def _spans(extents: list[int], S: int, widest: int, bytes_per_token: callable, budget: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, span) over tokens sorted by extent: chunks that fit `budget` at their span."""
    start, N = 0, len(extents)
    while start < N:
        span = min(S, extents[start] + widest - 1)
        end = min(N, start + max(1, budget // bytes_per_token(span)))
        span = min(S, extents[end - 1] + widest - 1)
        end = min(end, start + max(1, budget // bytes_per_token(span)))
        yield start, end, min(S, extents[end - 1] + widest - 1)
        start = end


def encode_tokens_inference(encoder: TokenEncoder, char_ids: torch.Tensor, precision: str,
                            chunk_bytes: int) -> torch.Tensor:
    """Token vectors `(N, P)` for character ids `(N, S)`, equal to `TokenEncoder`'s autograd path.

    A convolution of width w over a token with `k` filled slots needs only the windows starting
    before k; every later window is all padding and has one value for all tokens, computed once.
    """
    config = encoder.config
    dtype = matmul_dtype(precision)
    weights = cast_weights(encoder, dtype)
    N, S = char_ids.shape
    widest = max(width for width, _ in config.filters)
    output = torch.empty(N, config.projection_dim, device=char_ids.device)  # (N, P)
    if N == 0:
        return output
    extent = content_extent(char_ids)  # (N,)
    order = torch.argsort(extent)  # (N,), shortest first
    extents = extent[order].tolist()
    padding = _padding_windows(encoder, weights, S)  # (F,)

    def bytes_per_token(span: int) -> int:
        largest_map = max(count * max(1, span - width + 1) for width, count in config.filters)
        return 4 * max(largest_map, 4 * config.n_filters)

    for start, end, span in _spans(extents, S, widest, bytes_per_token, chunk_bytes):
        rows = order[start:end]  # (n,)
        chars = F.embedding(char_ids[rows, :span], weights["char_embedding.weight"]).transpose(1, 2)  # (n, e, span)
        pooled = [F.conv1d(chars, weights[f"convolutions.{i}.weight"], weights[f"convolutions.{i}.bias"]).amax(dim=-1)
                  for i in range(len(config.filters))]  # each (n, n_i)
        features = torch.cat(pooled, dim=-1).float()  # (n, F)
        if span < S:
            # The windows beyond the span are all padding for every token of the chunk.
            features = torch.maximum(features, padding)  # (n, F)
        output[rows] = _highway_and_projection(encoder, weights, features, dtype)  # (n, P)
    return output


def _padding_windows(encoder: TokenEncoder, weights: dict[str, torch.Tensor], S: int) -> torch.Tensor:
    """`(F,)`: each convolution's value on a window of padding characters alone."""
    widest = max(width for width, _ in encoder.config.filters)
    pad = torch.full((1, widest), PAD_ID, dtype=torch.long, device=weights["char_embedding.weight"].device)
    chars = F.embedding(pad, weights["char_embedding.weight"]).transpose(1, 2)  # (1, e, widest)
    values = [F.conv1d(chars[:, :, :width], weights[f"convolutions.{i}.weight"], weights[f"convolutions.{i}.bias"])
              for i, (width, _) in enumerate(encoder.config.filters)]  # each (1, n_i, 1)
    return torch.cat(values, dim=1).flatten().float()  # (F,)


def _highway_and_projection(encoder: TokenEncoder, weights: dict[str, torch.Tensor], features: torch.Tensor,
                            dtype: torch.dtype) -> torch.Tensor:
    """Activation, highway layers and projection of max-pooled features `(n, F)` -> `(n, P)`."""
    x = encoder.activation(features)  # (n, F), float32
    for k in range(encoder.config.n_highway):
        x_low = x.to(dtype)
        gate = torch.sigmoid(F.linear(x_low, weights[f"highway_carry.{k}.weight"],
                                      weights[f"highway_carry.{k}.bias"]).float())  # (n, F)
        transform = torch.relu(F.linear(x_low, weights[f"highway_transform.{k}.weight"],
                                        weights[f"highway_transform.{k}.bias"]).float())  # (n, F)
        x = gate * transform + (1 - gate) * x  # (n, F)
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


def _lstm_weights(lstm: LstmpStack, dtype: torch.dtype) -> list[tuple[torch.Tensor, ...]]:
    """Per layer (input, recurrent, projection weight in `dtype`, bias with the forget bias added)."""
    from .model import FORGET_BIAS

    weights = cast_weights(lstm, dtype)
    C = lstm.config.lstm_dim
    layers = []
    for layer in range(lstm.config.n_layers):
        bias = weights[f"bias.{layer}"].clone()  # (D, 4C)
        bias[:, 2 * C : 3 * C] += FORGET_BIAS
        layers.append((weights[f"input_weight.{layer}"], weights[f"recurrent_weight.{layer}"],
                       weights[f"projection_weight.{layer}"], bias))
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
    max_rows = max(1, chunk_bytes // row_bytes)
    weights = _lstm_weights(lstm, dtype)
    final_h, final_c = [], []
    for layer in range(L):
        w_input, w_recurrent, w_projection, bias = (w[picked] for w in weights[layer])
        h, c = h0[layer].contiguous(), c0[layer].contiguous()  # (D, B, P), (D, B, C)
        h_low = h.to(dtype) if dtype != torch.float32 else None  # the recurrent matmul's input
        token_gates = None
        if layer == 0 and distinct is not None and distinct[0].shape[0] < plan.index.shape[1] \
                and distinct[0].shape[0] * row_bytes <= chunk_bytes:
            U = distinct[0].shape[0]
            token_gates = _input_gates(scratch("gates", (D, U, 4 * C), dtype, grid.device),
                                       distinct[0].to(dtype).expand(D, U, P), w_input, bias)  # (D, U, 4C)
        for first, last in plan.chunks(max_rows):
            lo, hi = plan.offsets[first], plan.offsets[last]
            rows = plan.index[:, lo:hi]  # (D, n)
            x = gates = None
            if token_gates is None:
                x = scratch("x", (D, hi - lo, P), grid.dtype, grid.device)  # (D, n, P)
                for d, half in enumerate(halves):
                    torch.index_select(half, 0, rows[d] + layer * layer_stride, out=x[d])
                gates = _input_gates(scratch("gates", (D, hi - lo, 4 * C), dtype, grid.device), x.to(dtype),
                                     w_input, bias)  # (D, n, 4C)
            out = scratch("out", (D, hi - lo, P), grid.dtype, grid.device)  # (D, n, P)
            for t in range(first, last):
                b, at = plan.batch_sizes[t], plan.offsets[t] - lo
                if token_gates is not None:  # layer 0: each distinct token's input projection computed once
                    step_gates = scratch("step", (D, b, 4 * C), dtype, grid.device)  # (D, b, 4C)
                    for d in range(D):
                        torch.index_select(token_gates[d], 0, distinct[1][d, lo + at : lo + at + b], out=step_gates[d])
                else:
                    step_gates = gates[:, at : at + b]  # (D, b, 4C)
                out[:, at : at + b] = _step(step_gates, h, h_low, c, b, w_recurrent, w_projection, config)
            if layer > 0 and config.use_skip_connections:
                out += x  # residual after the clip; the state keeps m_t
            for d, half in enumerate(halves):
                half.index_copy_(0, rows[d] + (layer + 1) * layer_stride, out[d])
        del token_gates
        final_h.append(h)
        final_c.append(c)
    unsort = torch.argsort(plan.order)  # (B,)
    return LstmState(torch.stack(final_h)[:, :, unsort], torch.stack(final_c)[:, :, unsort])


def _input_gates(buffer: torch.Tensor, x: torch.Tensor, w_input: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`x @ W + b` `(D, n, 4C)` for x `(D, n, P)`, written into `buffer` (bias first, then the matmul in place)."""
    buffer.copy_(bias[:, None].expand_as(buffer))
    return buffer.baddbmm_(x, w_input)


def _step(gates: torch.Tensor, h: torch.Tensor, h_low: torch.Tensor | None, c: torch.Tensor, b: int,
          w_recurrent: torch.Tensor, w_projection: torch.Tensor, config) -> torch.Tensor:
    """One step of the first `b` sorted rows; updates `h`, `c` (and `h_low`) in place.

    Args:
        gates: `(D, b, 4C)` input projection plus bias of this step (overwritten).
        h: `(D, B, P)` float32 m; h_low: its bfloat16 copy, or None in float32; c: `(D, B, C)`.

    Returns:
        `(D, b, P)` the new m (float32).
    """
    C = config.lstm_dim
    if h_low is None:
        z = gates.baddbmm_(h[:, :b], w_recurrent)  # (D, b, 4C)
    else:
        z = gates.float().add_(torch.bmm(h_low[:, :b], w_recurrent))  # (D, b, 4C), float32
    z[..., :C].sigmoid_()
    z[..., C : 2 * C].tanh_()
    z[..., 2 * C :].sigmoid_()
    i, j, f, o = z.split(C, dim=-1)  # each (D, b, C)
    cell = c[:, :b]  # (D, b, C)
    cell.mul_(f).addcmul_(i, j)
    if config.cell_clip:
        cell.clamp_(-config.cell_clip, config.cell_clip)
    hidden = torch.tanh(cell).mul_(o)  # (D, b, C)
    if h_low is None:
        projected = torch.bmm(hidden, w_projection)  # (D, b, P)
    else:
        projected = torch.bmm(hidden.to(h_low.dtype), w_projection).float()  # (D, b, P)
    if config.proj_clip:
        projected.clamp_(-config.proj_clip, config.proj_clip)
    h[:, :b] = projected
    if h_low is not None:
        h_low[:, :b] = projected
    return projected


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
