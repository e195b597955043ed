"""Kernel choices measured on this CPU (`elmo tune`, or briefly at a model's first use), kept per CPU model
and torch version, used by the kernels; a broken cache never stops an embedder."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import ALLENNLP
from elmo_lm import Embedder
from elmo_lm.inference import kernel_timing, matmul, packed_lstm, tuning

FIXTURE_MODEL = dict(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A fresh XDG cache folder, and the cached reading of it forgotten before and after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tuning.forget()
    yield tmp_path / "cache"
    tuning.forget()


def test_elmo_tune_measures_and_keeps_the_choices_for_this_cpu(cache_home, tmp_path):
    result = subprocess.run([sys.executable, "-m", "elmo_lm", "tune", "--options", str(FIXTURE_MODEL["options_file"]),
                             "--weights", str(FIXTURE_MODEL["weight_file"])], capture_output=True, text=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(cache_home)})
    assert result.returncode == 0, result.stderr
    data = json.loads((cache_home / "elmo-lm/kernels.json").read_text())
    entry = data[tuning.cpu_key()]  # the key names this CPU and this torch
    assert torch.__version__ in tuning.cpu_key()
    assert set(entry["packing"].values()) <= set(tuning.PACKINGS) and len(entry["packing"]) == 2
    assert list(entry["chunk_rows"].values())[0] > 0
    assert all(isinstance(v, bool) for v in entry["tanh_via_sigmoid"].values())
    assert "packing" in result.stdout
    assert tuning.packing_for(tuple(int(n) for n in next(iter(entry["packing"])).split("x"))) in tuning.PACKINGS


def test_a_cpu_without_tuning_keeps_the_vendor_rules(cache_home):
    assert not any(tuning.tuned().values())
    assert tuning.packing_for((64, 16)) is None and tuning.tanh_via_sigmoid_for(10) is None
    assert tuning.chunk_rows_for((256, 16)) is None


@pytest.mark.parametrize("packing, via_sigmoid, rows", [("plain", True, 3), ("onednn", False, 1024)])
def test_tuned_choices_are_used_and_keep_the_vectors(cache_home, packing, via_sigmoid, rows):
    sentences = [line.split() for line in (ALLENNLP / "sentences.txt").read_text().splitlines()][:8]
    expected = Embedder(**FIXTURE_MODEL).encode(sentences)
    config = Embedder(**FIXTURE_MODEL).model.config
    C, P = config.lstm_dim, config.projection_dim
    (cache_home / "elmo-lm").mkdir(parents=True)
    entry = {"packing": {f"{4 * C}x{P}": packing, f"{P}x{C}": packing},
             "tanh_via_sigmoid": {"1": via_sigmoid, str(10**9): via_sigmoid}, "chunk_rows": {f"{4 * C}x{P}": rows}}
    (cache_home / "elmo-lm/kernels.json").write_text(json.dumps({tuning.cpu_key(): entry}))
    tuning.forget()
    assert tuning.chunk_rows_for((4 * C, P)) == rows
    weight = torch.randn(4 * C, P)
    packed = matmul.pack(weight)
    assert (packed is weight) if packing == "plain" else not isinstance(packed, matmul.MklPacked)
    for a, b in zip(Embedder(**FIXTURE_MODEL).encode(sentences), expected):
        np.testing.assert_allclose(a, b, atol=1e-5)


# ---- at first use: a fake clock, so that the choices (and the vectors) never depend on the machine ----

@pytest.fixture
def autotune(cache_home, monkeypatch):
    """Timing at first use switched on, with a clock that advances by one per reading; returns the
    list of readings' count (how often a candidate was timed)."""
    readings = []

    def clock() -> float:
        readings.append(None)
        return float(len(readings))

    monkeypatch.setenv(tuning.AUTOTUNE_VARIABLE, "1")
    monkeypatch.setattr(kernel_timing, "_clock", clock)
    monkeypatch.setattr(kernel_timing, "_attempted", set())
    return readings


def _entries(cache_home) -> dict:
    return json.loads((cache_home / "elmo-lm/kernels.json").read_text())


