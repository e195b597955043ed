"""The training LSTM's one-node-per-layer path computes the reference step's function and gradients."""

from __future__ import annotations

import pytest
import torch

from elmo_lm.config import ModelConfig
from elmo_lm.lstmp_layer import run_lstmp_layer
from elmo_lm.model import LstmpStack

D, B, T = 2, 5, 7


def _stack(dtype: torch.dtype = torch.float32) -> LstmpStack:
    torch.manual_seed(0)
    # Small clips, so both clamps are active on some entries and the test covers their gradients.
    config = ModelConfig(lstm_dim=12, projection_dim=6, n_layers=1, cell_clip=0.5, proj_clip=0.2)
    stack = LstmpStack(config).to(dtype)
    for weight in (*stack.recurrent_weight, *stack.projection_weight):
        torch.nn.init.uniform_(weight, -0.5, 0.5)
    return stack


def _inputs(stack: LstmpStack, dtype: torch.dtype, ragged: bool):
    C, P = stack.config.lstm_dim, stack.config.projection_dim
    gates = torch.randn(D, B, T, 4 * C, dtype=dtype, requires_grad=True)  # (D, B, T, 4C)
    h = (0.1 * torch.randn(D, B, P, dtype=dtype)).requires_grad_()  # (D, B, P)
    c = (0.1 * torch.randn(D, B, C, dtype=dtype)).requires_grad_()  # (D, B, C)
    lengths = torch.tensor([[7, 3, 1, 6, 0], [2, 7, 7, 5, 4]]) if ragged else torch.full((D, B), T)
    real = torch.arange(T) < lengths[..., None]  # (D, B, T)
    return gates, h, c, real


def _reference(stack: LstmpStack, gates, h, c, real):
    """The step-by-step reference math with autograd, an ended row's state carried unchanged."""
    outputs = []
    for t in range(T):
        h_new, c_new = stack.step(0, gates[:, :, t], h, c)
        keep = real[:, :, t, None]
        h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        outputs.append(h)
    return torch.stack(outputs, dim=2), h, c


def _fused(stack: LstmpStack, gates, h, c, real):
    return run_lstmp_layer(gates, h, c, stack.recurrent_weight[0], stack.projection_weight[0], real,
                           stack.config.cell_clip, stack.config.proj_clip, stack.matmul_dtype)


def _values_and_grads(run, stack, gates, h, c, real, upstream):
    leaves = [gates, h, c, stack.recurrent_weight[0], stack.projection_weight[0]]
    for leaf in leaves:
        leaf.grad = None
    out, h_last, c_last = run(stack, gates, h, c, real)
    loss = sum((value * weight).sum() for value, weight in zip((out, h_last, c_last), upstream))
    loss.backward()
    return [out.detach(), h_last.detach(), c_last.detach()], [leaf.grad.clone() for leaf in leaves]


@pytest.mark.parametrize("ragged", [False, True])
def test_one_node_per_layer_equals_the_reference_steps(ragged):
    stack = _stack()
    gates, h, c, real = _inputs(stack, torch.float32, ragged)
    upstream = [torch.randn(D, B, T, 6), torch.randn(D, B, 6), torch.randn(D, B, 12)]
    expected, expected_grads = _values_and_grads(_reference, stack, gates, h, c, real, upstream)
    got, grads = _values_and_grads(_fused, stack, gates, h, c, None if not ragged else real, upstream)
    for value, expected_value in zip(got, expected):
        torch.testing.assert_close(value, expected_value, atol=1e-6, rtol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        assert expected_grad.abs().sum() > 0
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-4)


def test_gradients_match_finite_differences():
    stack = _stack(torch.float64)
    stack.matmul_dtype = torch.float64
    gates, h, c, real = _inputs(stack, torch.float64, ragged=True)
    weights = (stack.recurrent_weight[0], stack.projection_weight[0])

    def run(gates, h, c, recurrent, projection):
        return run_lstmp_layer(gates, h, c, recurrent, projection, real, stack.config.cell_clip,
                               stack.config.proj_clip, torch.float64)

    assert torch.autograd.gradcheck(run, (gates, h, c, *weights))


def test_bfloat16_products_stay_close_with_float32_gradients():
    stack = _stack()
    gates, h, c, real = _inputs(stack, torch.float32, ragged=True)
    upstream = [torch.randn(D, B, T, 6), torch.randn(D, B, 6), torch.randn(D, B, 12)]
    expected, expected_grads = _values_and_grads(_fused, stack, gates, h, c, real, upstream)
    stack.matmul_dtype = torch.bfloat16
    got, grads = _values_and_grads(_fused, stack, gates, h, c, real, upstream)
    assert all(grad.dtype == torch.float32 for grad in grads)
    for value, expected_value in zip(got, expected):
        assert (value - expected_value).abs().max() < 0.05
    for grad, expected_grad in zip(grads, expected_grads):
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), expected_grad.flatten(), dim=0)
        assert cosine > 0.99
