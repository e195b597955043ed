"""Smaller faults of the `elmo` command, each through the real entry point (`python -m elmo_lm`): one
clear line and a non-zero exit, never a traceback, never a silently ignored option."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_runs import HELD_OUT, TRAIN_GLOB, elmo, fixture_vocab, read_jsonl
from conftest import ALLENNLP

MODEL_ARGS = ["--options", str(ALLENNLP / "options.json"), "--weights", str(ALLENNLP / "lm_weights.hdf5")]


def _assert_refused(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("elmo: error: "), done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


# --- start-up: no torch for --version and usage errors; Ctrl-C without a traceback --------------------

@pytest.mark.parametrize("args, code", [(["--version"], 0), (["--help"], 0), (["embed"], 2), (["nonsense"], 2),
                                        (["train", "--max-steps", "0", "--out", "x"], 2)])
def test_version_help_and_usage_errors_do_not_import_torch(args, code):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "elmo_lm", *args], capture_output=True, text=True,
                          timeout=60)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert done.returncode == code, done.stderr[-2000:]
    assert not {name for name in imported if name == "torch" or name.startswith("torch.")}, "torch imported"
    assert "numpy" not in imported and "h5py" not in imported


def test_ctrl_c_during_start_up_prints_one_line():
    process = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "elmo_lm", "info", *MODEL_ARGS],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Interrupt once the command's own code runs, which imports click first (a fixed sleep landed in python's own
    # start-up on a loaded machine, and so did the end of elmo_lm's import): it is then importing its libraries
    # (torch takes seconds).
    imports = []
    while not any(line.split("|")[-1].strip() == "click" for line in imports[-1:]) and process.poll() is None:
        imports.append(process.stderr.readline())
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    stderr = "".join(line for line in [*imports, *rest.splitlines(True)] if not line.startswith("import time:"))
    if process.returncode == 0:
        pytest.skip("the command finished before the interrupt")
    assert "Traceback" not in stderr, stderr
    # 130, or killed by SIGINT itself (-2) where the interrupt lands during the interpreter's exit
    assert process.returncode in (130, -signal.SIGINT) and stderr.strip() == "elmo: interrupted", (
        process.returncode, stderr)


# --- outputs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["symlink", "fifo"])  # a folder: click refuses it as OUTPUT
def test_overwrite_refuses_anything_but_a_regular_file(tmp_path, kind):
    target = tmp_path / "out.hdf5"
    if kind == "symlink":
        (tmp_path / "elsewhere.hdf5").write_text("keep me")
        target.symlink_to(tmp_path / "elsewhere.hdf5")
    else:
        os.mkfifo(target)
    (tmp_path / "in.txt").write_text("a b\n")
    _assert_refused(elmo("embed", tmp_path / "in.txt", target, *MODEL_ARGS, "--overwrite"), str(target),
                    "refusing to replace it")
    if kind == "symlink":
        assert target.is_symlink() and (tmp_path / "elsewhere.hdf5").read_text() == "keep me"


@pytest.mark.parametrize("command", [
    lambda folder: ["embed", ALLENNLP / "sentences.txt", folder / "v.hdf5", *MODEL_ARGS],
    lambda folder: ["dump-token-embeddings", ALLENNLP / "vocab_test.txt", folder / "t.hdf5", *MODEL_ARGS],
    lambda folder: ["vocab", ALLENNLP / "sentences.txt", "-o", folder / "vocab.txt"],
    lambda folder: ["task", "evaluate", folder.parent / "head", ALLENNLP / "sentences.txt", "--predictions",
                    folder / "p.txt"],
    lambda folder: ["task", "evaluate", folder.parent / "head", ALLENNLP / "sentences.txt", "--metrics",
                    folder / "m.json"],
])
@pytest.mark.parametrize("where", ["missing", "unwritable"])
def test_output_paths_are_checked_before_the_work(tmp_path, command, where):
    """A missing folder, and one nobody can create files in (/proc, even for root)."""
    folder = tmp_path / "missing" if where == "missing" else Path("/proc")
    args = command(folder)
    done = elmo(*args)
    output = next(str(a) for a in args if str(a).startswith(str(folder)))
    _assert_refused(done, output, "does not exist" if where == "missing" else "cannot write into folder")


def test_vocab_does_not_overwrite_without_overwrite(tmp_path):
    (tmp_path / "vocab.txt").write_text("precious\n")
    _assert_refused(elmo("vocab", ALLENNLP / "sentences.txt", "-o", tmp_path / "vocab.txt"), "vocab.txt",
                    "--overwrite")
    assert (tmp_path / "vocab.txt").read_text() == "precious\n"
    assert elmo("vocab", ALLENNLP / "sentences.txt", "-o", tmp_path / "vocab.txt", "--overwrite").returncode == 0
    assert (tmp_path / "vocab.txt").read_text().startswith("<S>\n</S>\n<UNK>\n")


# --- options that used to be ignored -------------------------------------------------------------------

def test_model_together_with_options_and_weights_is_refused(tmp_path):
    _assert_refused(elmo("info", ALLENNLP, *MODEL_ARGS), "--model or --options")
    (tmp_path / "in.txt").write_text("a b\n")
    _assert_refused(elmo("embed", tmp_path / "in.txt", tmp_path / "v.hdf5", "--model", ALLENNLP, *MODEL_ARGS),
                    "--model or --options")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run of 2 steps, validated and checkpointed at its end."""
    base = tmp_path_factory.mktemp("finished")
    vocab = fixture_vocab(base)
    done = elmo("train", "--train", TRAIN_GLOB, "--vocab", vocab, "--config", "tiny", "--out", base / "run", "--valid",
                HELD_OUT, "--max-steps", 2, "--set", "valid_every=2", "--set", "plot=false", "--set",
                "valid_max_batches=2", "-q")
    assert done.returncode == 0, done.stderr
    return base / "run", vocab


