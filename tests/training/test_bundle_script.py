"""scripts/bundle_model.py on a trained tiny run: it stores the fewest matrices in int8 that bring the folder
under --max-mb (none when the float16 folder fits), and says what to do when the choice given does not fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from training_runs import trained_run

from conftest import PROJECT_ROOT
from elmo_lm.io import load_model

SCRIPT = PROJECT_ROOT / "scripts" / "bundle_model.py"


@pytest.fixture(scope="session")
def learning_run(tmp_path_factory):
    return trained_run(tmp_path_factory)


def bundle(run: Path, out: Path, *args: str | float) -> subprocess.CompletedProcess[str]:
    """Run the script with one thread, no vocabulary file (sizes are then the weights' and config's alone)."""
    return subprocess.run([sys.executable, str(SCRIPT), str(run), "--out", str(out), "--no-vocab", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


def size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir())


def storage(folder: Path) -> dict[str, str]:
    return json.loads((folder / "config.json").read_text()).get("storage", {})


def test_auto_int8_takes_the_fewest_matrices_that_fit(learning_run, tmp_path):
    run, _ = learning_run
    done = bundle(run, tmp_path / "float16", "--max-mb", 100)
    assert done.returncode == 0, done.stderr
    assert storage(tmp_path / "float16") == {} and "as int8" not in done.stdout  # fits: stays float16
    float16 = size(tmp_path / "float16")

    done = bundle(run, tmp_path / "highway", "--max-mb", (float16 - 1000) / 1e6)
    assert done.returncode == 0, done.stderr
    assert sorted(storage(tmp_path / "highway")) == ["token_encoder.highway_carry.0.weight",
                                                     "token_encoder.highway_transform.0.weight"]
    assert "--int8 highway" in done.stdout and size(tmp_path / "highway") <= float16 - 1000

    done = bundle(run, tmp_path / "matrices", "--max-mb", (size(tmp_path / "highway") - 1000) / 1e6)
    assert done.returncode == 0, done.stderr
    assert len(storage(tmp_path / "matrices")) == 9  # 2 highway, the token projection, 6 LSTM matrices
    assert load_model(tmp_path / "matrices").softmax is None


def test_a_choice_that_does_not_fit_is_refused_with_a_hint(learning_run, tmp_path):
    run, _ = learning_run
    done = bundle(run, tmp_path / "out", "--int8", "none", "--max-mb", 0.01)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "more than --max-mb 0.01 (try --int8 highway or matrices)" in done.stderr
    assert not (tmp_path / "out").exists()
