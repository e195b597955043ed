"""Weight formats: AllenNLP/bilm-tf hdf5 and model folders, round trips and clear errors."""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from conftest import ALLENNLP
from elmo_lm import ElmoError, batch_to_ids, load_model, save_pretrained
from elmo_lm.io import load_allennlp_weights, save_allennlp_weights

OPTIONS, WEIGHTS = ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5"


def _datasets(path):
    with h5py.File(path, "r") as h5:
        found = {}
        h5.visititems(lambda name, item: found.__setitem__(name, item[...]) if isinstance(item, h5py.Dataset) else None)
        return found


def test_hdf5_round_trip_is_bit_exact(tmp_path):
    config, state = load_allennlp_weights(OPTIONS, WEIGHTS)
    save_allennlp_weights(config, state, tmp_path / "options.json", tmp_path / "weights.hdf5")
    original, written = _datasets(WEIGHTS), _datasets(tmp_path / "weights.hdf5")
    assert original.keys() == written.keys()
    for name in original:
        assert original[name].dtype == written[name].dtype and np.array_equal(original[name], written[name]), name
    config_again, state_again = load_allennlp_weights(tmp_path / "options.json", tmp_path / "weights.hdf5")
    assert config_again == config
    assert all(torch.equal(state[key], state_again[key]) for key in state)


def test_softmax_is_read_and_written(tmp_path):
    weights = tmp_path / "with_softmax.hdf5"
    shutil.copy(WEIGHTS, weights)
    with h5py.File(weights, "a") as h5, h5py.File(ALLENNLP / "elmo_softmax_weights.hdf5", "r") as softmax:
        h5.create_dataset("softmax/W", data=softmax["softmax/W"][...])
        h5.create_dataset("softmax/b", data=softmax["softmax/b"][...])
    model = load_model(options_file=OPTIONS, weight_file=weights)
    assert model.softmax is not None and model.softmax.weight.shape == (458, 16)
    save_pretrained(model, tmp_path / "folder")
    again = load_model(tmp_path / "folder")
    assert torch.equal(again.softmax.weight, model.softmax.weight)
    save_allennlp_weights(again.config, again.state_dict(), tmp_path / "o.json", tmp_path / "w.hdf5")
    assert np.array_equal(_datasets(tmp_path / "w.hdf5")["softmax/b"], _datasets(weights)["softmax/b"])


def test_model_folder_round_trip_is_bit_exact(tmp_path):
    model = load_model(options_file=OPTIONS, weight_file=WEIGHTS)
    save_pretrained(model, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]
    again = load_model(tmp_path / "model")
    assert again.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_float16_folder_is_half_the_size_and_close(tmp_path):
    model = load_model(options_file=OPTIONS, weight_file=WEIGHTS)
    save_pretrained(model, tmp_path / "f32")
    save_pretrained(model, tmp_path / "f16", dtype=torch.float16)
    size = lambda name: (tmp_path / name / "model.safetensors").stat().st_size
    assert size("f16") < 0.55 * size("f32")
    ids = batch_to_ids([["A", "small", "test", "."]])
    with torch.no_grad():
        diff = (load_model(tmp_path / "f16")(ids).layers - model(ids).layers).abs().max()
    assert 0 < diff < 1e-2


def test_cli_convert_both_ways_is_bit_exact(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "elmo_lm", "convert", *map(str, args)],
                                       capture_output=True, text=True)
    assert run("--options", OPTIONS, "--weights", WEIGHTS, "--to", "folder", "--out", tmp_path / "f").returncode == 0
    assert run("--model", tmp_path / "f", "--to", "allennlp", "--out", tmp_path / "a").returncode == 0
    original, back = _datasets(WEIGHTS), _datasets(tmp_path / "a" / "weights.hdf5")
    assert all(np.array_equal(original[name], back[name]) for name in original)
    refused = run("--model", tmp_path / "f", "--to", "allennlp", "--out", tmp_path / "a")
    assert refused.returncode != 0 and "--overwrite" in refused.stderr and "Traceback" not in refused.stderr


def test_cli_info_describes_the_model():
    result = subprocess.run([sys.executable, "-m", "elmo_lm", "info", str(ALLENNLP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "cell 64, projection 16" in result.stdout and "105,124" in result.stdout


# --- bad weight files: a message naming the file and what is wrong, never a traceback ---

def _broken_copy(tmp_path, edit):
    weights = tmp_path / "weights.hdf5"
    shutil.copy(WEIGHTS, weights)
    with h5py.File(weights, "a") as h5:
        edit(h5)
    return weights


def test_missing_dataset_is_named(tmp_path):
    weights = _broken_copy(tmp_path, lambda h5: h5.__delitem__("CNN_high_1/W_carry"))
    with pytest.raises(ElmoError, match=r"weights.hdf5: missing dataset 'CNN_high_1/W_carry'"):
        load_model(options_file=OPTIONS, weight_file=weights)


def test_shape_that_does_not_fit_is_named(tmp_path):
    def edit(h5):
        del h5["CNN_proj/b_proj"]
        h5.create_dataset("CNN_proj/b_proj", data=np.zeros(17, np.float32))
    weights = _broken_copy(tmp_path, edit)
    with pytest.raises(ElmoError, match=r"'CNN_proj/b_proj' has shape \(17,\), the options say \(16,\)"):
        load_model(options_file=OPTIONS, weight_file=weights)


def test_options_that_do_not_match_the_weights(tmp_path):
    options = json.loads(OPTIONS.read_text())
    options["lstm"]["dim"] = 128
    (tmp_path / "options.json").write_text(json.dumps(options))
    with pytest.raises(ElmoError, match=r"W_0' has shape \(32, 256\), the options say \(32, 512\)"):
        load_model(options_file=tmp_path / "options.json", weight_file=WEIGHTS)


def test_truncated_weight_file(tmp_path):
    weights = tmp_path / "weights.hdf5"
    weights.write_bytes(WEIGHTS.read_bytes()[:200_000])
    with pytest.raises(ElmoError, match="weights.hdf5"):
        load_model(options_file=OPTIONS, weight_file=weights)


def test_options_missing_a_key(tmp_path):
    options = json.loads(OPTIONS.read_text())
    del options["lstm"]["projection_dim"]
    (tmp_path / "options.json").write_text(json.dumps(options))
    with pytest.raises(ElmoError, match="options.json: missing key 'projection_dim'"):
        load_model(options_file=tmp_path / "options.json", weight_file=WEIGHTS)


def test_cli_reports_a_missing_weight_file_without_traceback(tmp_path):
    (tmp_path / "in.txt").write_text("hello world\n")
    result = subprocess.run([sys.executable, "-m", "elmo_lm", "embed", str(tmp_path / "in.txt"),
                             str(tmp_path / "out.hdf5"), "--options", str(OPTIONS),
                             "--weights", str(tmp_path / "nope.hdf5")], capture_output=True, text=True)
    assert result.returncode == 2 and "nope.hdf5: weight file not found" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.hdf5").exists()


def test_truncated_safetensors_is_named(tmp_path):
    save_pretrained(load_model(options_file=OPTIONS, weight_file=WEIGHTS), tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ElmoError, match="model.safetensors"):
        load_model(tmp_path)
