"""The word vocabulary of the softmax, in the bilm-tf file format, and how to build one.

A vocabulary file holds one token per line: `<S>`, `</S>`, `<UNK>` first (ids 0, 1, 2), then the
words by descending count. `build_vocabulary` counts a corpus of any size in bounded memory: the
counts live in a dict until it holds `max_distinct` words, then they are spilled to hash-partitioned
temporary files and merged one partition at a time, which gives exact counts.
"""

from __future__ import annotations

import heapq
import os
import pickle
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from .chars import BOS_TOKEN, EOS_TOKEN, UNK_TOKEN
from .corpus import expand_corpus, iter_sentences
from .errors import ElmoError
from .io.atomic import atomic_path

SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
"""The first three lines of every vocabulary file, in this order."""

DEFAULT_MAX_DISTINCT = 2_000_000
"""Distinct words counted in memory before `build_vocabulary` spills counts to disk."""

_N_PARTITIONS = 16
_MAX_SPILL_DEPTH = 8


class Vocabulary:
    """Token <-> id map for the softmax; ids are line numbers (0-based) of the vocabulary file.

    Args:
        tokens: all tokens in id order, starting with `<S>`, `</S>`, `<UNK>`.
        counts: optional corpus count per token (same order), as filled in by `build_vocabulary`.

    Raises:
        ElmoError: the specials are not first, a token repeats, or a token is empty or holds
            whitespace (it could not be written one per line).
    """

    def __init__(self, tokens: Sequence[str], counts: Sequence[int] | None = None) -> None:
        self._tokens = list(tokens)
        _check_tokens(self._tokens, lambda i: f"token {i}")
        self._ids = {token: i for i, token in enumerate(self._tokens)}
        if counts is not None and len(counts) != len(self._tokens):
            raise ValueError(f"{len(counts)} counts for {len(self._tokens)} tokens")
        self.counts: list[int] | None = list(counts) if counts is not None else None
        """Corpus count per token when known (`<S>`/`</S>`: sentences; `<UNK>`: tokens left out)."""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a bilm-tf vocabulary file (UTF-8, one token per line, the specials first).

        Surrounding whitespace of a line is ignored, as is a missing final newline and blank lines
        at the very end; any other blank line is an error, since line numbers are ids.

        Raises:
            ElmoError: naming the file and line: missing, not UTF-8, blank line, specials not
                first, or a duplicate token.
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ElmoError(f"{path}: vocabulary file not found") from None
        except IsADirectoryError:
            raise ElmoError(f"{path}: is a directory, not a vocabulary file") from None
        lines = raw.split(b"\n")
        while lines and not lines[-1].strip():
            lines.pop()
        tokens = []
        for number, line in enumerate(lines, start=1):
            try:
                tokens.append(line.decode("utf-8").strip())
            except UnicodeDecodeError:
                raise ElmoError(f"{path}: line {number} is not valid UTF-8") from None
        _check_tokens(tokens, lambda i: f"{path}: line {i + 1}")
        return cls(tokens)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the bilm-tf file atomically (a temporary file in the same folder, then rename)."""
        text = "".join(token + "\n" for token in self._tokens).encode("utf-8")
        if not Path(path).parent.is_dir():
            raise ElmoError(f"{path}: folder {Path(path).parent} does not exist")
        with atomic_path(path) as temporary:
            temporary.write_bytes(text)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._tokens == other._tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order (a copy)."""
        return list(self._tokens)

    @property
    def bos_id(self) -> int:
        """Id of `<S>` (0)."""
        return 0

    @property
    def eos_id(self) -> int:
        """Id of `</S>` (1)."""
        return 1

    @property
    def unk_id(self) -> int:
        """Id of `<UNK>` (2), the id of every unknown token."""
        return 2

    @property
    def corpus_tokens(self) -> int | None:
        """Tokens the vocabulary was counted from (boundaries excluded), when counts are known."""
        return sum(self.counts[2:]) if self.counts is not None else None

    def id(self, token: str) -> int:
        """Id of a token; `unk_id` for a token not in the vocabulary."""
        return self._ids.get(token, 2)

    def ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of several tokens (unknown ones -> `unk_id`)."""
        get = self._ids.get
        return [get(token, 2) for token in tokens]

    def token(self, i: int) -> str:
        """The token with id `i`."""
        return self._tokens[i]


def _check_tokens(tokens: Sequence[str], name: Callable[[int], str]) -> None:
    """Raise ElmoError unless the specials come first and every token is unique and writable.

    `name(i)` says where token i is in messages ("vocab.txt: line 4" or "token 3").
    """
    for i, special in enumerate(SPECIAL_TOKENS):
        if i >= len(tokens) or tokens[i] != special:
            found = f"found {tokens[i]!r}" if i < len(tokens) else "the vocabulary ends before it"
            raise ElmoError(
                f"{name(i)} must be {special!r} ({found}): a vocabulary starts with "
                f"{', '.join(SPECIAL_TOKENS)} in this order"
            )
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token.split() != [token]:
            what = "is empty" if not token else f"holds whitespace ({token!r})"
            raise ElmoError(f"{name(i)} {what}: one token per line")
        if token in seen:
            first = name(seen[token])
            raise ElmoError(f"{name(i)} repeats {token!r} (first at {first})")
        seen[token] = i


def build_vocabulary(
    paths: Sequence[str | os.PathLike[str]],
    min_count: int = 1,
    max_size: int | None = None,
    tokenize: bool = False,
    max_distinct: int = DEFAULT_MAX_DISTINCT,
    spill_dir: str | os.PathLike[str] | None = None,
) -> Vocabulary:
    """Count the words of a corpus and make its vocabulary, streaming in bounded memory.

    Order: `<S>`, `</S>`, `<UNK>`, then words by descending count; words with the same count are
    in lexicographic (code point) order, so the result does not depend on file order or on how
    the counting was partitioned.

    Args:
        paths: corpus files or globs (one sentence per line, UTF-8), see `corpus.expand_corpus`.
        min_count: keep words seen at least this often.
        max_size: at most this many tokens in all, the three specials included (so at most
            `max_size - 3` words); None for no limit.
        tokenize: split lines with the built-in tokenizer instead of on whitespace.
        max_distinct: distinct words held in memory before counts are spilled to disk.
        spill_dir: folder for the temporary spill files (default: the system temp folder).

    Memory: at most `max_distinct` distinct words are counted at once (plus the result, or only
    `max_size` entries of it); the spill files take about the size of the corpus's distinct words
    on disk and are deleted before returning.

    Returns:
        The vocabulary, with `counts` filled in: words' counts, `<S>` and `</S>` the number of
        sentences, `<UNK>` the number of corpus tokens left out.

    Raises:
        ElmoError: no file matched, a line is not valid UTF-8, or an argument is out of range.
    """
    if min_count < 1:
        raise ElmoError(f"min_count must be at least 1, not {min_count}")
    if max_size is not None and max_size < len(SPECIAL_TOKENS):
        raise ElmoError(f"max_size counts the 3 special tokens: it must be at least 3, not {max_size}")
    if max_distinct < 1:
        raise ElmoError(f"max_distinct must be at least 1, not {max_distinct}")
    files = expand_corpus(paths)
    totals = {"tokens": 0, "sentences": 0}

    def sentences() -> Iterator[list[str]]:
        for tokens in iter_sentences(files, tokenize=tokenize):
            totals["tokens"] += len(tokens)
            totals["sentences"] += 1
            yield tokens

    with tempfile.TemporaryDirectory(prefix="elmo-vocab-", dir=spill_dir) as scratch:
        counted = _exact_counts(sentences(), max_distinct, Path(scratch), depth=0)
        kept = (pair for pair in counted if pair[1] >= min_count and pair[0] not in SPECIAL_TOKENS)
        order = lambda pair: (-pair[1], pair[0])  # noqa: E731
        if max_size is None:
            words = sorted(kept, key=order)
        else:
            words = heapq.nsmallest(max_size - len(SPECIAL_TOKENS), kept, key=order)
    n_sentences, n_tokens = totals["sentences"], totals["tokens"]
    unknown = n_tokens - sum(count for _, count in words)
    return Vocabulary(
        [*SPECIAL_TOKENS, *(word for word, _ in words)],
        counts=[n_sentences, n_sentences, unknown, *(count for _, count in words)],
    )


def _exact_counts(
    batches: Iterable[Iterable[str] | dict[str, int]], max_distinct: int, scratch: Path, depth: int
) -> Iterator[tuple[str, int]]:
    """Exact (word, count) pairs of a stream of token lists or partial-count dicts.

    Counts in memory; whenever more than `max_distinct` words are held, spills them to
    `_N_PARTITIONS` files by a hash salted with `depth`, then counts each partition the same way
    (recursively, so a large partition splits again). Each word lands in exactly one partition,
    so per-partition sums are the exact totals.
    """
    counts: Counter[str] = Counter()
    spill: _Spill | None = None
    for batch in batches:
        counts.update(batch)
        if len(counts) > max_distinct and depth < _MAX_SPILL_DEPTH:
            if spill is None:
                spill = _Spill(scratch, depth)
            spill.write(counts)
            counts = Counter()
    if spill is None:
        yield from counts.items()
        return
    spill.write(counts)
    del counts
    for part in spill.close():
        yield from _exact_counts(_read_chunks(part), max_distinct, scratch, depth + 1)
        part.unlink()


class _Spill:
    """Hash-partitioned files of pickled partial-count dicts for one level of `_exact_counts`."""

    def __init__(self, scratch: Path, depth: int) -> None:
        self.depth = depth
        folder = Path(tempfile.mkdtemp(prefix=f"level{depth}-", dir=scratch))
        self.paths = [folder / f"part{i:02d}.pkl" for i in range(_N_PARTITIONS)]
        self.files: list[BinaryIO] = [open(p, "wb") for p in self.paths]  # noqa: SIM115

    def write(self, counts: dict[str, int]) -> None:
        parts: list[dict[str, int]] = [{} for _ in self.paths]
        depth = self.depth
        for word, count in counts.items():
            parts[hash((depth, word)) % _N_PARTITIONS][word] = count
        for part, out in zip(parts, self.files):
            if part:
                pickle.dump(part, out, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self) -> list[Path]:
        for out in self.files:
            out.close()
        return self.paths


def _read_chunks(path: Path) -> Iterator[dict[str, int]]:
    """The partial-count dicts pickled one after another into a spill file."""
    with open(path, "rb") as chunks:
        while True:
            try:
                yield pickle.load(chunks)
            except EOFError:
                return
