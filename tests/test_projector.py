"""`elmo neighbors --export-projector DIR`: TensorBoard projector files of the reference vectors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from conftest import PROJECT_ROOT

REFERENCE = PROJECT_ROOT / "examples/sentences.txt"


def test_export_projector_writes_vectors_and_metadata(tmp_path):
    out = tmp_path / "projector"
    result = subprocess.run(
        [sys.executable, "-m", "elmo_lm", "neighbors", "--sentence", "They walked along the bank of the river .",
         "--word", "bank", "--reference", str(REFERENCE), "--layer", "2", "--top", "1", "--same-word",
         "--export-projector", str(out)], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    tensors = np.loadtxt(out / "tensors.tsv", delimiter="\t")
    metadata = (out / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    tokens = sum(len(line.split()) for line in REFERENCE.read_text(encoding="utf-8").splitlines())
    assert tensors.shape == (1 + tokens, 256) and len(metadata) == 2 + tokens
    assert metadata[0] == "token\tline\tcontext"
    assert metadata[1] == "bank\tquery\tThey walked along the [bank] of the river ."
    assert metadata[2].startswith("We\t1\t[We] had a picnic")
    np.testing.assert_allclose(np.linalg.norm(tensors, axis=1), 1.0, atol=2e-3)  # unit length, as searched
    # The nearest "bank" in the files is the one `elmo neighbors` printed.
    banks = [i for i, row in enumerate(metadata[2:], start=1) if row.startswith("bank\t")]
    best = max(banks, key=lambda i: tensors[i] @ tensors[0])
    line = metadata[best + 1].split("\t")[1]
    assert f"line {line}:" in result.stdout.split("layer 2 (")[1]
    assert f"wrote {1 + tokens} rows" in result.stderr
