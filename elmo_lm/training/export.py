"""Turning a training run into a model: a model folder plus the AllenNLP/bilm-tf files.

`export_run(RUN_DIR, OUT_DIR)` writes into OUT_DIR:

- `config.json` + `model.safetensors` + `vocab.txt`: this project's model folder (softmax
  included), for `elmo embed --model OUT_DIR`, `load_model`, and `elmo train --init OUT_DIR`;
- `options.json` + `weights.hdf5`: the bilm-tf layout (`n_characters` 262, the bilm-tf training
  keys filled in, `softmax/W` and `softmax/b` stored), for AllenNLP and `--options/--weights`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from ..errors import ElmoError
from ..io import save_allennlp_weights, save_pretrained
from ..model import ElmoBiLM
from .config import TrainConfig

EXPORTED_FILES = ("config.json", "model.safetensors", "vocab.txt", "options.json", "weights.hdf5")


def load_run_model(run_dir: str | Path) -> ElmoBiLM:
    """The model of a run's latest checkpoint (softmax included), in evaluation mode.

    Raises:
        ElmoError: the folder is not a run, or its checkpoint is missing or unreadable.
    """
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_NAME)
    state = checkpoint["model"]
    vocab_size = state["softmax.weight"].shape[0] if "softmax.weight" in state else None
    model = ElmoBiLM(config.model, vocab_size=vocab_size)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ElmoError(f"{run_dir / CHECKPOINT_NAME}: does not fit the run's config ({error})") from None
    model.eval()
    return model


def run_config(run_dir: str | Path) -> TrainConfig:
    """The training config recorded in a run's `run.json`."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise ElmoError(f"{run_dir}: not a training run (no run.json)")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as bad:
        raise ElmoError(f"{path}: not valid JSON ({bad})") from None
    return TrainConfig.from_dict(run["config"], source=str(path))


def bilm_tf_options(config: TrainConfig, vocab_size: int) -> dict[str, object]:
    """The training keys of a bilm-tf `options.json` for a model trained with `config`."""
    options: dict[str, object] = {
        "bidirectional": True, "dropout": config.dropout, "batch_size": config.batch_size,
        "unroll_steps": config.unroll_steps, "n_tokens_vocab": vocab_size,
        "n_negative_samples_batch": config.n_negative_samples, "sample_softmax": config.use_sampled_softmax(vocab_size),
        "learning_rate": config.lr,
    }
    if config.clip_norm is not None:
        options["all_clip_norm_val"] = config.clip_norm
    if config.epochs is not None:
        options["n_epochs"] = config.epochs
    return options


def export_run(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write the run's latest model to `out_dir` (see the module docstring); returns the files written.

    Raises:
        ElmoError: not a run, or `out_dir` already holds an exported file and not `overwrite`.
    """
    run_dir, out = Path(run_dir), Path(out_dir)
    files = [out / name for name in EXPORTED_FILES]
    existing = [path for path in files if path.exists()]
    if existing and not overwrite:
        raise ElmoError(f"{existing[0]}: exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise ElmoError(f"{out}: folder {out.parent} does not exist")
    model = load_run_model(run_dir)
    config = run_config(run_dir)
    assert model.softmax is not None
    model.config = model.config.replace(extra=bilm_tf_options(config, model.softmax.out_features))
    out.mkdir(exist_ok=True)
    save_pretrained(model, out, vocab_file=run_dir / "vocab.txt")
    save_allennlp_weights(model.config, model.state_dict(), out / "options.json", out / "weights.hdf5")
    return files
