"""The AllenNLP-compatible `Elmo` module and `ScalarMix`."""

import numpy as np
import pytest
import torch

from conftest import ALLENNLP
from elmo_lm import Elmo, ScalarMix, batch_to_ids
from elmo_lm.io import load_model

BATCH = [["The", "bank", "was", "closed", "."], ["I", "sat", "on", "the", "river", "bank"], []]


def _elmo(**kwargs):
    kwargs.setdefault("dropout", 0.0)
    return Elmo(ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5", **kwargs)


def test_outputs_and_mask():
    elmo = _elmo(num_output_representations=2)
    output = elmo(batch_to_ids(BATCH))
    assert len(output["elmo_representations"]) == 2 and elmo.get_output_dim() == 32
    assert output["elmo_representations"][0].shape == (3, 6, 32)
    assert output["mask"].tolist() == [[True] * 5 + [False], [True] * 6, [False] * 6]
    assert output["elmo_representations"][0][0, 5].abs().max() == 0  # padding is zero


def test_default_mix_is_the_average_of_the_layers():
    elmo = _elmo(num_output_representations=1)
    model = load_model(ALLENNLP)
    with torch.no_grad():
        mixed = elmo(batch_to_ids(BATCH))["elmo_representations"][0]
        layers = model(batch_to_ids(BATCH)).layers  # (B, 3, T, 32)
    torch.testing.assert_close(mixed, layers.mean(dim=1), atol=1e-6, rtol=1e-5)


def test_frozen_by_default_and_trainable_on_request():
    frozen = _elmo(num_output_representations=1)
    assert not any(p.requires_grad for p in frozen._elmo_lstm.parameters())
    assert all(p.requires_grad for p in frozen._scalar_mixes.parameters())
    tuned = _elmo(num_output_representations=1, requires_grad=True)
    tuned(batch_to_ids(BATCH))["elmo_representations"][0].sum().backward()
    assert tuned._elmo_lstm.lstm.recurrent_weight[1].grad.abs().sum() > 0


def test_fixed_scalar_mix_parameters_are_not_trained():
    elmo = _elmo(num_output_representations=1, scalar_mix_parameters=[0.0, 0.0, 5.0])
    assert not any(p.requires_grad for p in elmo._scalar_mixes.parameters())


def test_keep_sentence_boundaries_adds_two_positions():
    elmo = _elmo(num_output_representations=1, keep_sentence_boundaries=True)
    output = elmo(batch_to_ids(BATCH))
    assert output["elmo_representations"][0].shape == (3, 8, 32)
    assert output["mask"].sum(dim=1).tolist() == [7, 8, 2]


def test_dropout_applies_only_in_training():
    elmo = _elmo(num_output_representations=1, dropout=0.5)
    ids = batch_to_ids(BATCH)
    elmo.eval()
    a, b = (elmo(ids)["elmo_representations"][0] for _ in range(2))
    assert torch.equal(a, b)
    elmo.train()
    c = elmo(ids)["elmo_representations"][0]
    assert (c == 0).sum() > (a == 0).sum()


def test_vocab_to_cache_gives_the_same_vectors_as_characters():
    vocab = ["@@PADDING@@", *sorted({token for sentence in BATCH for token in sentence})]
    cached = _elmo(num_output_representations=1, vocab_to_cache=vocab)
    plain = _elmo(num_output_representations=1)
    word_ids = torch.tensor([[vocab.index(t) for t in s] + [0] * (6 - len(s)) for s in BATCH])
    with torch.no_grad():
        from_cache = cached(None, word_inputs=word_ids)["elmo_representations"][0]
        from_chars = plain(batch_to_ids(BATCH))["elmo_representations"][0]
    torch.testing.assert_close(from_cache, from_chars, atol=1e-6, rtol=1e-5)


def test_layer_norm_uses_the_statistics_of_unmasked_entries():
    mix = ScalarMix(2, do_layer_norm=True)
    mask = torch.tensor([[True, True, False]])
    layer = torch.tensor([[[1.0, 3.0], [5.0, 7.0], [100.0, 100.0]]])  # the padded row must not count
    mixed = mix([layer, layer], mask)
    expected = (layer - 4.0) / np.sqrt(5.0)
    torch.testing.assert_close(mixed[:, :2], expected[:, :2])


def test_scalar_mix_rejects_wrong_layer_counts():
    with pytest.raises(Exception, match="3 layers"):
        ScalarMix(3, initial_scalar_parameters=[0.0, 1.0])
