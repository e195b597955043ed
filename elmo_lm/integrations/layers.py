"""What the integrations share: run a model on token lists, and turn its L+1 layers into one vector per token.

`LayerChoice` is "all" (the layers concatenated, `(L+1) * 2P` wide), "top", "average" or "mix" (a learned
scalar mix, `ScalarMix`). `contextual_layers` runs the model through the fast inference kernels when
nothing needs a gradient, through autograd otherwise (fine-tuning the language model).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..chars import batch_to_ids
from ..elmo import ScalarMix
from ..errors import ElmoError
from ..io import load_model
from ..model import ElmoBiLM

LAYER_CHOICES = ("all", "top", "average", "mix")


def language_model(model: ElmoBiLM | str | Path | None, requires_grad: bool) -> ElmoBiLM:
    """The model to embed with: a loaded one, a model folder, or the bundled model (None); without its softmax
    (token vectors only: a saved downstream model need not carry it), trainable or frozen; a model passed in
    is changed in place."""
    if not isinstance(model, ElmoBiLM):
        if model is None:
            from ..bundled import bundled_model_path

            model = bundled_model_path()
        model = load_model(model)
    model.softmax = None
    for parameter in model.parameters():
        parameter.requires_grad_(requires_grad)
    return model


def contextual_layers(model: ElmoBiLM, token_lists: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """All layers `(B, L+1, T, 2P)` (zero at padding) and the mask `(B, T)` of tokenised sentences."""
    device = model.lstm.bias[0].device
    char_ids = batch_to_ids([list(tokens) for tokens in token_lists]).to(device)  # (B, T, 50)
    if char_ids.shape[1] == 0:  # only empty sentences
        config = model.config
        return (torch.zeros(len(token_lists), config.n_output_layers, 0, config.output_dim, device=device),
                torch.zeros(len(token_lists), 0, dtype=torch.bool, device=device))
    output = model(char_ids, return_state=False)
    return output.layers, output.mask


class LayerChoice(nn.Module):
    """One vector per token from the L+1 layers: all (concatenated), top, average, or a learned mix."""

    def __init__(self, n_layers: int, layers: str = "mix", do_layer_norm: bool = False) -> None:
        """Args:
            n_layers: L+1, the model's output layers.
            layers: "all", "top", "average" or "mix".
            do_layer_norm: for "mix", normalise each layer over its unmasked entries first.
        """
        super().__init__()
        if layers not in LAYER_CHOICES:
            raise ElmoError(f"layers must be one of {', '.join(LAYER_CHOICES)}, not {layers!r}")
        self.layers = layers
        self.n_layers = n_layers
        self.mix = ScalarMix(n_layers, do_layer_norm=do_layer_norm) if layers == "mix" else None

    def output_dim(self, layer_dim: int) -> int:
        """Width of the result for layers `layer_dim` (2P) wide."""
        return layer_dim * self.n_layers if self.layers == "all" else layer_dim

    def forward(self, layers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`(B, L+1, T, 2P)` and mask `(B, T)` -> `(B, T, D)`, zero at padding."""
        if self.layers == "top":
            chosen = layers[:, -1]  # (B, T, 2P)
        elif self.layers == "average":
            chosen = layers.mean(dim=1)  # (B, T, 2P)
        elif self.layers == "all":
            chosen = layers.permute(0, 2, 1, 3).reshape(*mask.shape, -1)  # (B, T, (L+1) * 2P)
        else:
            chosen = self.mix(layers, mask)  # (B, T, 2P)
        return chosen * mask[..., None].to(chosen.dtype)
