"""Sentence similarity with ELMo: one vector per sentence, compared by cosine.

Pooling: a sentence's vector is the mean over its tokens of the chosen layers, by default the
average of all L+1 layers (`layers="average"`; "top" takes the top LSTM layer; "all" concatenates
the per-layer means into one `(L+1) * 2P` vector). The score is the cosine of two such vectors;
an empty sentence has the zero vector and scores 0 against everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import ElmoError

Sentence = Sequence[str] | str


class Embedder(Protocol):
    """What this module needs of an `elmo_lm.Embedder`: its `encode` (so it never imports embed.py,
    which imports this module for `Embedder.similarity`)."""

    def encode(self, sentences: Sequence[Sentence], **options: Any) -> Any: ...

POOLINGS = ("average", "top", "all")


def sentence_vectors(embedder: Embedder, sentences: Sequence[Sentence], layers: str = "average",
                     show_progress_bar: bool = False) -> np.ndarray:
    """Unit-length sentence vectors `(N, D)` (zero for an empty sentence), pooled as the module says."""
    if layers not in POOLINGS:
        raise ElmoError(f"layers must be one of {', '.join(POOLINGS)}, not {layers!r}")
    pooled = np.asarray(embedder.encode(list(sentences), layers=layers, output="sentence",  # type: ignore[arg-type]
                                        show_progress_bar=show_progress_bar), np.float64)
    vectors = pooled.reshape(len(pooled), -1)  # (N, D); "all": the per-layer means side by side
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def similarity(embedder: Embedder, a: Sentence, b: Sentence, layers: str = "average") -> float:
    """Cosine similarity of two sentences' pooled vectors, in [-1, 1]."""
    first, second = sentence_vectors(embedder, [a, b], layers)
    return float(first @ second)


@dataclass
class Match:
    """One nearest sentence: its index among the candidates and its cosine to the query."""

    index: int
    score: float


def nearest(query: np.ndarray, candidates: np.ndarray, k: int) -> list[Match]:
    """The `k` candidates `(N, D)` with the highest cosine to the unit vector `query (D,)`, best first
    (ties by index)."""
    scores = candidates @ query  # (N,)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [Match(int(i), float(scores[i])) for i in order]


def similar_in_file(embedder: Embedder, query: str, path: str | Path, k: int = 5, layers: str = "average",
                    tokenize: bool = False) -> list[tuple[int, str, float]]:
    """The `k` non-empty lines of a file most similar to `query`, best first, as (1-based line number,
    line, cosine). Text is split on whitespace, or by the built-in tokenizer with `tokenize`."""
    from .textfile import read_lines

    if not query.split():
        raise ElmoError("the query is empty")
    kept = [(number, line.strip()) for number, line in enumerate(read_lines(path), start=1) if line.strip()]
    if not kept:
        raise ElmoError(f"{path}: no sentences")
    split = (lambda text: text) if tokenize else str.split
    vectors = sentence_vectors(embedder, [split(query)] + [split(line) for _, line in kept], layers)
    return [(*kept[match.index], match.score) for match in nearest(vectors[0], vectors[1:], k)]
