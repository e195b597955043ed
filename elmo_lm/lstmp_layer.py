"""One LSTMP layer over a run of steps as a single autograd node, for training.

Autograd over the step-by-step reference math (`LstmpStack.step`) records a dozen nodes per step
and computes each weight gradient as one small matmul per step. This node runs the same steps,
saves what the backward pass needs, and in the backward pass computes the weight gradients as one
matmul over all steps and rows: the same function and gradients (equal within float rounding,
`tests/training/test_lstmp_layer.py`), with far fewer calls.
"""

from __future__ import annotations

import torch

from .bilm_types import FORGET_BIAS


def run_lstmp_layer(
    gates_from_input: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    recurrent_weight: torch.Tensor,
    projection_weight: torch.Tensor,
    real: torch.Tensor | None,
    cell_clip: float | None,
    proj_clip: float | None,
    matmul_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run one layer's steps for both directions.

    Args:
        gates_from_input: `(D, B, T, 4C)`, `x_t @ W_x + b` for every step.
        h: `(D, B, P)` and c: `(D, B, C)`, the state before the first step.
        recurrent_weight: `(D, P, 4C)`; projection_weight: `(D, C, P)`.
        real: `(D, B, T)` bool, False where a row has ended (its state is carried unchanged), or None.
        cell_clip, proj_clip: the clips (None or 0: none).
        matmul_dtype: the dtype of the matmuls' products (float32 or bfloat16); everything else stays
            in the inputs' dtype.

    Returns:
        The outputs `(D, B, T, P)` and the state after the last step, `(D, B, P)` and `(D, B, C)`.
    """
    return _LstmpLayer.apply(gates_from_input, h, c, recurrent_weight, projection_weight, real,
                             cell_clip or None, proj_clip or None, matmul_dtype)


def _product(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`torch.bmm(a, b)` with the product in `dtype` and the result in `a`'s dtype."""
    if a.dtype == dtype:
        return torch.bmm(a, b)
    return torch.bmm(a.to(dtype), b.to(dtype)).to(a.dtype)


def _in_range(x: torch.Tensor, clip: float | None) -> torch.Tensor | None:
    """Where `x.clamp(-clip, clip)` passes its gradient (both bounds included), or None without a clip."""
    return None if clip is None else (x >= -clip) & (x <= clip)


class _LstmpLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates_from_input, h, c, recurrent_weight, projection_weight, real, cell_clip, proj_clip,
                matmul_dtype):
        D, B, T, G = gates_from_input.shape
        C = G // 4
        w_rec = recurrent_weight.to(matmul_dtype)  # (D, P, 4C), cast once for all steps
        w_proj = projection_weight.to(matmul_dtype)  # (D, C, P)
        h_before, c_before, activations, cell_kept, tanh_cells, cell_outputs, projection_kept = \
            [], [], [], [], [], [], []
        outputs = []
        for t in range(T):
            z = gates_from_input[:, :, t] + _product(h, w_rec, matmul_dtype)  # (D, B, 4C)
            i, j, f, o = z.chunk(4, dim=-1)  # each (D, B, C); TensorFlow's gate order
            gates = torch.cat([torch.sigmoid(i), torch.tanh(j), torch.sigmoid(f + FORGET_BIAS), torch.sigmoid(o)],
                              dim=-1)  # (D, B, 4C)
            si, tj, sf, so = gates.chunk(4, dim=-1)
            cell = sf * c + si * tj  # (D, B, C)
            if cell_clip is not None:
                cell_kept.append(_in_range(cell, cell_clip))
                cell = cell.clamp(-cell_clip, cell_clip)
            tanh_cell = torch.tanh(cell)  # (D, B, C)
            cell_output = so * tanh_cell  # (D, B, C)
            projected = _product(cell_output, w_proj, matmul_dtype)  # (D, B, P)
            if proj_clip is not None:
                projection_kept.append(_in_range(projected, proj_clip))
                projected = projected.clamp(-proj_clip, proj_clip)
            h_before.append(h)
            c_before.append(c)
            activations.append(gates)
            tanh_cells.append(tanh_cell)
            cell_outputs.append(cell_output)
            if real is not None:
                keep = real[:, :, t, None]  # (D, B, 1)
                projected = torch.where(keep, projected, h)
                cell = torch.where(keep, cell, c)
            h, c = projected, cell
            outputs.append(h)
        stacked = [torch.stack(saved, dim=2) if saved else None  # each (D, B, T, ...)
                   for saved in (h_before, c_before, activations, tanh_cells, cell_outputs, cell_kept,
                                 projection_kept)]
        ctx.save_for_backward(recurrent_weight, projection_weight, real, *stacked)
        ctx.matmul_dtype = matmul_dtype
        out = torch.stack(outputs, dim=2) if outputs else h.new_empty(D, B, 0, h.shape[-1])  # (D, B, T, P)
        return out, h, c

    @staticmethod
    def backward(ctx, d_out, d_h, d_c):
        (recurrent_weight, projection_weight, real, h_before, c_before, activations, tanh_cells, cell_outputs,
         cell_kept, projection_kept) = ctx.saved_tensors
        dtype = ctx.matmul_dtype
        D, B, T, G = activations.shape
        w_rec_t = recurrent_weight.transpose(1, 2).to(dtype)  # (D, 4C, P)
        w_proj_t = projection_weight.transpose(1, 2).to(dtype)  # (D, P, C)
        d_h = torch.zeros_like(h_before[:, :, 0]) if d_h is None else d_h  # (D, B, P)
        d_c = torch.zeros_like(c_before[:, :, 0]) if d_c is None else d_c  # (D, B, C)
        d_gates = activations.new_empty(D, B, T, G)  # (D, B, T, 4C): gradient of z at each step
        d_projected = h_before.new_empty(h_before.shape)  # (D, B, T, P): gradient of the projection's output
        for t in reversed(range(T)):
            if d_out is not None:
                d_h = d_h + d_out[:, :, t]
            if real is not None:  # an ended row's state passed through unchanged
                keep = real[:, :, t, None]  # (D, B, 1)
                d_h, d_h_through = d_h * keep, d_h * ~keep
                d_c, d_c_through = d_c * keep, d_c * ~keep
            if projection_kept is not None:
                d_h = d_h * projection_kept[:, :, t]
            d_projected[:, :, t] = d_h
            d_cell_output = _product(d_h, w_proj_t, dtype)  # (D, B, C)
            si, tj, sf, so = activations[:, :, t].chunk(4, dim=-1)  # each (D, B, C)
            tanh_cell = tanh_cells[:, :, t]
            d_c = d_c + d_cell_output * so * (1 - tanh_cell * tanh_cell)
            if cell_kept is not None:
                d_c = d_c * cell_kept[:, :, t]
            d_i, d_j, d_f, d_o = d_gates[:, :, t].chunk(4, dim=-1)  # views to fill, each (D, B, C)
            torch.mul(d_c * tj, si * (1 - si), out=d_i)
            torch.mul(d_c * si, 1 - tj * tj, out=d_j)
            torch.mul(d_c * c_before[:, :, t], sf * (1 - sf), out=d_f)
            torch.mul(d_cell_output * tanh_cell, so * (1 - so), out=d_o)
            d_h = _product(d_gates[:, :, t], w_rec_t, dtype)  # (D, B, P)
            d_c = d_c * sf
            if real is not None:
                d_h, d_c = d_h + d_h_through, d_c + d_c_through
        P, C = h_before.shape[-1], cell_outputs.shape[-1]
        # The weight gradients: one product over every step and row.
        d_recurrent = _product(h_before.reshape(D, B * T, P).transpose(1, 2), d_gates.reshape(D, B * T, G), dtype)
        d_projection = _product(cell_outputs.reshape(D, B * T, C).transpose(1, 2),
                                d_projected.reshape(D, B * T, P), dtype)
        return d_gates, d_h, d_c, d_recurrent, d_projection, None, None, None, None
