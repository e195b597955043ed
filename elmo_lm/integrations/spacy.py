"""The spaCy pipeline component `elmo` (`pip install "elmo-lm[spacy]"`; found through the `spacy_factories` entry point).

    nlp = spacy.blank("en")
    nlp.add_pipe("elmo")                      # the bundled model; config={"model": "my_model/"} for another
    doc = nlp("The bank was closed.")
    doc._.elmo                                # all layers (L+1, n, 2P); span._.elmo (L+1, k, 2P), token._.elmo (L+1, 2P)
    doc.tensor                                # (n, D): the layers chosen by `layers` (mix by default)
    doc[1].similarity(doc[3]), doc.vector     # from doc.tensor

Alignment: each spaCy token is one model token, except whitespace tokens, which the model never sees
(zero vectors); a doc with sentence boundaries runs sentence by sentence (ELMo's training unit), one
without runs as one sequence. Every sentence gets the same vectors alone or in any `nlp.pipe` batch.
`nlp.to_disk` stores the model inside the pipeline folder, so `spacy.load` needs neither the original
model nor an import.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, Span, Token

LAYERS = ("all", "top", "average", "mix")
MODEL_FOLDER = "model"


def _register_extensions() -> None:
    if not Doc.has_extension("elmo"):
        Doc.set_extension("elmo", default=None)
        Span.set_extension("elmo", getter=lambda span: None if span.doc._.elmo is None
                           else span.doc._.elmo[:, span.start : span.end])
        Token.set_extension("elmo", getter=lambda token: None if token.doc._.elmo is None
                            else token.doc._.elmo[:, token.i])


class ElmoComponent:
    """Fills `doc._.elmo` (all layers), `doc.tensor` and the vector and similarity hooks."""

    def __init__(self, nlp: Language, name: str = "elmo", *, model: str | None = None, layers: str = "mix",
                 mix_weights: list[float] | None = None, batch_size: int = 32) -> None:
        """Args:
            model: a model folder; None for the bundled model. Loaded at the first doc.
            layers: what `doc.tensor` holds per token: "mix" (softmax(mix_weights)-weighted sum; equal
                weights by default), "top", "average", or "all" (concatenated).
            mix_weights: L+1 unnormalised layer weights for "mix", e.g. a trained `ScalarMix`'s.
            batch_size: sentences per forward pass.
        """
        from ..errors import ElmoError

        if layers not in LAYERS:
            raise ElmoError(f"elmo component: layers must be one of {', '.join(LAYERS)}, not {layers!r}")
        _register_extensions()
        self.name, self.layers, self.mix_weights, self.batch_size = name, layers, mix_weights, batch_size
        self.source: Path | None = Path(model) if model is not None else None
        self._embedder = None

    @property
    def embedder(self):
        """The `Embedder` running the model (opened at first use)."""
        if self._embedder is None:
            from ..embed import Embedder

            self._embedder = Embedder(self.source, batch_size=self.batch_size)
        return self._embedder

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc]))

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        """Embed docs in batches of `batch_size` docs; their sentences run together, sorted by length."""
        batch_size = batch_size or self.batch_size
        batch: list[Doc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == batch_size:
                yield from self._embed(batch)
                batch = []
        if batch:
            yield from self._embed(batch)

    def _embed(self, docs: list[Doc]) -> list[Doc]:
        pieces = [(d, positions) for d, doc in enumerate(docs) for positions in _model_inputs(doc)]
        token_lists = [[docs[d][i].text for i in positions] for d, positions in pieces]
        vectors = self.embedder.encode(token_lists, layers="all", batch_size=self.batch_size)  # each (L+1, n, 2P)
        config = self.embedder.model.config
        all_layers = [np.zeros((config.n_output_layers, len(doc), config.output_dim), np.float32) for doc in docs]
        for (d, positions), layers in zip(pieces, vectors):
            all_layers[d][:, positions] = layers
        for doc, layers in zip(docs, all_layers):
            doc._.elmo = layers  # (L+1, n, 2P)
            doc.tensor = self._per_token(layers)  # (n, D)
            _set_hooks(doc)
        return docs

    def _per_token(self, layers: np.ndarray) -> np.ndarray:
        """`(L+1, n, 2P)` -> `(n, D)` as `layers` says."""
        if self.layers == "top":
            return layers[-1]
        if self.layers == "average":
            return layers.mean(axis=0)
        if self.layers == "all":
            return np.ascontiguousarray(layers.transpose(1, 0, 2).reshape(layers.shape[1], -1))
        weights = np.zeros(layers.shape[0]) if self.mix_weights is None else np.asarray(self.mix_weights, np.float64)
        if weights.shape != (layers.shape[0],):
            from ..errors import ElmoError

            raise ElmoError(f"elmo component: mix_weights needs {layers.shape[0]} values, got {len(weights)}")
        weights = np.exp(weights - weights.max())
        return np.tensordot((weights / weights.sum()).astype(np.float32), layers, axes=1)  # (n, 2P)

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Store the model folder inside the pipeline (`path/model/`)."""
        from ..io import load_model, save_pretrained
        from ..io.folder import CONFIG_NAME, WEIGHTS_NAME

        target = Path(path) / MODEL_FOLDER
        target.mkdir(parents=True, exist_ok=True)
        source = self.source
        if source is None:
            from ..bundled import bundled_model_path

            source = bundled_model_path()
        if (source / CONFIG_NAME).is_file():
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                if (source / name).resolve() != (target / name).resolve():
                    shutil.copyfile(source / name, target / name)
        else:  # an AllenNLP-format folder: stored as a model folder
            model = load_model(source)
            model.softmax = None
            save_pretrained(model, target)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> ElmoComponent:
        """Use the model stored by `to_disk` (opened at first use)."""
        self.source = Path(path) / MODEL_FOLDER
        self._embedder = None
        return self


