"""Sentence similarity: the pooled vectors are the documented mean of token vectors, the cosine is
symmetric and 1 for a sentence with itself, and `elmo similar` ranks through the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from elmo_lm import Embedder, ElmoError, load_model
from elmo_lm.similarity import nearest, sentence_vectors

from conftest import ALLENNLP, PROJECT_ROOT

OPTIONS, WEIGHTS = ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(load_model(options_file=OPTIONS, weight_file=WEIGHTS))


def test_similarity_is_the_cosine_of_mean_pooled_layers(embedder):
    a, b = ["the", "cat", "sat"], ["a", "dog", "ran", "home"]
    layers_a, layers_b = embedder.embed_sentence(a), embedder.embed_sentence(b)  # (L+1, n, 2P)
    for pooling, pool in (("average", lambda x: x.mean(axis=0).mean(axis=0)),
                          ("top", lambda x: x[-1].mean(axis=0)),
                          ("all", lambda x: x.mean(axis=1).reshape(-1))):
        u, v = pool(layers_a), pool(layers_b)
        expected = float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
        assert embedder.similarity(a, b, layers=pooling) == pytest.approx(expected, abs=1e-5)
        assert embedder.similarity(b, a, layers=pooling) == pytest.approx(expected, abs=1e-5)
    assert embedder.similarity(a, list(a)) == pytest.approx(1.0, abs=1e-5)
    assert embedder.similarity("The cat sat.", ["The", "cat", "sat", "."]) == pytest.approx(1.0, abs=1e-5)
    assert embedder.similarity(a, []) == 0.0
    with pytest.raises(ElmoError, match="layers must be one of"):
        embedder.similarity(a, b, layers="max")


def test_nearest_orders_by_cosine_then_index(embedder):
    vectors = sentence_vectors(embedder, [["x"], ["the", "cat"], ["x"], ["dogs", "bark"]])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    matches = nearest(vectors[0], vectors, k=3)
    assert [m.index for m in matches[:2]] == [0, 2]  # the same sentence twice: ties go by position
    assert matches[0].score == pytest.approx(1.0, abs=1e-5) and matches[1].score == pytest.approx(1.0, abs=1e-5)
    assert matches[2].score < 1.0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elmo_lm", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_similar_ranks_the_same_sentence_first(tmp_path):
    candidates = tmp_path / "candidates.txt"
    candidates.write_text("dogs bark at night\n\nthe cat sat on the mat\nrivers flow to the sea\n", encoding="utf-8")
    result = run_cli("similar", "the cat sat on the mat", "--in", str(candidates), "--top", "2",
                     "--options", str(OPTIONS), "--weights", str(WEIGHTS))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1. 1.000  line 3: the cat sat on the mat"
    assert len(lines) == 2 and lines[1].startswith("2. ")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    failed = run_cli("similar", "a query", "--in", str(empty), "--options", str(OPTIONS), "--weights", str(WEIGHTS))
    assert failed.returncode == 2 and f"{empty}: no sentences" in failed.stderr and "Traceback" not in failed.stderr
