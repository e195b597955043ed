"""ElmoLmEmbeddings inside real flair: embedding shapes, and a SequenceTagger trained, saved and loaded in a fresh process."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("flair", reason="flair not installed (elmo-lm[flair])")
from flair.data import Dictionary, Sentence  # noqa: E402
from flair.models import SequenceTagger  # noqa: E402

from elmo_lm import ElmoBiLM, Embedder, ModelConfig  # noqa: E402
from elmo_lm.integrations.flair import ElmoLmEmbeddings  # noqa: E402

TINY = ModelConfig(char_embed_dim=4, filters=((1, 8), (2, 8), (3, 16)), n_highway=1, lstm_dim=32, projection_dim=16)
TAGGED = [("the cat sat", "D N V"), ("a dog ran", "D N V"), ("the dog sat", "D N V"), ("a cat ran", "D N V"),
          ("cats ran", "N V"), ("the dogs sat", "D N V")]


def _embeddings(layers="all", **kwargs):
    torch.manual_seed(0)
    return ElmoLmEmbeddings(ElmoBiLM(TINY).eval(), layers=layers, **kwargs)


@pytest.mark.parametrize("layers, width", [("all", 96), ("top", 32), ("average", 32), ("mix", 32)])
def test_token_vectors_match_the_embedder(layers, width):
    embeddings = _embeddings(layers, batch_size=2)
    assert embeddings.embedding_length == width
    sentences = [Sentence("The bank was closed ."), Sentence("Rivers have banks"), Sentence("x")]
    embeddings.embed(sentences)
    embedder = Embedder(embeddings.elmo)
    for sentence in sentences:
        expected = embedder.embed_sentence([token.text for token in sentence])  # (3, n, 32)
        expected = {"all": expected.transpose(1, 0, 2).reshape(len(sentence), -1), "top": expected[-1],
                    "average": expected.mean(axis=0), "mix": expected.mean(axis=0)}[layers]
        got = np.stack([token.get_embedding(embeddings.name).detach().numpy() for token in sentence])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_params_round_trip():
    embeddings = _embeddings("mix", do_layer_norm=True)
    params = embeddings.save_embeddings(use_state_dict=True)
    from flair.embeddings.base import load_embeddings

    loaded = load_embeddings(params)
    assert isinstance(loaded, ElmoLmEmbeddings) and loaded.layers == "mix" and loaded.embedding_length == 32
    for key, value in embeddings.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def _sentences():
    sentences = []
    for text, tags in TAGGED:
        sentence = Sentence(text)
        for token, tag in zip(sentence, tags.split()):
            token.add_label("pos", tag)
        sentences.append(sentence)
    return sentences


def test_a_trained_tagger_saves_and_loads_in_a_fresh_process(tmp_path):
    tags = Dictionary(add_unk=False)
    for tag in "DNV":
        tags.add_item(tag)
    torch.manual_seed(0)
    tagger = SequenceTagger(hidden_size=16, embeddings=_embeddings("mix"), tag_dictionary=tags, tag_type="pos",
                            use_crf=False, use_rnn=True, locked_dropout=0.0, word_dropout=0.0)
    optimizer = torch.optim.Adam(tagger.parameters(), lr=0.05)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss, count = tagger.forward_loss(_sentences())
        (loss / count).backward()
        optimizer.step()
        losses.append(loss.item() / count)
    assert losses[-1] < 0.2 * losses[0]
    tagger.eval()
    test = [Sentence("the cat ran"), Sentence("a dogs sat")]
    tagger.predict(test)
    predicted = [[token.get_label("pos").value for token in sentence] for sentence in test]
    assert predicted[0] == ["D", "N", "V"]
    tagger.save(tmp_path / "tagger.pt")
    script = textwrap.dedent(f"""
        import elmo_lm.integrations.flair
        from flair.data import Sentence
        from flair.models import SequenceTagger
        tagger = SequenceTagger.load({str(tmp_path / "tagger.pt")!r})
        test = [Sentence("the cat ran"), Sentence("a dogs sat")]
        tagger.predict(test)
        print([[token.get_label("pos").value for token in sentence] for sentence in test])
        print(type(tagger.embeddings).__name__, tagger.embeddings.layers)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == str(predicted) and lines[-1] == "ElmoLmEmbeddings mix"
