"""Per-row LSTM state kept between calls: the stateful behaviour of the reference implementations.

ELMO.md section 6: the final state of batch row r becomes the initial state of row r in the next
call; a smaller batch leaves the higher rows untouched; a new row starts from zeros.
"""

from __future__ import annotations

import torch

from .bilm_types import LstmState
from .model import LstmpStack


class RowStates:
    """The stored state of every batch row index seen so far; empty after `reset`."""

    def __init__(self) -> None:
        self.stored: LstmState | None = None

    def reset(self) -> None:
        """Forget all rows: the next call starts every row from zeros."""
        self.stored = None

    def initial(self, lstm: LstmpStack, batch_size: int, like: torch.Tensor) -> LstmState:
        """The initial state for rows 0..batch_size-1: stored rows, zeros for new ones."""
        state = lstm.zero_state(batch_size, like)
        if self.stored is not None:
            rows = min(batch_size, self.stored.h.shape[2])
            state.h[:, :, :rows] = self.stored.h[:, :, :rows]
            state.c[:, :, :rows] = self.stored.c[:, :, :rows]
        return state

    def update(self, final: LstmState) -> None:
        """Store the final state of rows 0..B-1; rows beyond B keep what they had."""
        h, c = final.h.detach(), final.c.detach()
        if self.stored is not None and self.stored.h.shape[2] > h.shape[2]:
            stored_h, stored_c = self.stored.h.clone(), self.stored.c.clone()
            stored_h[:, :, : h.shape[2]] = h
            stored_c[:, :, : c.shape[2]] = c
            h, c = stored_h, stored_c
        self.stored = LstmState(h, c)
