"""What the inference kernels keep between calls: weights in the matmul precision, cached or converted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .matmul import ONEDNN, pack
from .precision import matmul_dtype

_CACHE_ATTRIBUTE = "_inference_cache"
"""The module attribute that `cached_on_module` keeps its values in."""


def needs_autograd(module: nn.Module, *tensors: torch.Tensor | None) -> bool:
    """True when grad mode is on and the module's parameters or any given tensor require grad."""
    if not torch.is_grad_enabled():
        return False
    if any(t is not None and t.requires_grad for t in tensors):
        return True
    return any(p.requires_grad for p in module.parameters())


def cached_on_module(module: nn.Module, key: tuple, signature: tuple, build: Callable[[], Any]) -> Any:
    """`build()`'s result, kept on the module (a plain attribute, outside the state dict) under `key`
    and rebuilt when `signature` (what it was built from) changes; the old value is released first."""
    cache = module.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
    if key not in cache or cache[key][0] != signature:
        cache.pop(key, None)
        cache[key] = (signature, build())
    return cache[key][1]


def cast_weights(module: nn.Module, dtype: torch.dtype, transpose: frozenset[str] = frozenset()
                 ) -> dict[str, torch.Tensor]:
    """The module's parameters by name, detached, in `dtype`; those named in `transpose` with their
    last two dimensions swapped (views: whatever their strides).

    A parameter already in that dtype (and, outside `transpose`, contiguous) is returned as is;
    the others are copies cached on the module, rebuilt when a parameter changes.
    """
    named = dict(module.named_parameters())
    views = {name: (p.detach().transpose(-1, -2) if name in transpose else p.detach()) for name, p in named.items()}
    needed = {name for name, v in views.items() if v.dtype != dtype or (name not in transpose and not v.is_contiguous())}
    if not needed:
        return views
    signature = tuple((p.data_ptr(), p._version, name in needed) for name, p in named.items())
    copies = cached_on_module(module, ("cast", dtype, transpose), signature,
                              lambda: {name: views[name].to(dtype).contiguous() for name in needed})
    return {**views, **copies}


def keep_weights_in(model: nn.Module, precision: str) -> None:
    """Convert a model (an `ElmoBiLM`) used only for inference to keep its weights as the kernels read them.

    The kernels then use the weights as they are instead of caching converted copies beside
    them. The LSTM weights are stored in `F.linear`'s (transposed) layout: same shape and
    state-dict keys, other strides, values unchanged. For bfloat16 the weight matrices are also
    converted (halving the model's memory; biases stay float32). On a CPU with oneDNN, the per-step
    weights (recurrent and projection) are then kept only packed (`matmul.pack`), which steps
    faster (see `packed_lstm.PACK_LIMIT_BYTES`): their parameters become placeholders of the same
    shape on the meta device. Such a model runs only the inference kernels, in this precision (the
    embedder does this only to a model it loaded itself).
    """
    dtype = matmul_dtype(precision)
    with torch.no_grad():
        if dtype != torch.float32:
            for name, parameter in model.token_encoder.named_parameters():
                if name.endswith("weight"):
                    parameter.data = parameter.data.to(dtype)
        lstm = model.lstm
        for weights in (lstm.input_weight, lstm.recurrent_weight, lstm.projection_weight):
            for parameter in weights:
                # One matrix at a time, so that the peak holds one extra matrix, not a model.
                parameter.data = parameter.data.transpose(-1, -2).to(dtype).contiguous().transpose(-1, -2)
    for module in (model.token_encoder, lstm):
        module.__dict__.pop(_CACHE_ATTRIBUTE, None)
    if ONEDNN and lstm.bias[0].device.type == "cpu":
        _keep_step_weights_packed(lstm, dtype)


PACKED_STEP_WEIGHTS = "_packed_step_weights"
"""The LSTM attribute holding `(dtype, per layer (recurrent, projection) per direction)` packed weights."""


def _keep_step_weights_packed(lstm: nn.Module, dtype: torch.dtype) -> None:
    """Replace the recurrent and projection weights by packed copies (`matmul.pack`), one matrix at a time.

    They arrive already contiguous in `F.linear`'s layout (`keep_weights_in`): packing the plain
    TensorFlow-layout matrices straight away was tried and raised the original model's peak at
    load by about 70 MB (a contiguous temporary beside each packed copy)."""
    packed: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
    for layer in range(len(lstm.recurrent_weight)):
        per_kind = []
        for weights in (lstm.recurrent_weight, lstm.projection_weight):
            parameter = weights[layer]  # (D, K, N), stored as (D, N, K)
            per_kind.append([pack(matrix) for matrix in parameter.detach().transpose(-1, -2)])  # each (N, K)
            weights[layer] = nn.Parameter(torch.empty(parameter.shape, dtype=dtype, device="meta"),
                                          requires_grad=False)
            del parameter
        packed.append((per_kind[0], per_kind[1]))
    lstm.__dict__[PACKED_STEP_WEIGHTS] = (dtype, packed)
