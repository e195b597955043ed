"""Model folders with int8-stored matrices: exact dequantisation, vectors close to float32, old folders
unchanged, a one-line error for each malformed folder, and the CLI on such a folder."""

import json
import shutil
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import ALLENNLP
from elmo_lm import ElmoError, Embedder, load_model, save_pretrained
from elmo_lm.io.int8_storage import int8_keys

OPTIONS, WEIGHTS = ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5"
SENTENCES = [line.split() for line in (ALLENNLP / "sentences.txt").read_text(encoding="utf-8").splitlines()]
HIGHWAY = "token_encoder.highway_carry.0.weight"  # (F, F), output channels on axis 0
LSTM = "lstm.input_weight.1"  # (2, P, 4C), output channels on the last axis, per direction


@pytest.fixture(scope="module")
def model():
    return load_model(options_file=OPTIONS, weight_file=WEIGHTS)


@pytest.fixture(scope="module")
def int8_folder(model, tmp_path_factory):
    """The fixture model with every large matrix in int8, the rest float16."""
    folder = tmp_path_factory.mktemp("int8") / "model"
    save_pretrained(model, folder, dtype=torch.float16, int8=int8_keys(model.state_dict(), "matrices"))
    return folder


def _expected(weight: torch.Tensor, reduced: tuple[int, ...]) -> torch.Tensor:
    """Round to nearest on a grid of (largest magnitude / 127) per output channel, in float32."""
    scale = weight.abs().amax(dim=reduced, keepdim=True) / 127
    return torch.round(weight / scale) * scale


def test_int8_weights_load_as_their_exact_dequantised_values(model, int8_folder):
    loaded = load_model(int8_folder).state_dict()
    original = model.state_dict()
    assert torch.equal(loaded[HIGHWAY], _expected(original[HIGHWAY], (1,)))
    assert torch.equal(loaded[LSTM], _expected(original[LSTM], (1,)))
    assert not torch.equal(loaded[HIGHWAY], original[HIGHWAY].half().float())  # really int8, not float16
    stored = set(int8_keys(original, "matrices"))
    assert len(stored) == 11  # 4 highway, the token projection, 6 LSTM matrices
    for key in set(original) - stored:  # everything else as in a float16 folder
        assert torch.equal(loaded[key], original[key].half().float()), key


def test_int8_folder_names_its_storage_and_is_smaller(model, int8_folder, tmp_path):
    config = json.loads((int8_folder / "config.json").read_text())
    assert config["format_version"] == 2
    assert config["storage"] == {key: "int8" for key in sorted(int8_keys(model.state_dict(), "matrices"))}
    tensors = load_file(str(int8_folder / "model.safetensors"))
    assert tensors[HIGHWAY].dtype == torch.int8 and tensors[HIGHWAY + ".scale"].shape == (124, 1)
    assert tensors[LSTM].dtype == torch.int8 and tensors[LSTM + ".scale"].shape == (2, 1, 256)
    assert tensors[LSTM + ".scale"].dtype == torch.float32
    save_pretrained(model, tmp_path / "f16", dtype=torch.float16)
    size = lambda folder: (folder / "model.safetensors").stat().st_size
    assert size(int8_folder) < 0.65 * size(tmp_path / "f16")


def test_int8_folder_vectors_are_close_to_float32(model, int8_folder):
    reference = np.concatenate(list(Embedder(model).embed_sentences(SENTENCES)), axis=1)  # (3, N, 32)
    vectors = np.concatenate(list(Embedder(load_model(int8_folder)).embed_sentences(SENTENCES)), axis=1)  # (3, N, 32)
    cosine = (reference * vectors).sum(-1) / (np.linalg.norm(reference, axis=-1) * np.linalg.norm(vectors, axis=-1))
    assert 0 < np.abs(reference - vectors).max() < 0.04  # 0.020 measured (values up to 7.1)
    assert cosine.mean() > 0.99995 and cosine.min() > 0.9995  # 0.999994 and 0.99991 measured


