"""int8 storage of chosen weights in a model folder: smaller files, float32 weights once loaded.

A folder that uses it lists the weights under `storage` in `config.json`
(`{"storage": {"token_encoder.highway_carry.0.weight": "int8", ...}}`, `format_version` 2) and
holds, in `model.safetensors`, each such weight `KEY` as int8 values of the weight's shape plus
`KEY.scale`: float32 (or float16) scales of the same rank, each axis either the weight's size or 1,
so that the weight is `KEY.to(float32) * KEY.scale` (broadcast). The writer gives each output
channel its own scale (its largest magnitude over 127, symmetric, zero exact); the reader only
multiplies, so it reads any grouping the scale's shape states. Once loaded, the model is an
ordinary float32 model: every precision and kernel runs on it as on a float16 folder's.

This is a storage format, not `inference/int8.py`, which quantises float weights at load so that
matmuls run in int8.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

import torch

from ..errors import ElmoError

STORAGE_KEY = "storage"
"""The `config.json` entry mapping weight names to how they are stored."""

INT8 = "int8"
"""The one storage type besides the folder's float type: int8 values with per-channel scales."""

SCALE_SUFFIX = ".scale"
"""`KEY.scale` holds the scales of the int8 weight `KEY` (no module parameter ends in `.weight.scale`)."""

INT8_CHOICES: dict[str, re.Pattern[str]] = {
    "highway": re.compile(r"token_encoder\.highway_(carry|transform)\.\d+\.weight"),
    "matrices": re.compile(r"token_encoder\.(highway_(carry|transform)\.\d+\.weight|projection\.weight)"
                           r"|lstm\.(input|recurrent|projection)_weight\.\d+"),
}
"""Named sets of an `ElmoBiLM`'s weights to store in int8: the highway's matrices (8.4M of the v2
shape's 13.6M encoder parameters), or every large matrix of the encoder and the LSTM (the
character table, the convolutions and the softmax stay float)."""

_TRANSPOSED = re.compile(r"lstm\.(input|recurrent|projection)_weight\.\d+")
"""The LSTM's `(D, in, out)` matrices (TensorFlow's orientation): output channels on the last axis."""


def int8_keys(keys: Iterable[str], choice: str) -> list[str]:
    """The weight names among `keys` that `INT8_CHOICES[choice]` stores in int8."""
    if choice not in INT8_CHOICES:
        raise ValueError(f"unknown int8 choice {choice!r} (one of {', '.join(INT8_CHOICES)})")
    return [key for key in keys if INT8_CHOICES[choice].fullmatch(key)]


def kept_axes(key: str, ndim: int) -> tuple[int, ...]:
    """The axes along which `key` gets separate scales: each output channel (and direction) its own."""
    return (0, ndim - 1) if _TRANSPOSED.fullmatch(key) else (0,)


def quantize(key: str, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`weight` as int8 values (its shape) and float32 scales (its rank, 1 on the reduced axes):
    each output channel scaled by its largest magnitude over 127, rounded to nearest."""
    weight = weight.detach().to("cpu", torch.float32)  # (..., K, ...)
    reduced = tuple(axis for axis in range(weight.ndim) if axis not in kept_axes(key, weight.ndim))
    scale = weight.abs().amax(dim=reduced, keepdim=True) / 127  # (..., 1, ...)
    divisor = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel stays 0
    values = torch.div(weight, divisor).round_().clamp_(-127, 127).to(torch.int8)  # (..., K, ...)
    return values.contiguous(), scale.contiguous()


def dequantize(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight `values * scale` (scale broadcast over its size-1 axes)."""
    return values.to(torch.float32) * scale.to(torch.float32)


def encode(tensors: dict[str, torch.Tensor], keys: Collection[str]) -> dict[str, str]:
    """Replace each of `keys` in `tensors` by its int8 values and add its `KEY.scale`; returns the
    `storage` entry for `config.json`."""
    for key in keys:
        if key not in tensors:
            raise ValueError(f"int8 storage: the model has no weight {key!r}")
        if not tensors[key].is_floating_point() or tensors[key].ndim < 2:
            raise ValueError(f"int8 storage: {key!r} is not a float matrix ({tuple(tensors[key].shape)})")
        if key + SCALE_SUFFIX in tensors:
            raise ValueError(f"int8 storage: the model already has a weight {key + SCALE_SUFFIX!r}")
    for key in keys:
        tensors[key], tensors[key + SCALE_SUFFIX] = quantize(key, tensors[key])
    return {key: INT8 for key in sorted(keys)}


def read_storage(options: Mapping[str, object], config_path: str) -> dict[str, str]:
    """The `storage` entry of a folder's config (empty if it has none), each type checked."""
    storage = options.get(STORAGE_KEY, {})
    if not isinstance(storage, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in storage.items()):
        raise ElmoError(f"{config_path}: '{STORAGE_KEY}' must map weight names to a storage type, like "
                        f"{{\"token_encoder.projection.weight\": \"{INT8}\"}}")
    for key, kind in storage.items():
        if kind != INT8:
            raise ElmoError(f"{config_path}: {STORAGE_KEY} of {key!r} is {kind!r}; this version of elmo-lm reads "
                            f"only {INT8!r}")
    return storage


def check_stored(storage: Mapping[str, str], keys: Collection[str], weights_path: str) -> None:
    """Name, in one line, a weight the storage entry lists but the file lacks, or a scale without its weight."""
    for key in storage:
        if key not in keys:
            raise ElmoError(f"{weights_path}: {key!r} is listed under '{STORAGE_KEY}' in config.json but not stored")
        if key + SCALE_SUFFIX not in keys:
            raise ElmoError(f"{weights_path}: int8 weight {key!r} has no scales {key + SCALE_SUFFIX!r}")
    for key in keys:
        weight = key.removesuffix(SCALE_SUFFIX)
        if key.endswith(SCALE_SUFFIX) and weight in keys and weight not in storage:
            raise ElmoError(f"{weights_path}: {key!r} scales a weight that config.json does not list under "
                            f"'{STORAGE_KEY}'")


def decode(key: str, values: torch.Tensor, scale: torch.Tensor, weights_path: str) -> torch.Tensor:
    """The float32 weight of the int8 `values` of `key` and its scales, their types and shapes checked."""
    if values.dtype != torch.int8:
        raise ElmoError(f"{weights_path}: {key!r} is stored as {str(values.dtype).removeprefix('torch.')}, "
                        f"config.json says {INT8}")
    name = key + SCALE_SUFFIX
    if not scale.is_floating_point():
        raise ElmoError(f"{weights_path}: scales {name!r} are {str(scale.dtype).removeprefix('torch.')}, not float")
    if scale.ndim != values.ndim or any(s not in (1, v) for s, v in zip(scale.shape, values.shape)):
        raise ElmoError(f"{weights_path}: scales {name!r} have shape {tuple(scale.shape)}, which does not fit "
                        f"{key!r} {tuple(values.shape)} (same rank, each axis its size or 1)")
    if not torch.isfinite(scale).all():
        raise ElmoError(f"{weights_path}: scales {name!r} hold a non-finite value")
    return dequantize(values, scale)
