"""The inference kernels compute the same function as the autograd path; bfloat16 stays close.

Speed itself is measured in benchmarks/embed_speed.py, not asserted here.
"""

import numpy as np
import pytest
import torch

import elmo_lm.model as model_module
from elmo_lm import ElmoBiLM, Embedder, ModelConfig, batch_to_ids
from elmo_lm.cpu_features import bfloat16_runs
from elmo_lm.inference import matmul, use_precision
from elmo_lm.model import LstmState

SENTENCES = [["The", "cat", "sat", "on", "the", "mat", "."], [], ["a"], ["Über", "漢字", "x" * 60, "the", "the"],
             ["bank", "river", "money", ",", "said", "the", "bank", "of", "the", "river", "."]]


def _model(**changes) -> ElmoBiLM:
    config = ModelConfig(char_embed_dim=4, filters=((1, 4), (2, 6), (5, 8)), n_highway=1, lstm_dim=24,
                         projection_dim=8, n_layers=2, cell_clip=2.0, proj_clip=1.5).replace(**changes)
    torch.manual_seed(0)
    model = ElmoBiLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.5, 0.5)
    return model.eval()


def _autograd(model, *args, **kwargs):
    """The plain per-step path: grad on and parameters requiring grad."""
    with torch.enable_grad():
        output = model(*args, **kwargs)
    return output


@pytest.mark.parametrize("changes", [{}, dict(filters=((2, 3), (7, 5), (50, 2)), use_skip_connections=False),
                                     dict(n_layers=3, cell_clip=None, proj_clip=None, activation="tanh")])
