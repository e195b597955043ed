"""The `elmo` component in a real spaCy pipeline (spacy.blank: no model downloads)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

spacy = pytest.importorskip("spacy", reason="spaCy not installed (elmo-lm[spacy])")

from elmo_lm import ElmoBiLM, Embedder, ModelConfig, save_pretrained  # noqa: E402

TINY = ModelConfig(char_embed_dim=4, filters=((1, 8), (2, 8), (3, 16)), n_highway=1, lstm_dim=32, projection_dim=16)
TOLERANCE = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    save_pretrained(ElmoBiLM(TINY), path)
    return path


def _nlp(folder, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": str(folder), **config})  # found through the entry point
    return nlp


def test_layers_on_doc_span_and_token_with_aligned_whitespace(folder):
    nlp = _nlp(folder, layers="top")
    doc = nlp("The bank  was closed.")  # the double space becomes a whitespace token
    words = [token.text for token in doc]
    assert words == ["The", "bank", " ", "was", "closed", "."]
    expected = Embedder(folder).embed_sentence(["The", "bank", "was", "closed", "."])  # (3, 5, 32)
    assert doc._.elmo.shape == (3, 6, 32) and doc.tensor.shape == (6, 32)
    np.testing.assert_allclose(doc._.elmo[:, [0, 1, 3, 4, 5]], expected, **TOLERANCE)
    assert not doc._.elmo[:, 2].any() and not doc.tensor[2].any()
    np.testing.assert_allclose(doc.tensor[[0, 1, 3, 4, 5]], expected[-1], **TOLERANCE)
    np.testing.assert_array_equal(doc[1:4]._.elmo, doc._.elmo[:, 1:4])
    np.testing.assert_array_equal(doc[1]._.elmo, doc._.elmo[:, 1])
    np.testing.assert_array_equal(doc[1].vector, doc.tensor[1])
    np.testing.assert_allclose(doc.vector, doc.tensor.mean(axis=0), **TOLERANCE)
    a, b = doc.tensor[1], doc.tensor[4]
    assert doc[1].similarity(doc[4]) == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), rel=1e-5)
    assert doc[1].similarity(doc[1]) == pytest.approx(1.0, rel=1e-5) and doc.has_vector


@pytest.mark.parametrize("layers, weights", [("mix", [0.0, 1.0, -1.0]), ("average", None), ("all", None)])
def test_doc_tensor_follows_the_layers_setting(folder, layers, weights):
    doc = _nlp(folder, layers=layers, mix_weights=weights)("Rivers have banks")
    all_layers = doc._.elmo
    if layers == "mix":
        w = np.exp(weights) / np.exp(weights).sum()
        expected = np.tensordot(w, all_layers, axes=1)
    elif layers == "average":
        expected = all_layers.mean(axis=0)
    else:
        expected = all_layers.transpose(1, 0, 2).reshape(3, -1)
    np.testing.assert_allclose(doc.tensor, expected, **TOLERANCE)


def test_sentences_run_separately_and_pipe_batches_like_single_calls(folder):
    nlp = _nlp(folder, batch_size=2)
    nlp.add_pipe("sentencizer", first=True)
    texts = ["The bank was closed. It reopened later!", "Rivers have banks.", "x", "A much longer sentence here."]
    batched = list(nlp.pipe(texts, batch_size=3))
    embedder = Embedder(folder)
    for text, doc in zip(texts, batched):
        np.testing.assert_allclose(doc._.elmo, nlp(text)._.elmo, **TOLERANCE)
        for sentence in doc.sents:
            np.testing.assert_allclose(sentence._.elmo, embedder.embed_sentence([t.text for t in sentence]),
                                       **TOLERANCE)
    assert len(list(batched[0].sents)) == 2


def test_saved_pipeline_loads_in_a_fresh_process_without_an_import(folder, tmp_path):
    nlp = _nlp(folder, layers="mix", mix_weights=[1.0, 0.0, 2.0])
    text = "The bank was closed ."
    np.save(tmp_path / "expected.npy", nlp(text).tensor)
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "elmo" / "model" / "model.safetensors").is_file()
    script = textwrap.dedent(f"""
        import numpy as np, spacy  # nothing from elmo_lm: spaCy finds the component through the entry point
        nlp = spacy.load({str(tmp_path / "pipeline")!r})
        doc = nlp({text!r})
        assert nlp.get_pipe("elmo").source.parent.name == "elmo"  # the copy inside the pipeline folder
        np.save({str(tmp_path / "got.npy")!r}, doc.tensor)
        print(nlp.pipe_names, doc[1].similarity(doc[1]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("['elmo']")
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), np.load(tmp_path / "expected.npy"))
