"""A model kept in int8 for inference: quantised while it is read, or in place once loaded.

Either way each module's int8 weights sit beside it under `weights.INT8_WEIGHTS` and its float
weight matrices become meta placeholders (biases, the character table and the convolutions' small
kernels stay float32). Quantising while reading (`QuantizingLoad`, `load_model`'s `take`) means the
float32 model never exists whole: the original size's peak memory at load is then one layer's
weights above the int8 model, not the float32 model's 374 MB.
"""

from __future__ import annotations

import re
import torch
from torch import nn

from . import int8
from .char_cnn import quantize_encoder, quantize_encoder_weight
from .packed_lstm import LSTM_MATRICES, quantize_lstm, quantize_lstm_weight
from .weights import INT8_WEIGHTS, drop_cache


_LSTM_KEY = re.compile(rf"lstm\.({'|'.join(LSTM_MATRICES)})\.(\d+)")
_ENCODER_KEY = re.compile(r"token_encoder\.((?:highway_carry|highway_transform)\.\d+\.weight|projection\.weight)")


class QuantizingLoad:
    """`load_model(..., take=load)` with `load = QuantizingLoad()`: quantises the LSTM's and the
    highway's and projection's matrices as they are read; `keep_in_int8(model, load)` then gives
    them to the loaded model."""

    def __init__(self) -> None:
        self.lstm: dict[str, list[int8.Int8Weight]] = {}
        self.encoder: dict[str, int8.Int8Weight] = {}

    def __call__(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """`allennlp.Take`: a meta placeholder for a matrix it keeps in int8, else the tensor."""
        if match := _LSTM_KEY.fullmatch(key):
            self.lstm[f"{match[1]}.{match[2]}"] = quantize_lstm_weight(match[1], tensor)
        elif match := _ENCODER_KEY.fullmatch(key):
            self.encoder[match[1]] = quantize_encoder_weight(tensor)
        else:
            return tensor
        return torch.empty(tensor.shape, dtype=torch.float32, device="meta")


def keep_in_int8(model: nn.Module, load: QuantizingLoad | None = None) -> None:
    """Quantise a model's weight matrices one at a time (those of `load` already are) and replace
    their float parameters by meta placeholders."""
    if not int8.AVAILABLE:
        raise ValueError("precision='int8' needs a PyTorch build with a quantised engine (fbgemm or oneDNN)")
    encoder_ready, lstm_ready = (load.encoder, load.lstm) if load is not None else ({}, {})
    for module, build, ready in ((model.token_encoder, quantize_encoder, encoder_ready),
                                 (model.lstm, quantize_lstm, lstm_ready)):
        if INT8_WEIGHTS in module.__dict__:
            continue
        drop_cache(module)
        module.__dict__[INT8_WEIGHTS] = build(module, True, ready)
