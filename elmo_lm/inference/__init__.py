"""Inference kernels: the model's function computed with less work, used when nothing needs gradients.

This package's face is the one seam between `elmo_lm.model` and the kernels: the model calls
`encode_tokens`, `run_lstm` and `contextualize` whenever `needs_autograd` is False, and nothing else
of it; the kernels never import the model (the types both use are in `elmo_lm.bilm_types`). The
autograd path in the model stays the plain reference (`tests/test_speed_paths.py` checks that both
agree). In float32 every trick is exact:

- `char_cnn`: all convolutions as one matmul over windows of the widest width, only over the
  windows that start inside a token (tokens sorted by length, chunk by chunk): a window lying
  wholly in a token's trailing padding has one value for every token, computed once. Highway
  layers over groups of tokens, in place. Memory stays bounded per chunk.
- `packed_lstm`: rows sorted by length and packed time-major, so each step computes only the rows
  still running (no padding work, no masking); the input projection of a chunk of steps is one
  batched matmul over both directions (for layer 0 once per distinct token), the per-step loop
  does only the recurrence, in place; outputs go straight into the caller's result tensor.
- `bilm`: stateless sentences all start with `<S>` (forward) and `</S>` (backward) from zero
  state: that step is computed once per batch, and the boundary outputs that the caller drops
  are never computed.
- `matmul`: every matmul through oneDNN, or MKL's packed layout on Intel CPUs; `scratch`: reused
  work buffers (fresh pages cost as much as a matmul over them); `weights`: weights converted for
  a precision (cached beside the module, or in place for a model of our own).

Inside `use_precision("bfloat16")` (an explicit option of the entry points, never the default)
the matmuls run in bfloat16 with the cell state, the gates and the clips in float32, the LSTM in
the transposed layout in which bfloat16 matmuls at batch 32 run fastest; the precomputed input
projection stays in bfloat16.

`precision="int8"` (explicit, CPU only) quantises every weight matrix per output channel (`int8`)
and each matmul's float32 input per call; everything else is float32 as in the float32 path.
"""

from .bilm import contextualize_inference as contextualize
from .char_cnn import encode_tokens_inference as encode_tokens
from .packed_lstm import run_stack as run_lstm
from .precision import PRECISIONS, current_precision, matmul_dtype, use_precision
from .keep_weights import keep_weights_in
from .weights import needs_autograd

__all__ = ["PRECISIONS", "contextualize", "current_precision", "encode_tokens", "keep_weights_in", "matmul_dtype",
           "needs_autograd", "run_lstm", "use_precision"]