def test_every_precision_runs_on_an_int8_folder(int8_folder):
    float32 = Embedder(int8_folder).embed_sentence(SENTENCES[0])
    for precision in ("bfloat16", "int8"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a CPU's "no faster here" about a precision
            other = Embedder(int8_folder, precision=precision).embed_sentence(SENTENCES[0])
        assert other.shape == float32.shape and np.abs(other - float32).max() < 0.1


def test_folder_without_int8_is_unchanged(model, tmp_path):
    save_pretrained(model, tmp_path / "plain", dtype=torch.float16)
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["format_version"] == 1 and "storage" not in config
    assert all(t.dtype == torch.float16 for t in load_file(str(tmp_path / "plain" / "model.safetensors")).values())
    loaded = load_model(tmp_path / "plain").state_dict()
    assert all(torch.equal(loaded[key], value.half().float()) for key, value in model.state_dict().items())


def test_unknown_int8_weight_is_refused(model, tmp_path):
    with pytest.raises(ValueError, match="no weight 'lstm.nothing'"):
        save_pretrained(model, tmp_path / "x", int8=["lstm.nothing"])
    with pytest.raises(ValueError, match="not a float matrix"):
        save_pretrained(model, tmp_path / "x", int8=["token_encoder.projection.bias"])


# --- malformed folders: one line naming the file and the key ---

def _edit_tensors(folder, edit):
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


MALFORMED = {
    "missing scale": (lambda f: _edit_tensors(f, lambda t: t.pop(HIGHWAY + ".scale")),
                      rf"model.safetensors: int8 weight '{HIGHWAY}' has no scales '{HIGHWAY}.scale'"),
    "scale of the wrong shape": (lambda f: _edit_tensors(f, lambda t: t.update({HIGHWAY + ".scale": torch.ones(124)})),
                                 rf"model.safetensors: scales '{HIGHWAY}.scale' have shape \(124,\), which does not "
                                 rf"fit '{HIGHWAY}' \(124, 124\)"),
    "scale of the wrong size": (lambda f: _edit_tensors(f, lambda t: t.update({LSTM + ".scale": torch.ones(2, 1, 128)})),
                                rf"model.safetensors: scales '{LSTM}.scale' have shape \(2, 1, 128\)"),
    "integer scale": (lambda f: _edit_tensors(f, lambda t: t.update({HIGHWAY + ".scale": torch.ones(124, 1, dtype=torch.int8)})),
                      rf"model.safetensors: scales '{HIGHWAY}.scale' are int8, not float"),
    "non-finite scale": (lambda f: _edit_tensors(f, lambda t: t[HIGHWAY + ".scale"].__setitem__(3, float("nan"))),
                         rf"model.safetensors: scales '{HIGHWAY}.scale' hold a non-finite value"),
    "weight not int8": (lambda f: _edit_tensors(f, lambda t: t.update({HIGHWAY: t[HIGHWAY].half()})),
                        rf"model.safetensors: '{HIGHWAY}' is stored as float16, config.json says int8"),
    "unknown storage type": (lambda f: _edit_config(f, lambda c: c["storage"].update({HIGHWAY: "int4"})),
                             rf"config.json: storage of '{HIGHWAY}' is 'int4'; this version of elmo-lm reads only "
                             r"'int8'"),
    "storage not a mapping": (lambda f: _edit_config(f, lambda c: c.update(storage=[HIGHWAY])),
                              r"config.json: 'storage' must map weight names to a storage type"),
    "storage names a weight not stored": (
        lambda f: _edit_config(f, lambda c: c["storage"].update({"lstm.extra_weight.0": "int8"})),
        r"model.safetensors: 'lstm.extra_weight.0' is listed under 'storage' in config.json but not stored"),
    "scales of a weight not listed": (lambda f: _edit_config(f, lambda c: c["storage"].pop(HIGHWAY)),
                                      rf"model.safetensors: '{HIGHWAY}.scale' scales a weight that config.json does "
                                      r"not list under 'storage'"),
    "newer format": (lambda f: _edit_config(f, lambda c: c.update(format_version=3)),
                     r"config.json: format_version 3; this version of elmo-lm reads 1 and 2"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_int8_folder_gives_one_line(int8_folder, tmp_path, case):
    folder = tmp_path / "model"
    shutil.copytree(int8_folder, folder)
    edit, message = MALFORMED[case]
    edit(folder)
    with pytest.raises(ElmoError, match=message) as raised:
        load_model(folder)
    assert "\n" not in str(raised.value) and str(folder) in str(raised.value)


def _embed(*args):
    return subprocess.run([sys.executable, "-m", "elmo_lm", "embed", *map(str, args)], capture_output=True, text=True)


def test_cli_embeds_with_an_int8_folder(model, int8_folder, tmp_path):
    (tmp_path / "in.txt").write_text("\n".join(" ".join(s) for s in SENTENCES[:3]) + "\n")
    done = _embed(tmp_path / "in.txt", tmp_path / "out.hdf5", "--model", int8_folder, "--layers", "top")
    assert done.returncode == 0, done.stderr
    expected = list(Embedder(load_model(int8_folder)).embed_sentences(SENTENCES[:3]))
    with h5py.File(tmp_path / "out.hdf5", "r") as out:
        for i, layers in enumerate(expected):
            np.testing.assert_allclose(out[str(i)][...], layers[-1], rtol=1e-5, atol=1e-6)


def test_cli_names_a_malformed_int8_folder_in_one_line(int8_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(int8_folder, folder)
    MALFORMED["missing scale"][0](folder)
    (tmp_path / "in.txt").write_text("hello world\n")
    done = _embed(tmp_path / "in.txt", tmp_path / "out.hdf5", "--model", folder)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"has no scales '{HIGHWAY}.scale'" in done.stderr.strip() and len(done.stderr.strip().splitlines()) == 1