@Language.factory("elmo", default_config={"model": None, "layers": "mix", "mix_weights": None, "batch_size": 32})
def make_elmo(nlp: Language, name: str, model: str | None, layers: str, mix_weights: list[float] | None,
              batch_size: int) -> ElmoComponent:
    """Build the component (`nlp.add_pipe("elmo", config={...})`)."""
    return ElmoComponent(nlp, name, model=model, layers=layers, mix_weights=mix_weights, batch_size=batch_size)


def _model_inputs(doc: Doc) -> list[list[int]]:
    """The token indices of each model input: one per sentence when the doc has sentences, whitespace left out."""
    spans: list[Any] = list(doc.sents) if doc.has_annotation("SENT_START") else [doc[:]]
    inputs = [[token.i for token in span if not token.is_space] for span in spans]
    return [positions for positions in inputs if positions]


def _vector(tensor: np.ndarray) -> np.ndarray:
    return tensor.mean(axis=0) if len(tensor) else np.zeros(tensor.shape[1:], np.float32)


def _similarity(first: Any, second: Any) -> float:
    a, b = first.vector, second.vector
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norm) if norm else 0.0


def _set_hooks(doc: Doc) -> None:
    """`vector`, `has_vector` and `similarity` of the doc, its spans and tokens, from `doc.tensor`."""
    doc.user_hooks["vector"] = lambda d: _vector(d.tensor)
    doc.user_hooks["has_vector"] = lambda d: True
    doc.user_hooks["similarity"] = _similarity
    doc.user_span_hooks["vector"] = lambda span: _vector(span.doc.tensor[span.start : span.end])
    doc.user_span_hooks["has_vector"] = lambda span: True
    doc.user_span_hooks["similarity"] = _similarity
    doc.user_token_hooks["vector"] = lambda token: token.doc.tensor[token.i]
    doc.user_token_hooks["has_vector"] = lambda token: True
    doc.user_token_hooks["similarity"] = _similarity
