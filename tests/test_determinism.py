"""Stateless by default: a sentence's vectors do not depend on its batch, row or history."""

import json
import random

import numpy as np

from conftest import ALLENNLP
from elmo_lm import Embedder

SENTENCES = [s.split() for group in json.loads((ALLENNLP / "sentences.json").read_text()) for s in group]
TARGET = "The cat sat on the mat , and it did not move for a long time .".split()


def _embedder(**kwargs):
    return Embedder(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5", **kwargs)


def test_same_vectors_alone_in_a_mixed_batch_and_after_other_batches():
    embedder = _embedder()
    alone = embedder.embed_sentence(TARGET)
    rng = random.Random(0)
    batch = [rng.choice(SENTENCES)[: rng.randint(1, 60)] for _ in range(31)]
    batch.insert(17, TARGET)  # row 17 of 32, among longer and shorter sentences
    in_batch = embedder.embed_batch(batch)[17]
    for _ in range(10):
        embedder.embed_batch([rng.choice(SENTENCES) for _ in range(32)])
    after = embedder.embed_sentence(TARGET)
    via_encode = embedder.encode([*batch, TARGET], batch_size=7)[-1]
    for other in (in_batch, after, via_encode):
        assert other.shape == alone.shape == (3, len(TARGET), 32)
        np.testing.assert_allclose(other, alone, atol=1e-5, rtol=0)


def test_stateful_mode_carries_state_and_resets():
    embedder = _embedder(stateful=True)
    first = embedder.embed_sentence(TARGET)
    second = embedder.embed_sentence(TARGET)
    assert np.abs(first - second).max() > 1e-3  # the reference behaviour users complained about
    embedder.reset_states()
    np.testing.assert_array_equal(embedder.embed_sentence(TARGET), first)


def test_stateful_smaller_batch_leaves_higher_rows_untouched():
    embedder = _embedder(stateful=True)
    a, b, c = SENTENCES[0], SENTENCES[1], SENTENCES[2]
    embedder.embed_batch([a, b])
    embedder.embed_batch([c])  # row 1 keeps the state it had after b
    row1 = embedder.embed_batch([c, TARGET])[1]
    reference = _embedder(stateful=True)
    reference.embed_batch([a, b])
    np.testing.assert_allclose(reference.embed_batch([c, TARGET])[1], row1, atol=1e-6, rtol=0)
