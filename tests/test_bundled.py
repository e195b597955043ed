"""The model that ships inside the package (elmo_lm/pretrained/elmo-en-small, written by
scripts/bundle_model.py): used when no model is named, by `Embedder()`, `elmo info` and `elmo embed`.

These tests fail (they do not skip) while the folder is missing: a release without its model is broken.
The in-process tests read `elmo_lm.bundled.BUNDLED_MODEL` when they run, so they can be pointed at
another folder with monkeypatch; the CLI tests run the real entry point in a subprocess, on the real folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import elmo_lm.bundled
from elmo_lm import Embedder
from elmo_lm.io import load_model

SENTENCE = "The bank raised its interest rates .".split()
OTHER_CONTEXT = "We sat on the grassy bank of the river .".split()
MAX_BYTES = 25_000_000


def elmo(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m elmo_lm ARGS` with one thread (the cores are shared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "elmo_lm", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture
def bundled() -> Path:
    """The bundled folder; a failure, not a skip, when this checkout has none."""
    folder = elmo_lm.bundled.BUNDLED_MODEL
    assert (folder / "config.json").is_file(), (
        f"no bundled model at {folder}: run `python scripts/bundle_model.py RUN_DIR` to write it")
    return folder


def expected_shape(folder: Path, n: int) -> tuple[int, int, int]:
    """(L+1, n, 2P) from the folder's config.json, read as plain JSON."""
    lstm = json.loads((folder / "config.json").read_text(encoding="utf-8"))["lstm"]
    return lstm["n_layers"] + 1, n, 2 * lstm["projection_dim"]


def test_bundled_folder_is_small_and_complete(bundled):
    """What the wheel carries: config.json + model.safetensors, under 25 MB, and it loads."""
    names = {path.name for path in bundled.iterdir()}
    assert {"config.json", "model.safetensors"} <= names
    assert not any(name.startswith(".") for name in names)  # no leftover temporary file
    assert sum(path.stat().st_size for path in bundled.iterdir()) < MAX_BYTES
    model = load_model(bundled)
    assert model.softmax is None  # embedding never uses it; it would double the size


def test_embedder_without_a_model_uses_the_bundled_one(bundled):
    embedder = Embedder()
    layers = embedder.embed_sentence(SENTENCE)
    assert layers.shape == expected_shape(bundled, len(SENTENCE))
    assert layers.dtype == np.float32 and np.isfinite(layers).all()
    assert np.abs(layers).max() > 0
    np.testing.assert_array_equal(layers, Embedder(bundled).embed_sentence(SENTENCE))
    # The same word in another sentence: the token layer is context-free, the LSTM layers are not.
    other = embedder.embed_sentence(OTHER_CONTEXT)
    here, there = SENTENCE.index("bank"), OTHER_CONTEXT.index("bank")
    np.testing.assert_allclose(layers[0, here], other[0, there], rtol=1e-5, atol=1e-6)
    for layer in range(1, layers.shape[0]):
        assert not np.allclose(layers[layer, here], other[layer, there], atol=1e-3), layer


def test_elmo_info_without_a_model_describes_the_bundled_one(bundled):
    result = elmo("info")
    assert result.returncode == 0, result.stderr
    model = load_model(bundled)
    count = sum(p.numel() for p in model.token_encoder.parameters()) + sum(p.numel() for p in model.lstm.parameters())
    parameters = re.search(r"^parameters\s+([\d,]+)", result.stdout, re.MULTILINE)
    assert parameters is not None, result.stdout
    assert int(parameters.group(1).replace(",", "")) == count
    assert re.search(r"^model\s+.*elmo-en-small", result.stdout, re.MULTILINE), result.stdout


def test_elmo_embed_without_a_model_writes_the_contract(bundled, tmp_path):
    """DESIGN.md: one float32 dataset per input line ("0", "1", ...), (L+1, n, 2P), an empty line
    (L+1, 0, 2P), and `sentence_to_index`; the vectors are the bundled model's."""
    lines = [" ".join(SENTENCE), "", " ".join(OTHER_CONTEXT)]
    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out.hdf5"
    result = elmo("embed", tmp_path / "in.txt", out, "--quiet")
    assert result.returncode == 0, result.stderr
    embedder = Embedder(bundled)
    with h5py.File(out, "r") as h5:
        assert sorted(h5.keys()) == ["0", "1", "2", "sentence_to_index"]
        for i, line in enumerate(lines):
            assert h5[str(i)].dtype == np.float32
            assert h5[str(i)].shape == expected_shape(bundled, len(line.split()))
        np.testing.assert_allclose(h5["0"][...], embedder.embed_sentence(SENTENCE), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h5["2"][...], embedder.embed_sentence(OTHER_CONTEXT), rtol=1e-5, atol=1e-5)
        index = json.loads(h5["sentence_to_index"][0])
    assert index == {line: i for i, line in enumerate(lines)}
