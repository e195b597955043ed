"""Context-free token vectors kept across batches: the character CNN runs once per distinct token.

AllenNLP's `vocab_to_cache` precomputes a fixed word list; this cache fills itself from the text
instead, so no vocabulary is needed. Token vectors do not depend on context, so a cached vector is
exactly the one the encoder would compute again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

DEFAULT_MAX_TOKENS = 50_000
"""Tokens kept when the cache is switched on with `True` (P * 4 bytes each: 100 MB for P = 512)."""


class TokenVectorCache:
    """Token string -> its vector `(P,)`; emptied when it reaches `max_tokens`, so memory stays bounded."""

    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
        self.max_tokens = max_tokens
        self.rows: dict[str, int] = {}
        self.vectors: torch.Tensor | None = None
        """(capacity, P): row `rows[token]` holds the vector of `token`."""

    def __len__(self) -> int:
        return len(self.rows)

    def clear(self) -> None:
        """Forget every vector."""
        self.rows = {}
        self.vectors = None

    def lookup(self, tokens: Sequence[str], compute: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """Vectors `(len(tokens), P)` of distinct `tokens`; `compute` encodes the ones not cached yet."""
        if len(tokens) > self.max_tokens:
            return compute(list(tokens))  # more than the cache holds: nothing to keep
        missing = [token for token in tokens if token not in self.rows]
        if len(self.rows) + len(missing) > self.max_tokens:
            self.clear()
            missing = list(tokens)
        if missing:
            self._store(missing, compute(missing))
        assert self.vectors is not None
        rows = torch.tensor([self.rows[token] for token in tokens], dtype=torch.long, device=self.vectors.device)
        return self.vectors[rows]  # (len(tokens), P)

    def _store(self, tokens: list[str], vectors: torch.Tensor) -> None:
        used = len(self.rows)
        if self.vectors is None or used + len(tokens) > self.vectors.shape[0]:
            capacity = min(self.max_tokens, max(2 * (used + len(tokens)), 1024))
            grown = vectors.new_empty(capacity, vectors.shape[1])  # (capacity, P)
            if self.vectors is not None:
                grown[:used] = self.vectors[:used]
            self.vectors = grown
        self.vectors[used : used + len(tokens)] = vectors
        for offset, token in enumerate(tokens):
            self.rows[token] = used + offset
