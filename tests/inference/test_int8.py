"""int8 mode: matmuls close to float32, embeddings close to float32 on the fixture models, the CLI.

Its speed and memory are measured in benchmarks/embed_speed.py (`--precisions float32 int8`).
"""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from conftest import ALLENNLP
from elmo_lm import ElmoError, Embedder
from elmo_lm.inference import int8, use_precision
from elmo_lm.inference.matmul import linear
from elmo_lm.io import load_model

pytestmark = pytest.mark.skipif(not int8.AVAILABLE, reason="this PyTorch build has no int8 engine")

SENTENCES_FILE = ALLENNLP / "sentences.txt"
FIXTURE_MODEL = dict(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5")


def _cosines(exact: list[np.ndarray], approximate: list[np.ndarray]) -> np.ndarray:
    """`(L+1, N)`: the cosine of every token's vector at every layer."""
    per_sentence = []
    for a, b in zip(exact, approximate):
        assert a.shape == b.shape and b.dtype == np.float32
        dot = (a * b).sum(-1)
        per_sentence.append(dot / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30))
    return np.concatenate(per_sentence, axis=1)


@pytest.mark.parametrize("per_row", [False, True])
def test_int8_linear_is_close_to_float32(per_row):
    torch.manual_seed(0)
    weight, bias = torch.randn(96, 40) * 0.1, torch.randn(96)  # (N, K), (N,)
    x = torch.randn(70, 40)  # (M, K)
    quantized = int8.quantize(weight, per_row_inputs=per_row)
    expected = x @ weight.t() + bias
    got = linear(x, quantized, bias)  # through the common entry point
    assert got.dtype == torch.float32 and got.shape == (70, 96)
    error = (got - expected).norm() / expected.norm()
    assert 0 < error < 0.03  # approximate, not exact
    assert linear(x[:0], quantized).shape == (0, 96)
    np.testing.assert_allclose(linear(torch.zeros(3, 40), quantized, bias).numpy(), bias.expand(3, 96).numpy(),
                               atol=1e-6)  # zero stays exact


def test_per_row_inputs_keep_small_rows_accurate():
    """A row 1000x smaller than the others: one scale per call loses it, a scale per row does not."""
    torch.manual_seed(0)
    weight = torch.randn(64, 128) * 0.1
    x = torch.randn(8, 128)
    x[0] *= 1e-3
    expected = x[0] @ weight.t()
    per_row = linear(x, int8.quantize(weight, per_row_inputs=True))[0]
    assert torch.nn.functional.cosine_similarity(per_row, expected, dim=0) > 0.999


def test_vnni_flags_decide_the_input_range():
    assert int8.has_vnni(frozenset({"avx2", "avx512_vnni"})) and int8.has_vnni(frozenset({"avx2", "avx_vnni"}))
    assert not int8.has_vnni(frozenset({"avx2", "avx512f"}))


@pytest.mark.parametrize("model", ["allennlp", "bundled"])
def test_int8_embeddings_are_close_to_float32(model):
    """Mean cosine >= 0.999 and the worst token's >= 0.99 at every layer (the issue's bounds)."""
    arguments = FIXTURE_MODEL if model == "allennlp" else {}
    sentences = [line.split() for line in SENTENCES_FILE.read_text().splitlines()]
    exact = Embedder(**arguments).encode(sentences)
    cosines = _cosines(exact, Embedder(**arguments, precision="int8").encode(sentences))
    assert cosines.shape[0] == 3
    assert (cosines.mean(axis=1) >= 0.999).all(), cosines.mean(axis=1)
    assert (cosines.min(axis=1) >= 0.99).all(), cosines.min(axis=1)
    assert cosines.min() < 1 - 1e-6  # really int8


def test_int8_embedder_keeps_its_own_model_in_int8_and_leaves_a_given_one_alone():
    owned = Embedder(**FIXTURE_MODEL, precision="int8")
    lstm, encoder = owned.model.lstm, owned.model.token_encoder
    for weights in (lstm.input_weight, lstm.recurrent_weight, lstm.projection_weight):
        assert all(w.device.type == "meta" for w in weights)  # only the int8 copies hold memory
    assert encoder.highway_carry[0].weight.device.type == "meta"
    assert encoder.convolutions[0].weight.device.type == "meta"
    assert lstm.bias[0].device.type == "cpu" and encoder.char_embedding.weight.device.type == "cpu"
    model = load_model(None, FIXTURE_MODEL["options_file"], FIXTURE_MODEL["weight_file"])
    borrowed = Embedder(model, precision="int8")
    assert model.lstm.recurrent_weight[0].device.type == "cpu"  # quantised copies are cached beside it
    sentences = [["The", "cat", "sat", "."], ["a"], []]
    for a, b in zip(owned.encode(sentences), borrowed.encode(sentences)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="inference"), use_precision("int8"):
        model(torch.ones(1, 2, 50, dtype=torch.long))  # grad mode, parameters need grad


def test_int8_on_another_device_is_a_clear_error():
    with pytest.raises(ElmoError, match="int8"):
        Embedder(**FIXTURE_MODEL, precision="int8", device="meta")


def test_cli_embeds_in_int8(tmp_path):
    text = "The first line .\nAnother sentence , longer than the first one .\n"
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    model = ["--options", str(FIXTURE_MODEL["options_file"]), "--weights", str(FIXTURE_MODEL["weight_file"])]
    for precision in ("float32", "int8"):
        result = subprocess.run([sys.executable, "-m", "elmo_lm", "embed", str(tmp_path / "in.txt"),
                                 str(tmp_path / f"{precision}.hdf5"), *model, "--precision", precision, "--quiet"],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "float32.hdf5") as exact, h5py.File(tmp_path / "int8.hdf5") as approximate:
        cosines = _cosines([exact[str(i)][...] for i in range(2)], [approximate[str(i)][...] for i in range(2)])
    assert cosines.min() >= 0.99 and cosines.mean() >= 0.999
