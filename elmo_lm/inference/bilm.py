"""The whole bidirectional LM for inference: token layer, boundary shortcut, both LSTMP stacks."""

from __future__ import annotations

import torch
from torch import nn

from ..bilm_types import BiLMOutput, LstmState
from .packed_lstm import INFERENCE_LSTM_CHUNK_BYTES, plan_runs, run_packed
from .precision import current_precision

GATHER_ROWS = 16384
"""Rows copied per step when filling the output's token layer (bounds the temporary)."""


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
    last = vectors[index[torch.arange(B, device=index.device), lengths - 1]]  # (B, P)
    return torch.equal(first, first[:1].expand_as(first)) and torch.equal(last, last[:1].expand_as(last))


def _boundary_state(model: nn.Module, first: torch.Tensor, last: torch.Tensor, precision: str,
                    chunk_bytes: int) -> LstmState:
    """State `(L, 2, 1, .)` after the forward LM read `first` and the backward LM read `last` from zeros."""
    L, P = model.config.n_layers, model.config.projection_dim
    grid = first.new_zeros(1, L + 1, 1, 2 * P)  # (1, L+1, 1, 2P)
    grid[0, 0, 0, :P] = first
    grid[0, 0, 0, P:] = last
    plan = plan_runs(torch.ones(1, dtype=torch.long), L + 1, (False, False))
    return run_packed(model.lstm, grid.view(-1, 2 * P), plan, 1, None, precision, chunk_bytes)


def contextualize_inference(model: nn.Module, vectors: torch.Tensor, index: torch.Tensor, mask: torch.Tensor,
                            state: LstmState | None, keep_boundaries: bool, return_state: bool,
                            chunk_bytes: int = INFERENCE_LSTM_CHUNK_BYTES) -> BiLMOutput:
    """`ElmoBiLM.contextualize_indexed` of a `model.ElmoBiLM`, in the current precision (`use_precision`).

    Args:
        vectors: `(U, P)` token vectors; index: `(B, T+2)` long, the row of `vectors` at each
            position of `<S> w1 .. wn </S>` (any valid row at padding); mask: `(B, T+2)` bool.
        return_state: False allows the stateless shortcut (no final state is returned then).
    """
    precision = current_precision()
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
