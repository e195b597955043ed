"""ELMoForManyLangs models: a small random model built and run with their own code (PyPI `elmoformanylangs`),
converted by `elmo convert --from elmoformanylangs`, gives the same vectors through elmo-lm (<= 1e-5)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from elmo_lm import ElmoError, Embedder, load_model

SENTENCES = [["Das", "Haus", "ist", "groß", "."], ["中文", "句子", "很", "短", "中文" * 9 + "句子"], ["unbekannt", "ÿ", "x"],
             ["a", "tokenwithmorecharactersthanthelimit", "élan"], ["Haus"]]
CONFIG = {
    "encoder": {"name": "elmo", "projection_dim": 16, "cell_clip": 3, "proj_clip": 3, "dim": 32, "n_layers": 2},
    "token_embedder": {"name": "cnn", "activation": "relu", "filters": [[1, 8], [2, 8], [3, 16]], "n_highway": 2,
                       "word_dim": 12, "char_dim": 6, "max_characters_per_token": 20},
    "classifier": {"name": "sampled_softmax", "n_samples": 8},
    "dropout": 0.1,
}
CHARACTERS = ["<oov>", "<pad>", "<bow>", "<eow>", "<bos>", "<eos>", *sorted(set("DasHuitgrß.中文句子很短knbeölmcrxwhé"))]
WORDS = ["<oov>", "<pad>", "<bos>", "<eos>", "Das", "Haus", "ist", "groß", ".", "中文", "很", "a"]


def _build_their_model(folder):
    """A random model of the tiny shape above, saved the way their training code saves one."""
    pytest.importorskip("elmoformanylangs", reason="elmoformanylangs not installed (its own CI environment)")
    from elmoformanylangs.frontend import Model
    from elmoformanylangs.modules.embedding_layer import EmbeddingLayer

    torch.manual_seed(0)
    char2id = {c: i for i, c in enumerate(CHARACTERS)}
    word2id = {w: i for i, w in enumerate(WORDS)}
    model = Model(CONFIG, EmbeddingLayer(12, word2id, fix_emb=False), EmbeddingLayer(6, char2id, fix_emb=False))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.4, 0.4)  # every weight and bias random, the LSTM biases too
    folder.mkdir()
    torch.save(model.token_embedder.state_dict(), folder / "token_embedder.pkl")
    torch.save(model.encoder.state_dict(), folder / "encoder.pkl")
    (folder / "char.dic").write_text("".join(f"{c}\t{i}\n" for c, i in char2id.items()), encoding="utf-8")
    (folder / "word.dic").write_text("".join(f"{w}\t{i}\n" for w, i in word2id.items()), encoding="utf-8")
    (folder / "cnn_tiny.json").write_text(json.dumps(CONFIG))
    (folder / "config.json").write_text(json.dumps({"config_path": "cnn_tiny.json", "model": str(folder)}))


def test_converted_model_gives_their_vectors(tmp_path):
    _build_their_model(tmp_path / "theirs")
    from elmoformanylangs import Embedder as TheirEmbedder

    theirs = TheirEmbedder(str(tmp_path / "theirs"), batch_size=8).sents2elmo(SENTENCES, output_layer=-2)
    subprocess.run([sys.executable, "-m", "elmo_lm", "convert", "--from", "elmoformanylangs", str(tmp_path / "theirs"),
                    "--to", "folder", "--out", str(tmp_path / "ours")], check=True)
    options = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert options["token_encoder"]["type"] == "elmoformanylangs"
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == [
        "char.dic", "config.json", "model.safetensors", "word.dic"]
    ours = Embedder(tmp_path / "ours").encode(SENTENCES)
    worst = 0.0
    for got, want in zip(ours, theirs):
        assert got.shape == want.shape == (3, want.shape[1], 32)
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= 1e-5, worst
    print(f"elmoformanylangs: max abs diff {worst:.2g}")
    # Re-saving the converted model keeps its vocabularies; a second load gives the same vectors.
    from elmo_lm import save_pretrained

    save_pretrained(load_model(tmp_path / "ours"), tmp_path / "again")
    for got, want in zip(Embedder(tmp_path / "again").encode(SENTENCES), ours):
        np.testing.assert_array_equal(got, want)


def test_a_folder_that_is_not_theirs_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    done = subprocess.run([sys.executable, "-m", "elmo_lm", "convert", "--from", "elmoformanylangs", str(tmp_path),
                           "--to", "folder", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 2 and "config_path" in done.stderr and "Traceback" not in done.stderr
    from elmo_lm.io.convert import convert_elmoformanylangs as convert

    with pytest.raises(ElmoError, match="not found"):
        convert(tmp_path / "absent", tmp_path / "out")
