"""`elmo embed-corpus --engine ray` on a local Ray cluster of 2 workers: the same shards as one process,
and a worker killed mid-run costs nothing (its shard is retried whole).

Skipped when the `ray` extra is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'elmo-lm[ray]'")
pq = pytest.importorskip("pyarrow.parquet")

from conftest import PROJECT_ROOT  # noqa: E402
from elmo_lm.corpus_embed import CorpusSettings, embed_corpus  # noqa: E402

LINES = (PROJECT_ROOT / "examples/sentences.txt").read_text(encoding="utf-8").splitlines()
SETTINGS = CorpusSettings(shard_size=2)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "a.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    reference = folder / "reference"
    embed_corpus(str(folder / "a.txt"), reference, settings=SETTINGS, threads=1)
    return folder / "a.txt", _entries(reference)


def _entries(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"]
    return {name: (entry["rows"], entry["sha256"]) for name, entry in manifest["shards"].items()}


def _actor_pids() -> list[int]:
    """Processes of this session's shard actors (Ray titles them after the actor class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"_ShardActor" in command:
                pids.append(int(entry.name))
    return pids


def test_two_ray_workers_write_what_one_process_writes(cluster, corpus, tmp_path):
    source, reference = corpus
    embed_corpus(str(source), tmp_path, settings=SETTINGS, engine="ray", workers=2, threads=1)
    assert _entries(tmp_path) == reference


def test_a_killed_worker_is_retried_without_losing_or_duplicating_rows(cluster, corpus, tmp_path):
    source, reference = corpus
    failure = []

    def run():
        try:
            embed_corpus(str(source), tmp_path, settings=SETTINGS, engine="ray", workers=2, threads=1)
        except Exception as error:  # noqa: BLE001 - reported below
            failure.append(error)

    driver = threading.Thread(target=run)
    driver.start()
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and driver.is_alive():
        manifest = tmp_path / "manifest.json"
        done = len(json.loads(manifest.read_text())["shards"]) if manifest.is_file() else 0
        pids = _actor_pids()
        if done >= 2 and pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)  # a worker dies in the middle of the run
        time.sleep(0.05)
    driver.join(timeout=600)
    assert killed is not None, "the run ended before a worker could be killed"
    assert not failure, failure
    partial_done = _entries(tmp_path)
    assert partial_done == reference  # every shard, each written whole once more if it was retried
    ids = [i for name in sorted(partial_done) for i in pq.read_table(tmp_path / name, columns=["id"]).column("id")
           .to_pylist()]
    assert ids == list(range(len(LINES)))
