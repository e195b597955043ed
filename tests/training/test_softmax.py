"""Softmax losses: the log-uniform sampler (TensorFlow's formulas), the sampled softmax's correction and
accidental-hit removal, the chunked full softmax, and the two-direction objective."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from elmo_lm.training import softmax as softmax_module
from elmo_lm.config import ModelConfig
from elmo_lm.training.data import IGNORE_INDEX
from elmo_lm.errors import ElmoError
from elmo_lm.model import ElmoBiLM
from elmo_lm.training.objective import LMObjective
from elmo_lm.training.softmax import LogUniformSampler, NegativeSample, full_softmax_nll, sampled_softmax_nll

TINY = ModelConfig(char_embed_dim=4, filters=((1, 4), (2, 4)), n_highway=1, lstm_dim=16, projection_dim=8, n_layers=2)


def test_log_uniform_probabilities_are_tensorflows():
    sampler = LogUniformSampler(1000)
    p = sampler.probability(torch.arange(1000))
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(p[0]) == pytest.approx(math.log(2) / math.log(1001))
    assert float(p[9]) == pytest.approx((math.log(11) - math.log(10)) / math.log(1001))
    assert bool((p[1:] < p[:-1]).all())  # frequent (low) ids are more likely


def test_samples_are_distinct_in_range_and_reproducible():
    sampler = LogUniformSampler(500)
    first = sampler.sample(100, torch.Generator().manual_seed(3))
    again = sampler.sample(100, torch.Generator().manual_seed(3))
    other = sampler.sample(100, torch.Generator().manual_seed(4))
    assert torch.equal(first.ids, again.ids) and first.n_tries == again.n_tries
    assert not torch.equal(first.ids, other.ids)
    assert len(set(first.ids.tolist())) == 100
    assert 0 <= int(first.ids.min()) and int(first.ids.max()) < 500
    assert first.n_tries >= 100


def test_sample_frequencies_follow_the_distribution():
    sampler, generator = LogUniformSampler(50), torch.Generator().manual_seed(0)
    counts = Counter()
    for _ in range(3000):
        counts.update(sampler.sample(1, generator).ids.tolist())  # a sample of one = one plain draw
    p = sampler.probability(torch.arange(50))
    for k in (0, 1, 5, 20):
        assert counts[k] / 3000 == pytest.approx(float(p[k]), abs=4 * math.sqrt(float(p[k]) / 3000) + 1e-3)


def test_sample_with_all_but_one_word_terminates():
    sample = LogUniformSampler(20).sample(19, torch.Generator().manual_seed(0))
    assert len(set(sample.ids.tolist())) == 19


def test_impossible_sample_is_an_error():
    with pytest.raises(ElmoError, match="negatives"):
        LogUniformSampler(10).sample(10, torch.Generator())


def test_expected_count_formula():
    sampler = LogUniformSampler(100)
    ids = torch.tensor([0, 7, 99])
    p = sampler.probability(ids)
    assert torch.allclose(sampler.log_expected_count(ids, 10, 10).exp(), p * 10)  # no repeats: p * S
    expected = 1 - (1 - p) ** 37
    assert torch.allclose(sampler.log_expected_count(ids, 10, 37).exp(), expected)


def _manual_sampled_loss(hidden, targets, weight, bias, sample, sampler):
    """The TensorFlow definition written out row by row."""
    S = len(sample.ids)
    losses = []
    for h, t in zip(hidden, targets):
        logq_true = float(sampler.log_expected_count(t[None], S, sample.n_tries))
        logits = [float(h @ weight[t] + bias[t]) - logq_true]
        for s in sample.ids:
            if int(s) == int(t):
                continue  # accidental hit: removed
            logq = float(sampler.log_expected_count(s[None], S, sample.n_tries))
            logits.append(float(h @ weight[s] + bias[s]) - logq)
        losses.append(torch.logsumexp(torch.tensor(logits, dtype=torch.float64), 0) - logits[0])
    return torch.stack(losses)


def test_sampled_softmax_matches_the_definition():
    torch.manual_seed(0)
    V, P, N = 40, 6, 9
    hidden, weight, bias = torch.randn(N, P), torch.randn(V, P), torch.randn(V)
    sampler = LogUniformSampler(V)
    sample = sampler.sample(12, torch.Generator().manual_seed(1))
    targets = torch.randint(0, V, (N,))
    targets[0] = sample.ids[0]  # force an accidental hit
    got = sampled_softmax_nll(hidden, targets, weight, bias, sample, sampler)
    want = _manual_sampled_loss(hidden, targets, weight, bias, sample, sampler)
    assert torch.allclose(got.double(), want, atol=1e-5)


class _FlatSampler(LogUniformSampler):
    """Every class equally expected: the correction shifts all logits alike and cancels."""

    def log_expected_count(self, ids, n_sampled, n_tries):
        return torch.zeros(ids.shape, dtype=torch.float64)


def test_sampled_softmax_over_every_class_equals_the_full_softmax():
    torch.manual_seed(1)
    V, P = 15, 5
    hidden, weight, bias = torch.randn(7, P), torch.randn(V, P), torch.randn(V)
    targets = torch.randint(0, V, (7,))
    everything = NegativeSample(torch.arange(V), V)  # each row's true word is also an (accidental) negative
    sampled = sampled_softmax_nll(hidden, targets, weight, bias, everything, _FlatSampler(V))
    full = F.cross_entropy(hidden @ weight.T + bias, targets, reduction="none")
    assert torch.allclose(sampled, full, atol=1e-5)


def test_sampled_softmax_gradient_reaches_only_used_rows():
    torch.manual_seed(2)
    V, P = 30, 4
    weight = torch.randn(V, P, requires_grad=True)
    bias = torch.zeros(V, requires_grad=True)
    sample = NegativeSample(torch.tensor([1, 2, 3]), 3)
    targets = torch.tensor([10, 11])
    sampled_softmax_nll(torch.randn(2, P), targets, weight, bias, sample, LogUniformSampler(V)).sum().backward()
    used = {1, 2, 3, 10, 11}
    nonzero = {i for i in range(V) if weight.grad[i].abs().sum() > 0}
    assert nonzero == used


def test_full_softmax_in_chunks_equals_one_pass(monkeypatch):
    torch.manual_seed(3)
    hidden, weight, bias = torch.randn(50, 8), torch.randn(20, 8), torch.randn(20)
    targets = torch.randint(0, 20, (50,))
    whole = full_softmax_nll(hidden, targets, weight, bias)
    monkeypatch.setattr(softmax_module, "FULL_SOFTMAX_CHUNK", 20 * 7)  # 7 rows at a time
    chunked = full_softmax_nll(hidden, targets, weight, bias)
    assert torch.allclose(whole, chunked, atol=1e-6)
    assert torch.allclose(whole, F.cross_entropy(hidden @ weight.T + bias, targets, reduction="none"), atol=1e-6)


def test_objective_is_both_directions_cross_entropy_through_one_softmax():
    torch.manual_seed(4)
    V = 11
    model = ElmoBiLM(TINY, vocab_size=V).eval()
    B, T = 2, 5
    chars = torch.randint(1, 262, (2, B, T, 50))
    chars[:, 1, 3:] = 0  # row 1 ends after 3 positions
    targets = torch.randint(0, V, (2, B, T))
    targets[:, 1, 3:] = IGNORE_INDEX
    with torch.no_grad():
        out = LMObjective(model).eval()(chars[0], targets[0], chars[1], targets[1])
        masks = (chars > 0).any(-1)  # (D, B, T)
        layers, _ = model.lstm(model.encode_tokens(chars), masks)
    assert out.n_tokens.tolist() == [8, 8]
    for d in range(2):
        mask = masks[d]
        logits = model.softmax(layers[-1][d][mask]).detach()  # the shared softmax for both directions
        want = F.cross_entropy(logits, targets[d][mask], reduction="sum")
        assert float(out.loss_sums[d]) == pytest.approx(float(want), rel=1e-5)


def test_objective_needs_a_softmax():
    with pytest.raises(ElmoError, match="no softmax"):
        LMObjective(ElmoBiLM(TINY))


def _unfused_sampled_nll(hidden, targets, weight, bias, sample, sampler, dtype):
    """The sampled loss through plain autograd ops, the `(N, S)` logits materialised (the code before the fusion)."""
    logq = sampler.log_expected_count(sample.ids, len(sample.ids), sample.n_tries).float()
    true = (hidden * weight[targets]).sum(-1) + bias[targets]
    true = true - sampler.log_expected_count(targets, len(sample.ids), sample.n_tries).float()
    logits = F.linear(hidden.to(dtype), weight[sample.ids].to(dtype)).float() + (bias[sample.ids] - logq)
    hits = targets[:, None] == sample.ids[None, :]
    logits = logits.masked_fill(hits, float("-inf"))
    return torch.logaddexp(true, torch.logsumexp(logits, dim=1)) - true


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blocked_sampled_softmax_equals_the_unfused_ops_with_gradients(monkeypatch, dtype):
    monkeypatch.setattr(softmax_module, "SAMPLED_BLOCK_BYTES", 4 * 50 * 7)  # blocks of 7 rows: 3 blocks and a rest
    torch.manual_seed(4)
    V, P, N = 300, 16, 24
    sampler = LogUniformSampler(V)
    sample = sampler.sample(50, torch.Generator().manual_seed(2))
    targets = torch.randint(0, V, (N,))
    targets[:5] = sample.ids[[0, 3, 7, 49, 0]]  # accidental hits, one row's at the last negative
    results = []
    for loss_fn in (sampled_softmax_nll, _unfused_sampled_nll):
        torch.manual_seed(5)
        hidden = torch.randn(N, P, requires_grad=True)
        weight = torch.randn(V, P, requires_grad=True)
        bias = torch.randn(V, requires_grad=True)
        loss = loss_fn(hidden, targets, weight, bias, sample, sampler, dtype)
        (loss * torch.linspace(0.5, 2.0, N)).sum().backward()
        results.append((loss.detach(), hidden.grad, weight.grad, bias.grad))
    for got, want in zip(*results):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
