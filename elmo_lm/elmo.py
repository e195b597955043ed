"""`ScalarMix` (paper eq. 1) and `Elmo`, a drop-in for AllenNLP's module of the same name.

Layer normalisation follows AllenNLP: one mean and variance per layer over all unmasked
(token, dim) entries of the batch, the `<S>`/`</S>` positions included, eps 1e-13 (ELMO.md
section 7). bilm-tf excluded the boundaries (eps 1e-12); the difference is small and documented.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .chars import batch_to_ids
from .errors import ElmoError
from .cpu_features import choose_precision
from .inference import PRECISIONS, use_precision
from .model import ElmoBiLM
from .state import RowStates

LAYER_NORM_EPS = 1e-13


class ScalarMix(nn.Module):
    """`gamma * sum_j softmax(w)_j * h_j`, with optional layer normalisation of each h_j."""

    def __init__(
        self,
        mixture_size: int,
        do_layer_norm: bool = False,
        initial_scalar_parameters: Sequence[float] | None = None,
        trainable: bool = True,
    ) -> None:
        """Args:
            mixture_size: number of layers mixed.
            do_layer_norm: normalise each layer over its unmasked entries before mixing.
            initial_scalar_parameters: initial w (zeros by default: an equal average).
            trainable: learn w and gamma.
        """
        super().__init__()
        initial = list(initial_scalar_parameters) if initial_scalar_parameters is not None else [0.0] * mixture_size
        if len(initial) != mixture_size:
            raise ElmoError(f"scalar_mix_parameters has {len(initial)} values for {mixture_size} layers")
        self.mixture_size = mixture_size
        self.do_layer_norm = do_layer_norm
        self.scalar_parameters = nn.Parameter(torch.tensor(initial, dtype=torch.float32), requires_grad=trainable)
        self.gamma = nn.Parameter(torch.tensor([1.0]), requires_grad=trainable)

    def layer_weights(self) -> torch.Tensor:
        """softmax(w): the normalised weight of each layer `(mixture_size,)`."""
        return torch.softmax(self.scalar_parameters, dim=0)

    def forward(self, tensors: Sequence[torch.Tensor] | torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mix `mixture_size` tensors `(B, T, D)` (or one `(B, K, T, D)` tensor); mask `(B, T)`."""
        if isinstance(tensors, torch.Tensor):
            tensors = tensors.unbind(dim=1)
        if len(tensors) != self.mixture_size:
            raise ElmoError(f"ScalarMix expected {self.mixture_size} layers, got {len(tensors)}")
        weights = self.layer_weights()
        if self.do_layer_norm:
            if mask is None:
                raise ValueError("do_layer_norm needs the mask")
            tensors = [_masked_layer_norm(tensor, mask) for tensor in tensors]
        mixed = sum(weight * tensor for weight, tensor in zip(weights, tensors))
        return self.gamma * mixed  # (B, T, D)


