"""The softmax vocabulary: bilm-tf file format, building from a corpus (with and without spilling), CLI."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import FIXTURES
from elmo_lm import vocab as vocab_module
from elmo_lm.errors import ElmoError
from elmo_lm.vocab import Vocabulary, build_vocabulary

TRAIN = FIXTURES / "bilm-tf" / "train"
SHARDS = sorted((FIXTURES / "allennlp" / "corpus").glob("shard*"))


def _word_counts(paths: list[Path]) -> Counter[str]:
    return Counter(token for path in paths for line in path.read_text("utf-8").splitlines() for token in line.split())


def test_load_fixture_vocabulary_and_ids() -> None:
    vocab = Vocabulary.load(TRAIN / "vocab.txt")
    assert len(vocab) == 32
    assert vocab.tokens[:5] == ["<S>", "</S>", "<UNK>", "of", "the"]
    assert (vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.id("of") == 3 and vocab.token(3) == "of"
    assert vocab.id("never-seen") == vocab.unk_id
    assert vocab.ids(["the", "zebra", "</S>"]) == [4, 2, 1]
    assert "neural" in vocab and "zebra" not in vocab
    assert vocab.tokens[-1] == "larger"


def test_save_round_trip_is_the_bilm_tf_format(tmp_path: Path) -> None:
    vocab = Vocabulary.load(TRAIN / "vocab.txt")
    out = tmp_path / "vocab.txt"
    out.write_text("old contents\n")
    vocab.save(out)
    assert out.read_bytes() == (TRAIN / "vocab.txt").read_bytes()  # byte for byte
    assert Vocabulary.load(out) == vocab
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.txt"]  # no temporary file left behind


def test_build_matches_fixture_vocabulary() -> None:
    """bilm-tf's training vocabulary is data.txt's words seen at least twice."""
    built = build_vocabulary([TRAIN / "data.txt"], min_count=2)
    reference = Vocabulary.load(TRAIN / "vocab.txt")
    assert built.tokens[:3] == ["<S>", "</S>", "<UNK>"]
    assert set(built.tokens) == set(reference.tokens)
    counts = _word_counts([TRAIN / "data.txt"])
    expected = sorted((w for w, c in counts.items() if c >= 2), key=lambda w: (-counts[w], w))
    assert built.tokens[3:] == expected  # descending count, ties in code point order
    assert built.counts is not None
    assert built.counts[3:] == [counts[w] for w in expected]
    n_sentences = len([line for line in (TRAIN / "data.txt").read_text().splitlines() if line.strip()])
    assert built.counts[:2] == [n_sentences, n_sentences]
    assert built.counts[2] == sum(c for c in counts.values() if c < 2)  # tokens that become <UNK>
    assert built.corpus_tokens == sum(counts.values())


def test_spilling_to_disk_gives_identical_counts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spills: list[int] = []
    original = vocab_module._Spill

    class CountingSpill(original):  # type: ignore[misc, valid-type]
        def __init__(self, scratch: Path, depth: int) -> None:
            spills.append(depth)
            super().__init__(scratch, depth)

    in_memory = build_vocabulary(SHARDS)
    assert spills == []
    monkeypatch.setattr(vocab_module, "_Spill", CountingSpill)
    spilled = build_vocabulary(SHARDS, max_distinct=200, spill_dir=tmp_path)
    assert 0 in spills and 1 in spills  # spilled, and partitions large enough to split again
    assert spilled.tokens == in_memory.tokens
    assert spilled.counts == in_memory.counts
    counts = _word_counts(SHARDS)
    assert len(in_memory) == 3 + len(counts)
    assert in_memory.counts is not None
    assert dict(zip(in_memory.tokens[3:], in_memory.counts[3:])) == counts
    assert list(tmp_path.iterdir()) == []  # spill files cleaned up


def test_min_count_and_max_size_counting_the_specials() -> None:
    counts = _word_counts(SHARDS)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    small = build_vocabulary(SHARDS, max_size=10, max_distinct=500)
    assert len(small) == 10 and small.tokens[3:] == ranked[:7]
    assert small.counts is not None and small.counts[2] == sum(counts.values()) - sum(counts[w] for w in ranked[:7])
    frequent = build_vocabulary(SHARDS, min_count=5)
    assert frequent.tokens[3:] == [w for w in ranked if counts[w] >= 5]
    with pytest.raises(ElmoError, match="at least 3"):
        build_vocabulary(SHARDS, max_size=2)


def test_build_with_the_builtin_tokenizer(tmp_path: Path) -> None:
    from elmo_lm.tokenize import tokenize

    corpus = tmp_path / "raw.txt"
    corpus.write_text("Don't stop, U.S. friends.\nWe said: don't!\n", encoding="utf-8")
    expected = Counter(t for line in corpus.read_text("utf-8").splitlines() for t in tokenize(line))
    built = build_vocabulary([corpus], tokenize=True)
    assert built.counts is not None
    assert dict(zip(built.tokens[3:], built.counts[3:])) == expected
    assert built.tokens != build_vocabulary([corpus]).tokens


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"the\n<S>\n</S>\n<UNK>\n", r"line 1 must be '<S>' \(found 'the'\)"),
        (b"<S>\n<UNK>\n</S>\n", r"line 2 must be '</S>'"),
        (b"<S>\n</S>\n", r"line 3 must be '<UNK>' \(the vocabulary ends before it\)"),
        (b"", r"line 1 must be '<S>'"),
        (b"<S>\n</S>\n<UNK>\nof\nthe\nof\n", r"line 6 repeats 'of' \(first at .*line 4\)"),
        (b"<S>\n</S>\n<UNK>\nof\n\xff\xfe\n", r"line 5 is not valid UTF-8"),
        (b"<S>\n</S>\n<UNK>\n\nof\n", r"line 4 is empty"),
        (b"<S>\n</S>\n<UNK>\nnew york\n", r"line 4 holds whitespace"),
    ],
)
def test_load_errors_name_the_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad_vocab.txt"
    path.write_bytes(content)
    with pytest.raises(ElmoError, match=message) as caught:
        Vocabulary.load(path)
    assert str(caught.value).startswith(str(path))


def test_load_accepts_crlf_trailing_blank_lines_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"<S>\r\n</S>\r\n<UNK>\r\nof\r\n\r\n\n")
    assert Vocabulary.load(path).tokens == ["<S>", "</S>", "<UNK>", "of"]
    path.write_bytes(b"<S>\n</S>\n<UNK>\nof")
    assert Vocabulary.load(path).tokens == ["<S>", "</S>", "<UNK>", "of"]
    with pytest.raises(ElmoError, match="vocabulary file not found"):
        Vocabulary.load(tmp_path / "missing.txt")
    with pytest.raises(ElmoError, match="does not exist"):
        Vocabulary(["<S>", "</S>", "<UNK>"]).save(tmp_path / "no" / "vocab.txt")


def _elmo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "elmo_lm", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_vocab_writes_the_file_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "vocab.txt"
    pattern = str(FIXTURES / "allennlp" / "corpus" / "shard[0-4]")
    done = _elmo("vocab", pattern, str(TRAIN / "data.txt"), "-o", str(out), "--min-count", "2", "--max-size", "100",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = build_vocabulary([pattern, TRAIN / "data.txt"], min_count=2, max_size=100)
    assert Vocabulary.load(out) == expected
    assert f"read {expected.corpus_tokens:,} tokens" in done.stdout
    assert "wrote 100 tokens" in done.stdout


def test_cli_vocab_errors_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"fine line\ncaf\xe9 au lait\n")
    done = _elmo("vocab", str(bad), "-o", str(tmp_path / "v.txt"), cwd=tmp_path)
    assert done.returncode == 2
    assert f"elmo: error: {bad}: line 2 is not valid UTF-8" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "v.txt").exists()
    missing = _elmo("vocab", str(tmp_path / "nothing*.txt"), "-o", str(tmp_path / "v.txt"), cwd=tmp_path)
    assert missing.returncode == 2 and "no files matched" in missing.stderr and "Traceback" not in missing.stderr
