"""How the embedder cuts a list of sentences into batches: by sentence count, or by padded tokens."""

from __future__ import annotations

from collections.abc import Iterator

DEFAULT_BATCH_TOKENS = 4000
"""`elmo embed`'s batch by default, in padded tokens (`Embedder(batch_tokens=...)`): the fastest
measured on an AMD EPYC (small size: 5,296 tokens per CPU-second against 4,845 at 2,000 and 4,553 at
64 sentences); `benchmarks/batch_size.py`, results in benchmarks/RESULTS-batch_size.md."""

MAX_BATCH_ROWS = 512
"""The most sentences a batch chosen by tokens holds (`elmo embed` without --batch-size)."""


def split_batches(order: list[int], lengths: list[int], batch_size: int, batch_tokens: int | None
                  ) -> Iterator[list[int]]:
    """Consecutive runs of `order`: at most `batch_size` sentences, and with `batch_tokens`, at most
    that many padded tokens (rows x the longest row's tokens incl. `<S>`/`</S>`; one row at least)."""
    start = 0
    while start < len(order):
        end = min(len(order), start + batch_size)
        if batch_tokens is not None:
            longest = max(lengths[i] for i in order[start:end])
            end = min(end, start + max(1, batch_tokens // (longest + 2)))
        yield order[start:end]
        start = end