def test_resuming_a_finished_run_adds_no_duplicate_record(finished_run):
    run, _ = finished_run
    before = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in before if r["split"] == "valid"] == [2]
    done = elmo("train", "--out", run, "--resume", "-q")
    assert done.returncode == 0, done.stderr
    assert read_jsonl(run / "metrics.jsonl") == before


def test_resume_refuses_a_new_vocab_and_explains_train(finished_run):
    run, vocab = finished_run
    _assert_refused(elmo("train", "--out", run, "--resume", "--vocab", vocab), "--vocab cannot change")
    done = elmo("train", "--out", run, "--resume", "--train", TRAIN_GLOB, "-q")
    assert done.returncode == 0, done.stderr
    assert "--resume reads --train instead of the paths in" in done.stderr


# --- bad configs and files ------------------------------------------------------------------------------

def test_set_with_a_value_of_the_wrong_type_names_the_field(tmp_path):
    _assert_refused(elmo("train", "--train", TRAIN_GLOB, "--vocab", tmp_path / "v.txt", "--config", "tiny", "--out",
                         tmp_path / "run", "--set", "dropout=abc"),
                    "dropout must be a number in [0, 1), not 'abc'")


@pytest.mark.parametrize("change, message", [
    (lambda o: o["lstm"].update(dim="1024"), "lstm.dim must be an integer, not '1024'"),
    (lambda o: o["lstm"].update(projection_dim=0), "projection_dim must be at least 1, not 0"),
    (lambda o: o["char_cnn"].update(n_highway=1.5), "char_cnn.n_highway must be an integer, not 1.5"),
])
def test_bad_options_json_values_name_the_file(tmp_path, change, message):
    options = json.loads((ALLENNLP / "options.json").read_text())
    change(options)
    (tmp_path / "options.json").write_text(json.dumps(options))
    _assert_refused(elmo("info", "--options", tmp_path / "options.json", "--weights", ALLENNLP / "lm_weights.hdf5"),
                    f"{tmp_path / 'options.json'}: ", message)


class NotPlainData:
    """Pickled by reference: loading it would run this module's code (weights_only refuses it)."""


@pytest.mark.parametrize("content", ["garbage", "foreign object"])
def test_a_bad_checkpoint_gives_one_line_without_weights_only_advice(finished_run, tmp_path, content):
    run, _ = finished_run
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("run.json", "vocab.txt", "metrics.jsonl"):
        (copy / name).write_bytes((run / name).read_bytes())
    if content == "garbage":
        (copy / "checkpoint.pt").write_bytes(os.urandom(4096))
    else:
        torch.save({"format_version": 1, "payload": NotPlainData()}, copy / "checkpoint.pt")
    done = elmo("train", "--out", copy, "--resume")
    _assert_refused(done, str(copy / "checkpoint.pt"), "not a readable checkpoint")
    assert "weights_only" not in done.stderr
