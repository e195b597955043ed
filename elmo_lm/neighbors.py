"""Nearest neighbours in context: which tokens of a reference set of sentences the model places
closest (cosine) to one word of a query sentence, separately for every layer.

Layer 0 is the context-free token vector, so it can only match words by spelling; the LSTM layers
see the sentence, and their neighbours show what the model takes the word to mean there (the
paper's table 4: "play" as a sports move or as a theatre piece).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embed import Embedder
from .errors import ElmoError
from .textfile import read_lines

SCORE_CHUNK = 65536
"""Reference tokens scored per step (bounds the float32 working memory)."""


@dataclass
class Neighbor:
    """One reference token close to the query."""

    layer: int
    """Output layer (0 = token encoder, j = LSTM layer j)."""
    score: float
    """Cosine similarity to the query token in that layer."""
    sentence: int
    """Index of the reference sentence."""
    position: int
    """0-based token position in that sentence."""
    tokens: list[str]
    """The reference sentence."""

    @property
    def token(self) -> str:
        """The neighbouring token itself."""
        return self.tokens[self.position]

    def context(self, width: int = 60) -> str:
        """The sentence with the token in brackets, cut to about `width` characters on each side."""
        left = " ".join(self.tokens[: self.position])
        right = " ".join(self.tokens[self.position + 1 :])
        if len(left) > width:
            left = "..." + left[-width:]
        if len(right) > width:
            right = right[:width] + "..."
        return " ".join(part for part in (left, f"[{self.token}]", right) if part)


def find_word(tokens: Sequence[str], word: str) -> int:
    """Position of the first token equal to `word` (else equal ignoring case); `ElmoError` if none."""
    for position, token in enumerate(tokens):
        if token == word:
            return position
    for position, token in enumerate(tokens):
        if token.lower() == word.lower():
            return position
    raise ElmoError(f"the word {word!r} is not a token of the sentence (tokens: {' '.join(tokens)[:200]})")


class ContextIndex:
    """The contextual vectors of every token of a reference set, per layer, ready for cosine search."""

    def __init__(self, embedder: Embedder, sentences: Sequence[Sequence[str]]) -> None:
        """Embed `sentences` (token lists) with `embedder` and keep their unit-length vectors (float16)."""
        self.embedder = embedder
        self.sentences = [list(tokens) for tokens in sentences]
        lengths = [len(tokens) for tokens in self.sentences]
        config = embedder.model.config
        total = sum(lengths)
        self.vectors = np.zeros((config.n_output_layers, total, config.output_dim), np.float16)  # (L+1, N, 2P)
        self.sentence_of = np.repeat(np.arange(len(lengths)), lengths)  # (N,)
        self.position_of = np.concatenate([np.arange(n) for n in lengths]) if lengths else np.zeros(0, np.int64)
        start = 0
        for layers in embedder.embed_sentences(self.sentences):
            n = layers.shape[1]
            self.vectors[:, start : start + n] = _unit(layers)  # (L+1, n, 2P)
            start += n

    @property
    def n_layers(self) -> int:
        """L+1."""
        return self.vectors.shape[0]

    def occurrences(self, word: str) -> np.ndarray:
        """Indices `(M,)` into the token axis of `vectors` where `word` occurs (ignoring case)."""
        word = word.lower()
        return np.flatnonzero(np.array([token.lower() == word for tokens in self.sentences for token in tokens],
                                       bool))

    def query(
        self,
        tokens: Sequence[str],
        position: int,
        k: int = 5,
        layers: Sequence[int] | None = None,
        same_word: bool = False,
    ) -> list[list[Neighbor]]:
        """The `k` nearest reference tokens to `tokens[position]`, for each layer.

        Args:
            tokens: the query sentence.
            position: which of its tokens.
            k: neighbours per layer.
            layers: which layers (default all, 0..L).
            same_word: only consider reference tokens spelled like the query word (ignoring
                case): the senses of one word across sentences.

        Returns:
            For each requested layer, its neighbours, best first. The query itself (the same
            sentence at the same position, if it is in the reference set) is left out.
        """
        return self.nearest(self.embedder.embed_sentence(list(tokens)), tokens, position, k, layers, same_word)

    def nearest(
        self,
        sentence_layers: np.ndarray,
        tokens: Sequence[str],
        position: int,
        k: int = 5,
        layers: Sequence[int] | None = None,
        same_word: bool = False,
    ) -> list[list[Neighbor]]:
        """`query` for a sentence already embedded: `sentence_layers` `(L+1, n, 2P)` of `tokens`."""
        if not 0 <= position < len(tokens):
            raise ElmoError(f"position {position} is outside the sentence of {len(tokens)} tokens")
        layers = list(range(self.n_layers)) if layers is None else list(layers)
        for layer in layers:
            if not 0 <= layer < self.n_layers:
                raise ElmoError(f"layer {layer} does not exist: the model has layers 0..{self.n_layers - 1}")
        query = _unit(sentence_layers)[:, position]  # (L+1, 2P)
        allowed = np.ones(len(self.sentence_of), bool)  # (N,)
        if same_word:
            word = tokens[position].lower()
            allowed &= np.array([self.sentences[s][p].lower() == word
                                 for s, p in zip(self.sentence_of, self.position_of)], bool)
        for s, reference in enumerate(self.sentences):
            if reference == list(tokens):
                allowed[(self.sentence_of == s) & (self.position_of == position)] = False
        results = []
        for layer in layers:
            scores = np.full(len(allowed), -np.inf, np.float32)  # (N,)
            for start in range(0, len(scores), SCORE_CHUNK):
                chunk = self.vectors[layer, start : start + SCORE_CHUNK].astype(np.float32)  # (c, 2P)
                scores[start : start + len(chunk)] = chunk @ query[layer]
            scores[~allowed] = -np.inf
            top = np.argsort(-scores, kind="stable")[: min(k, int(allowed.sum()))]
            results.append([Neighbor(layer, float(scores[i]), int(self.sentence_of[i]), int(self.position_of[i]),
                                     self.sentences[self.sentence_of[i]]) for i in top])
        return results


@dataclass
class NeighborsReport:
    """What `neighbors_in_file` found."""

    tokens: list[str]
    """The query sentence."""
    position: int
    """The query word's position in it."""
    line_numbers: list[int]
    """1-based line of the reference file of each reference sentence (`Neighbor.sentence` indexes this)."""
    results: list[list[Neighbor]]
    """Per requested layer, the neighbours, best first."""
    index: ContextIndex
    """The embedded reference sentences (for `elmo_lm.projector`)."""
    query_layers: np.ndarray
    """`(L+1, n, 2P)`: the query sentence's layers."""


