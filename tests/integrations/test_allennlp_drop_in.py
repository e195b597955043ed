"""AllenNLP 0.9's ElmoEmbedder, drop-in: the reference fixtures' expected outputs through it."""

import json

import h5py
import numpy as np
import pytest
import torch

from conftest import ALLENNLP
from elmo_lm import ElmoError
from elmo_lm.allennlp import ElmoEmbedder

TOLERANCE = dict(rtol=1e-5, atol=1e-6)
OPTIONS, WEIGHTS = ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5"


@pytest.fixture(scope="module")
def sentences():
    return json.loads((ALLENNLP / "sentences.json").read_text())


def test_embed_batch_reproduces_the_stateful_reference(sentences):
    """Batch i = [s[0][i], s[1][i], s[2][i]] on one fresh embedder, as the fixture was made."""
    embedder = ElmoEmbedder(str(OPTIONS), str(WEIGHTS))
    for i in range(10):
        batch = [sentences[k][i].split() for k in range(3)]
        got = embedder.embed_batch(batch)
        assert isinstance(got, list) and all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in got)
        for k, tokens in enumerate(batch):
            with h5py.File(ALLENNLP / f"lm_embeddings_{k}.hdf5", "r") as h5:
                expected = np.concatenate([h5[str(i)][0], h5[str(i)][1]], axis=-1)  # (n, 32)
            assert got[k].shape == (3, len(tokens), 32)
            np.testing.assert_allclose(got[k][-1], expected, **TOLERANCE)


@pytest.mark.parametrize("output_format", ["all", "top", "average"])
def test_embed_file_reproduces_expected_embeddings(tmp_path, output_format):
    """All layers of sentences.txt, statefully in batches of 10 lines; top and average derived from them."""
    output = tmp_path / "out.hdf5"
    with open(ALLENNLP / "sentences.txt", encoding="utf-8") as text:
        ElmoEmbedder(OPTIONS, WEIGHTS).embed_file(text, output, output_format=output_format, batch_size=10)
    lines = (ALLENNLP / "sentences.txt").read_text(encoding="utf-8").splitlines()
    with h5py.File(output, "r") as got, h5py.File(ALLENNLP / "expected_embeddings.hdf5", "r") as expected:
        for key in map(str, range(30)):
            layers = expected[key][...]  # (3, n, 32)
            want = {"all": layers, "top": layers[-1], "average": layers.mean(axis=0)}[output_format]
            assert got[key].dtype == np.float32
            np.testing.assert_allclose(got[key][...], want, **TOLERANCE)
        index = json.loads(got["sentence_to_index"][0])
    assert index == {line.strip(): str(i) for i, line in enumerate(lines)}


def test_sentence_keys_and_forgotten_sentences(tmp_path):
    embedder = ElmoEmbedder(OPTIONS, WEIGHTS, stateful=False)
    (tmp_path / "in.txt").write_text("a b c\nd e\n", encoding="utf-8")
    embedder.embed_file(tmp_path / "in.txt", tmp_path / "keys.hdf5", "top", use_sentence_keys=True)
    embedder.embed_file(tmp_path / "in.txt", tmp_path / "plain.hdf5", "top", forget_sentences=True)
    with h5py.File(tmp_path / "keys.hdf5", "r") as keys, h5py.File(tmp_path / "plain.hdf5", "r") as plain:
        assert sorted(keys) == ["a b c", "d e"] and sorted(plain) == ["0", "1"]
        np.testing.assert_array_equal(keys["d e"][...], plain["1"][...])
        assert keys["a b c"].shape == (3, 32)


def test_batch_to_embeddings_shapes_and_mask(sentences):
    embedder = ElmoEmbedder(OPTIONS, WEIGHTS, stateful=False)
    batch = [sentences[0][0].split(), ["short", "one"]]
    activations, mask = embedder.batch_to_embeddings(batch)
    n = len(batch[0])
    assert activations.shape == (2, 3, n, 32) and activations.dtype == torch.float32
    assert mask.dtype == torch.long and mask.tolist() == [[1] * n, [1, 1] + [0] * (n - 2)]
    assert torch.all(activations[1, :, 2:] == 0)
    np.testing.assert_allclose(activations[1, :, :2].numpy(), embedder.embed_sentence(["short", "one"]), **TOLERANCE)


def test_stateful_by_default_and_deterministic_when_asked(sentences):
    sentence = sentences[0][3].split()
    reference = ElmoEmbedder(OPTIONS, WEIGHTS)
    first, second = reference.embed_sentence(sentence), reference.embed_sentence(sentence)
    assert not np.allclose(first[1:], second[1:], atol=1e-6)  # the carried state changed the LSTM layers
    reference.reset_states()
    np.testing.assert_array_equal(reference.embed_sentence(sentence), first)
    fresh = ElmoEmbedder(OPTIONS, WEIGHTS, stateful=False)
    alone = fresh.embed_sentence(sentence)
    in_stream = list(fresh.embed_sentences([s.split() for s in sentences[1]] + [sentence], batch_size=4))[-1]
    np.testing.assert_allclose(in_stream, alone, **TOLERANCE)
    np.testing.assert_allclose(alone, first, **TOLERANCE)  # the reference's first call starts from zeros too


def test_empty_sentence_and_bad_arguments():
    embedder = ElmoEmbedder(OPTIONS, WEIGHTS)
    assert embedder.embed_sentence([]).shape == (3, 0, 32)
    assert [a.shape for a in embedder.embed_batch([["a"], []])] == [(3, 1, 32), (3, 0, 32)]
    with pytest.raises(ElmoError, match="does not download"):
        ElmoEmbedder("https://example.org/options.json", "https://example.org/weights.hdf5")
    with pytest.raises(ElmoError, match="both"):
        ElmoEmbedder(None, WEIGHTS)
    with pytest.raises(ElmoError, match="output_format"):
        embedder.embed_file(ALLENNLP / "sentences.txt", "unused.hdf5", output_format="middle")
