"""The ELMo bidirectional language model: character CNN token encoder, two LSTMP stacks, softmax.

Reads top to bottom: `TokenEncoder` (characters -> token vector), `LstmpStack` (both directions'
LSTMP layers, run side by side), `ElmoBiLM` (sentence boundaries, reversal of the backward
direction, packing of the output layers). The model never opens files (see `elmo_lm.io`).

Shapes: B sentences, T positions, N tokens, P projection size, C cell size, L LSTM layers,
F CNN features, D = 2 directions (0 forward, 1 backward).

The LSTMP weights keep TensorFlow's orientation and gate order (`x @ W`, gate blocks i, j, f, o),
so that the released weights load with no permutation and round-trip bit-exactly; the +1.0
forget bias of TensorFlow's LSTMCell is added in `LstmpStack.step`, not stored.

Two ways through the same model: the autograd path (training, or whenever a tensor involved
requires grad) runs the plain per-step code here; inference (nothing requires grad) goes through
one seam, `elmo_lm.inference`, whose packed kernels compute the same function with less work and
memory (`tests/test_speed_paths.py` checks that both agree). The kernels never import this file:
the types both sides use are in `bilm_types.py`. The matmul precision of the kernels (bfloat16 is
an option) is chosen by the caller around a call (`inference.use_precision`), not passed here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .chars import BOS_IDS, EOS_IDS, N_CHARS, PAD_CHAR
from . import inference  # the one seam to the fast kernels, taken whenever nothing needs gradients
from .bilm_types import FORGET_BIAS, BiLMOutput, LstmState
from .config import ModelConfig

__all__ = ["BiLMOutput", "ElmoBiLM", "FORGET_BIAS", "LstmState", "LstmpStack", "TokenEncoder"]

ENCODER_CHUNK_BYTES = 16 * 2**20
"""Upper bound on the convolution activations the token encoder holds at once."""

GROUP_EXTENTS = (8, 12, 20)
"""Training: tokens are grouped by the slots their characters fill (up to 8, 12, 20, more), one convolution
call per group and filter width: few calls, and most tokens read 8 + 5 slots instead of 50."""

PAD_ID = PAD_CHAR + 1
"""The character id of padding inside a token (after the +1 shift)."""

LSTM_CHUNK_BYTES = 64 * 2**20
"""Upper bound on the precomputed input projection the LSTM holds at once (training; inference has
its own, `inference.packed_lstm.INFERENCE_LSTM_CHUNK_BYTES`)."""


def low_precision_matmul(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`torch.matmul` of `a` and `b` with the product in `dtype` (bfloat16 on CPUs with native bfloat16 dot
    products), the result back in float32; plain float32 when `dtype` is float32. For the training path: the
    master weights stay float32 and receive float32 gradients."""
    if dtype == torch.float32:
        return torch.matmul(a, b)
    return torch.matmul(a.to(dtype), b.to(dtype)).float()


def low_precision_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         dtype: torch.dtype) -> torch.Tensor:
    """`F.linear` with the product in `dtype` and the bias added in float32 (see `low_precision_matmul`)."""
    if dtype == torch.float32:
        return F.linear(x, weight, bias)
    out = F.linear(x.to(dtype), weight.to(dtype)).float()
    return out if bias is None else out + bias


def _content_extent(char_ids: torch.Tensor) -> torch.Tensor:
    """`(N,)`: the slots of each token `(N, S)` up to its last non-padding character."""
    positions = torch.arange(1, char_ids.shape[1] + 1, device=char_ids.device)  # (S,)
    return ((char_ids != PAD_ID) * positions).amax(dim=1).clamp_(min=1)  # (N,)


def _is_meta(device: torch.device | str | None) -> bool:
    return device is not None and torch.device(device).type == "meta"


def _autograd_only() -> None:
    """Refuse the autograd path inside a bfloat16 `inference.use_precision` block."""
    precision = inference.current_precision()
    if precision != "float32":
        raise ValueError(f"precision={precision!r} is for inference: run under torch.no_grad() or "
                         "torch.inference_mode() with parameters that do not require grad")


