"""The character CNN, highway layers and projection for inference (exact in float32).

All convolutions run as one matmul over windows of the widest filter width (narrower filters get
zero taps). A window that starts at or after a token's last character is all padding and has the
same value for every token: tokens are sorted by length, each chunk is cut to its longest token,
and that padding window's value is computed once and joins the max. Memory stays bounded by the
chunk budget; the full `(tokens, positions, filters)` activations never exist at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..chars import PAD_CHAR
from .int8 import Int8Weight, quantize
from .matmul import linear
from .precision import current_precision, matmul_dtype
from .weights import cast_weights, int8_weights, to_meta

PAD_ID = PAD_CHAR + 1
"""The padding character after the inference shift of +1."""


def content_extent(char_ids: torch.Tensor) -> torch.Tensor:
    """`(N,)`: the number of leading slots of each token `(N, S)` up to its last non-padding char."""
    S = char_ids.shape[1]
    positions = torch.arange(1, S + 1, device=char_ids.device)  # (S,)
    return ((char_ids != PAD_ID) * positions).amax(dim=1).clamp_(min=1)  # (N,)


def _chunks(extents: list[int], bytes_per_token: Callable[[int], int], budget: int) -> Iterator[tuple[int, int]]:
    """(start, end) over tokens sorted by extent: chunks whose work fits `budget` at their longest extent."""
    start, N = 0, len(extents)
    while start < N:
        end = min(N, start + max(1, budget // bytes_per_token(extents[start])))
        end = min(end, start + max(1, budget // bytes_per_token(extents[end - 1])))
        yield start, end
        start = end


def _window_weights(encoder: nn.Module, weights: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """All convolutions as one matrix over windows of the widest width, in `F.linear`'s layout
    `(F, widest * e)` (columns (tap, char dim); taps past a filter's width are zero), and the
    biases `(F,)`."""
    filters = encoder.config.filters
    widest = max(width for width, _ in filters)
    blocks = []
    for i, (width, count) in enumerate(filters):
        kernel = weights[f"convolutions.{i}.weight"]  # (n_i, e, w)
        kernel = F.pad(kernel, (0, widest - width))  # (n_i, e, widest)
        blocks.append(kernel.permute(2, 1, 0).reshape(-1, count))  # (widest * e, n_i)
    biases = torch.cat([weights[f"convolutions.{i}.bias"] for i in range(len(filters))])  # (F,)
    return torch.cat(blocks, dim=1).t().contiguous(), biases.float()


def quantize_encoder_weight(weight: torch.Tensor) -> Int8Weight:
    """A highway or projection weight `(N, K)` in int8 (per output channel, inputs per row)."""
    return quantize(weight, per_row_inputs=True)


def matrix_names(encoder: nn.Module) -> list[str]:
    """The highway and projection weight matrices, by parameter name (layout `(N, K)`)."""
    k = range(encoder.config.n_highway)
    return [*(f"highway_carry.{i}.weight" for i in k), *(f"highway_transform.{i}.weight" for i in k),
            "projection.weight"]


def quantize_encoder(encoder: nn.Module, release: bool, ready: dict[str, Int8Weight] | None = None) -> dict:
    """The window matrix of all convolutions (`_window_weights`) and the highway and projection
    matrices in int8 (`quantize_encoder_weight`), by name ("window" for the first), taken from
    `ready` (by parameter name) where there. With `release`, their float parameters become meta
    placeholders once quantised (the biases stay).

    Their inputs are quantised per row (`per_row_inputs`): with one scale per call, the bundled
    model's worst token fell to cosine 0.987 against float32 (0.9996 so), the highway's inputs
    differing widely in size from token to token."""
    weights = {name: p.detach() for name, p in encoder.named_parameters()}
    quantized = {"window": quantize_encoder_weight(_window_weights(encoder, weights)[0])}
    if release:
        for convolution in encoder.convolutions:
            to_meta(convolution, "weight")
    for name in matrix_names(encoder):
        quantized[name] = (ready or {}).get(name) or quantize_encoder_weight(weights.pop(name))
        if release:
            to_meta(encoder.get_submodule(name.rsplit(".", 1)[0]), "weight")
    return quantized


def encode_tokens_inference(encoder: nn.Module, char_ids: torch.Tensor, chunk_bytes: int) -> torch.Tensor:
    """Token vectors `(N, P)` for character ids `(N, S)` from a `model.TokenEncoder`, equal to its
    autograd path, with the matmuls in the current precision (`use_precision`).

    All convolutions run as one matmul over windows of the widest width (narrower filters have
    zero taps), and only over windows that start inside a chunk's longest token (tokens sorted
    by length): a window starting at or after a token's last character is all padding and has
    one value for every token, computed once. Max over windows, then the bias and activation.
    """
    config = encoder.config
    precision = current_precision()
    dtype = matmul_dtype(precision)
    weights = cast_weights(encoder, dtype)
    if precision == "int8":
        weights = {**weights, **int8_weights(encoder, quantize_encoder)}
    N, S = char_ids.shape
    e, widths = config.char_embed_dim, torch.tensor([w for w, n in config.filters for _ in range(n)])  # (F,)
    widest = int(widths.max())
    output = torch.empty(N, config.projection_dim, device=char_ids.device)  # (N, P)
    if N == 0:
        return output
    if precision == "int8":
        window_weight = weights["window"]  # (F, widest * e) in int8
        bias = torch.cat([weights[f"convolutions.{i}.bias"] for i in range(len(config.filters))]).float()  # (F,)
    else:
        window_weight, bias = _window_weights(encoder, weights)  # (F, widest * e), (F,)
    table = weights["char_embedding.weight"]  # (N_CHARS, e)
    padding = _padding_window(table, window_weight)  # (F,)
    extent = content_extent(char_ids)  # (N,)
    order = torch.argsort(extent)  # (N,), shortest first
    extents = extent[order].tolist()
    F_ = config.n_filters
    group = max(1, chunk_bytes // (4 * 4 * F_))  # tokens whose highway layers run together (4 (n, F) buffers)

    def bytes_per_token(K: int) -> int:  # the window matrix and the matmul output of one token
        return 4 * K * (widest * e + F_)

    for first in range(0, N, group):
        last = min(N, first + group)
        features = torch.empty(last - first, F_, device=char_ids.device)  # (g, F)
        for start, end in _chunks(extents[first:last], bytes_per_token, chunk_bytes):
            rows = order[first + start : first + end]  # (n,)
            n, K = end - start, extents[first + end - 1]  # windows start at 0 .. K-1
            ids = char_ids[rows, : min(S, K + widest - 1)]  # (n, span)
            if K + widest - 1 > S:  # windows near the end read past the last slot: padding, times zero taps
                ids = F.pad(ids, (0, K + widest - 1 - S), value=PAD_ID)
            chars = F.embedding(ids, table)  # (n, K + widest - 1, e)
            windows = chars.unfold(1, widest, 1).transpose(2, 3).reshape(n * K, widest * e)  # (n*K, widest*e)
            responses = linear(windows, window_weight, into_buffer=True).view(n, K, F_)  # (n, K, F)
            if K > S - widest:  # some windows run past the last slot for the wider filters: not windows at all
                valid = (torch.arange(K)[:, None] <= S - widths[None, :]).to(responses.device)  # (K, F)
                responses = responses.masked_fill(~valid, float("-inf"))
            features[start:end] = responses.amax(dim=1)  # (n, F)
            # An all-padding window exists in every token of the chunk for filters with K <= S - w.
            joins = (K <= S - widths).to(features.device)  # (F,)
            features[start:end] = torch.where(joins, torch.maximum(features[start:end], padding), features[start:end])
        features += bias
        output[order[first:last]] = _highway_and_projection(encoder, weights, features, dtype)  # (g, P)
    return output


def _padding_window(table: torch.Tensor, window_weight: torch.Tensor) -> torch.Tensor:
    """`(F,)`: each convolution (without bias) over padding characters alone."""
    pad = table[PAD_ID].repeat(window_weight.shape[1] // table.shape[1])  # (widest * e,)
    return linear(pad[None, :], window_weight)[0].float()  # (F,)


def _highway_and_projection(encoder: nn.Module, weights: dict[str, torch.Tensor], features: torch.Tensor,
                            dtype: torch.dtype) -> torch.Tensor:
    """Activation, highway layers and projection of max-pooled features `(n, F)` (overwritten) -> `(n, P)`.

    In place, with the autograd path's arithmetic: `x = g * t + (1 - g) * x`.
    """
    x = features.relu_() if encoder.config.activation == "relu" else features.tanh_()  # (n, F), float32
    for k in range(encoder.config.n_highway):
        x_low = x.to(dtype)
        gate = linear(x_low, weights[f"highway_carry.{k}.weight"], weights[f"highway_carry.{k}.bias"])  # (n, F)
        gate = gate.float().sigmoid_()
        transform = linear(x_low, weights[f"highway_transform.{k}.weight"], weights[f"highway_transform.{k}.bias"])
        del x_low
        transform = transform.float().relu_().mul_(gate)  # (n, F): g * t
        x = transform.add_(gate.neg_().add_(1).mul_(x))  # (n, F): g * t + (1 - g) * x
        del gate
    return linear(x.to(dtype), weights["projection.weight"], weights["projection.bias"]).float()  # (n, P)
