"""Training through the real CLI: a tiny model learns the fixture corpus, a run killed with SIGKILL resumes to
the same parameters as an uninterrupted one, bad corpora fail with a message (exit 2, no traceback)."""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from training_runs import CORPUS, HELD_OUT, LEARNING_STEPS, TRAIN_GLOB, elmo, fixture_vocab, read_jsonl, trained_run

from elmo_lm.cli import main as cli_main
from elmo_lm.config import ModelConfig
from elmo_lm.training.evaluate import stateful_totals
from elmo_lm.training.metrics import plot_learning_curves
from elmo_lm.model import ElmoBiLM
from elmo_lm.training.config import preset
from elmo_lm.vocab import Vocabulary


@pytest.fixture(scope="session")
def learning_run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="session")
def shared_vocab(tmp_path_factory):
    return fixture_vocab(tmp_path_factory.getbasetemp())


def _unigram_perplexity(vocab: Vocabulary) -> float:
    """Held-out perplexity of add-one unigram frequencies of shards 1-9 (targets: words and </S>)."""
    counts: Counter[int] = Counter()
    for path in sorted(CORPUS.glob("shard[1-9]")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.split():
                counts.update([*vocab.ids(line.split()), vocab.eos_id])
    total, log_likelihood, n = sum(counts.values()), 0.0, 0
    for line in HELD_OUT.read_text(encoding="utf-8").splitlines():
        if line.split():
            for i in [*vocab.ids(line.split()), vocab.eos_id]:
                log_likelihood += math.log((counts[i] + 1) / (total + len(vocab)))
                n += 1
    return math.exp(-log_likelihood / n)


def test_tiny_model_learns_the_fixture_corpus(learning_run):
    """Held-out perplexity (shard 0) falls from about V (an untrained softmax is near uniform over the 2,168
    words) to below twice the held-out perplexity of add-one unigram frequencies (~114): a model that has
    learned at least the word distribution. Measured: 2,169 -> 177 (step 50), 143, 133, 135 (step 200)."""
    run, _ = learning_run
    vocab = Vocabulary.load(run / "vocab.txt")
    torch.manual_seed(0)  # the run's seed: the run's initial model, with a uniform softmax (zero bias)
    initial = ElmoBiLM(preset("tiny").model, vocab_size=len(vocab)).eval()
    start = stateful_totals(initial, [HELD_OUT], vocab, batch_size=16, unroll_steps=20).record()["ppl"]
    unigram = _unigram_perplexity(vocab)
    records = read_jsonl(run / "metrics.jsonl")
    valid = [r for r in records if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [50, 100, 150, 200]
    final = valid[-1]["ppl"]
    assert start > 0.8 * len(vocab)
    assert final < 2 * unigram < 0.15 * start, (start, unigram, [round(r["ppl"], 1) for r in valid])
    assert valid[-1]["ppl"] < valid[0]["ppl"]
    assert valid[-1]["forward_ppl"] < 2 * unigram and valid[-1]["backward_ppl"] < 2 * unigram
    _assert_directions_alike(valid[-1])


def _assert_directions_alike(record: dict) -> None:
    """Neither direction's perplexity more than 25% above the other's: on the same sentences, the forward and the
    backward LM learn alike (published ELMo models: within a few percent)."""
    forward, backward = record["forward_ppl"], record["backward_ppl"]
    assert max(forward, backward) <= 1.25 * min(forward, backward), (record["step"], forward, backward)


def test_sampled_softmax_learns_both_directions_like_the_full_softmax(tmp_path):
    """The sampled softmax (256 negatives of 6,451 words: most rare words are drawn in few steps) with Adam, the
    setting in which elmo-en-small v1's forward LM went wrong. Held-out full-softmax perplexity must fall well
    below the full softmax's after the same steps started from a zero bias (measured 1,117 / 1,057 at step 100;
    the sampled softmax from a zero bias: 1,807 / 1,701, its rare words' mass never learned), with the
    directions alike. Measured with the softmax bias started at the words' Zipf prior: 343 / 314."""
    vocab = tmp_path / "vocab.txt"
    elmo("vocab", TRAIN_GLOB, "-o", vocab, "--min-count", "1")
    run = tmp_path / "run"
    elmo("train", "--train", TRAIN_GLOB, "--vocab", vocab, "--config", "tiny", "--out", run, "--valid", HELD_OUT,
         "--max-steps", "100", "--set", "optimizer=adam", "--set", "softmax=sampled", "--set", "n_negative_samples=256",
         "--set", "valid_every=50", "--set", "log_every=10", "--set", "plot=false", "-q")
    valid = [r for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [50, 100]
    for record in valid:
        _assert_directions_alike(record)
    assert valid[-1]["forward_ppl"] < 600 and valid[-1]["backward_ppl"] < 600, valid[-1]


def test_learning_run_writes_metrics_plot_and_progress(learning_run):
    run, progress = learning_run
    train_records = [r for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train_records] == list(range(10, LEARNING_STEPS + 1, 10))
    for key in ("forward_loss", "backward_loss", "forward_ppl", "backward_ppl", "ppl", "tokens_per_s", "lr"):
        assert all(math.isfinite(r[key]) and r[key] > 0 for r in train_records), key
    assert train_records[-1]["loss"] < train_records[0]["loss"]
    assert train_records[0]["lr"] == 0.2
    if importlib.util.find_spec("matplotlib") is not None:  # in the test extra; optional for the package
        assert (run / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not (run / "learning_curves.png").exists()
    assert (run / "checkpoint.pt").is_file() and not list(run.glob(".*.tmp"))
    assert "tok/s" in progress and "ppl" in progress  # the progress bar reports throughput and running perplexity


def test_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    (tmp_path / "m.jsonl").write_text('{"split": "train", "step": 1, "forward_ppl": 2, "backward_ppl": 2, '
                                      '"tokens_per_s": 1}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    assert plot_learning_curves(tmp_path / "m.jsonl", tmp_path / "c.png") is False
    assert not (tmp_path / "c.png").exists()


# --- exact resume -------------------------------------------------------------------------------------

def _small_corpus(folder: Path) -> tuple[Path, Path, Path]:
    """25 training sentences (about 17 batches of 4 x 10 per epoch) and 10 validation sentences."""
    lines = (CORPUS / "shard1").read_text(encoding="utf-8").splitlines()
    train, valid = folder / "train.txt", folder / "valid.txt"
    train.write_text("\n".join(lines[:25]) + "\n", encoding="utf-8")
    valid.write_text("\n".join(lines[25:35]) + "\n", encoding="utf-8")
    vocab = folder / "vocab.txt"
    elmo("vocab", train, "-o", vocab)
    return train, valid, vocab


RESUME_STEPS = 60


def _resume_args(train: Path, valid: Path, vocab: Path, out: Path) -> list[str]:
    # Sampled softmax and dropout on: every random stream must be restored; 60 steps cross 3 epochs.
    return ["train", "--train", str(train), "--valid", str(valid), "--vocab", str(vocab), "--config", "tiny",
            "--out", str(out), "--max-steps", str(RESUME_STEPS), "--batch-size", "4", "--seed", "7",
            "--set", "unroll_steps=10", "--set", "softmax=sampled", "--set", "n_negative_samples=64",
            "--set", "log_every=4", "--set", "checkpoint_every=7", "--set", "valid_every=10", "--set", "plot=false",
            "-q"]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The small corpus and an uninterrupted 60-step run (in this process: one thread, like the subprocesses)."""
    folder = tmp_path_factory.mktemp("resume")
    train, valid, vocab = _small_corpus(folder)
    assert cli_main(_resume_args(train, valid, vocab, folder / "straight")) == 0
    return train, valid, vocab, folder / "straight"


def _parameters(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def _assert_same_parameters(run_a: Path, run_b: Path) -> None:
    a, b = _parameters(run_a), _parameters(run_b)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key


def test_sigkill_then_resume_ends_with_the_same_parameters(straight_run, tmp_path):
    train, valid, vocab, straight = straight_run
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "elmo_lm", *_resume_args(train, valid, vocab, killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    metrics, deadline = killed / "metrics.jsonl", time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and '"step": 16,' in metrics.read_text():  # past the checkpoint at step 14
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    interrupted_at = torch.load(killed / "checkpoint.pt", weights_only=True)["progress"]["step"]
    assert 14 <= interrupted_at < RESUME_STEPS

    assert cli_main(["train", "--out", str(killed), "--resume", "-q"]) == 0
    _assert_same_parameters(straight, killed)
    # The metrics read as one run: each step once, the same losses as the uninterrupted run.
    straight_records = {(r["split"], r["step"]): r for r in read_jsonl(straight / "metrics.jsonl")}
    resumed_records = read_jsonl(killed / "metrics.jsonl")
    # (records average 4 steps and checkpoints come every 7: the partial averages are restored too)
    assert [r["step"] for r in resumed_records if r["split"] == "train"] == list(range(4, RESUME_STEPS + 1, 4))
    assert len(resumed_records) == len(straight_records)
    for record in resumed_records:
        assert record["loss"] == pytest.approx(straight_records[(record["split"], record["step"])]["loss"], abs=1e-6)


def test_finished_run_resumes_to_a_later_step_exactly(straight_run, tmp_path):
    train, valid, vocab, straight = straight_run
    short = _resume_args(train, valid, vocab, tmp_path / "extended")
    short[short.index("--max-steps") + 1] = "23"  # stops mid-epoch, between checkpoints
    assert cli_main(short) == 0
    assert cli_main(["train", "--out", str(tmp_path / "extended"), "--resume", "--max-steps", str(RESUME_STEPS),
                     "-q"]) == 0
    _assert_same_parameters(straight, tmp_path / "extended")


def test_resumed_run_differs_from_another_seed(straight_run, tmp_path):
    """The equality above is not vacuous: a different seed ends elsewhere."""
    train, valid, vocab, straight = straight_run
    other = _resume_args(train, valid, vocab, tmp_path / "other")
    other[other.index("--seed") + 1] = "8"
    other[other.index("--max-steps") + 1] = "5"
    assert cli_main(other) == 0
    a, b = _parameters(straight), _parameters(tmp_path / "other")
    assert not torch.allclose(a["lstm.input_weight.0"], b["lstm.input_weight.0"], atol=1e-3)


def test_run_folder_is_not_overwritten_and_resume_keeps_the_config(tmp_path, capsys):
    train, valid, vocab = _small_corpus(tmp_path)
    run = tmp_path / "run"
    args = ["train", "--train", str(train), "--vocab", str(vocab), "--config", "tiny", "--out", str(run),
            "--max-steps", "2", "--batch-size", "2", "-q"]
    assert cli_main(args) == 0
    assert cli_main(args) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert cli_main(["train", "--out", str(run), "--resume", "--config", "small"]) == 2
    assert "--config" in capsys.readouterr().err
    assert cli_main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "not a training run" in capsys.readouterr().err


# --- bad input, through the real CLI ------------------------------------------------------------------

def _train_cli(tmp_path: Path, corpus: str | Path, vocab: Path, *extra: str):
    return elmo("train", "--train", corpus, "--vocab", vocab, "--config", "tiny", "--out", tmp_path / "run",
                "--max-steps", "3", "--batch-size", "2", "-q", *extra, check=False)


def _assert_clean_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("elmo: error: ")
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def test_no_files_matched(tmp_path, shared_vocab):
    _assert_clean_error(_train_cli(tmp_path, tmp_path / "missing" / "*.txt", shared_vocab), "no files matched", "missing")


def test_only_empty_files(tmp_path, shared_vocab):
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.txt").write_text("\n  \n\n")
    _assert_clean_error(_train_cli(tmp_path, tmp_path / "*.txt", shared_vocab), "no sentences", "2 file(s)")


def test_vocabulary_without_the_specials(tmp_path):
    vocab = tmp_path / "bad-vocab.txt"
    vocab.write_text("the\n,\n.\n")
    _assert_clean_error(_train_cli(tmp_path, TRAIN_GLOB, vocab), "bad-vocab.txt: line 1", "<S>")


def test_invalid_utf8_names_file_and_line(tmp_path, shared_vocab):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("fine line\nanother one\ncaf\xe9 au lait\n".encode("latin-1"))
    _assert_clean_error(_train_cli(tmp_path, corpus, shared_vocab), "latin1.txt: line 3 is not valid UTF-8")


def test_binary_file_is_refused(tmp_path, shared_vocab):
    corpus = tmp_path / "data.bin"
    corpus.write_bytes(b"a line\n\x00\x01\x02\x00\n")
    _assert_clean_error(_train_cli(tmp_path, corpus, shared_vocab), "data.bin: line 2", "NUL")


def test_long_lines_long_tokens_and_empty_files_train(tmp_path):
    """Documented handling: a line longer than the window continues in the next batches of its row (state
    carried); a token over 50 bytes enters through its first 48 bytes (its softmax target is the whole word);
    an empty file among others contributes nothing."""
    long_token = "x" * 120
    (tmp_path / "long.txt").write_text(" ".join(["a", "b", long_token] * 150) + "\nshort line here\n",
                                       encoding="utf-8")
    (tmp_path / "empty.txt").write_text("")
    vocab = tmp_path / "vocab.txt"
    elmo("vocab", tmp_path / "*.txt", "-o", vocab)
    assert long_token in Vocabulary.load(vocab)
    done = _train_cli(tmp_path, tmp_path / "*.txt", vocab, "--set", "unroll_steps=20", "--set", "log_every=1")
    assert done.returncode == 0, done.stderr
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in records)


def test_bad_config_names_the_key(tmp_path, shared_vocab):
    config = tmp_path / "config.json"
    config.write_text('{"preset": "tiny", "learning_rat": 0.1}')
    _assert_clean_error(_train_cli(tmp_path, TRAIN_GLOB, shared_vocab, "--config", str(config)),
                        "config.json", "unknown training option 'learning_rat'")


def test_model_config_presets_are_the_released_shapes():
    assert preset("small").model == ModelConfig(lstm_dim=1024, projection_dim=128, n_highway=1)
    assert preset("original").model == ModelConfig()
    small = preset("small")
    assert (small.batch_size, small.unroll_steps, small.n_negative_samples, small.lr, small.dropout,
            small.clip_norm, small.epochs) == (128, 20, 8192, 0.2, 0.1, 10.0, 10)
