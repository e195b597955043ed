"""`ElmoLmEmbeddings`: ELMo as flair token embeddings (`pip install "elmo-lm[flair]"`).

flair's own `ELMoEmbeddings` wraps AllenNLP 0.9, which no longer installs; this class is registered
with flair's embedding registry, so a `SequenceTagger` (or any flair model) trained with it saves
and loads like one with flair's own embeddings. Import this module before `SequenceTagger.load`:
flair finds third-party embeddings by their registered name only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flair
from flair.data import Sentence
from flair.embeddings import TokenEmbeddings
from flair.embeddings.base import register_embeddings

from ..config import ModelConfig
from ..model import ElmoBiLM
from .layers import LayerChoice, contextual_layers, language_model


@register_embeddings
class ElmoLmEmbeddings(TokenEmbeddings):
    """Contextual token vectors from an ELMo model: all layers concatenated, the top, the average, or a learned mix."""

    def __init__(
        self,
        model: ElmoBiLM | str | Path | None = None,
        layers: str = "all",
        do_layer_norm: bool = False,
        requires_grad: bool = False,
        batch_size: int = 32,
        name: str | None = None,
    ) -> None:
        """Args:
            model: a loaded `ElmoBiLM` or a model folder; None for the bundled model.
            layers: "all" (concatenated, (L+1) * 2P wide, as flair's ELMoEmbeddings), "top", "average"
                or "mix" (a scalar mix trained with the downstream model).
            do_layer_norm: for "mix", layer-normalise each layer first.
            requires_grad: fine-tune the language model with the downstream model.
            batch_size: sentences per forward pass in `embed`.
            name: the embedding's name in flair (default `elmo-lm-<layers>`).
        """
        self.name = name or f"elmo-lm-{layers}"
        self.static_embeddings = not requires_grad and layers != "mix"
        super().__init__()
        model = language_model(model, requires_grad)
        self.elmo = model
        self.layer_choice = LayerChoice(model.config.n_output_layers, layers, do_layer_norm)
        self.layers, self.do_layer_norm, self.requires_grad = layers, do_layer_norm, requires_grad
        self.batch_size = batch_size
        self.to(flair.device)

    @property
    def embedding_length(self) -> int:
        """Width of each token vector."""
        return self.layer_choice.output_dim(self.elmo.config.output_dim)

    def _add_embeddings_internal(self, sentences: list[Sentence]) -> list[Sentence]:
        """Embed every token, `batch_size` sentences per forward pass."""
        for start in range(0, len(sentences), self.batch_size):
            batch = [sentence for sentence in sentences[start : start + self.batch_size] if len(sentence) > 0]
            if not batch:
                continue
            layers, mask = contextual_layers(self.elmo, [[token.text for token in s] for s in batch])
            vectors = self.layer_choice(layers, mask)  # (B, T, D)
            for row, sentence in enumerate(batch):
                for position, token in enumerate(sentence):
                    token.set_embedding(self.name, vectors[row, position])
        return sentences

    def __str__(self) -> str:
        return self.name

    def to_params(self) -> dict[str, Any]:
        """The settings and the model's shape; the weights travel in the flair model's state dict."""
        return {"config": self.elmo.config.to_options(), "layers": self.layers, "do_layer_norm": self.do_layer_norm,
                "requires_grad": self.requires_grad, "batch_size": self.batch_size, "name": self.name}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ElmoLmEmbeddings:
        """An instance of the saved shape, its weights to be filled in from the state dict."""
        params = dict(params)
        model = ElmoBiLM(ModelConfig.from_options(params.pop("config")))
        return cls(model=model.eval(), **params)
