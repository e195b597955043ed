"""`elmo tune`: kernel choices measured on this CPU, kept per CPU model and torch version, used by the kernels."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ALLENNLP
from elmo_lm import Embedder
from elmo_lm.inference import matmul, tuning

FIXTURE_MODEL = dict(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A fresh XDG cache folder, and the cached reading of it forgotten before and after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tuning.tuned.cache_clear()
    yield tmp_path / "cache"
    tuning.tuned.cache_clear()


def test_elmo_tune_measures_and_keeps_the_choices_for_this_cpu(cache_home, tmp_path):
    result = subprocess.run([sys.executable, "-m", "elmo_lm", "tune", "--options", str(FIXTURE_MODEL["options_file"]),
                             "--weights", str(FIXTURE_MODEL["weight_file"])], capture_output=True, text=True,
                            env={**__import__("os").environ, "XDG_CACHE_HOME": str(cache_home)})
    assert result.returncode == 0, result.stderr
    data = json.loads((cache_home / "elmo-lm/kernels.json").read_text())
    entry = data[tuning.cpu_key()]  # the key names this CPU and this torch
    assert torch.__version__ in tuning.cpu_key()
    assert set(entry["packing"].values()) <= set(tuning.PACKINGS) and len(entry["packing"]) == 2
    assert all(isinstance(v, bool) for v in entry["tanh_via_sigmoid"].values())
    assert "packing" in result.stdout
    assert tuning.packing_for(tuple(int(n) for n in next(iter(entry["packing"])).split("x"))) in tuning.PACKINGS


def test_a_cpu_without_tuning_keeps_the_vendor_rules(cache_home):
    assert tuning.tuned() == {} and tuning.packing_for((64, 16)) is None and tuning.tanh_via_sigmoid_for(10) is None


@pytest.mark.parametrize("packing, via_sigmoid", [("plain", True), ("onednn", False)])
def test_tuned_choices_are_used_and_keep_the_vectors(cache_home, packing, via_sigmoid):
    sentences = [line.split() for line in (ALLENNLP / "sentences.txt").read_text().splitlines()][:8]
    expected = Embedder(**FIXTURE_MODEL).encode(sentences)
    config = Embedder(**FIXTURE_MODEL).model.config
    C, P = config.lstm_dim, config.projection_dim
    (cache_home / "elmo-lm").mkdir(parents=True)
    entry = {"packing": {f"{4 * C}x{P}": packing, f"{P}x{C}": packing},
             "tanh_via_sigmoid": {"1": via_sigmoid, str(10**9): via_sigmoid}}
    (cache_home / "elmo-lm/kernels.json").write_text(json.dumps({tuning.cpu_key(): entry}))
    tuning.tuned.cache_clear()
    weight = torch.randn(4 * C, P)
    packed = matmul.pack(weight)
    assert (packed is weight) if packing == "plain" else not isinstance(packed, matmul.MklPacked)
    for a, b in zip(Embedder(**FIXTURE_MODEL).encode(sentences), expected):
        np.testing.assert_allclose(a, b, atol=1e-5)
