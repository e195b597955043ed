"""Nearest neighbours in context (`ContextIndex`, `elmo neighbors`) on the tiny fixture model."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ALLENNLP, PROJECT_ROOT
from elmo_lm import ElmoError
from elmo_lm.neighbors import ContextIndex, find_word

OPTIONS, WEIGHTS = ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5"
REFERENCE = [
    "I deposited the cheque at the bank on Monday .",
    "We sat on the bank of the river and watched the boats .",
    "The bank raised its interest rates again .",
    "Fish swim near the muddy bank .",
    "She plays the violin .",
]


@pytest.fixture(scope="module")
def index(fixture_embedder) -> ContextIndex:
    return ContextIndex(fixture_embedder, [line.split() for line in REFERENCE])


def test_scores_are_cosines_best_first(index):
    query = "The bank lent us money .".split()
    results = index.query(query, 1, k=4)
    assert [layer[0].layer for layer in results] == [0, 1, 2]
    vectors = index.embedder.embed_sentence(query)[:, 1]  # (L+1, 2P)
    for layer, neighbours in enumerate(results):
        scores = [n.score for n in neighbours]
        assert scores == sorted(scores, reverse=True) and len(neighbours) == 4
        for n in neighbours:
            other = index.embedder.embed_sentence(n.tokens)[layer, n.position]
            cosine = other @ vectors[layer] / np.linalg.norm(other) / np.linalg.norm(vectors[layer])
            assert n.score == pytest.approx(float(cosine), abs=2e-3)  # vectors are kept in float16


def test_layer_zero_ignores_context(index):
    """The token encoder gives every "bank" the same vector, so all four tie at the top."""
    neighbours = index.query("The bank lent us money .".split(), 1, k=4, layers=[0])[0]
    assert [n.token for n in neighbours] == ["bank"] * 4
    assert all(n.score == pytest.approx(1.0, abs=1e-3) for n in neighbours)
    contextual = index.query("The bank lent us money .".split(), 1, k=4, layers=[2], same_word=True)[0]
    assert len({round(n.score, 4) for n in contextual}) > 1  # higher layers tell the uses apart


def test_same_word_and_the_query_itself_left_out(index):
    query = REFERENCE[3].split()
    position = find_word(query, "bank")
    neighbours = index.query(query, position, k=10, same_word=True)
    for layer in neighbours:
        assert len(layer) == 3  # four banks in the reference, minus the query itself
        assert all(n.token == "bank" and n.sentence != 3 for n in layer)
    assert "[bank]" in neighbours[1][0].context()


def test_find_word_and_bad_layers(index):
    assert find_word(["The", "Bank", "bank"], "bank") == 2
    assert find_word(["The", "Bank"], "bank") == 1
    with pytest.raises(ElmoError, match="'river' is not a token"):
        find_word(["The", "bank"], "river")
    with pytest.raises(ElmoError, match="layer 7 does not exist"):
        index.query(["bank"], 0, layers=[7])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elmo_lm", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_neighbors(tmp_path):
    reference = tmp_path / "reference.txt"
    reference.write_text("\n".join(REFERENCE[:2]) + "\n\n" + "\n".join(REFERENCE[2:]) + "\n", encoding="utf-8")
    model = ["--options", str(OPTIONS), "--weights", str(WEIGHTS)]
    result = run_cli("neighbors", "--sentence", "The bank lent us money .", "--word", "bank",
                     "--reference", str(reference), "--top", "4", "--same-word", *model)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("query: The [bank] lent us money .")
    for layer in range(3):
        assert f"layer {layer} (" in out
    assert out.count("[bank]") == 1 + 3 * 4
    assert "line 4: The [bank] raised its interest rates again ." in out  # file line numbers, blank lines counted

    missing = run_cli("neighbors", "--sentence", "The bank lent us money .", "--word", "river",
                      "--reference", str(reference), *model)
    assert missing.returncode == 2
    assert "'river' is not a token" in missing.stderr and "Traceback" not in missing.stderr