def _masked_layer_norm(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalise `tensor` `(B, T, D)` by one mean and variance over its unmasked entries."""
    broadcast_mask = mask.unsqueeze(-1).to(tensor.dtype)  # (B, T, 1)
    count = broadcast_mask.sum() * tensor.shape[-1]
    mean = (tensor * broadcast_mask).sum() / count
    variance = (((tensor - mean) * broadcast_mask) ** 2).sum() / count
    return (tensor - mean) / torch.sqrt(variance + LAYER_NORM_EPS)  # (B, T, D)


class Elmo(nn.Module):
    """ELMo representations for a downstream model: `num_output_representations` scalar mixes.

    Behaves as AllenNLP's `Elmo`, except that it is stateless by default (every sentence starts
    from zero state: the same sentence always gets the same vectors); `stateful=True` gives the
    reference behaviour, with `reset_states()`.
    """

    def __init__(
        self,
        options_file: str | Path | None,
        weight_file: str | Path | None,
        num_output_representations: int,
        requires_grad: bool = False,
        do_layer_norm: bool = False,
        dropout: float = 0.5,
        vocab_to_cache: Sequence[str] | None = None,
        keep_sentence_boundaries: bool = False,
        scalar_mix_parameters: Sequence[float] | None = None,
        module: ElmoBiLM | None = None,
        stateful: bool = False,
        precision: str = "float32",
    ) -> None:
        """Args:
            options_file, weight_file: an AllenNLP/bilm-tf model (or pass `module`). A model
                folder of this project can be given as `options_file` with `weight_file=None`.
            num_output_representations: how many independent scalar mixes to return.
            requires_grad: fine-tune the language model's weights too.
            do_layer_norm: layer-normalise each layer before mixing.
            dropout: dropout on each output representation.
            vocab_to_cache: words whose token vectors are precomputed; `forward` then accepts
                `word_inputs` (indices into this list, 0 for padding) instead of characters.
            keep_sentence_boundaries: keep the `<S>`/`</S>` positions in the outputs.
            scalar_mix_parameters: fixed (untrainable) mix weights before softmax.
            module: an already loaded `ElmoBiLM` to use instead of files.
            stateful: carry LSTM state per batch row between calls (the reference behaviour).
            precision: "float32", or "bfloat16" matmuls in the language model (needs
                `requires_grad=False`; about 3 significant digits, about twice as fast on CPUs
                with AMX or AMD's AVX-512 BF16; float32, with a RuntimeWarning, on a CPU
                without bfloat16 instructions).
        """
        super().__init__()
        if precision not in PRECISIONS:
            raise ElmoError(f"precision must be 'float32' or 'bfloat16', not {precision!r}")
        if precision != "float32" and requires_grad:
            raise ElmoError("precision='bfloat16' is for a frozen language model: use requires_grad=False")
        if module is None:
            from .io import load_model

            module = load_model(options_file) if weight_file is None else load_model(
                options_file=options_file, weight_file=weight_file)
        self._elmo_lstm = module
        # float32 on a CPU without bfloat16 instructions (with a warning)
        self._precision = choose_precision(precision, module.lstm.bias[0].device.type)
        for parameter in module.parameters():
            parameter.requires_grad_(requires_grad)
        self._requires_grad = requires_grad
        self._keep_sentence_boundaries = keep_sentence_boundaries
        self._dropout = nn.Dropout(p=dropout)
        self._states = RowStates() if stateful else None
        n_layers = module.config.n_output_layers
        self._scalar_mixes = nn.ModuleList(
            ScalarMix(n_layers, do_layer_norm=do_layer_norm, initial_scalar_parameters=scalar_mix_parameters,
                      trainable=scalar_mix_parameters is None)
            for _ in range(num_output_representations)
        )
        self._word_cache: torch.Tensor | None = None
        if vocab_to_cache is not None:
            # Row 0 of word_inputs is padding; the boundary vectors are appended after the words.
            with torch.no_grad(), use_precision(self._precision):
                ids = batch_to_ids([list(vocab_to_cache) + ["<S>", "</S>"]])[0]  # (V+2, 50)
                self._word_cache = module.token_encoder(ids).detach()  # (V+2, P)

    def get_output_dim(self) -> int:
        """Width of each representation: 2P."""
        return self._elmo_lstm.config.output_dim

    def reset_states(self) -> None:
        """Stateful mode: forget the stored state of every row."""
        if self._states is not None:
            self._states.reset()

    def forward(
        self, inputs: torch.Tensor | None, word_inputs: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Args:
            inputs: character ids `(B, T, 50)` from `batch_to_ids` (may be None with `word_inputs`).
            word_inputs: `(B, T)` indices into `vocab_to_cache` (0 = padding), used when cached.

        Returns:
            `{"elmo_representations": [(B, T, 2P)] * num_output_representations, "mask": (B, T)}`.
        """
        model = self._elmo_lstm
        if word_inputs is not None and self._word_cache is not None:
            inputs = None
        if inputs is None:
            if word_inputs is None or self._word_cache is None:
                raise ValueError("give character ids, or word_inputs with vocab_to_cache")
            layers, mask = self._run_from_word_cache(word_inputs)
        else:
            batch = inputs.shape[0]
            initial = self._states.initial(model.lstm, batch, model.lstm.bias[0]) if self._states else None
            with use_precision(self._precision):
                output = model(inputs, state=initial, keep_boundaries=True)
            if self._states is not None:
                self._states.update(output.state)
            layers, mask = output.layers, output.mask  # (B, L+1, T+2, 2P), (B, T+2)
        representations = []
        for mix in self._scalar_mixes:
            mixed = mix(layers, mask)  # (B, T+2, 2P)
            if not self._keep_sentence_boundaries:
                mixed = _strip_boundaries(mixed, mask)
            representations.append(self._dropout(mixed))
        if not self._keep_sentence_boundaries:
            mask = _strip_boundaries(mask.unsqueeze(-1), mask).squeeze(-1)
        return {"elmo_representations": representations, "mask": mask}

    def _run_from_word_cache(self, word_inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layers and mask with boundaries, from cached token vectors (the LSTMs still run)."""
        model, cache = self._elmo_lstm, self._word_cache
        B, T = word_inputs.shape
        mask = word_inputs > 0  # (B, T)
        lengths = mask.sum(dim=1)  # (B,)
        tokens = cache.new_zeros(B, T + 2, cache.shape[1])  # (B, T+2, P)
        tokens[:, 1 : T + 1] = cache[word_inputs] * mask[..., None]
        tokens[:, 0] = cache[-2]
        tokens[torch.arange(B), lengths + 1] = cache[-1]
        wrapped_mask = torch.arange(T + 2)[None, :] < (lengths + 2)[:, None]  # (B, T+2)
        initial = self._states.initial(model.lstm, B, tokens) if self._states else None
        with use_precision(self._precision):
            output = model.contextualize(tokens, wrapped_mask, initial, keep_boundaries=True)
        if self._states is not None:
            self._states.update(output.state)
        return output.layers, output.mask


def _strip_boundaries(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Drop `<S>` and `</S>` from `(B, T+2, ...)` given the boundary-inclusive mask `(B, T+2)`."""
    lengths = mask.sum(dim=1) - 2  # (B,)
    T = tensor.shape[1] - 2
    inner = tensor[:, 1 : T + 1]  # (B, T, ...)
    keep = torch.arange(T, device=tensor.device)[None, :] < lengths[:, None]  # (B, T)
    return inner * keep.view(*keep.shape, *([1] * (tensor.dim() - 2))).to(tensor.dtype)
