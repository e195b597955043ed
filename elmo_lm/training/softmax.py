"""Word-softmax losses for training: the full softmax and TensorFlow-style sampled softmax.

The sampled softmax follows `tf.nn.sampled_softmax_loss` as bilm-tf used it: negatives drawn
without repeats from a log-uniform (Zipfian) distribution over the vocabulary ids (the vocabulary
is sorted by descending count, so id order is frequency order), every logit corrected by
subtracting the log of its class's expected count in the sample, and "accidental hits" (a
negative equal to the row's true word) removed.

Shapes: N target positions, P projection size, V vocabulary size, S negatives.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ElmoError

FULL_SOFTMAX_CHUNK = 2**25
"""Logits (rows x V) computed at once by `full_softmax_nll` (128 MB of float32): 335 rows per product for a
100,000-word vocabulary, where 41 rows (2**22) made the product the slowest part of a validation."""

SAMPLED_BLOCK_BYTES = 2**20
"""Float32 logits (rows x S) that `_SampledLogSumExp` works on at once: small enough to stay in the cache."""


class NegativeSample(NamedTuple):
    """One draw of negatives, shared by every row (and both directions) of a step."""

    ids: torch.Tensor
    """(S,) int64 distinct word ids, in the order they were drawn."""
    n_tries: int
    """Draws (with repeats) it took to get S distinct ids; enters the expected counts."""


class LogUniformSampler:
    """Log-uniform (Zipfian) sampler over ids 0..V-1, as TensorFlow's `log_uniform_candidate_sampler`.

    P(k) = (log(k + 2) - log(k + 1)) / log(V + 1): id 0 is the most likely. Samples are unique
    (drawn with replacement until S distinct ids appear); the expected count of id k in such a
    sample is 1 - (1 - P(k))^n_tries, TensorFlow's formula.
    """

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 2:
            raise ElmoError(f"the sampled softmax needs at least 2 words, not {vocab_size}")
        self.vocab_size = vocab_size
        self._log_range = math.log(vocab_size + 1)

    def probability(self, ids: torch.Tensor) -> torch.Tensor:
        """P(k) of each id, float64, same shape as `ids`."""
        k = ids.to(torch.float64)
        return (torch.log(k + 2) - torch.log(k + 1)) / self._log_range

    def log_expected_count(self, ids: torch.Tensor, n_sampled: int, n_tries: int) -> torch.Tensor:
        """log E[count of k] in a unique sample of `n_sampled` ids that took `n_tries` draws (float64)."""
        p = self.probability(ids)
        if n_tries == n_sampled:  # no repeat was drawn: TensorFlow uses p * S here
            return torch.log(p * n_sampled)
        return torch.log(-torch.expm1(n_tries * torch.log1p(-p)))

    def sample(self, n_sampled: int, generator: torch.Generator) -> NegativeSample:
        """Draw `n_sampled` distinct ids; deterministic for a given generator state."""
        if not 0 < n_sampled < self.vocab_size:
            raise ElmoError(f"cannot draw {n_sampled} distinct negatives from {self.vocab_size} words: "
                            "lower n_negative_samples or use the full softmax")
        seen = np.zeros(self.vocab_size, dtype=bool)
        taken: list[np.ndarray] = []
        needed, tries = n_sampled, 0
        chunk = max(2 * n_sampled, 1024)
        while True:
            u = torch.rand(chunk, generator=generator, dtype=torch.float64)  # (chunk,)
            draws = (torch.exp(u * self._log_range).floor().long() - 1).clamp_(0, self.vocab_size - 1).numpy()
            values, first = np.unique(draws, return_index=True)
            new = ~seen[values]
            values, first = values[new], first[new]
            order = np.argsort(first, kind="stable")
            values, first = values[order], first[order]  # new ids in order of first appearance
            if len(values) >= needed:
                taken.append(values[:needed])
                tries += int(first[needed - 1]) + 1
                break
            taken.append(values)
            seen[values] = True
            needed -= len(values)
            tries += chunk
        return NegativeSample(torch.from_numpy(np.concatenate(taken)), tries)


def zipf_log_prior(vocab_size: int) -> torch.Tensor:
    """`(V,)` float32: log P(k) of the log-uniform (Zipfian) distribution over count-sorted ids.

    The starting bias of a fresh softmax: each word starts near its log frequency, so the rare
    words (rarely drawn as negatives by the sampled softmax) do not start with as much mass as
    the frequent ones. Started at zero, the rare words' share of the full softmax is learned
    only through the few steps that draw them, and a direction whose hidden states meet their
    random rows can put much of its mass there unseen by the sampled loss.
    """
    return LogUniformSampler(max(vocab_size, 2)).probability(torch.arange(vocab_size)).log().float()  # (V,)


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`hidden @ weight.T + bias` `(N, V)`, float32, the product in `dtype`."""
    if dtype == torch.float32:
        return F.linear(hidden, weight, bias)
    return F.linear(hidden.to(dtype), weight.to(dtype)).float() + bias


