"""Batches by sentence count or by padded tokens: the same vectors either way; `elmo embed --batch-tokens`."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ALLENNLP
from elmo_lm import Embedder
from elmo_lm.batching import split_batches

FIXTURE_MODEL = dict(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5")


def test_batches_by_tokens_hold_fewer_long_sentences():
    lengths = [40, 38, 10, 9, 9, 8, 3, 1, 0]  # sorted longest first, as the embedder orders them
    order = list(range(len(lengths)))
    batches = list(split_batches(order, lengths, batch_size=100, batch_tokens=100))
    assert [i for batch in batches for i in batch] == order  # every sentence once, in order
    assert batches[0] == [0, 1]  # 2 rows x 42 padded tokens
    assert all(len(b) * (lengths[b[0]] + 2) <= 100 for b in batches)
    assert list(split_batches([0, 1], [500, 400], batch_size=8, batch_tokens=100)) == [[0], [1]]  # one row at least
    assert [len(b) for b in split_batches(order, lengths, batch_size=4, batch_tokens=None)] == [4, 4, 1]
    assert [len(b) for b in split_batches(order[6:], lengths, batch_size=2, batch_tokens=10_000)] == [2, 1]


def test_batch_tokens_give_the_same_vectors():
    sentences = [line.split() for line in (ALLENNLP / "sentences.txt").read_text().splitlines()]
    by_count = Embedder(**FIXTURE_MODEL, batch_size=4).encode(sentences)
    by_tokens = Embedder(**FIXTURE_MODEL, batch_size=64, batch_tokens=60).encode(sentences)
    for a, b in zip(by_count, by_tokens):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _embed(tmp_path, name, *options):
    model = ["--options", str(FIXTURE_MODEL["options_file"]), "--weights", str(FIXTURE_MODEL["weight_file"])]
    return subprocess.run([sys.executable, "-m", "elmo_lm", "embed", str(tmp_path / "in.txt"), str(tmp_path / name),
                           *model, *options, "--quiet"], capture_output=True, text=True)


def test_cli_batches_by_tokens_or_by_sentences(tmp_path):
    (tmp_path / "in.txt").write_text((ALLENNLP / "sentences.txt").read_text(), encoding="utf-8")
    for name, options in [("default.hdf5", []), ("tokens.hdf5", ["--batch-tokens", "50"]),
                          ("sentences.hdf5", ["--batch-size", "3"])]:
        result = _embed(tmp_path, name, *options)
        assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "default.hdf5") as a, h5py.File(tmp_path / "tokens.hdf5") as b, \
            h5py.File(tmp_path / "sentences.hdf5") as c:
        for key in a:
            if key != "sentence_to_index":
                np.testing.assert_allclose(a[key][...], b[key][...], atol=1e-5)
                np.testing.assert_allclose(a[key][...], c[key][...], atol=1e-5)
    result = _embed(tmp_path, "stateful.hdf5", "--stateful", "--batch-tokens", "50")
    assert result.returncode != 0 and "--batch-tokens" in result.stderr and "Traceback" not in result.stderr
