"""Converting a model used only for inference to keep its weights as the kernels of one precision
read them (in place, for a model the embedder loaded itself)."""

from __future__ import annotations

import torch
from torch import nn

from .int8_model import keep_in_int8
from .matmul import ONEDNN, pack
from .precision import matmul_dtype
from .weights import PACKED_STEP_WEIGHTS, drop_cache, to_meta


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
