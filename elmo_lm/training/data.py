"""Training data: corpus files streamed into the language model's batches (bilm-tf semantics).

A corpus is UTF-8 text, one sentence per line. Each sentence becomes `<S> w1 .. wn </S>`; each of
the B rows of a batch is an independent stream of such sentences packed back to back, and each
batch holds the next T (`unroll_steps`) positions of every row, so a row's LSTM state carries over
from one batch to the next (truncated backpropagation through time).

Memory stays bounded whatever the corpus size: files are read line by line, and shuffling is a
seeded shuffle of the file order plus a bounded buffer of `shuffle_buffer` lines.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ..chars import BOS_IDS, BOS_TOKEN, EOS_IDS, EOS_TOKEN, MAX_CHARS, token_to_ids
from ..corpus import Corpus, decode_line, expand_corpus, nonblank_lines, splitter
from ..errors import ElmoError
from ..vocab import Vocabulary

IGNORE_INDEX = -100
"""Target of a padded position (PyTorch's cross-entropy `ignore_index`)."""

DEFAULT_SHUFFLE_BUFFER = 100_000
"""Lines held by the shuffle buffer: with ~150-byte lines, some 20-30 MB per process."""

DEFAULT_CHAR_CACHE = 100_000
"""Distinct tokens whose character and word ids are cached (11 MB); the cache restarts when full."""

T = TypeVar("T")


def shuffle_buffered(items: Iterable[T], buffer_size: int, rng: random.Random) -> Iterator[T]:
    """Approximate shuffle of a stream in bounded memory.

    Fills a buffer of `buffer_size` items; then each new item replaces a uniformly chosen buffered
    one, which is yielded; at the end the rest of the buffer comes out shuffled. At most
    `buffer_size` items are held, and the first item comes out after `buffer_size + 1` are read.
    """
    if buffer_size < 1:
        raise ElmoError(f"shuffle_buffer must be at least 1, not {buffer_size}")
    buffer: list[T] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        j = rng.randrange(buffer_size)
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


def training_sentences(
    paths: Sequence[Path],
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    tokenize: bool = False,
) -> Iterator[list[str]]:
    """The sentence stream of one process for one epoch, as `LMBatches` consumes it.

    With `shuffle`, the file order is shuffled with a generator seeded by (seed, epoch), the same
    on every rank. The global stream is the non-blank lines of the files in that order; rank r
    takes lines r, r + w, r + 2w, ... of it (so the ranks' shares are disjoint, cover the corpus,
    and work with a single file), then shuffles its share through a buffer of `shuffle_buffer`
    lines seeded by (seed, epoch, rank). Without `shuffle`, files are read in sorted order and
    lines in file order.
    """
    files = list(paths)
    if shuffle:
        random.Random(f"elmo-lm/files/{seed}/{epoch}").shuffle(files)
    lines: Iterator[tuple[Path, int, bytes]] = nonblank_lines(files)
    if world_size > 1:
        lines = itertools.islice(lines, rank, None, world_size)
    texts: Iterator[str] = (decode_line(path, number, line) for path, number, line in lines)
    if shuffle:
        texts = shuffle_buffered(texts, shuffle_buffer, random.Random(f"elmo-lm/lines/{seed}/{epoch}/{rank}"))
    split = splitter(tokenize)
    for text in texts:
        tokens = split(text)
        if tokens:
            yield tokens


@dataclass
class LMBatch:
    """One training step's inputs and targets for both language models.

    Padded positions (only at the end of a row, once the data has run out) have character ids
    all 0 and target `IGNORE_INDEX` (-100).
    """

    forward_chars: torch.Tensor
    """(B, T, 50) int64 character ids of the forward inputs `<S> w1 .. wn` of each row."""
    forward_targets: torch.Tensor
    """(B, T) int64 vocabulary ids of the next token `w1 .. wn </S>`."""
    backward_chars: torch.Tensor
    """(B, T, 50) int64 character ids of the reversed sentences' inputs `</S> wn .. w1`."""
    backward_targets: torch.Tensor
    """(B, T) int64 vocabulary ids of the backward targets `wn .. w1 <S>`."""
    n_tokens: int
    """Real (non-padding) targets per direction."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> LMBatch:
        """The same batch with its tensors on `device`."""
        return LMBatch(
            forward_chars=self.forward_chars.to(device, non_blocking=non_blocking),
            forward_targets=self.forward_targets.to(device, non_blocking=non_blocking),
            backward_chars=self.backward_chars.to(device, non_blocking=non_blocking),
            backward_targets=self.backward_targets.to(device, non_blocking=non_blocking),
            n_tokens=self.n_tokens,
        )


class _TokenCache:
    """Character ids and vocabulary id of recently seen tokens: rows of two tables, one dict lookup.

    Bounded: when a sentence brings more new tokens than fit, the cache starts over.
    """

    def __init__(self, capacity: int, vocab: Vocabulary) -> None:
        self.capacity = max(capacity, 16)
        self.vocab = vocab
        self.chars = np.zeros((self.capacity, MAX_CHARS), dtype=np.int16)  # (capacity, 50)
        self.word_ids = np.zeros(self.capacity, dtype=np.int64)  # (capacity,)
        self.chars[0], self.chars[1] = BOS_IDS, EOS_IDS
        self.word_ids[0], self.word_ids[1] = vocab.bos_id, vocab.eos_id
        self.index: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        self.index = {BOS_TOKEN: 0, EOS_TOKEN: 1}

    def sentence(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Character ids (n + 2, 50) int16 and word ids (n + 2,) of `<S> tokens </S>`."""
        index = self.index
        try:
            inner = [index[token] for token in tokens]
        except KeyError:
            distinct = set(tokens) - {BOS_TOKEN, EOS_TOKEN}
            if len(distinct) + 2 > self.capacity:  # a huge line: no caching
                chars = np.array([BOS_IDS, *map(token_to_ids, tokens), EOS_IDS], dtype=np.int16)
                ids = np.array([self.vocab.bos_id, *self.vocab.ids(tokens), self.vocab.eos_id], dtype=np.int64)
                return chars, ids  # (n + 2, 50), (n + 2,)
            new = distinct - index.keys()
            if len(index) + len(new) > self.capacity:
                self.reset()
                index = self.index
                new = distinct
            for token in new:
                i = len(index)
                index[token] = i
                self.chars[i] = token_to_ids(token)
                self.word_ids[i] = self.vocab.id(token)
            inner = [index[token] for token in tokens]
        rows = np.empty(len(inner) + 2, dtype=np.intp)  # (n + 2,)
        rows[0], rows[1:-1], rows[-1] = 0, inner, 1
        return self.chars[rows], self.word_ids[rows]  # (n + 2, 50), (n + 2,)


class _Row:
    """The sentence a batch row is reading, and how far it got (`pos` = inputs consumed)."""

    __slots__ = ("tokens", "length", "pos", "chars", "ids")

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.length = len(tokens) + 2  # with <S> and </S>; inputs are positions 0 .. length - 2
        self.pos = 0
        self.chars: np.ndarray | None = None  # (length, 50), built only when a batch needs it
        self.ids: np.ndarray | None = None  # (length,)

    def materialize(self, cache: _TokenCache) -> None:
        if self.chars is None:
            self.chars, self.ids = cache.sentence(self.tokens)  # (length, 50), (length,)
            self.tokens = []


class LMBatches:
    """Batches of a corpus for training the bidirectional LM, streamed (bilm-tf semantics).

    Each sentence is `<S> w1 .. wn </S>` and gives n + 1 (input, target) pairs: inputs
    `<S> .. wn`, targets `w1 .. </S>`. Each of the `batch_size` rows is its own stream of
    sentences packed back to back; a batch holds the next `unroll_steps` inputs of every row, and
    a row that needs more takes the next sentence from the stream (rows are filled in order). So
    row i of batch k + 1 continues row i of batch k: carry the LSTM state per row. The backward
    LM sees the same sentences in the same rows and positions, each reversed: inputs
    `</S> wn .. w1`, targets `wn .. <S>`. Out-of-vocabulary words keep their characters as
    inputs; only their targets are `<UNK>`. When the data runs out, rows are padded (char ids 0,
    target -100); the epoch ends at the first batch in which no row has data left.

    One iteration is one epoch (`set_epoch` picks which; each epoch reshuffles, deterministically
    for a given seed). Every epoch starts all rows at a sentence start.

    Distributed training: rank r of `world_size` reads only its share (every w-th line of the
    globally file-shuffled stream, see `training_sentences`) and yields local batches of
    `batch_size` rows; the global batch is the concatenation of the ranks' batches along the
    batch axis (`world_size * batch_size` rows). The ranks' numbers of batches per epoch can
    differ by a few at the end: the training loop must agree on when to stop (for example
    all-reduce a "have a batch" flag and stop when any rank is out).

    Args:
        paths: corpus files or globs (see `expand_corpus`); expanded when constructed.
        vocab: the softmax vocabulary (targets).
        batch_size: rows B per batch (per process).
        unroll_steps: positions T per batch.
        seed: the shuffling seed.
        rank: this process's index among `world_size`.
        world_size: number of processes sharing the corpus.
        shuffle: shuffle files and lines (False: corpus order, for evaluation).
        tokenize: split lines with the built-in tokenizer instead of on whitespace.
        shuffle_buffer: lines held by the shuffle buffer.
        epoch: the epoch the next iteration produces.
        char_cache_size: distinct tokens whose character ids are cached.
    """

    def __init__(
        self,
        paths: Corpus,
        vocab: Vocabulary,
        batch_size: int,
        unroll_steps: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        tokenize: bool = False,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        epoch: int = 0,
        char_cache_size: int = DEFAULT_CHAR_CACHE,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("unroll_steps", unroll_steps),
                            ("world_size", world_size), ("shuffle_buffer", shuffle_buffer)):
            if value < 1:
                raise ElmoError(f"{name} must be at least 1, not {value}")
        if not 0 <= rank < world_size:
            raise ElmoError(f"rank must be in 0 .. {world_size - 1}, not {rank}")
        self.paths = expand_corpus(paths)
        self.vocab = vocab
        self.batch_size = batch_size
        self.unroll_steps = unroll_steps
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.tokenize = tokenize
        self.shuffle_buffer = shuffle_buffer
        self.epoch = epoch
        self._cache = _TokenCache(char_cache_size, vocab)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (and so the shuffle) of the next iteration."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[LMBatch]:
        return self.iter_epoch(self.epoch)

    def sentences(self, epoch: int) -> Iterator[list[str]]:
        """This process's sentence stream for `epoch`, in the order rows take them."""
        return training_sentences(
            self.paths, self.seed, epoch, self.rank, self.world_size, self.shuffle, self.shuffle_buffer, self.tokenize
        )

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[LMBatch]:
        """The batches of one epoch, from batch number `start_batch` on.

        Skipped batches (for resuming mid-epoch) are laid out but not built: no character ids,
        no tensors, so skipping is much cheaper than iterating.
        """
        stream = self.sentences(epoch)
        B, T = self.batch_size, self.unroll_steps
        rows: list[_Row | None] = [None] * B
        exhausted = False
        for number in itertools.count():
            build = number >= start_batch
            if build:
                forward_chars = np.zeros((B, T, MAX_CHARS), dtype=np.int64)  # (B, T, 50)
                backward_chars = np.zeros((B, T, MAX_CHARS), dtype=np.int64)  # (B, T, 50)
                forward_targets = np.full((B, T), IGNORE_INDEX, dtype=np.int64)  # (B, T)
                backward_targets = np.full((B, T), IGNORE_INDEX, dtype=np.int64)  # (B, T)
            n_tokens = 0
            for i in range(B):
                row, t = rows[i], 0
                while t < T:
                    if row is None or row.pos >= row.length - 1:  # needs its next sentence
                        tokens = None if exhausted else next(stream, None)
                        exhausted = tokens is None
                        row = rows[i] = None if tokens is None else _Row(tokens)
                        if row is None:
                            break
                    k = min(row.length - 1 - row.pos, T - t)
                    if build:
                        row.materialize(self._cache)
                        p, chars, ids = row.pos, row.chars, row.ids
                        assert chars is not None and ids is not None
                        forward_chars[i, t : t + k] = chars[p : p + k]  # (k, 50)
                        forward_targets[i, t : t + k] = ids[p + 1 : p + 1 + k]  # (k,)
                        backward_chars[i, t : t + k] = chars[::-1][p : p + k]  # (k, 50)
                        backward_targets[i, t : t + k] = ids[::-1][p + 1 : p + 1 + k]  # (k,)
                    row.pos += k
                    t += k
                n_tokens += t
            if n_tokens == 0:
                return
            if build:
                yield LMBatch(
                    forward_chars=torch.from_numpy(forward_chars),  # (B, T, 50)
                    forward_targets=torch.from_numpy(forward_targets),  # (B, T)
                    backward_chars=torch.from_numpy(backward_chars),  # (B, T, 50)
                    backward_targets=torch.from_numpy(backward_targets),  # (B, T)
                    n_tokens=n_tokens,
                )
