"""Any shape an options.json describes, checked against a plain numpy forward pass (naive_elmo.py)."""

import json

import h5py
import numpy as np
import pytest
import torch

from elmo_lm import ElmoBiLM, Embedder, ModelConfig
from elmo_lm.io import save_allennlp_weights
from naive_elmo import embed

VARIANTS = {
    "tanh, no highway, no clips, 1 layer": dict(activation="tanh", n_highway=0, cell_clip=None, proj_clip=None,
                                                n_layers=1),
    "relu, 1 highway, 3 layers with skips": dict(n_highway=1, n_layers=3, use_skip_connections=True),
    "odd filters, tight clips, no skips": dict(filters=((2, 3), (7, 5), (50, 2)), cell_clip=0.5, proj_clip=0.1,
                                              use_skip_connections=False),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_model_matches_the_plain_forward_pass(name, tmp_path):
    config = ModelConfig(char_embed_dim=3, filters=((1, 4), (3, 6)), lstm_dim=12, projection_dim=5,
                         n_highway=2, n_layers=2).replace(**VARIANTS[name])
    torch.manual_seed(0)
    model = ElmoBiLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.6, 0.6)
    save_allennlp_weights(config, model.state_dict(), tmp_path / "options.json", tmp_path / "weights.hdf5")
    with h5py.File(tmp_path / "weights.hdf5", "r") as h5:
        weights = {}
        h5.visititems(lambda n, d: weights.__setitem__(n, d[...].astype(np.float64)) if isinstance(d, h5py.Dataset) else None)
    options = json.loads((tmp_path / "options.json").read_text())
    embedder = Embedder(options_file=tmp_path / "options.json", weight_file=tmp_path / "weights.hdf5")
    sentences = [["A", "tiny", "test", "sentence", "."], ["Über", "漢字", "x" * 60], ["one"]]
    for sentence, got in zip(sentences, embedder.encode(sentences)):
        assert got.shape == (config.n_layers + 1, len(sentence), 2 * config.projection_dim)
        np.testing.assert_allclose(got, embed(weights, options, sentence), atol=2e-5, rtol=1e-4)
