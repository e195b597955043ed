"""`elmo embed` and the Embedder on real and bad input: shapes, contracts, errors, atomic output."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ALLENNLP
from elmo_lm import ElmoError, Embedder

MODEL_ARGS = ["--options", str(ALLENNLP / "options.json"), "--weights", str(ALLENNLP / "lm_weights.hdf5")]


def elmo(*args):
    return subprocess.run([sys.executable, "-m", "elmo_lm", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def embedder():
    return Embedder(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5")


def test_embed_file_contract(tmp_path):
    text = "The first line .\n\n   \nCJK 漢字 and emoji 🎉 and é (e\u0301) and עברית right-to-left\n" + "x" * 80 + " long\n"
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    for layers, shapes in [("all", [(3, 4, 32), (3, 0, 32), (3, 0, 32), (3, 11, 32), (3, 2, 32)]),
                           ("top", [(4, 32), (0, 32), (0, 32), (11, 32), (2, 32)]),
                           ("average", [(4, 32), (0, 32), (0, 32), (11, 32), (2, 32)])]:
        out = tmp_path / f"{layers}.hdf5"
        result = elmo("embed", tmp_path / "in.txt", out, *MODEL_ARGS, "--layers", layers, "--quiet")
        assert result.returncode == 0, result.stderr
        with h5py.File(out, "r") as h5:
            assert sorted(h5.keys()) == ["0", "1", "2", "3", "4", "sentence_to_index"]
            assert [h5[str(i)].shape for i in range(5)] == shapes
            assert all(h5[str(i)].dtype == np.float32 for i in range(5))
            index = json.loads(h5["sentence_to_index"][0])
            assert index["The first line ."] == 0 and index[""] == 2  # both blank lines map to ""
    with h5py.File(tmp_path / "all.hdf5") as full, h5py.File(tmp_path / "top.hdf5") as top, \
            h5py.File(tmp_path / "average.hdf5") as average:
        np.testing.assert_array_equal(top["3"][...], full["3"][2])
        np.testing.assert_allclose(average["3"][...], full["3"][...].mean(axis=0), rtol=1e-6)


def test_output_that_exists_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "in.txt").write_text("a b c\n")
    (tmp_path / "out.hdf5").write_bytes(b"precious")
    result = elmo("embed", tmp_path / "in.txt", tmp_path / "out.hdf5", *MODEL_ARGS)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "out.hdf5").read_bytes() == b"precious"
    assert elmo("embed", tmp_path / "in.txt", tmp_path / "out.hdf5", *MODEL_ARGS, "--overwrite", "-q").returncode == 0
    assert h5py.is_hdf5(tmp_path / "out.hdf5")


@pytest.mark.parametrize("content, message", [
    (b"good line\nbad \xff\xfe line\n", "in.txt, line 2: invalid UTF-8"),
    (b"one\ntwo\nthree \x00 four\n", "in.txt, line 3: contains a NUL byte"),
])
def test_bad_text_is_reported_by_line(tmp_path, content, message):
    (tmp_path / "in.txt").write_bytes(content)
    result = elmo("embed", tmp_path / "in.txt", tmp_path / "out.hdf5", *MODEL_ARGS)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "in.txt"]  # no output, no temporary left behind


def test_missing_input_and_missing_model(tmp_path):
    result = elmo("embed", tmp_path / "none.txt", tmp_path / "out.hdf5", *MODEL_ARGS)
    assert result.returncode == 2 and "none.txt: input file not found" in result.stderr
    (tmp_path / "in.txt").write_text("a\n")
    result = elmo("embed", tmp_path / "in.txt", tmp_path / "out.hdf5", "--model", tmp_path / "nothing")
    assert result.returncode == 2 and "nothing: model folder not found" in result.stderr


def test_interrupted_embedding_leaves_no_output(tmp_path, embedder, monkeypatch):
    (tmp_path / "in.txt").write_text("\n".join(f"sentence number {i} ." for i in range(50)) + "\n")
    calls = []

    def fail_on_third_batch(sentences):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return Embedder.embed_batch(embedder, sentences)

    monkeypatch.setattr(embedder, "embed_batch", fail_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        embedder.embed_file(tmp_path / "in.txt", tmp_path / "out.hdf5", batch_size=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_killed_cli_run_leaves_no_output(tmp_path):
    """SIGKILL in the middle: the output name never holds a partial file."""
    (tmp_path / "in.txt").write_text(("word " * 20000 + "\n") * 3)
    process = subprocess.Popen([sys.executable, "-m", "elmo_lm", "embed", str(tmp_path / "in.txt"),
                                str(tmp_path / "out.hdf5"), *MODEL_ARGS, "-q", "--batch-size", "1"])
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.returncode == 0:
        pytest.skip("finished before it could be killed")
    assert not (tmp_path / "out.hdf5").exists()


def test_encode_restores_order_and_gives_sentence_vectors(embedder):
    sentences = [["short"], "A raw string , tokenized : here", ["a", "much", "longer", "one", "with", "words"], []]
    vectors = embedder.encode(sentences, layers="top", batch_size=2)
    assert [v.shape for v in vectors] == [(1, 32), (7, 32), (6, 32), (0, 32)]
    np.testing.assert_allclose(vectors[2], embedder.embed_sentence(sentences[2])[-1], atol=1e-6)
    pooled = embedder.encode(sentences, layers="average", output="sentence")
    assert pooled.shape == (4, 32) and not pooled[3].any()
    np.testing.assert_allclose(pooled[0], embedder.embed_sentence(["short"]).mean(axis=0)[0], atol=1e-6)
    assert embedder.encode(sentences, output="sentence").shape == (4, 3, 32)


def test_generator_api_streams_in_order(embedder):
    sentences = [["w"] * n for n in (5, 1, 9, 3, 7, 2)]
    results = list(embedder.embed_sentences(iter(sentences), batch_size=2))
    assert [r.shape[1] for r in results] == [5, 1, 9, 3, 7, 2]


def test_bad_layer_choice_is_an_error(embedder, tmp_path):
    with pytest.raises(ElmoError, match="layers must be"):
        embedder.encode([["a"]], layers="middle")


def test_tokenize_option_splits_raw_text(tmp_path):
    (tmp_path / "in.txt").write_text("Hello, world! It's 3.5 km.\n")
    out = tmp_path / "out.hdf5"
    assert elmo("embed", tmp_path / "in.txt", out, *MODEL_ARGS, "--tokenize", "-q").returncode == 0
    with h5py.File(out, "r") as h5:
        assert h5["0"].shape[1] > 4  # punctuation split off: more tokens than whitespace words


def test_long_line_embeds_exactly_in_chunks(embedder, monkeypatch):
    """Chunked character CNN and LSTM input projection give the same result as one pass."""
    import elmo_lm.model as model_module

    rng = np.random.default_rng(0)
    words = ["the", "bank", "river", "money", ",", ".", "a", "of", "Über", "漢字"]
    line = [words[i] for i in rng.integers(0, len(words), 3000)]
    whole = embedder.embed_sentence(line)
    monkeypatch.setattr(model_module, "ENCODER_CHUNK_BYTES", 4096)
    monkeypatch.setattr(model_module, "LSTM_CHUNK_BYTES", 4096)
    chunked = embedder.embed_sentence(line)
    assert chunked.shape == (3, 3000, 32)
    np.testing.assert_allclose(chunked, whole, atol=1e-5, rtol=1e-5)


def test_cli_help_is_written_for_newcomers():
    result = elmo("embed", "--help")
    assert result.returncode == 0
    for phrase in ("one sentence per line", "--stateful", "--layers", "--overwrite", "sentence_to_index"):
        assert phrase in result.stdout
