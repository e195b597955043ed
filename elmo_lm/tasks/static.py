"""Static (context-free) word vectors for the heads: word2vec/GloVe text files or `.npy` + vocabulary.

Lookup tries the word as written, then lowercased; a word found neither way gets zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ElmoError
from ..textfile import read_lines


class StaticVectors:
    """A fixed table of word vectors with a lowercasing fallback."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray, source: str = "") -> None:
        """Args:
            words: the vocabulary, row i of `vectors` belonging to `words[i]`.
            vectors: `(V, D)` array.
            source: where the vectors came from (kept in head configs).
        """
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ElmoError(f"{source or 'static vectors'}: {len(words)} words for a matrix of shape {vectors.shape}")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (V, D)
        self.source = source
        self.index: dict[str, int] = {}
        for row, word in enumerate(words):
            self.index.setdefault(word, row)  # the first occurrence wins

    @property
    def dim(self) -> int:
        """Width D of each vector."""
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def row(self, word: str) -> int:
        """Row of `word` (as written, else lowercased); -1 if absent."""
        found = self.index.get(word)
        if found is None:
            found = self.index.get(word.lower())
        return -1 if found is None else found

    def lookup(self, tokens: Sequence[str]) -> np.ndarray:
        """Vectors `(n, D)` of `tokens`; zeros for words not in the table."""
        rows = np.array([self.row(token) for token in tokens], dtype=np.int64)
        out = np.zeros((len(tokens), self.dim), np.float32)  # (n, D)
        known = rows >= 0
        out[known] = self.vectors[rows[known]]
        return out

    def coverage(self, sentences: Sequence[Sequence[str]]) -> float:
        """Share of the tokens of `sentences` that have a vector."""
        total = sum(len(tokens) for tokens in sentences)
        found = sum(self.row(token) >= 0 for tokens in sentences for token in tokens)
        return found / total if total else 1.0

    def save(self, vectors_file: str | Path, vocab_file: str | Path) -> None:
        """Write `.npy` vectors and a one-word-per-line vocabulary."""
        words = [""] * len(self)
        for word, row in self.index.items():
            words[row] = word
        np.save(vectors_file, self.vectors)
        Path(vocab_file).write_text("".join(word + "\n" for word in words), encoding="utf-8")


def load_static_vectors(path: str | Path, vocab: str | Path | None = None) -> StaticVectors:
    """Load word vectors from a word2vec/GloVe text file, or a `.npy` matrix and its vocabulary.

    Args:
        path: a text file (`word v1 .. vD` per line, with or without a word2vec `V D` header
            line), or a `.npy` file of shape `(V, D)`.
        vocab: for `.npy`: the words, one per line, in row order (default: the same name with
            the suffix `.vocab`).

    Raises:
        ElmoError: for a missing file, a malformed line (naming the file and line) or
            mismatched sizes.
    """
    path = Path(path)
    if path.suffix == ".npy":
        vocab = Path(vocab) if vocab is not None else path.with_suffix(".vocab")
        if not path.is_file():
            raise ElmoError(f"{path}: static vectors not found")
        if not vocab.is_file():
            raise ElmoError(f"{vocab}: vocabulary of {path} not found (one word per line; pass --static-vocab)")
        try:
            vectors = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise ElmoError(f"{path}: not a readable .npy file ({error})") from None
        return StaticVectors(read_lines(vocab), vectors, source=str(path))
    return _load_text(path)


def _load_text(path: Path) -> StaticVectors:
    """The word2vec/GloVe text format; the vector is the last D fields, the word the rest."""
    lines = read_lines(path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    start = 0
    if lines:
        header = lines[0].split()
        if len(header) == 2 and all(field.isdigit() for field in header):
            dim, start = int(header[1]), 1
    for number, line in enumerate(lines[start:], start=start + 1):
        fields = line.rstrip().split(" ")
        if len(fields) < 2 and not line.strip():
            continue
        if dim is None:
            dim = len(fields) - 1
        if len(fields) < dim + 1:
            raise ElmoError(f"{path}, line {number}: expected a word and {dim} numbers, found {len(fields)} fields")
        try:
            rows.append(np.array(fields[-dim:], dtype=np.float32))
        except ValueError:
            raise ElmoError(f"{path}, line {number}: the last {dim} fields are not all numbers") from None
        words.append(" ".join(fields[:-dim]))
    if not rows:
        raise ElmoError(f"{path}: no word vectors found")
    return StaticVectors(words, np.stack(rows), source=str(path))