def neighbors_in_file(embedder: Embedder, sentence: str, word: str, reference_file: str | Path, k: int = 5,
                      layers: Sequence[int] | None = None, same_word: bool = False,
                      tokenize: bool = False) -> NeighborsReport:
    """The `k` nearest tokens in context to `word` of `sentence` among the tokens of `reference_file`
    (one sentence per line; blank lines skipped), per layer (`elmo neighbors`).

    Raises:
        ElmoError: an empty sentence, a word not in it, a reference file without sentences.
    """
    split: Callable[[str], list[str]] = str.split
    if tokenize:
        from .tokenize import tokenize as split
    tokens = split(sentence)
    if not tokens:
        raise ElmoError("--sentence is empty")
    position = find_word(tokens, word)
    lines = read_lines(reference_file)
    kept = [(number, split(line)) for number, line in enumerate(lines, start=1) if line.strip()]
    if not kept:
        raise ElmoError(f"{reference_file}: no reference sentences")
    index = ContextIndex(embedder, [reference for _, reference in kept])
    query_layers = embedder.embed_sentence(tokens)  # (L+1, n, 2P)
    results = index.nearest(query_layers, tokens, position, k=k, layers=list(layers) if layers else None,
                            same_word=same_word)
    return NeighborsReport(tokens, position, [number for number, _ in kept], results, index, query_layers)


def _unit(layers: np.ndarray) -> np.ndarray:
    """Scale each vector of `(..., 2P)` to unit length (zero vectors stay zero)."""
    norms = np.linalg.norm(layers, axis=-1, keepdims=True)  # (..., 1)
    return layers / np.maximum(norms, 1e-12)
