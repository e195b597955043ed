"""Shared test setup: one thread (CI shares two cores), no kernel timing at first use (outputs then never
depend on a measurement, and the user's cache folder is left alone; test_tuning turns it on with a fake
clock), and the paths of the reference fixtures."""

import os
from pathlib import Path

import pytest
import torch

from elmo_lm import Embedder

torch.set_num_threads(1)
os.environ["ELMO_LM_AUTOTUNE"] = "0"  # inherited by the CLI runs in subprocesses

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # copies of the reference files (see its README)
BENCH = FIXTURES / "bench"
ALLENNLP = FIXTURES / "allennlp"
BILM_TF = FIXTURES / "bilm-tf"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The reference fixtures folder (tests/fixtures/)."""
    assert FIXTURES.is_dir(), f"reference fixtures not found at {FIXTURES}"
    return FIXTURES


@pytest.fixture(scope="session")
def bundled_embedder() -> Embedder:
    """An embedder of the bundled English model (the tests only read vectors from it, so they share one)."""
    return Embedder()


@pytest.fixture(scope="session")
def fixture_embedder() -> Embedder:
    """An embedder of the tiny AllenNLP fixture model (tests/fixtures/allennlp)."""
    return Embedder(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5")
