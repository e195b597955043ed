"""`elmo embed-corpus`: Parquet shards, manifest, resuming, local worker processes.

Skipped when pyarrow (the `corpus` extra) is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pq = pytest.importorskip("pyarrow.parquet", reason="the corpus extra is not installed: pip install 'elmo-lm[corpus]'")

from conftest import PROJECT_ROOT  # noqa: E402
from elmo_lm.corpus_embed import CorpusSettings, embed_corpus, read_vectors  # noqa: E402
from elmo_lm.errors import ElmoError  # noqa: E402

LINES = (PROJECT_ROOT / "examples/sentences.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "a.txt").write_text("\n".join(LINES[:17]) + "\n", encoding="utf-8")
    (folder / "b.txt").write_text("\n".join(LINES[17:] + ["", "Last line without newline ."]), encoding="utf-8")
    return folder


def _shards(out) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {name: entry["sha256"] for name, entry in manifest["shards"].items()}


def test_shards_hold_every_line_with_its_vectors(corpus, tmp_path, bundled_embedder):
    out = tmp_path / "out"
    manifest = embed_corpus(str(corpus / "*.txt"), out, settings=CorpusSettings(shard_size=6))
    assert manifest["complete"] and len(manifest["shards"]) == 3 + 3  # 17 -> 6,6,5 and 15 -> 6,6,3
    table = pq.read_table([out / name for name in manifest["shards"]][0])
    assert table.column_names == ["id", "file", "line", "text", "tokens", "vectors"]
    rows = [row for name in manifest["shards"] for row in pq.read_table(out / name).to_pylist()]
    lines = LINES + ["", "Last line without newline ."]
    assert [row["id"] for row in rows] == list(range(len(lines)))
    assert [row["text"] for row in rows] == lines
    assert [(row["file"].endswith("a.txt"), row["line"]) for row in rows][16:19] == [(True, 17), (False, 1), (False, 2)]
    vectors = [v for name in manifest["shards"] for v in read_vectors(out / name)]
    expected = bundled_embedder.encode([line.split() for line in lines], layers="top")
    for got, want in zip(vectors, expected, strict=True):
        assert got.dtype == np.float32 and got.reshape(want.shape).shape == want.shape
        np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-5)
    entry = manifest["shards"]["shard-00000.parquet"]
    assert entry["rows"] == 6 and len(entry["sha256"]) == 64 and manifest["model"]["sha256"]


def test_float16_all_layers_and_sentence_vectors(corpus, tmp_path, bundled_embedder):
    settings = CorpusSettings(layers="all", output="sentence", dtype="float16", shard_size=100)
    manifest = embed_corpus(str(corpus / "a.txt"), tmp_path, settings=settings)
    (name,) = manifest["shards"]
    vectors = read_vectors(tmp_path / name)
    sentences = [line.split() for line in LINES[:17]]
    expected = bundled_embedder.encode(sentences, layers="all", output="sentence")  # (N, 3, 2P)
    got = np.stack(vectors)
    assert got.dtype == np.float16 and got.shape == expected.shape
    np.testing.assert_allclose(got.astype(np.float32), expected, atol=1e-5 + 1e-3 * np.abs(expected).max())
    tokens = embed_corpus(str(corpus / "a.txt"), tmp_path / "t", settings=CorpusSettings(layers="all", shard_size=100))
    first = read_vectors(tmp_path / "t" / next(iter(tokens["shards"])))[0]
    assert first.shape == (3, len(LINES[0].split()), 256)


def test_resume_skips_finished_shards_and_redoes_the_rest(corpus, tmp_path):
    settings = CorpusSettings(shard_size=5)
    embed_corpus(str(corpus / "*.txt"), tmp_path, settings=settings)
    before = _shards(tmp_path)
    (tmp_path / "shard-00001.parquet").unlink()
    (tmp_path / "shard-00003.parquet").write_bytes(b"truncated")
    (tmp_path / ".shard-00004.parquet.x1y2.tmp").write_bytes(b"left by a killed run")
    log = []
    embed_corpus(str(corpus / "*.txt"), tmp_path, settings=settings, log=log.append)
    assert f"{len(before)} shards, {len(before) - 2} already done, 2 to embed" in log
    assert _shards(tmp_path) == before  # byte-identical shards again
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ElmoError, match="another settings"):
        embed_corpus(str(corpus / "*.txt"), tmp_path, settings=CorpusSettings(shard_size=5, dtype="float16"))


def test_two_local_processes_write_the_same_shards(corpus, tmp_path):
    one = embed_corpus(str(corpus / "*.txt"), tmp_path / "one", settings=CorpusSettings(shard_size=4))
    two = embed_corpus(str(corpus / "*.txt"), tmp_path / "two", settings=CorpusSettings(shard_size=4), workers=2,
                       threads=1)
    assert {k: v["sha256"] for k, v in one["shards"].items()} == {k: v["sha256"] for k, v in two["shards"].items()}


def test_cli_killed_run_resumes_to_the_same_output(corpus, tmp_path):
    command = [sys.executable, "-m", "elmo_lm", "embed-corpus", str(corpus / "*.txt"), str(tmp_path / "out"),
               "--shard-size", "2", "--threads", "1"]
    embed_corpus(str(corpus / "*.txt"), tmp_path / "ref", settings=CorpusSettings(shard_size=2))
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in process.stderr:  # kill it once a few shards are done
        if line.startswith("shard-00003"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    partial = json.loads((tmp_path / "out" / "manifest.json").read_text())
    total = len(_shards(tmp_path / "ref"))
    assert not partial["complete"] and 4 <= len(partial["shards"]) < total
    resumed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"already done, {total - len(partial['shards'])} to embed" in resumed.stderr
    assert _shards(tmp_path / "out") == _shards(tmp_path / "ref")


def test_bad_input_names_the_file_and_line(tmp_path, capsys):
    (tmp_path / "bad.txt").write_bytes(b"fine line\nbad \xff byte\n")
    result = subprocess.run([sys.executable, "-m", "elmo_lm", "embed-corpus", str(tmp_path / "bad.txt"),
                             str(tmp_path / "out")], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "bad.txt, line 2: invalid UTF-8" in result.stderr
    assert "Traceback" not in result.stderr
    from elmo_lm.cli import main

    assert main(["embed-corpus", str(tmp_path / "none*.txt"), str(tmp_path / "out")]) == 2
    assert "no input file matches" in capsys.readouterr().err