class TokenEncoder(nn.Module):
    """Context-free token vectors from character ids: char table, CNN, highway, projection."""

    def __init__(self, config: ModelConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        # Row 0 marks a padding token (all-zero char ids); rows 1..N_RAW_CHARS are the raw ids 0..260.
        # On the meta device (a model to load weights into) nothing is initialised: nn.Embedding's
        # random init there would import torch._dynamo (74 MB of memory, a second of time).
        table = torch.empty(N_CHARS, config.char_embed_dim, device=device) if _is_meta(device) else None
        self.char_embedding = nn.Embedding(N_CHARS, config.char_embed_dim, padding_idx=0, device=device, _weight=table)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(config.char_embed_dim, count, width, device=device) for width, count in config.filters
        )
        n_features = config.n_filters
        self.highway_carry = nn.ModuleList(nn.Linear(n_features, n_features, device=device)
                                           for _ in range(config.n_highway))
        self.highway_transform = nn.ModuleList(nn.Linear(n_features, n_features, device=device)
                                               for _ in range(config.n_highway))
        self.projection = nn.Linear(n_features, config.projection_dim, device=device)
        self.activation = torch.relu if config.activation == "relu" else torch.tanh
        self.matmul_dtype = torch.float32
        """Training: the dtype of the convolutions' and matmuls' products (float32 or bfloat16)."""

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Token vectors `(N, P)` for character ids `(N, 50)`, computed in memory-bounded chunks."""
        if not inference.needs_autograd(self):
            return inference.encode_tokens(self, char_ids, ENCODER_CHUNK_BYTES)  # (N, P)
        _autograd_only()
        return self._encode(char_ids)

    def _encode(self, char_ids: torch.Tensor) -> torch.Tensor:
        """The autograd path: every filter in one matmul over windows, only over the slots that can hold characters.

        The filters are packed into one `(F, e * w)` matrix, `w` the widest filter, a narrower filter's
        missing taps being zeros; each token's windows of `w` slots are unfolded into rows, so the whole
        convolution is one product. Windows that start within the last `w - 1` slots are never formed,
        and neither are the windows past the group's span (below): all of those start after the token's
        last character, so they are all padding, whose value per filter is computed once (with its
        gradient) and joins the max.

        Tokens are sorted by length and grouped (`GROUP_EXTENTS`); a group reads its longest token's
        slots plus the widest filter's reach. Equal to convolving all 50 slots filter by filter, at a
        fraction of the work (most tokens fill fewer than 10 slots).
        """
        N, S = char_ids.shape
        e, widest = self.config.char_embed_dim, max(width for width, _ in self.config.filters)
        dtype = self.matmul_dtype
        weight = torch.cat([F.pad(conv.weight, (0, widest - conv.weight.shape[-1]))
                            for conv in self.convolutions])  # (F, e, w): zero taps after a narrow filter's
        n_filters = weight.shape[0]
        weight = weight.reshape(n_filters, e * widest).to(dtype)  # (F, e*w)
        bias = torch.cat([conv.bias for conv in self.convolutions])  # (F,)
        pad = self.char_embedding(char_ids.new_full((1, widest), PAD_ID))  # (1, w, e)
        padding = (pad.transpose(1, 2).reshape(1, e * widest).to(dtype) @ weight.t()).float()  # (1, F)
        extent = _content_extent(char_ids)  # (N,)
        order = torch.argsort(extent)  # (N,), shortest first
        extents = extent[order].tolist()
        per_slot = 4 * n_filters  # bytes of convolution output per slot and token
        pooled_groups = []
        start = 0
        while start < N:
            # A group: tokens up to the next length bound, up to the memory bound.
            limit = next((bound for bound in GROUP_EXTENTS if extents[start] <= bound), S)
            span = min(S, limit + widest - 1)
            end = min(N, start + max(1, ENCODER_CHUNK_BYTES // (per_slot * span)))
            end = start + sum(1 for k in extents[start:end] if k <= limit)
            span = min(S, extents[end - 1] + widest - 1)
            ids = char_ids[order[start:end], :span]  # (n, span)
            if span == S:  # the last slots hold characters: give the narrow filters their windows there
                ids = F.pad(ids, (0, widest - 1), value=PAD_ID)  # (n, S + w - 1)
            windows = self.char_embedding(ids).unfold(1, widest, 1)  # (n, positions, e, w)
            n, positions = windows.shape[:2]
            # The max over positions is taken in the product's dtype and only its result made float32: the same
            # values and gradients as a float32 max, with a half-size (n, positions, F) tensor and no cast of it.
            features = windows.reshape(n * positions, e * widest).to(dtype) @ weight.t()  # (n*pos, F)
            features = features.view(n, positions, n_filters)  # (n, positions, F)
            if span == S:  # ... but not the windows a filter of its width would not have
                features = features.masked_fill(self._beyond_end(positions, S), float("-inf"))
            pooled = features.max(dim=1).values.float()  # (n, F)
            pooled_groups.append(torch.maximum(pooled, padding) if span < S else pooled)
            start = end
        x = torch.cat(pooled_groups)[torch.argsort(order)] + bias  # (N, F), back in the input order
        # Max over positions, then the activation: equal to the reverse order, as both are monotone.
        x = self.activation(x)  # (N, F)
        for carry, transform in zip(self.highway_carry, self.highway_transform):
            gate = torch.sigmoid(low_precision_linear(x, carry.weight, carry.bias, dtype))  # (N, F)
            x = gate * torch.relu(low_precision_linear(x, transform.weight, transform.bias, dtype)) + (1 - gate) * x
        return low_precision_linear(x, self.projection.weight, self.projection.bias, dtype)  # (N, P)

    def _beyond_end(self, positions: int, slots: int) -> torch.Tensor:
        """`(positions, F)` bool: True where a filter's window would run past the last of `slots` slots."""
        start = torch.arange(positions)[:, None]  # (positions, 1)
        width = torch.tensor([w for w, count in self.config.filters for _ in range(count)])  # (F,)
        return start + width[None, :] > slots  # (positions, F)


