"""Turning a training run into a model: a model folder plus the AllenNLP/bilm-tf files.

`export_run(RUN_DIR, OUT_DIR)` writes into OUT_DIR:

- `config.json` + `model.safetensors` + `vocab.txt`: this project's model folder (softmax
  included), for `elmo embed --model OUT_DIR`, `load_model`, and `elmo train --init OUT_DIR`;
- `options.json` + `weights.hdf5`: the bilm-tf layout (`n_characters` 262, the bilm-tf training
  keys filled in, `softmax/W` and `softmax/b` stored), for AllenNLP and `--options/--weights`.
"""

from __future__ import annotations

from pathlib import Path

from ..config import BILM_TF_TRAINING_KEYS
from ..errors import ElmoError
from ..io import save_allennlp_weights, save_pretrained
from .config import TrainConfig
from .run_folder import VOCAB_NAME, load_run_model, run_config

EXPORTED_FILES = ("config.json", "model.safetensors", "vocab.txt", "options.json", "weights.hdf5")


def bilm_tf_options(config: TrainConfig, vocab_size: int) -> dict[str, object]:
    """The training keys of a bilm-tf `options.json` for a model trained with `config`: those of
    `config.BILM_TF_TRAINING_KEYS` that have a value (no clip or epoch limit: left out)."""
    known: dict[str, object] = {"bidirectional": True, "n_tokens_vocab": vocab_size,
                                "sample_softmax": config.use_sampled_softmax(vocab_size),
                                "learning_rate": config.lr}  # the rate in effect, the optimizer's default or not
    options: dict[str, object] = {}
    for key, name in BILM_TF_TRAINING_KEYS.items():
        value = known[key] if key in known else (getattr(config, name) if name is not None else None)
        if value is not None:
            options[key] = value
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
    save_pretrained(model, out, vocab_file=run_dir / VOCAB_NAME)
    save_allennlp_weights(model.config, model.state_dict(), out / "options.json", out / "weights.hdf5")
    return files
