"""Turn a training run into the model folder that ships inside the package.

    nice -n 19 python scripts/bundle_model.py runs/elmo-en-small          # -> elmo_lm/pretrained/elmo-en-small/

Writes `config.json` + `model.safetensors` (+ `vocab.txt`, the training vocabulary) with the
weights stored as float16 and, by default, without the softmax: embedding never uses it, and it
is the largest single matrix (V x P; 100,000 x 128 = 12.8M parameters for elmo-en-small v2, 26 MB
in float16, against 18.8 MB for all the rest with the highway in int8). `elmo train --init` adds a
fresh softmax to a model that has none, so continued training still works from the bundled folder.

A model whose float16 folder exceeds --max-mb (the v2 shape's 2,048-filter highway alone is 8.4M
parameters) is stored with chosen matrices in int8, one float32 scale per output channel
(`--int8`, default `auto`: none if the float folder fits, else the highway's, else every large
matrix; see `elmo_lm/io/int8_storage.py`). It loads back as float32 like any folder;
benchmarks/RESULTS-bundle_store.md measures what each choice costs in vectors and perplexity.

The folder is built beside the target under a hidden temporary name, loaded back and compared
with the run's float32 model on a test sentence, and only then renamed into place (an existing
folder is replaced; an interrupted run leaves the old one). The script refuses a result larger
than --max-mb, so an oversized model never lands in the wheel by accident.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from elmo_lm.bundled import BUNDLED_MODEL  # noqa: E402
from elmo_lm.embed import Embedder  # noqa: E402
from elmo_lm.errors import ElmoError  # noqa: E402
from elmo_lm.training.checkpoint import Progress, load_checkpoint  # noqa: E402
from elmo_lm.training.export import bilm_tf_options  # noqa: E402
from elmo_lm.training.run_folder import CHECKPOINT_NAME, run_config  # noqa: E402
from elmo_lm.io import load_model, save_pretrained  # noqa: E402
from elmo_lm.io.int8_storage import INT8_CHOICES, int8_keys  # noqa: E402
from elmo_lm.model import ElmoBiLM  # noqa: E402

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
TEST_SENTENCE = "The bank raised its rates , so we sat on the river bank .".split()


def folder_bytes(folder: Path) -> int:
    """Total size of the files directly in `folder`."""
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def checkpoint_model(run_dir: Path) -> tuple[ElmoBiLM, Progress]:
    """The model of the run's checkpoint (softmax included) and how far that checkpoint got.

    As `elmo_lm.training.run_folder.load_run_model`, but the step comes from the same read of the file: a run
    still training may replace its checkpoint at any moment.
    """
    config = run_config(run_dir)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_NAME)
    state = checkpoint["model"]
    model = ElmoBiLM(config.model, vocab_size=state["softmax.weight"].shape[0])
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ElmoError(f"{run_dir / CHECKPOINT_NAME}: does not fit the run's config ({error})") from None
    return model.eval(), checkpoint["progress"]


def last_valid_record(run_dir: Path, step: int) -> dict | None:
    """The last validation record of metrics.jsonl at or before `step` (None if there is none)."""
    path = run_dir / "metrics.jsonl"
    valid = None
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                if record.get("split") == "valid" and record.get("step", 0) <= step:
                    valid = record
    return valid


def compare(reference: torch.nn.Module, bundled: torch.nn.Module) -> tuple[float, float]:
    """Max absolute difference and lowest per-token cosine of all layers on TEST_SENTENCE."""
    a = Embedder(reference).embed_sentence(TEST_SENTENCE)  # (L+1, n, 2P)
    b = Embedder(bundled).embed_sentence(TEST_SENTENCE)  # (L+1, n, 2P)
    if not np.isfinite(b).all():
        raise ElmoError("the bundled model gives non-finite vectors")
    cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)  # (L+1, n)
    return float(np.abs(a - b).max()), float(cosine.min())


def int8_candidates(choice: str) -> list[str | None]:
    """The int8 choices to try in turn (None: all float), for `--int8 choice`."""
    if choice == "auto":
        return [None, *INT8_CHOICES]
    return [None if choice == "none" else choice]


def bundle(run_dir: Path, out: Path, dtype: torch.dtype, keep_softmax: bool, include_vocab: bool,
           max_mb: float, int8: str = "auto") -> Path:
    """Build the folder under a temporary name beside `out`, check it, rename it to `out`.

    With `int8` "auto", the first of all-float, int8 highway, int8 matrices that fits `max_mb`."""
    model, progress = checkpoint_model(run_dir)
    config = run_config(run_dir)
    assert model.softmax is not None
    vocab_size = model.softmax.out_features
    model.config = model.config.replace(extra=bilm_tf_options(config, vocab_size))
    reference = copy.deepcopy(model)  # the float32 model (with softmax) to compare against
    if not keep_softmax:
        model.softmax = None
    for name, tensor in model.state_dict().items():
        limit = torch.finfo(dtype).max
        if tensor.abs().max() > limit:
            raise ElmoError(f"{name}: values up to {float(tensor.abs().max()):g} do not fit {dtype} (max {limit:g})")

    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        vocab = run_dir / "vocab.txt"
        for choice in int8_candidates(int8):
            stored = int8_keys(model.state_dict(), choice) if choice else []
            shutil.rmtree(temporary, ignore_errors=True)
            save_pretrained(model, temporary, vocab_file=vocab if include_vocab and vocab.is_file() else None,
                            dtype=dtype, int8=stored)
            size = folder_bytes(temporary)
            if size <= max_mb * 1e6:
                break
        for path in temporary.iterdir():
            path.chmod(0o644)  # atomic_path's temporary files are private (0600); a package's data is not
        if size > max_mb * 1e6:
            raise ElmoError(f"the folder would be {size / 1e6:.1f} MB, more than --max-mb {max_mb:g}"
                            + ("" if not keep_softmax else " (drop --keep-softmax)")
                            + ("" if int8 in ("auto", "matrices") else " (try --int8 highway or matrices)"))
        loaded = load_model(temporary)
        if (loaded.softmax is not None) != keep_softmax:
            raise ElmoError("the written folder does not load back with the expected softmax")
        max_diff, min_cosine = compare(reference, loaded)
        if out.exists():
            os.replace(out, old)
        os.replace(temporary, out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)

    parameters = sum(p.numel() for p in loaded.parameters())
    valid = last_valid_record(run_dir, progress.step)
    print(f"run            {run_dir}: checkpoint of step {progress.step:,} ({progress.tokens:,} tokens, "
          f"{progress.elapsed_s / 3600:.1f} h of training)")
    if valid:
        print(f"valid ppl      {valid['ppl']:.1f} (forward {valid['forward_ppl']:.1f}, backward "
              f"{valid['backward_ppl']:.1f}) at step {valid['step']:,}")
    print(f"parameters     {parameters:,} ({'with' if keep_softmax else 'without'} the {vocab_size:,}-word softmax), "
          f"stored as {str(dtype).removeprefix('torch.')}"
          + (f", {len(stored)} matrices ({sum(model.state_dict()[k].numel() for k in stored):,} parameters, "
             f"--int8 {choice}) as int8 with a scale per output channel" if stored else ""))
    print(f"vs float32     max |difference| {max_diff:.2e}, lowest token cosine {min_cosine:.6f} (all layers)")
    for path in sorted(out.iterdir()):
        print(f"  {path.name:<18} {path.stat().st_size / 1e6:8.2f} MB")
    print(f"wrote {out}: {folder_bytes(out) / 1e6:.2f} MB")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a training run folder (elmo train --out)")
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL,
                        help=f"model folder to write (default: the package's, {BUNDLED_MODEL})")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="storage type (default float16)")
    parser.add_argument("--int8", choices=["auto", "none", *INT8_CHOICES], default="auto",
                        help="matrices stored as int8 with per-channel scales: the highway's, every large one, "
                             "none, or auto (default: none if the float folder fits --max-mb, else the fewest that fit)")
    parser.add_argument("--keep-softmax", action="store_true", help="keep the softmax (needed only by elmo evaluate)")
    parser.add_argument("--no-vocab", action="store_true", help="leave out vocab.txt")
    parser.add_argument("--max-mb", type=float, default=25.0, help="refuse a folder larger than this (default 25)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the cores are shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        bundle(args.run_dir, args.out, DTYPES[args.dtype], args.keep_softmax, not args.no_vocab, args.max_mb,
               args.int8)
    except ElmoError as error:
        sys.exit(f"bundle_model: {error}")


if __name__ == "__main__":
    main()
