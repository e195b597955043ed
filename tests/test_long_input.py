"""A single 100,000-token line embeds exactly: no windowing, the LSTM reads it end to end."""

import numpy as np

from conftest import ALLENNLP
from elmo_lm import Embedder

N_TOKENS = 100_000
EDGE = 40


def test_100k_token_line_matches_its_prefix_and_suffix():
    """The forward LM at position t sees only tokens <= t, the backward LM only tokens >= t: so the
    forward half at the start equals that of the prefix alone, the backward half at the end that of
    the suffix alone. Any windowing or state loss in the middle would break one of the two."""
    embedder = Embedder(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5")
    rng = np.random.default_rng(7)
    vocabulary = "the a of bank river money , . said market Über 漢字 🎉".split()
    line = [vocabulary[i] for i in rng.integers(0, len(vocabulary), N_TOKENS)]
    layers = embedder.embed_sentence(line)
    assert layers.shape == (3, N_TOKENS, 32) and np.isfinite(layers).all()
    P = 16
    prefix = embedder.embed_sentence(line[:EDGE])
    suffix = embedder.embed_sentence(line[-EDGE:])
    np.testing.assert_allclose(layers[1:, :EDGE, :P], prefix[1:, :, :P], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(layers[1:, -EDGE:, P:], suffix[1:, :, P:], atol=1e-5, rtol=1e-5)
    # and the context matters: the backward half at the start differs from the prefix's
    assert np.abs(layers[2, :EDGE, P:] - prefix[2, :, P:]).max() > 1e-3
