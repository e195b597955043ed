"""What the inference kernels keep between calls: weights in the matmul precision, cached or converted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


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


PACKED_STEP_WEIGHTS = "_packed_step_weights"
"""The LSTM attribute holding `(dtype, per layer (recurrent, projection) per direction)` packed weights."""
