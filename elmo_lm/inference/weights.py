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


INT8_WEIGHTS = "_int8_weights"
"""The module attribute holding int8 weights that replaced its float ones (`keep_weights_in`)."""


def int8_weights(module: nn.Module, build: Callable[[nn.Module, bool], Any]) -> Any:
    """`build(module, False)`: the module's weights quantised for int8 matmuls, cached on the module
    (rebuilt when a parameter changes), or those kept in their place by `keep_weights_in`."""
    owned = module.__dict__.get(INT8_WEIGHTS)
    if owned is not None:
        return owned
    signature = tuple((p.data_ptr(), p._version) for p in module.parameters())
    return cached_on_module(module, ("int8",), signature, lambda: build(module, False))


def to_meta(module: nn.Module, name: str) -> None:
    """Replace the parameter `module.<name>` (for a ParameterList, its index as a string) by a
    placeholder of the same shape and dtype on the meta device (no memory)."""
    old = getattr(module, name)
    setattr(module, name, nn.Parameter(torch.empty(old.shape, dtype=old.dtype, device="meta"), requires_grad=False))


def drop_cache(module: nn.Module) -> None:
    """Release what `cached_on_module` keeps on the module."""
    module.__dict__.pop(_CACHE_ATTRIBUTE, None)


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

    For int8 the weight matrices are quantised one at a time and their float parameters become
    meta placeholders (`int8_model.keep_in_int8`): the model keeps a quarter of their memory.
    """
    dtype = matmul_dtype(precision)
    if precision == "int8":
        from .int8_model import keep_in_int8

        keep_in_int8(model)
        return
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
        drop_cache(module)
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
            del parameter
            to_meta(weights, str(layer))
        packed.append((per_kind[0], per_kind[1]))
    lstm.__dict__[PACKED_STEP_WEIGHTS] = (dtype, packed)