def full_softmax_nll(
    hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
    matmul_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Negative log-likelihood of each target under the full softmax.

    Args:
        hidden: `(N, P)` top-layer outputs; targets: `(N,)` word ids (no padding).
        weight: `(V, P)`; bias: `(V,)`: logits = hidden @ weight.T + bias.

    Returns:
        `(N,)` losses, computed `FULL_SOFTMAX_CHUNK` logits at a time.
    """
    rows = max(1, FULL_SOFTMAX_CHUNK // max(1, weight.shape[0]))
    if hidden.shape[0] <= rows:
        return F.cross_entropy(_logits(hidden, weight, bias, matmul_dtype), targets, reduction="none")  # (N,)
    parts = [F.cross_entropy(_logits(h, weight, bias, matmul_dtype), t, reduction="none")
             for h, t in zip(hidden.split(rows), targets.split(rows))]
    return torch.cat(parts)  # (N,)


def sampled_softmax_nll(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    sample: NegativeSample,
    sampler: LogUniformSampler,
    matmul_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sampled-softmax loss of each target (TensorFlow's `sampled_softmax_loss`, `subtract_log_q`).

    Each row's logits are its true word's and the S negatives', each minus the log expected count
    of its class; a negative equal to the row's true word is masked out (accidental hit).

    Args:
        hidden: `(N, P)`; targets: `(N,)` word ids (no padding); weight `(V, P)`, bias `(V,)`.
        sample: the step's negatives; sampler: the distribution they were drawn from.
        matmul_dtype: the dtype of the `(N, S)` logits' product (float32 or bfloat16).

    Returns:
        `(N,)` losses: cross-entropy of the true word among itself and the negatives.
    """
    n_sampled = sample.ids.shape[0]
    ids = sample.ids.to(hidden.device)  # (S,)
    true_logits = (hidden * weight[targets]).sum(-1) + bias[targets]  # (N,)
    true_logits = true_logits - sampler.log_expected_count(targets, n_sampled, sample.n_tries).to(hidden.dtype)
    # The log expected counts of the negatives go into their bias: one (N, S) pass fewer.
    sampled_bias = bias[ids] - sampler.log_expected_count(ids, n_sampled, sample.n_tries).to(hidden.dtype)  # (S,)
    # Accidental hits: the negatives are distinct, so a row has at most one; find them through
    # each word's place in the sample instead of comparing all (N, S) pairs.
    place = torch.full((weight.shape[0],), -1, dtype=torch.long, device=hidden.device)  # (V,)
    place[ids] = torch.arange(n_sampled, device=hidden.device)
    hit_rows = (place[targets] >= 0).nonzero().squeeze(1)  # (H,)
    hit_columns = place[targets[hit_rows]]  # (H,)
    sampled = _SampledLogSumExp.apply(hidden, weight[ids], sampled_bias, hit_rows, hit_columns,
                                      matmul_dtype)  # (N,)
    # Cross-entropy of the true word among itself and the negatives, without concatenating them.
    return torch.logaddexp(true_logits, sampled) - true_logits  # (N,)


class _SampledLogSumExp(torch.autograd.Function):
    """`logsumexp` over each row of `hidden @ weight.T + bias` `(N, S)`, the accidental hits left out.

    One product in `dtype` (its `(N, S)` result kept in `dtype` for the backward), then the float32
    bias, `logsumexp` and, in the backward, `exp(logit - lse)` a block of rows at a time
    (`SAMPLED_BLOCK_BYTES`), so each element is read from memory once per pass instead of once
    per elementwise operation. The same arithmetic as the unfused autograd ops: the logits are
    the product rounded to `dtype`, plus the float32 bias; the logits' gradient is float32 until it
    is rounded to `dtype` for the two backward products; the bias gradient is summed in float32.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, hit_rows: torch.Tensor,
                hit_columns: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        hidden_low, weight_low = hidden.to(dtype), weight.to(dtype)  # (N, P), (S, P)
        products = F.linear(hidden_low, weight_low)  # (N, S) in dtype
        products[hit_rows, hit_columns] = float("-inf")
        lse = products.new_empty(products.shape[0], dtype=torch.float32)  # (N,)
        for rows in _row_blocks(products):
            lse[rows] = torch.logsumexp(products[rows].float() + bias, dim=1)  # (n,)
        ctx.save_for_backward(hidden_low, weight_low, bias, products, lse)
        ctx.input_dtypes = hidden.dtype, weight.dtype
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse: torch.Tensor):
        hidden_low, weight_low, bias, products, lse = ctx.saved_tensors
        # exp(logit - lse) is 0 at the hits (-inf); a row with nothing left (lse = -inf) gets 0 too.
        lse = lse.masked_fill(lse == float("-inf"), 0.0)  # (N,)
        grad_products = torch.empty_like(products)  # (N, S) in dtype
        grad_bias = torch.zeros_like(bias)  # (S,) float32
        for rows in _row_blocks(products):
            block = products[rows].float() + bias  # (n, S) float32
            block.sub_(lse[rows, None]).exp_().mul_(grad_lse[rows, None])  # d lse / d logit
            grad_bias += block.sum(dim=0)
            grad_products[rows] = block
        grad_hidden = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_hidden = (grad_products @ weight_low).to(ctx.input_dtypes[0])  # (N, P)
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_products.t() @ hidden_low).to(ctx.input_dtypes[1])  # (S, P)
        return grad_hidden, grad_weight, grad_bias if ctx.needs_input_grad[2] else None, None, None, None


def _row_blocks(products: torch.Tensor) -> list[slice]:
    """Slices of rows of `products` `(N, S)` holding about `SAMPLED_BLOCK_BYTES` of float32 each."""
    N, S = products.shape
    rows = max(1, SAMPLED_BLOCK_BYTES // (4 * max(1, S)))
    return [slice(start, min(N, start + rows)) for start in range(0, N, rows)]
