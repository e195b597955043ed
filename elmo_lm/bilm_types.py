"""What the reference model (`model.py`) and its inference kernels (`inference/`) share.

Both sides import this module and neither imports the other's internals: `model.py` reaches the
kernels through its one seam (`elmo_lm.inference`), and the kernels never import `model.py`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

FORGET_BIAS = 1.0
"""Added to the forget gate's pre-activation at every step (TensorFlow's LSTMCell default), never stored."""


class LstmState(NamedTuple):
    """Recurrent state of every layer and direction."""

    h: torch.Tensor
    """(L, D, B, P): the projected output m (before any skip connection)."""
    c: torch.Tensor
    """(L, D, B, C): the cell."""


class BiLMOutput(NamedTuple):
    """What `ElmoBiLM.forward` returns."""

    layers: torch.Tensor
    """(B, L+1, T, 2P): layer 0 = [token ; token], layer j = [forward_j ; backward_j]; zero at padding."""
    mask: torch.Tensor
    """(B, T) bool: True at real tokens."""
    state: LstmState | None
    """State after each row's last position: forward after `</S>`, backward after `<S>`; None when
    the caller passed `return_state=False`."""
