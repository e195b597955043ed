"""The language-model objective: both directions' next-word losses through the shared softmax.

`LMObjective` wraps an `ElmoBiLM` into the module that training differentiates (and that
`DistributedDataParallel` wraps): character ids of a batch's forward and backward streams in,
summed losses out. Dropout (in training mode) is applied to the input of every LSTM layer and to
the top layer before the softmax, as in bilm-tf.

Shapes: D = 2 directions, B rows, T positions, P projection size, N real target positions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .data import IGNORE_INDEX
from ..errors import ElmoError
from ..model import ElmoBiLM, LstmState
from .softmax import LogUniformSampler, NegativeSample, full_softmax_nll, sampled_softmax_nll


class ObjectiveOutput(NamedTuple):
    """What `LMObjective.forward` returns."""

    loss_sums: torch.Tensor
    """(2,) summed negative log-likelihood (nats) of the forward and backward targets."""
    n_tokens: torch.Tensor
    """(2,) number of real targets of each direction."""
    state: LstmState
    """Final LSTM state of every row, detached: the next batch's initial state."""


class LMObjective(nn.Module):
    """Training loss of both language models of an `ElmoBiLM` (which must have a softmax).

    Args:
        model: the model; its `lstm.dropout` is set to `dropout`.
        dropout: dropout rate in training mode.
        sampler: the negative sampler when training with the sampled softmax (None: full softmax;
            evaluation mode always uses the full softmax).
        matmul_dtype: the dtype of the training matmuls' products: float32, or bfloat16 where the
            CPU has native bfloat16 dot products (the weights, cell state and losses stay float32).
            None leaves the model's setting as it is. Evaluation always multiplies in float32.
    """

    def __init__(self, model: ElmoBiLM, dropout: float = 0.0, sampler: LogUniformSampler | None = None,
                 matmul_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if model.softmax is None:
            raise ElmoError("the model has no softmax: add one (model.add_softmax(V)) to train or evaluate it")
        self.model = model
        self.dropout = dropout
        self.sampler = sampler
        model.lstm.dropout = dropout
        if matmul_dtype is not None:
            model.token_encoder.matmul_dtype = model.lstm.matmul_dtype = matmul_dtype

    def forward(
        self,
        forward_chars: torch.Tensor,
        forward_targets: torch.Tensor,
        backward_chars: torch.Tensor,
        backward_targets: torch.Tensor,
        state: LstmState | None = None,
        sample: NegativeSample | None = None,
    ) -> ObjectiveOutput:
        """Summed losses of one batch (see `data.LMBatch` for the inputs).

        Args:
            forward_chars, backward_chars: `(B, T, 50)` character ids (padding tokens all zero).
            forward_targets, backward_targets: `(B, T)` word ids, `IGNORE_INDEX` at padding.
            state: initial LSTM state (zeros when None).
            sample: the step's negatives; required in training mode with a sampler.
        """
        chars = torch.stack([forward_chars, backward_chars])  # (D, B, T, 50)
        mask = (chars > 0).any(dim=-1)  # (D, B, T)
        tokens = self.model.encode_tokens(chars, mask)  # (D, B, T, P); each distinct token once for both
        outputs, final = self.model.lstm(tokens, mask, state)
        top = outputs[-1]  # (D, B, T, P)
        if self.training and self.dropout > 0:
            top = F.dropout(top, self.dropout, training=True)
        targets = torch.stack([forward_targets, backward_targets])  # (D, B, T)
        real = targets != IGNORE_INDEX  # (D, B, T)
        hidden = top[real]  # (N, P), forward positions first
        flat_targets = targets[real]  # (N,)
        softmax = self.model.softmax
        assert softmax is not None
        if self.training and self.sampler is not None:
            if sample is None:
                raise ValueError("training with the sampled softmax needs the step's negatives")
            nll = sampled_softmax_nll(hidden, flat_targets, softmax.weight, softmax.bias, sample, self.sampler,
                                      self.model.lstm.matmul_dtype)
        else:
            dtype = self.model.lstm.matmul_dtype if self.training else torch.float32
            nll = full_softmax_nll(hidden, flat_targets, softmax.weight, softmax.bias, dtype)  # (N,)
        n_tokens = real.sum(dim=(1, 2))  # (D,)
        n_forward = int(n_tokens[0])
        loss_sums = torch.stack([nll[:n_forward].sum(), nll[n_forward:].sum()])  # (D,)
        return ObjectiveOutput(loss_sums, n_tokens, LstmState(final.h.detach(), final.c.detach()))
