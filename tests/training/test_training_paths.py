"""The training path's shortcuts compute the same function: the character CNN over each length group's slots
equals the convolution over all 50 slots (values and gradients), and bfloat16 matmul products stay close to
float32 while the weights and their gradients stay float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from elmo_lm.chars import tokens_to_ids
from elmo_lm.config import ModelConfig
from elmo_lm.model import ElmoBiLM, distinct_rows
from elmo_lm.training.config import TINY_SHAPE

WORDS = ["a", "of", "the", "tokens", "internationalization", "x" * 70, "<S>", "</S>", "naïve", "42", "ab", "abc",
         "characters", "Z" * 30, "mid-length", "i", "onomatopoeia", "pneumonoultramicroscopicsilicovolcanoconiosis"]


def _reference(encoder: torch.nn.Module, char_ids: torch.Tensor) -> torch.Tensor:
    """The textbook encoder: every convolution over all 50 slots, max, activation, highway, projection."""
    chars = encoder.char_embedding(char_ids).transpose(1, 2)  # (N, e, 50)
    x = encoder.activation(torch.cat([conv(chars).amax(dim=-1) for conv in encoder.convolutions], dim=-1))
    for carry, transform in zip(encoder.highway_carry, encoder.highway_transform):
        gate = torch.sigmoid(carry(x))
        x = gate * torch.relu(transform(x)) + (1 - gate) * x
    return encoder.projection(x)


def _values_and_grads(encoder: torch.nn.Module, forward, char_ids: torch.Tensor, weights: torch.Tensor):
    encoder.zero_grad()
    out = forward(char_ids)
    (out * weights).sum().backward()
    return out.detach(), [p.grad.clone() for p in encoder.parameters()]


def test_grouped_character_cnn_equals_the_convolution_over_all_slots():
    torch.manual_seed(0)
    encoder = ElmoBiLM(ModelConfig(**TINY_SHAPE)).token_encoder.train()
    char_ids = torch.from_numpy(tokens_to_ids(WORDS))  # (N, 50)
    weights = torch.randn(len(WORDS), encoder.config.projection_dim)
    expected, expected_grads = _values_and_grads(encoder, lambda c: _reference(encoder, c), char_ids, weights)
    got, grads = _values_and_grads(encoder, encoder, char_ids, weights)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-4)


def test_bfloat16_products_stay_close_and_gradients_float32():
    torch.manual_seed(0)
    model = ElmoBiLM(ModelConfig(**TINY_SHAPE)).train()
    char_ids = torch.from_numpy(tokens_to_ids(WORDS)).view(2, 9, 50)  # (B, T, 50)
    mask = torch.ones(2, 2, 9, dtype=torch.bool)

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        tokens = model.encode_tokens(torch.stack([char_ids, char_ids.flip(1)]), mask)  # (2, B, T, P)
        outputs, _ = model.lstm(tokens, mask)
        loss = F.mse_loss(outputs[-1], torch.ones_like(outputs[-1]))
        loss.backward()
        return outputs[-1].detach(), [p.grad for p in model.parameters()]

    expected, expected_grads = run()
    model.token_encoder.matmul_dtype = model.lstm.matmul_dtype = torch.bfloat16
    got, grads = run()
    assert all(g.dtype == torch.float32 for g in grads)
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    cosines = [F.cosine_similarity(g.flatten(), e.flatten(), dim=0) for g, e in zip(grads, expected_grads)
               if e.abs().sum() > 0]
    assert min(cosines) > 0.95, cosines


def test_distinct_rows_equal_torch_unique():
    torch.manual_seed(0)
    words = torch.from_numpy(tokens_to_ids(WORDS))  # ids up to 261: two bytes each
    char_ids = torch.cat([words, words[3:9], torch.randint(0, 300, (40, 50)), words[:2]])  # (N, 50), repeats
    for ids in (char_ids, char_ids[:0], char_ids[:1], char_ids - 1):  # -1: out of the byte-string range
        distinct, which = distinct_rows(ids)
        expected, expected_which = torch.unique(ids, dim=0, return_inverse=True)
        assert torch.equal(distinct, expected) and torch.equal(which, expected_which)