class LstmpStack(nn.Module):
    """L layers of LSTM with projection for both directions; the directions never interact.

    Both directions run in the same time loop (batched matmuls over D), each reading its own
    input left to right: the caller reverses the backward direction's input.
    """

    def __init__(self, config: ModelConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        P, C, L = config.projection_dim, config.lstm_dim, config.n_layers
        self.input_weight = nn.ParameterList(nn.Parameter(torch.empty(2, P, 4 * C, device=device)) for _ in range(L))
        self.recurrent_weight = nn.ParameterList(nn.Parameter(torch.empty(2, P, 4 * C, device=device))
                                                 for _ in range(L))
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(2, 4 * C, device=device)) for _ in range(L))
        self.projection_weight = nn.ParameterList(nn.Parameter(torch.empty(2, C, P, device=device)) for _ in range(L))
        for weight in [*self.input_weight, *self.recurrent_weight, *self.projection_weight]:
            nn.init.uniform_(weight, -0.05, 0.05)
        self.dropout = 0.0
        """Dropout on each layer's input, in training mode only."""
        self.matmul_dtype = torch.float32
        """Training: the dtype of the matmuls' products (float32 or bfloat16); cell and state stay float32."""

    def zero_state(self, batch_size: int, like: torch.Tensor) -> LstmState:
        """All-zero state for `batch_size` rows, on the device and dtype of `like`."""
        L, P, C = self.config.n_layers, self.config.projection_dim, self.config.lstm_dim
        h = like.new_zeros(L, 2, batch_size, P)  # (L, D, B, P)
        c = like.new_zeros(L, 2, batch_size, C)  # (L, D, B, C)
        return LstmState(h, c)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, state: LstmState | None = None
    ) -> tuple[list[torch.Tensor], LstmState]:
        """Run every layer over the sequence.

        Args:
            x: `(D, B, T, P)` layer-0 input of each direction, already in reading order.
            mask: `(D, B, T)` bool, True at real positions; each row's real positions come first.
            state: initial state, zeros when None.

        Returns:
            The output of each layer, `(D, B, T, P)` (skip connections included, values at masked
            positions unspecified), and the state after each row's last real position.
        """
        if not inference.needs_autograd(self, x, *(state or ())):
            lengths = mask.sum(dim=-1)  # (D, B)
            if torch.equal(mask, torch.arange(mask.shape[-1], device=mask.device) < lengths[..., None]):
                return inference.run_lstm(self, x, lengths, state)
        _autograd_only()
        batch = x.shape[1]
        if state is None:
            state = self.zero_state(batch, x)
        outputs, final_h, final_c = [], [], []
        layer_input = x
        for layer in range(self.config.n_layers):
            if self.training and self.dropout > 0:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
            h, c, output = self._run_layer(layer, layer_input, mask, state.h[layer], state.c[layer])
            if layer > 0 and self.config.use_skip_connections:
                output = output + layer_input  # residual after the clip; the state keeps m_t
            outputs.append(output)
            final_h.append(h)
            final_c.append(c)
            layer_input = output
        return outputs, LstmState(torch.stack(final_h), torch.stack(final_c))

    def _run_layer(
        self, layer: int, x: torch.Tensor, mask: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One layer over time, the input projection precomputed for a chunk of steps at a time."""
        D, B, T, _ = x.shape
        C = self.config.lstm_dim
        input_weight, bias = self.input_weight[layer], self.bias[layer]
        steps_per_chunk = max(1, LSTM_CHUNK_BYTES // (D * B * 4 * C * x.element_size()))
        all_real = bool(mask.all())
        chunk_outputs = []
        for start in range(0, T, steps_per_chunk):
            x_chunk = x[:, :, start : start + steps_per_chunk]  # (D, B, Tc, P)
            Tc = x_chunk.shape[2]
            gates_from_input = low_precision_matmul(x_chunk.reshape(D, B * Tc, -1), input_weight,
                                                    self.matmul_dtype)  # (D, B*Tc, 4C)
            gates_from_input = (gates_from_input + bias[:, None]).view(D, B, Tc, 4 * C)  # (D, B, Tc, 4C)
            # unbind/stack rather than indexing and assigning per step: their gradients are one
            # stack/unbind, not a zero-filled (D, B, Tc, 4C) tensor per step.
            step_outputs = []
            for t, step_gates in enumerate(gates_from_input.unbind(2)):  # each (D, B, 4C)
                h_new, c_new = self.step(layer, step_gates, h, c)
                if not all_real:
                    real = mask[:, :, start + t, None]  # (D, B, 1)
                    h_new = torch.where(real, h_new, h)
                    c_new = torch.where(real, c_new, c)
                h, c = h_new, c_new
                step_outputs.append(h)
            chunk_outputs.append(torch.stack(step_outputs, dim=2))  # (D, B, Tc, P)
        if not chunk_outputs:  # no steps at all
            return h, c, x.new_empty(D, B, 0, self.config.projection_dim)
        outputs = torch.cat(chunk_outputs, dim=2)  # (D, B, T, P)
        return h, c, outputs

    def step(
        self, layer: int, gates_from_input: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTMP step of one layer for both directions: the reference math.

        The inference kernels compute the same step in place, one direction and the rows still
        running at a time: `inference.packed_lstm._step` (equal by `tests/test_speed_paths.py`).

        Args:
            gates_from_input: `(D, B, 4C)`, `x_t @ W_x + b`.
            h: `(D, B, P)` previous projected output m_{t-1}; c: `(D, B, C)` previous cell.
        """
        dtype = self.matmul_dtype
        z = gates_from_input + low_precision_matmul(h, self.recurrent_weight[layer], dtype)  # (D, B, 4C)
        i, j, f, o = z.chunk(4, dim=-1)  # each (D, B, C); TensorFlow's gate order
        c = torch.sigmoid(f + FORGET_BIAS) * c + torch.sigmoid(i) * torch.tanh(j)  # (D, B, C)
        if self.config.cell_clip:
            c = c.clamp(-self.config.cell_clip, self.config.cell_clip)
        h = low_precision_matmul(torch.sigmoid(o) * torch.tanh(c), self.projection_weight[layer], dtype)  # (D, B, P)
        if self.config.proj_clip:
            h = h.clamp(-self.config.proj_clip, self.config.proj_clip)
        return h, c


def distinct_rows(char_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows `(U, S)` of character ids `(N, S)` and each row's index among them `(N,)`.

    `torch.unique(..., dim=0)` compares rows one pair at a time on the CPU (tens of milliseconds for a
    training batch). On the CPU, rows of ids in [0, 2^15) are sorted as byte strings instead (numpy),
    each id as two big-endian bytes, so that byte order is id order: the same result as `torch.unique`.
    """
    if (char_ids.device.type != "cpu" or char_ids.numel() == 0
            or not 0 <= int(char_ids.min()) <= int(char_ids.max()) < 2**15):
        return torch.unique(char_ids, dim=0, return_inverse=True)
    rows = char_ids.numpy().astype(">i2")  # (N, S), big-endian
    keys = rows.view(np.dtype((np.void, rows.shape[1] * 2))).ravel()  # (N,) one byte string a row
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return char_ids[torch.from_numpy(first)], torch.from_numpy(inverse.reshape(-1)).to(torch.long)  # (U, S), (N,)


def add_sentence_boundaries(char_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrap each row as `<S> w1 .. wn </S>`.

    Args:
        char_ids: `(B, T, 50)`; mask: `(B, T)` bool, real tokens first in each row.

    Returns:
        Character ids `(B, T+2, 50)` and mask `(B, T+2)`.
    """
    B, T, n_chars = char_ids.shape
    lengths = mask.sum(dim=1)  # (B,)
    wrapped = char_ids.new_zeros(B, T + 2, n_chars)  # (B, T+2, 50)
    wrapped[:, 1 : T + 1] = char_ids
    wrapped[:, 0] = char_ids.new_tensor(BOS_IDS)
    wrapped[torch.arange(B), lengths + 1] = char_ids.new_tensor(EOS_IDS)
    wrapped_mask = torch.arange(T + 2, device=mask.device)[None, :] < (lengths + 2)[:, None]  # (B, T+2)
    return wrapped, wrapped_mask


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first `lengths[b]` positions of each row of `x` `(B, T, ...)`; padding stays put."""
    B, T = x.shape[:2]
    positions = torch.arange(T, device=x.device)[None, :].expand(B, T)  # (B, T)
    reversed_positions = lengths[:, None] - 1 - positions  # (B, T)
    index = torch.where(reversed_positions >= 0, reversed_positions, positions)  # (B, T)
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class ElmoBiLM(nn.Module):
    """The whole ELMo model: token encoder, forward and backward LSTMP language models, softmax."""

    def __init__(
        self, config: ModelConfig, vocab_size: int | None = None, *, device: torch.device | str | None = None
    ) -> None:
        """Build a model of the given shape; `vocab_size` adds a softmax (for training).

        `device="meta"` builds it without memory or initialisation, for loading weights into.
        """
        super().__init__()
        self.config = config
        self.token_encoder = TokenEncoder(config, device)
        self.lstm = LstmpStack(config, device)
        self.softmax: nn.Linear | None = None
        """Word softmax shared by both directions: logits = m @ W.T + b, W `(V, P)`."""
        if vocab_size:
            self.add_softmax(vocab_size, device)

    def add_softmax(self, vocab_size: int, device: torch.device | str | None = None) -> None:
        """Attach a freshly initialised softmax over `vocab_size` words."""
        self.softmax = nn.Linear(self.config.projection_dim, vocab_size, device=device)
        nn.init.normal_(self.softmax.weight, std=1.0 / self.config.projection_dim**0.5)
        nn.init.zeros_(self.softmax.bias)

    def encode_tokens(self, char_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token vectors `(..., P)` for character ids `(..., 50)`, each distinct token computed once.

        Positions where `mask` is False (padding) get zeros.
        """
        if mask is None:
            mask = (char_ids > 0).any(dim=-1)
        flat = char_ids[mask]  # (N, 50)
        vectors = char_ids.new_zeros(*mask.shape, self.config.projection_dim, dtype=self.lstm.bias[0].dtype)
        if flat.shape[0] == 0:
            return vectors
        distinct, which = distinct_rows(flat)  # (U, 50), (N,)
        vectors[mask] = self.token_encoder(distinct)[which]  # (N, P)
        return vectors  # (..., P)

    def forward(
        self,
        char_ids: torch.Tensor,
        state: LstmState | None = None,
        keep_boundaries: bool = False,
        *,
        return_state: bool = True,
    ) -> BiLMOutput:
        """All L+1 output layers for a batch of sentences.

        Args:
            char_ids: `(B, T, 50)` from `batch_to_ids` (no boundaries; padding tokens all zero).
            state: initial LSTM state (zeros when None: every sentence starts fresh).
            keep_boundaries: keep the `<S>` and `</S>` positions in the output (T+2 positions).
            return_state: False lets inference skip work that only the final state needs.
        """
        mask = (char_ids > 0).any(dim=-1)  # (B, T)
        chars, wrapped_mask = add_sentence_boundaries(char_ids, mask)  # (B, T+2, 50), (B, T+2)
        if inference.needs_autograd(self, *(state or ())):
            tokens = self.encode_tokens(chars, wrapped_mask)  # (B, T+2, P)
            return self.contextualize(tokens, wrapped_mask, state, keep_boundaries)
        distinct, which = distinct_rows(chars[wrapped_mask])  # (U, 50), (N,)
        index = torch.zeros(wrapped_mask.shape, dtype=torch.long, device=char_ids.device)  # (B, T+2)
        index[wrapped_mask] = which
        vectors = self.token_encoder(distinct)  # (U, P)
        return self.contextualize_indexed(vectors, index, wrapped_mask, state, keep_boundaries,
                                          return_state=return_state)

    def contextualize(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        state: LstmState | None = None,
        keep_boundaries: bool = False,
        *,
        return_state: bool = True,
    ) -> BiLMOutput:
        """Run both language models over token vectors that already include the boundaries.

        Args:
            tokens: `(B, T+2, P)` token vectors of `<S> w1 .. wn </S>`, zero-padded on the right.
            mask: `(B, T+2)` bool, True at the n+2 real positions of each row.
            return_state: as in `forward`.
        """
        if not inference.needs_autograd(self, tokens, *(state or ())):
            B, T2, P = tokens.shape
            index = torch.arange(B * T2, device=tokens.device).view(B, T2)  # (B, T+2)
            return self.contextualize_indexed(tokens.reshape(B * T2, P), index, mask, state, keep_boundaries,
                                              return_state=return_state)
        _autograd_only()
        lengths = mask.sum(dim=1)  # (B,)
        both = torch.stack([tokens, reverse_within_length(tokens, lengths)])  # (D, B, T+2, P)
        both_mask = mask.expand(2, *mask.shape)  # (D, B, T+2)
        outputs, final_state = self.lstm(both, both_mask, state)
        B, T2, P = tokens.shape
        stacked = tokens.new_empty(B, len(outputs) + 1, T2, 2 * P)  # (B, L+1, T+2, 2P)
        stacked[:, 0, :, :P] = tokens
        stacked[:, 0, :, P:] = tokens
        for j, output in enumerate(outputs, start=1):
            stacked[:, j, :, :P] = output[0]
            stacked[:, j, :, P:] = reverse_within_length(output[1], lengths)  # back in token order
        stacked.mul_(mask[:, None, :, None])  # zero at padding
        if keep_boundaries:
            return BiLMOutput(stacked, mask, final_state)
        # Position t of a sentence is model position t+1; `</S>` lands past the real tokens.
        T = tokens.shape[1] - 2
        inner_mask = torch.arange(T, device=mask.device)[None, :] < (lengths - 2)[:, None]  # (B, T)
        inner = stacked[:, :, 1 : T + 1]  # (B, L+1, T, 2P), a view
        inner.mul_(inner_mask[:, None, :, None])  # zero where `</S>` and padding were
        return BiLMOutput(inner, inner_mask, final_state)

    def contextualize_indexed(
        self,
        vectors: torch.Tensor,
        index: torch.Tensor,
        mask: torch.Tensor,
        state: LstmState | None = None,
        keep_boundaries: bool = False,
        *,
        return_state: bool = True,
    ) -> BiLMOutput:
        """`contextualize` for token vectors given once each: `tokens = vectors[index]`.

        Args:
            vectors: `(U, P)` distinct token vectors (from `token_encoder`, or a cache).
            index: `(B, T+2)` long, the row of `vectors` at each position of `<S> w1 .. wn </S>`
                (any valid row at padding).
            mask: `(B, T+2)` bool, True at the n+2 real positions of each row.
        """
        if inference.needs_autograd(self, vectors, *(state or ())):
            tokens = vectors[index] * mask[..., None]  # (B, T+2, P)
            return self.contextualize(tokens, mask, state, keep_boundaries)
        return inference.contextualize(self, vectors, index, mask, state, keep_boundaries, return_state)
