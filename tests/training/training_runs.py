"""Helpers shared by the training tests: the `elmo` CLI in a subprocess, a vocabulary for the fixture
corpus, and one trained tiny model that several test modules reuse (built once per session, pytest-xdist's
workers included)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from conftest import ALLENNLP

CORPUS = ALLENNLP / "corpus"
TRAIN_GLOB = str(CORPUS / "shard[1-9]")
HELD_OUT = CORPUS / "shard0"
LEARNING_STEPS = 200


def elmo(*args: str | Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run `python -m elmo_lm ARGS` with one thread; fail with its output if `check` and it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "elmo_lm", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"elmo {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}")
    return done


def fixture_vocab(folder: Path) -> Path:
    """Vocabulary of shards 1-9 with --min-count 2: rare words become <UNK>, so <UNK> is a trained target
    (the held-out shard's unknown words have a probability to learn) and the softmax stays small."""
    path = folder / "vocab.txt"
    if not path.exists():
        elmo("vocab", TRAIN_GLOB, "-o", path, "--min-count", "2")
    return path


def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny preset trained for LEARNING_STEPS steps on shards 1-9, validated on shard 0 every 50 steps, and
    the progress output (stderr) of its `elmo train`.

    Built once per test session, in its temporary folder; under pytest-xdist the workers share it (a lock makes
    the others wait for the first), so the test files that use it may run on different workers.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, which holds each worker's own
    run, finished, stderr = base / "learning-run", base / "learning-run.finished", base / "learning-run.stderr"
    with FileLock(base / "learning-run.lock"):
        if not finished.exists():  # a marker of our own: the run's files depend on optional packages (the plot)
            shutil.rmtree(run, ignore_errors=True)  # what an earlier, failed attempt left
            vocab = fixture_vocab(base)
            done = elmo("train", "--train", TRAIN_GLOB, "--vocab", vocab, "--config", "tiny", "--out", run, "--valid",
                        HELD_OUT, "--max-steps", LEARNING_STEPS, "--set", "valid_every=50", "--set", "log_every=10",
                        "--set", "checkpoint_every=100")
            stderr.write_text(done.stderr, encoding="utf-8")
            finished.touch()
    return run, stderr.read_text(encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
