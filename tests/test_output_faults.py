"""Writing outputs when things go wrong: a full disk (a real small tmpfs where the machine allows
mounting one, and a simulated ENOSPC everywhere), a killed run's temporary, output paths that cannot
be written. Every case: one line naming the path, a non-zero exit, no temporary left, earlier
outputs intact."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch

from cli_runs import TRAIN_GLOB, elmo, fixture_vocab
from conftest import ALLENNLP, PROJECT_ROOT
from elmo_lm import ElmoError, Embedder
from elmo_lm.training.checkpoint import load_checkpoint
from elmo_lm.cli import main as cli_main
from elmo_lm.io import atomic

MODEL_ARGS = ["--options", str(ALLENNLP / "options.json"), "--weights", str(ALLENNLP / "lm_weights.hdf5")]
SENTENCES = PROJECT_ROOT / "examples" / "sentences.txt"


def _assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode != 0 and done.returncode != 1 and done.returncode < 128, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and len([l for l in lines if "error" in l]) == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- a real small filesystem (tmpfs; needs root and mount) -------------------------------------------

@pytest.fixture
def small_filesystem(tmp_path):
    """Mount a tmpfs of a given size on a fresh folder; unmounted afterwards."""
    mounted = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"small{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}); "
                        "the simulated full disk below still runs")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_embed_on_a_full_disk_stops_cleanly(small_filesystem):
    folder = small_filesystem("64k")  # the output takes 122 KB
    (folder / "vectors.hdf5").write_text("an earlier output\n")
    done = elmo("embed", SENTENCES, folder / "vectors.hdf5", *MODEL_ARGS, "--overwrite", "-q")
    _assert_one_line_error(done, str(folder / "vectors.hdf5"), "no space left")
    assert done.returncode == 2
    assert _temporaries(folder) == []
    assert (folder / "vectors.hdf5").read_text() == "an earlier output\n"


def test_training_on_a_full_disk_keeps_the_last_checkpoint(small_filesystem, tmp_path):
    """The tiny model's checkpoint takes about 6.4 MB: the first fits, the second (written beside it) does not."""
    folder = small_filesystem("9m")
    vocab = fixture_vocab(tmp_path)
    done = elmo("train", "--train", TRAIN_GLOB, "--vocab", vocab, "--config", "tiny", "--out", folder / "run",
                "--max-steps", 4, "--set", "checkpoint_every=2", "--set", "plot=false", "-q")
    _assert_one_line_error(done, str(folder / "run" / "checkpoint.pt"), "no space left")
    assert _temporaries(folder / "run") == []
    assert load_checkpoint(folder / "run" / "checkpoint.pt")["progress"].step == 2


# --- a simulated full disk (any machine) --------------------------------------------------------------

class _SmallDisk(io.FileIO):
    """A file that takes `budget` bytes, then fails with ENOSPC (as a full disk does)."""

    budget = 0

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if _SmallDisk.budget < size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _SmallDisk.budget -= size
        return super().write(data)


@pytest.fixture
def small_disk(monkeypatch):
    """Writes through `atomic_file` (HDF5 outputs, checkpoints) get a budget of bytes."""
    def set_budget(budget: int) -> None:
        _SmallDisk.budget = budget

    monkeypatch.setattr(atomic, "open", lambda path, mode, buffering=-1: _SmallDisk(path, mode.replace("b", "")),
                        raising=False)
    return set_budget


@pytest.mark.parametrize("budget", [0, 10_000, 100_000])
def test_simulated_full_disk_in_embed_file(small_disk, tmp_path, budget):
    small_disk(budget)
    (tmp_path / "vectors.hdf5").write_text("an earlier output\n")
    embedder = Embedder(options_file=ALLENNLP / "options.json", weight_file=ALLENNLP / "lm_weights.hdf5")
    with pytest.raises(ElmoError, match="vectors.hdf5: no space left on device"):
        embedder.embed_file(SENTENCES, tmp_path / "vectors.hdf5", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.hdf5"]
    assert (tmp_path / "vectors.hdf5").read_text() == "an earlier output\n"


def test_simulated_full_disk_in_the_cli(small_disk, tmp_path, capsys):
    small_disk(10_000)  # the output takes about 32 KB
    assert cli_main(["dump-token-embeddings", str(ALLENNLP / "vocab_test.txt"), str(tmp_path / "tokens.hdf5"),
                     *MODEL_ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokens.hdf5: no space left on device" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_simulated_full_disk_while_saving_a_checkpoint(small_disk, tmp_path):
    from elmo_lm.training.checkpoint import Progress, save_checkpoint

    small_disk(1000)
    with pytest.raises(ElmoError, match="checkpoint.pt: no space left on device"):
        save_checkpoint(tmp_path / "checkpoint.pt", {"w": torch.zeros(10_000)}, {}, Progress(), torch.get_rng_state(),
                        [])
    assert list(tmp_path.iterdir()) == []


def test_a_write_cut_short_is_completed():
    """An unbuffered write may take part of the data (a nearly full disk): the rest is written too."""
    class Halves(io.BytesIO):
        def write(self, data) -> int:
            data = memoryview(data)
            return super().write(data[: max(1, len(data) // 2)])

    raw = Halves()
    guarded = atomic.GuardedFile(raw)
    assert guarded.write(b"0123456789") == 10
    guarded.check()
    assert raw.getvalue() == b"0123456789"


# --- a killed run's temporary ------------------------------------------------------------------------

def test_a_killed_embed_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    (tmp_path / "in.txt").write_text(("word " * 2000 + "\n") * 200)
    output = tmp_path / "out.hdf5"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "elmo_lm", "embed", str(tmp_path / "in.txt"), str(output),
                                *MODEL_ARGS, "-q", "--batch-size", "1"], env=env)
    try:
        deadline = time.monotonic() + 120
        while not _temporaries(tmp_path) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    left = _temporaries(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".out.hdf5.{process.pid}-"), left
    (tmp_path / "in.txt").write_text("a short file .\n")
    done = elmo("embed", tmp_path / "in.txt", output, *MODEL_ARGS, "-q")
    assert done.returncode == 0, done.stderr
    assert _temporaries(tmp_path) == [] and h5py.File(output, "r")["0"].shape == (3, 4, 32)


def test_a_running_writers_temporary_is_left_alone(tmp_path):
    """Another process writing the same output (alive) keeps its temporary."""
    alive = tmp_path / f".out.hdf5.{os.getppid()}-abcdefgh.tmp"
    alive.write_text("in progress")
    with atomic.atomic_path(tmp_path / "out.hdf5") as temporary:
        temporary.write_text("done")
    assert alive.exists() and (tmp_path / "out.hdf5").read_text() == "done"


def test_help_says_where_temporaries_are():
    done = elmo("embed", "--help")
    assert ".OUTPUT." in done.stdout and "tmp" in done.stdout