def test_inference_equals_autograd_path(changes):
    model = _model(**changes)
    char_ids = batch_to_ids(SENTENCES)
    slow = _autograd(model, char_ids)
    assert slow.layers.requires_grad  # really the autograd path
    with torch.no_grad():
        fast = model(char_ids, return_state=False)  # the stateless shortcut
        general = model(char_ids)  # every position, final state
    assert fast.state is None
    for output in (fast, general):
        assert output.layers.shape == slow.layers.shape
        np.testing.assert_allclose(output.layers.numpy(), slow.layers.detach().numpy(), atol=1e-5, rtol=1e-5)
        assert torch.equal(output.mask, slow.mask)
    np.testing.assert_allclose(general.state.h.numpy(), slow.state.h.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(general.state.c.numpy(), slow.state.c.detach().numpy(), atol=1e-5)


def test_inference_equals_autograd_with_state_and_boundaries():
    model = _model()
    char_ids = batch_to_ids(SENTENCES)
    torch.manual_seed(1)
    L, P, C = model.config.n_layers, model.config.projection_dim, model.config.lstm_dim
    state = LstmState(torch.randn(L, 2, len(SENTENCES), P), torch.randn(L, 2, len(SENTENCES), C))
    slow = _autograd(model, char_ids, state=state, keep_boundaries=True)
    with torch.no_grad():
        fast = model(char_ids, state=state, keep_boundaries=True)
    np.testing.assert_allclose(fast.layers.numpy(), slow.layers.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(fast.state.h.numpy(), slow.state.h.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(fast.state.c.numpy(), slow.state.c.detach().numpy(), atol=1e-5)


def test_lstm_with_different_lengths_per_direction():
    """Training's call: `model.lstm(x (2,B,T,P), mask (2,B,T), state)`, each direction its own rows."""
    model = _model()
    torch.manual_seed(2)
    x = torch.randn(2, 4, 9, model.config.projection_dim)
    lengths = torch.tensor([[9, 3, 0, 7], [5, 9, 2, 1]])
    mask = torch.arange(9) < lengths[..., None]  # (2, 4, 9)
    with torch.enable_grad():
        slow_outputs, slow_state = model.lstm(x, mask)
    with torch.no_grad():
        fast_outputs, fast_state = model.lstm(x, mask)
    for slow, fast in zip(slow_outputs, fast_outputs):
        np.testing.assert_allclose((fast * mask[..., None]).numpy(), (slow * mask[..., None]).detach().numpy(),
                                   atol=1e-5)
    np.testing.assert_allclose(fast_state.h.numpy(), slow_state.h.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(fast_state.c.numpy(), slow_state.c.detach().numpy(), atol=1e-5)


def test_token_encoder_inference_equals_autograd_for_every_length():
    model = _model(filters=((1, 4), (3, 5), (7, 6), (50, 2)))
    tokens = ["", "a", "ab", "x" * 40, "y" * 44, "z" * 45, "w" * 47, "v" * 48, "u" * 60, "<S>", "Über"]
    ids = batch_to_ids([tokens])[0]  # (N, 50)
    with torch.enable_grad():
        slow = model.token_encoder(ids)
    with torch.no_grad():
        fast = model.token_encoder(ids)
    np.testing.assert_allclose(fast.numpy(), slow.detach().numpy(), atol=1e-6, rtol=1e-5)


def test_small_chunks_give_the_same_result(monkeypatch):
    model = _model()
    char_ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        whole = model(char_ids, return_state=False).layers
        monkeypatch.setattr(model_module, "LSTM_CHUNK_BYTES", 2048)
        monkeypatch.setattr(model_module, "ENCODER_CHUNK_BYTES", 2048)
        chunked = model(char_ids, return_state=False).layers
    np.testing.assert_allclose(chunked.numpy(), whole.numpy(), atol=1e-6)


def test_bfloat16_is_close_to_float32():
    model = _model(lstm_dim=64, projection_dim=32)
    with torch.no_grad():  # weights of a realistic scale for these sizes
        for parameter in model.lstm.parameters():
            parameter.mul_(0.3)
    exact = Embedder(model).encode(SENTENCES)
    approximate = Embedder(model, precision="bfloat16").encode(SENTENCES)
    if not bfloat16_runs():  # this CPU has no bfloat16 instructions: the embedder ran float32 (test_cpu_features)
        for a, b in zip(exact, approximate):
            np.testing.assert_array_equal(a, b)
        return
    cosines = []
    for a, b in zip(exact, approximate):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        dot = (a * b).sum(-1)
        cosines.extend((dot / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).ravel())
    assert np.mean(cosines) >= 0.999
    assert 0 < max(np.abs(a - b).max() for a, b in zip(exact, approximate) if a.size) < 0.1


def test_bfloat16_refuses_autograd():
    model = _model()
    with pytest.raises(ValueError, match="inference"), use_precision("bfloat16"):
        model(batch_to_ids(SENTENCES))


def test_token_cache_on_and_off_agree():
    model = _model()
    plain = Embedder(model, batch_size=2)
    cached = Embedder(model, batch_size=2, token_cache=True)
    tiny = Embedder(model, batch_size=2, token_cache=5)  # fills and empties itself on the way
    expected = plain.encode(SENTENCES * 2)
    for embedder in (cached, tiny):
        for _ in range(2):
            for a, b in zip(embedder.encode(SENTENCES * 2), expected):
                np.testing.assert_allclose(a, b, atol=1e-6)  # matmul rounding differs with the batch's tokens
    assert 0 < len(tiny._token_cache) <= 5


def test_thread_count_does_not_change_results():
    model = _model()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = Embedder(model).encode(SENTENCES)
        torch.set_num_threads(2)
        two = Embedder(model).encode(SENTENCES)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_stateful_embedder_uses_the_general_path_and_matches_autograd():
    model = _model()
    embedder = Embedder(model, stateful=True, batch_size=5)
    got = [embedder.embed_batch(SENTENCES) for _ in range(2)][1]  # the second batch starts from stored state
    with torch.enable_grad():
        first = model(batch_to_ids(SENTENCES))
        second = model(batch_to_ids(SENTENCES), state=first.state)
    for row, sentence in enumerate(SENTENCES):
        np.testing.assert_allclose(got[row], second.layers[row, :, : len(sentence)].detach().numpy(), atol=1e-5)


def test_bfloat16_embedder_keeps_its_own_model_in_bfloat16(tmp_path):
    """Loaded by the embedder itself: the weight matrices are converted in place, not copied."""
    from elmo_lm.io import save_allennlp_weights

    model = _model(lstm_dim=64, projection_dim=32)
    save_allennlp_weights(model.config, model.state_dict(), tmp_path / "options.json", tmp_path / "weights.hdf5")
    owned = Embedder(options_file=tmp_path / "options.json", weight_file=tmp_path / "weights.hdf5",
                     precision="bfloat16")
    # float32 on a CPU without bfloat16 instructions (test_cpu_features)
    dtype = torch.bfloat16 if bfloat16_runs() else torch.float32
    assert owned.model.lstm.recurrent_weight[0].dtype == owned.model.lstm.input_weight[0].dtype == dtype
    assert owned.model.lstm.bias[0].dtype == torch.float32
    assert tuple(owned.model.lstm.recurrent_weight[0].shape) == (2, 32, 256)  # same shape, other strides
    borrowed = Embedder(model, precision="bfloat16")
    assert model.lstm.recurrent_weight[0].dtype == torch.float32  # a model passed in is left alone
    for a, b in zip(owned.encode(SENTENCES), borrowed.encode(SENTENCES)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.skipif(not matmul.ONEDNN, reason="this PyTorch build has no oneDNN")
def test_embedders_own_model_keeps_step_weights_only_packed_and_gives_the_same_vectors(tmp_path):
    """No plain copy beside the packed one: the placeholders hold no memory; the vectors do not change."""
    from elmo_lm.io import save_allennlp_weights

    model = _model(lstm_dim=64, projection_dim=32)
    save_allennlp_weights(model.config, model.state_dict(), tmp_path / "options.json", tmp_path / "weights.hdf5")
    owned = Embedder(options_file=tmp_path / "options.json", weight_file=tmp_path / "weights.hdf5")
    lstm = owned.model.lstm
    for weights in (lstm.recurrent_weight, lstm.projection_weight):
        assert all(w.device.type == "meta" for w in weights)
    assert tuple(lstm.recurrent_weight[0].shape) == (2, 32, 256) and lstm.input_weight[0].device.type == "cpu"
    for a, b in zip(owned.encode(SENTENCES), Embedder(model).encode(SENTENCES)):
        np.testing.assert_allclose(a, b, atol=1e-5)  # float32 rounding: other kernels for other layouts
    with pytest.raises(ValueError, match="only in torch.float32"):
        with torch.inference_mode():
            arguments = owned._token_vectors([["a", "b"]])
            with use_precision("bfloat16"):
                owned.model.contextualize_indexed(*arguments)


def test_elmo_module_in_bfloat16_is_close_to_float32():
    from elmo_lm import Elmo

    model = _model(lstm_dim=64, projection_dim=32)
    ids = batch_to_ids(SENTENCES)
    exact = Elmo(None, None, 1, dropout=0.0, module=model)(ids)["elmo_representations"][0]
    approximate = Elmo(None, None, 1, dropout=0.0, module=model, precision="bfloat16")(ids)["elmo_representations"][0]
    mask = batch_to_ids(SENTENCES).gt(0).any(-1)
    cosine = torch.nn.functional.cosine_similarity(exact[mask], approximate[mask], dim=-1)
    assert approximate.dtype == torch.float32 and cosine.mean() >= 0.999


def test_cli_embed_precision_and_token_cache(tmp_path):
    import subprocess
    import sys

    import h5py

    from conftest import ALLENNLP

    (tmp_path / "in.txt").write_text("The cat sat on the mat .\n\nthe cat , the mat and the cat .\n")
    outputs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.hdf5"
        result = subprocess.run([sys.executable, "-m", "elmo_lm", "embed", str(tmp_path / "in.txt"), str(out),
                                 "--options", str(ALLENNLP / "options.json"), "--weights",
                                 str(ALLENNLP / "lm_weights.hdf5"), "--precision", precision, "--token-cache",
                                 "--threads", "1", "-q"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        with h5py.File(out, "r") as h5:
            outputs[precision] = [h5[str(i)][...] for i in range(3)]
    for a, b in zip(outputs["float32"], outputs["bfloat16"]):
        assert a.shape == b.shape and b.dtype == np.float32
        if not bfloat16_runs():  # this CPU has no bfloat16 instructions: float32 ran (test_cpu_features)
            np.testing.assert_array_equal(a, b)
        elif a.size:
            cosine = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
            assert cosine.mean() >= 0.999 and 0 < np.abs(a - b).max() < 0.1


@pytest.mark.parametrize("via_sigmoid", [True, False])
@pytest.mark.parametrize("elements", [100, 65536])
def test_tanh_matches_torch_tanh_either_way(monkeypatch, via_sigmoid, elements):
    from elmo_lm.inference import packed_lstm

    monkeypatch.setattr(packed_lstm, "TANH_VIA_SIGMOID", via_sigmoid)
    x = torch.linspace(-20, 20, elements).reshape(-1, 4)[:, 1:3]  # a strided view, as the gates' slices are
    expected = torch.tanh(x)
    copied = packed_lstm._tanh(x)
    assert copied.data_ptr() != x.data_ptr()
    result = packed_lstm._tanh_(x)
    assert result.data_ptr() == x.data_ptr()  # in place
    torch.testing.assert_close(copied, expected, rtol=0, atol=2e-7)
    torch.testing.assert_close(result, expected, rtol=0, atol=2e-7)
