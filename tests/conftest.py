"""Shared test setup: one thread (CI shares two cores), no kernel timing at first use (outputs then never
depend on a measurement, and the user's cache folder is left alone; test_tuning turns it on with a fake
clock), and the paths of the reference fixtures."""

import os
from pathlib import Path

import pytest
import torch

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
