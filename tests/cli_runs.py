"""Helpers of the tests that run the `elmo` command through its real entry point (`python -m elmo_lm`):
the run itself, the fixture corpus's training and held-out shards, and a vocabulary built from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ALLENNLP

TRAIN_GLOB = str(ALLENNLP / "corpus" / "shard[1-9]")
HELD_OUT = ALLENNLP / "corpus" / "shard0"


def elmo(*args: str | Path | int, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m elmo_lm ARGS` with one thread (and `env` added to the environment); its output captured."""
    return subprocess.run([sys.executable, "-m", "elmo_lm", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=timeout)


def fixture_vocab(folder: Path) -> Path:
    """The vocabulary of shards 1-9 with --min-count 2 (2,168 tokens), as the training tests build it."""
    path = folder / "vocab.txt"
    if not path.exists():
        done = elmo("vocab", TRAIN_GLOB, "-o", path, "--min-count", "2")
        assert done.returncode == 0, done.stderr
    return path


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
