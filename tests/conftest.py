"""Shared test setup: one thread (CI shares two cores) and the paths of the reference fixtures."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

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
