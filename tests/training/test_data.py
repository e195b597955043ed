"""Training data: corpus expansion, sentence streaming, bilm-tf style batches, shuffling, ranks, memory."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES

from elmo_lm.chars import token_to_ids
from elmo_lm.corpus import expand_corpus, iter_sentences
from elmo_lm.errors import ElmoError
from elmo_lm.training import data as data_module
from elmo_lm.training.data import (
    IGNORE_INDEX,
    LMBatch,
    LMBatches,
    shuffle_buffered,
    training_sentences,
)
from elmo_lm.vocab import Vocabulary, build_vocabulary

CORPUS = FIXTURES / "allennlp" / "corpus"
SHARDS = sorted(CORPUS.glob("shard*"))

TINY_VOCAB = Vocabulary(["<S>", "</S>", "<UNK>", "a", "b", "c", "d", "e", "f"])


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _corpus_sentences(paths: list[Path]) -> list[tuple[str, ...]]:
    return [tuple(line.split()) for path in paths for line in path.read_text("utf-8").splitlines() if line.split()]


class _CharDecoder:
    """Turns (T, 50) character-id rows back into token strings (None for a padding position)."""

    def __init__(self, tokens: list[str]) -> None:
        self.rows = {tuple(token_to_ids(t)): t for t in tokens}
        self.rows[tuple(token_to_ids("<S>"))] = "<S>"
        self.rows[tuple(token_to_ids("</S>"))] = "</S>"

    def __call__(self, chars: torch.Tensor) -> list[str | None]:
        return [None if not any(row) else self.rows[tuple(row)] for row in chars.tolist()]


def _targets(batch_row: torch.Tensor, vocab: Vocabulary) -> list[str | None]:
    return [None if i == IGNORE_INDEX else vocab.token(i) for i in batch_row.tolist()]


# --- corpus files and sentences -------------------------------------------------------------------


def test_expand_corpus_sorts_globs_and_names_what_matched_nothing(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", "c.dat"):
        _write(tmp_path / name, "x\n")
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "d.txt", "x\n")
    assert expand_corpus([str(tmp_path / "*.txt")]) == [tmp_path / "a.txt", tmp_path / "b.txt"]
    assert expand_corpus([tmp_path / "c.dat", str(tmp_path / "**" / "*.txt"), tmp_path / "a.txt"]) == [
        tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.dat", tmp_path / "sub" / "d.txt"]
    with pytest.raises(ElmoError, match=r"no files matched .*\*\.xml"):
        expand_corpus([str(tmp_path / "*.txt"), str(tmp_path / "*.xml")])
    with pytest.raises(ElmoError, match="is a directory"):
        expand_corpus([tmp_path / "sub"])


def test_iter_sentences_streams_lines_and_skips_blank_ones(tmp_path: Path) -> None:
    first = _write(tmp_path / "1.txt", "a  b\tc\n\n   \n\u00a0\nd\r\n")
    second = _write(tmp_path / "2.txt", "e " + "x" * 80 + " f")  # no final newline, a long token
    assert list(iter_sentences([first, second])) == [["a", "b", "c"], ["d"], ["e", "x" * 80, "f"]]


def test_iter_sentences_with_the_builtin_tokenizer(tmp_path: Path) -> None:
    from elmo_lm.tokenize import tokenize

    path = _write(tmp_path / "raw.txt", "Don't stop, friends.\n")
    assert list(iter_sentences([path], tokenize=True)) == [tokenize("Don't stop, friends.")]
    assert list(iter_sentences([path])) == [["Don't", "stop,", "friends."]]


def test_invalid_utf8_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good line\n\nbad \xc3\x28 line\n")
    sentences = iter_sentences([path])
    assert next(sentences) == ["good", "line"]
    with pytest.raises(ElmoError, match=r"bad\.txt: line 3 is not valid UTF-8"):
        next(sentences)
    batches = LMBatches([path], TINY_VOCAB, batch_size=2, unroll_steps=3, shuffle=False)
    with pytest.raises(ElmoError, match="line 3"):
        list(batches)


# --- batch layout ---------------------------------------------------------------------------------


def test_tiny_corpus_batches_exactly(tmp_path: Path) -> None:
    """Targets shifted by one, sentences packed back to back per row, backward reversed, OOV, padding."""
    path = _write(tmp_path / "tiny.txt", "a b c\nd e\n\nf\nzz b\n")
    batches = list(LMBatches([path], TINY_VOCAB, batch_size=2, unroll_steps=4, shuffle=False))
    chars = _CharDecoder(["a", "b", "c", "d", "e", "f", "zz"])
    assert len(batches) == 2
    for batch in batches:
        assert batch.forward_chars.shape == batch.backward_chars.shape == (2, 4, 50)
        assert batch.forward_targets.shape == batch.backward_targets.shape == (2, 4)
        assert batch.forward_chars.dtype == batch.forward_targets.dtype == torch.int64
    first, second = batches
    # row 0 holds "a b c"; row 1 holds "d e" and then the start of "f"
    assert chars(first.forward_chars[0]) == ["<S>", "a", "b", "c"]
    assert _targets(first.forward_targets[0], TINY_VOCAB) == ["a", "b", "c", "</S>"]
    assert chars(first.forward_chars[1]) == ["<S>", "d", "e", "<S>"]
    assert _targets(first.forward_targets[1], TINY_VOCAB) == ["d", "e", "</S>", "f"]
    assert chars(first.backward_chars[0]) == ["</S>", "c", "b", "a"]
    assert _targets(first.backward_targets[0], TINY_VOCAB) == ["c", "b", "a", "<S>"]
    assert chars(first.backward_chars[1]) == ["</S>", "e", "d", "</S>"]
    assert _targets(first.backward_targets[1], TINY_VOCAB) == ["e", "d", "<S>", "f"]
    assert first.n_tokens == 8
    # row 0 takes the next sentence, "zz b" (zz is unknown: characters kept, target <UNK>); row 1
    # finishes "f"; then the data has run out and the rest is padding
    assert chars(second.forward_chars[0]) == ["<S>", "zz", "b", None]
    assert _targets(second.forward_targets[0], TINY_VOCAB) == ["<UNK>", "b", "</S>", None]
    assert chars(second.forward_chars[1]) == ["f", None, None, None]
    assert _targets(second.forward_targets[1], TINY_VOCAB) == ["</S>", None, None, None]
    assert chars(second.backward_chars[0]) == ["</S>", "b", "zz", None]
    assert _targets(second.backward_targets[0], TINY_VOCAB) == ["b", "<UNK>", "<S>", None]
    assert chars(second.backward_chars[1]) == ["f", None, None, None]
    assert _targets(second.backward_targets[1], TINY_VOCAB) == ["<S>", None, None, None]
    assert second.n_tokens == 4
    assert (second.forward_chars[1, 1:] == 0).all() and (second.forward_targets[1, 1:] == IGNORE_INDEX).all()


def test_a_sentence_longer_than_the_window_spans_batches(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(11)]
    path = _write(tmp_path / "long.txt", " ".join(words) + "\nshort\n")
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", *words, "short"])
    batches = list(LMBatches([path], vocab, batch_size=1, unroll_steps=5, shuffle=False))
    assert len(batches) == 3  # 12 + 2 pairs in windows of 5
    inputs = [t for b in batches for t in _CharDecoder([*words, "short"])(b.forward_chars[0])]
    targets = [t for b in batches for t in _targets(b.forward_targets[0], vocab)]
    assert inputs == ["<S>", *words, "<S>", "short", None]
    assert targets == [*words, "</S>", "short", "</S>", None]
    backward = [t for b in batches for t in _targets(b.backward_targets[0], vocab)]
    assert backward == [*reversed(words), "<S>", "short", "<S>", None]


def _row_sentences(batches: list[LMBatch], vocab: Vocabulary) -> list[list[tuple[str, ...]]]:
    """Per row, the sentences read from the forward targets (split at </S>), checked against the
    forward inputs and the backward stream on the way."""
    n_rows = batches[0].forward_targets.shape[0]
    decode = _CharDecoder(vocab.tokens)
    rows = []
    for r in range(n_rows):
        forward_in = [t for b in batches for t in decode(b.forward_chars[r])]
        forward_out = [t for b in batches for t in _targets(b.forward_targets[r], vocab)]
        backward_in = [t for b in batches for t in decode(b.backward_chars[r])]
        backward_out = [t for b in batches for t in _targets(b.backward_targets[r], vocab)]
        real = forward_out.index(None) if None in forward_out else len(forward_out)
        assert all(t is None for t in forward_out[real:] + forward_in[real:] + backward_out[real:])
        sentences, start = [], 0
        for end in [i for i in range(real) if forward_out[i] == "</S>"]:
            words = forward_out[start:end]
            assert forward_in[start : end + 1] == ["<S>", *words]
            assert backward_in[start : end + 1] == ["</S>", *reversed(words)]
            assert backward_out[start : end + 1] == [*reversed(words), "<S>"]
            sentences.append(tuple(words))
            start = end + 1
        assert start == real  # every row ends at a sentence end
        rows.append(sentences)
    return rows


def test_rows_are_independent_streams_filled_greedily_in_row_order() -> None:
    vocab = build_vocabulary(SHARDS[:2])
    batches = list(LMBatches(SHARDS[:2], vocab, batch_size=5, unroll_steps=7, shuffle=False))
    rows = _row_sentences(batches, vocab)
    order = _corpus_sentences(SHARDS[:2])
    assert sorted(s for row in rows for s in row) == sorted(order)
    # replay the rule on sentence lengths alone: batch by batch, rows in order, a row that has
    # consumed its sentence's n + 1 inputs takes the next sentence of the stream
    expected: list[list[tuple[str, ...]]] = [[] for _ in range(5)]
    left, stream, taken = [0] * 5, iter(order), 0
    while any(left) or taken < len(order):
        for r in range(5):
            room = 7
            while room:
                if not left[r]:
                    sentence = next(stream, None)
                    if sentence is None:
                        break
                    expected[r].append(sentence)
                    taken += 1
                    left[r] = len(sentence) + 1
                step = min(room, left[r])
                left[r] -= step
                room -= step
    assert rows == expected
    assert expected[3][:2] == order[3:5]  # a short sentence: row 3 takes the next one before row 4 starts
    assert sum(b.n_tokens for b in batches) == sum(len(s) + 1 for s in order)
    for batch in batches:
        assert batch.n_tokens == int((batch.forward_targets != IGNORE_INDEX).sum())
        assert batch.n_tokens == int((batch.backward_targets != IGNORE_INDEX).sum())
    assert batches[0].n_tokens == 5 * 7 and batches[-1].n_tokens < 5 * 7


# --- shuffling, determinism, ranks ----------------------------------------------------------------


def _same(a: list[LMBatch], b: list[LMBatch]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x.forward_chars, y.forward_chars) and torch.equal(x.forward_targets, y.forward_targets)
        and torch.equal(x.backward_chars, y.backward_chars) and torch.equal(x.backward_targets, y.backward_targets)
        for x, y in zip(a, b)
    )


def test_same_seed_same_batches_and_other_seeds_or_epochs_differ() -> None:
    vocab = build_vocabulary(SHARDS)

    def run(seed: int, epoch: int = 0, **options: int) -> list[LMBatch]:
        batches = LMBatches([str(CORPUS / "shard*")], vocab, 8, 10, seed=seed, shuffle_buffer=50, **options)
        batches.set_epoch(epoch)
        return list(batches)

    reference = run(seed=1)
    assert _same(reference, run(seed=1))
    assert not _same(reference, run(seed=2))
    assert not _same(reference, run(seed=1, epoch=1))
    assert _same(run(seed=1, epoch=1), run(seed=1, epoch=1))
    # a tiny character cache (restarting often) changes nothing
    assert _same(reference, run(seed=1, char_cache_size=16))
    shuffled = [s for row in _row_sentences(reference, vocab) for s in row]
    assert sorted(shuffled) == sorted(_corpus_sentences(SHARDS))  # a permutation of the corpus


def test_resuming_mid_epoch_gives_the_remaining_batches() -> None:
    vocab = build_vocabulary(SHARDS[:3])
    batches = LMBatches(SHARDS[:3], vocab, 4, 10, seed=3, shuffle_buffer=20)
    full = list(batches.iter_epoch(2))
    assert _same(list(batches.iter_epoch(2, start_batch=7)), full[7:])


@pytest.mark.parametrize(("files", "world_size"), [(SHARDS[:4], 3), (SHARDS[:1], 2)])
def test_ranks_read_disjoint_shares_that_cover_the_corpus(files: list[Path], world_size: int) -> None:
    vocab = build_vocabulary(files)
    corpus = Counter(_corpus_sentences(files))
    shares = []
    for rank in range(world_size):
        batches = list(LMBatches(files, vocab, 3, 8, seed=5, rank=rank, world_size=world_size, shuffle_buffer=30))
        shares.append(Counter(s for row in _row_sentences(batches, vocab) for s in row))
    assert sum(shares, Counter()) == corpus
    for a in range(world_size):
        for b in range(a + 1, world_size):
            assert not shares[a] & shares[b]
    sizes = [share.total() for share in shares]
    assert max(sizes) - min(sizes) <= 1  # every w-th line of the global stream


def test_rank_share_is_every_wth_line_of_the_global_stream(tmp_path: Path) -> None:
    path = _write(tmp_path / "lines.txt", "".join(f"s{i}\n\n" for i in range(10)))
    shares = [list(training_sentences([path], rank=r, world_size=3, shuffle=False)) for r in range(3)]
    assert shares == [[[f"s{i}"] for i in range(r, 10, 3)] for r in range(3)]


def test_arguments_are_checked(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.txt", "a\n")
    with pytest.raises(ElmoError, match="rank must be in 0 .. 1"):
        LMBatches([path], TINY_VOCAB, 2, 3, rank=2, world_size=2)
    with pytest.raises(ElmoError, match="unroll_steps must be at least 1"):
        LMBatches([path], TINY_VOCAB, 2, 0)
    with pytest.raises(ElmoError, match="no files matched"):
        LMBatches([str(tmp_path / "none*")], TINY_VOCAB, 2, 3)


# --- bounded memory and speed ---------------------------------------------------------------------


def test_shuffle_buffer_holds_at_most_its_size() -> None:
    pulled = 0

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield i

    stream = shuffle_buffered(source(), 64, random.Random(0))
    next(stream)
    assert pulled == 65  # one item out only once the buffer is full
    rest = list(stream)
    assert pulled == 1000 and len(rest) == 999
    # in flight at any moment: items pulled minus items yielded never exceeds the buffer
    outputs, pulled = 0, 0
    for _ in shuffle_buffered(source(), 64, random.Random(0)):
        outputs += 1
        assert pulled - outputs <= 64
    output = list(shuffle_buffered(range(1000), 64, random.Random(1)))
    assert sorted(output) == list(range(1000)) and output != list(range(1000))


def test_batching_streams_instead_of_reading_the_corpus_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A corpus 50x the shuffle buffer: the first batch comes after reading about one buffer of lines."""
    path = _write(tmp_path / "big.txt", "".join(f"w{i % 97} w{i % 13} w{i % 7}\n" for i in range(5000)))
    read = 0
    original = data_module.nonblank_lines

    def counting(paths):  # type: ignore[no-untyped-def]
        nonlocal read
        for line in original(paths):
            read += 1
            yield line

    monkeypatch.setattr(data_module, "nonblank_lines", counting)
    vocab = build_vocabulary([path])
    read = 0
    batches = iter(LMBatches([path], vocab, batch_size=4, unroll_steps=5, seed=0, shuffle_buffer=100))
    next(batches)
    assert read <= 100 + 4 * 5 + 1
    remaining = sum(1 for _ in batches)
    assert read == 5000 and remaining > 300