def test_first_use_measures_and_stores_then_the_second_only_reads(autotune, cache_home, monkeypatch):
    sentences = [line.split() for line in (ALLENNLP / "sentences.txt").read_text().splitlines()][:4]
    monkeypatch.setenv(tuning.AUTOTUNE_VARIABLE, "0")
    expected = Embedder(**FIXTURE_MODEL).encode(sentences)
    assert not autotune and not (cache_home / "elmo-lm/kernels.json").exists()  # off: nothing timed or written
    monkeypatch.setenv(tuning.AUTOTUNE_VARIABLE, "1")
    first = Embedder(**FIXTURE_MODEL).encode(sentences)
    assert autotune  # timed
    config = Embedder(**FIXTURE_MODEL).model.config
    C, P = config.lstm_dim, config.projection_dim
    entry = _entries(cache_home)[tuning.cpu_key()]
    assert set(entry["packing"]) == {f"{4 * C}x{P}", f"{P}x{C}"} and entry["packing"][f"{P}x{C}"] in tuning.PACKINGS
    assert entry["chunk_rows"][f"{4 * C}x{P}"] == packed_lstm.default_chunk_rows(C)  # a constant clock: ties
    assert entry["tanh_via_sigmoid"] and entry["seconds"]
    for a, b in zip(first, expected):
        np.testing.assert_allclose(a, b, atol=1e-5)
    count = len(autotune)
    monkeypatch.setattr(kernel_timing, "_attempted", set())  # as a new process
    tuning.forget()
    Embedder(**FIXTURE_MODEL).encode(sentences)
    assert len(autotune) == count  # the second use read the entry and timed nothing


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe garbage", None])
def test_an_unreadable_cache_warns_once_and_keeps_the_defaults(autotune, cache_home, content):
    path = cache_home / "elmo-lm/kernels.json"
    if content is None:
        path.mkdir(parents=True)  # a folder where the file should be: unreadable
    else:
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="kernel tuning cache") as caught:
        vectors = Embedder(**FIXTURE_MODEL).encode([["a", "cat"]])
        Embedder(**FIXTURE_MODEL).encode([["a", "dog"]])
    assert len([w for w in caught if "kernel tuning cache" in str(w.message)]) == 1
    assert vectors[0].shape == (3, 2, 32) and np.isfinite(vectors[0]).all()
    assert not autotune  # not measured, and the file left as it was
    assert path.is_dir() if content is None else path.read_bytes() == content


def test_malformed_choices_in_a_readable_cache_are_ignored(cache_home):
    (cache_home / "elmo-lm").mkdir(parents=True)
    (cache_home / "elmo-lm/kernels.json").write_text(json.dumps({tuning.cpu_key(): {
        "packing": ["not", "a", "dict"], "tanh_via_sigmoid": {"x": True, "10": "yes"}, "chunk_rows": {"64x16": -3}}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not any(tuning.tuned().values()) and tuning.tanh_via_sigmoid_for(10) is None


def test_another_cpu_kind_gets_its_own_entry(autotune, cache_home, monkeypatch):
    Embedder(**FIXTURE_MODEL)
    here = tuning.cpu_key()
    first = _entries(cache_home)[here]
    count = len(autotune)
    other = "Another CPU | avx avx2 | torch " + torch.__version__
    monkeypatch.setattr(tuning, "cpu_key", lambda: other)
    tuning.forget()
    assert tuning.needs_tuning(64, 16)  # this CPU's choices are not the other's
    monkeypatch.setattr(kernel_timing, "_attempted", set())
    Embedder(**FIXTURE_MODEL)
    assert len(autotune) > count  # measured again, for the other kind
    entries = _entries(cache_home)
    assert set(entries) == {here, other} and entries[here] == first


def test_a_candidate_replaces_the_rule_only_when_clearly_faster():
    assert kernel_timing._winner({"onednn": 1.0, "mkl": 0.95, "plain": 1.2}, "onednn") == "onednn"  # noise
    assert kernel_timing._winner({"onednn": 1.0, "mkl": 0.5, "plain": 1.2}, "onednn") == "mkl"
    assert kernel_timing._winner({"plain": 1.0, "mkl": 0.99}, "onednn") == "mkl"  # the rule's not there
