"""Golden comparisons against the reference outputs in tests/fixtures (rtol 1e-5, atol 1e-6)."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from conftest import ALLENNLP, BILM_TF
from elmo_lm import Elmo, Embedder, batch_to_ids
from elmo_lm.io import load_model

TOLERANCE = dict(rtol=1e-5, atol=1e-6)
MODELS = {
    "allennlp": (ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5", ALLENNLP / "sentences.json", ALLENNLP),
    "bilm-tf": (BILM_TF / "model/options.json", BILM_TF / "model/lm_weights.hdf5",
                BILM_TF / "model/lm_embeddings_sentences.json", BILM_TF / "model"),
}


def _expected_top_layers(folder, k):
    with h5py.File(folder / f"lm_embeddings_{k}.hdf5", "r") as h5:
        return [np.concatenate([h5[str(i)][0], h5[str(i)][1]], axis=-1) for i in range(10)]  # (n, 2P)


@pytest.mark.parametrize("name", MODELS)
def test_stateful_top_layers_match_the_reference(name):
    """Batch i = [s[0][i], s[1][i], s[2][i]], i = 0..9 in order, on one fresh stateful embedder."""
    options, weights, sentences_file, folder = MODELS[name]
    sentences = json.loads(sentences_file.read_text())
    embedder = Embedder(options_file=options, weight_file=weights, stateful=True)
    got = {k: [] for k in range(3)}
    for i in range(10):
        for k, layers in enumerate(embedder.embed_batch([sentences[k][i].split() for k in range(3)])):
            got[k].append(layers[-1])
    worst = 0.0
    for k in range(3):
        for i, expected in enumerate(_expected_top_layers(folder, k)):
            np.testing.assert_allclose(got[k][i], expected, **TOLERANCE)
            worst = max(worst, float(np.abs(got[k][i] - expected).max()))
    print(f"{name}: max abs diff {worst:.3g}")


def test_elmo_module_reproduces_the_reference_statefully():
    sentences = json.loads((ALLENNLP / "sentences.json").read_text())
    elmo = Elmo(ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5", 1, dropout=0.0, stateful=True,
                scalar_mix_parameters=[-1e9, -1e9, 1e9])  # all weight on the top layer
    expected = {k: _expected_top_layers(ALLENNLP, k) for k in range(3)}
    for i in range(10):
        batch = [sentences[k][i].split() for k in range(3)]
        with torch.no_grad():
            output = elmo(batch_to_ids(batch))
        for k, tokens in enumerate(batch):
            got = output["elmo_representations"][0][k, : len(tokens)].numpy()
            np.testing.assert_allclose(got, expected[k][i], **TOLERANCE)


def test_cli_stateful_embed_reproduces_expected_embeddings(tmp_path):
    """All three layers of sentences.txt, statefully in batches of 10 lines."""
    output = tmp_path / "out.hdf5"
    subprocess.run([sys.executable, "-m", "elmo_lm", "embed", str(ALLENNLP / "sentences.txt"), str(output),
                    "--options", str(ALLENNLP / "options.json"), "--weights", str(ALLENNLP / "lm_weights.hdf5"),
                    "--stateful", "--batch-size", "10", "--quiet"], check=True)
    worst = 0.0
    with h5py.File(output, "r") as got, h5py.File(ALLENNLP / "expected_embeddings.hdf5", "r") as expected:
        for key in map(str, range(30)):
            assert got[key].shape == expected[key].shape == (3, expected[key].shape[1], 32)
            np.testing.assert_allclose(got[key][...], expected[key][...], **TOLERANCE)
            worst = max(worst, float(np.abs(got[key][...] - expected[key][...]).max()))
    print(f"expected_embeddings: max abs diff {worst:.3g}")


def test_cli_token_embeddings_match_the_reference(tmp_path):
    output = tmp_path / "tokens.hdf5"
    subprocess.run([sys.executable, "-m", "elmo_lm", "dump-token-embeddings", str(ALLENNLP / "vocab_test.txt"),
                    str(output), "--options", str(ALLENNLP / "options.json"),
                    "--weights", str(ALLENNLP / "lm_weights.hdf5")], check=True)
    with h5py.File(output, "r") as got, h5py.File(ALLENNLP / "elmo_token_embeddings.hdf5", "r") as expected:
        assert got["embedding"].shape == (458, 16)
        np.testing.assert_allclose(got["embedding"][...], expected["embedding"][...], **TOLERANCE)


@pytest.mark.parametrize("language, weights", [("es", "weights.hdf5"), ("fr", "weights.hdf5"),
                                               ("fr", "weights_zero.hdf5"), ("it", "weights.hdf5")])
def test_multilingual_models_with_training_options_load(language, weights):
    folder = ALLENNLP / "multilingual" / language
    model = load_model(options_file=folder / "options.json", weight_file=folder / weights)
    assert model.config.extra["n_tokens_vocab"] == 3  # training-only keys are kept, not used
    with torch.no_grad():
        layers = model(batch_to_ids([["Hola", "mundo", "."]])).layers
    assert layers.shape == (1, 3, 3, 32) and torch.isfinite(layers).all()
    if weights == "weights_zero.hdf5":
        # Zero convolutions and biases: every token vector, hence every LSTM input and state, is zero.
        assert layers.abs().max() == 0
    else:
        assert layers.abs().max() > 0
