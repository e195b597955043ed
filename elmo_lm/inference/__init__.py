"""Inference kernels: the model's function computed with less work, used when nothing needs gradients.

`elmo_lm.model` calls these whenever grad mode is off or no tensor involved requires grad; the
autograd path there stays the plain reference (`tests/test_speed_paths.py` checks that both
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
- `weights`: reused work buffers (fresh pages cost as much as a matmul over them), weights
  converted for a precision (cached beside the module, or in place for a model of our own).

`precision="bfloat16"` (an explicit option, never the default) runs the matmuls in bfloat16 with
the cell state, the gates and the clips in float32, the LSTM in the transposed layout in which
bfloat16 matmuls at batch 32 run fastest; the precomputed input projection stays in bfloat16.
"""

from .bilm import contextualize_inference
from .char_cnn import encode_tokens_inference
from .packed_lstm import RunPlan, plan_runs, run_packed
from .scratch import release_scratch
from .weights import PRECISIONS, keep_weights_in, matmul_dtype, needs_autograd

__all__ = ["PRECISIONS", "RunPlan", "contextualize_inference", "encode_tokens_inference", "keep_weights_in",
           "matmul_dtype", "needs_autograd", "plan_runs", "release_scratch", "run_packed"]
