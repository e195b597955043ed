"""A training run's folder (RUN_DIR): its file names, `run.json`, and the options that start or resume a run.

    run.json             the arguments and the training config (a resumed run reads them back)
    vocab.txt            the softmax vocabulary
    checkpoint.pt        the latest checkpoint (see `checkpoint.py`), replaced atomically
    metrics.jsonl        training and validation records (see `metrics.py`)
    learning_curves.png  perplexity and throughput against steps, drawn at the end

Read by the training loop (start, resume), by `export_run` and by `evaluate_model` (a run folder is
a model too: the model of its latest checkpoint).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ElmoError
from ..model import ElmoBiLM
from .checkpoint import load_checkpoint
from .config import PRESETS, TrainConfig, resolve_config

RUN_FILE = "run.json"
VOCAB_NAME = "vocab.txt"
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "learning_curves.png"


def is_run_folder(folder: str | Path) -> bool:
    """Whether `folder` holds a training run (its `run.json` and a checkpoint)."""
    folder = Path(folder)
    return (folder / CHECKPOINT_NAME).is_file() and (folder / RUN_FILE).is_file()


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The `run.json` of a run folder: train/valid patterns, vocab, config, init, world size."""
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ElmoError(f"{run_dir}: not a training run (no {RUN_FILE})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as bad:
        raise ElmoError(f"{path}: not valid JSON ({bad})") from None


def write_run(run_dir: Path, config: TrainConfig, train_data: Sequence[str], valid_data: Sequence[str] | None,
              vocab_file: str | Path | None, init: str | Path | None, init_options: str | Path | None,
              world_size: int) -> None:
    """Write the `run.json` of a new run."""
    run = {"train": [str(p) for p in train_data], "valid": [str(p) for p in valid_data or []] or None,
           "vocab": str(vocab_file), "init": str(init) if init else None,
           "init_options": str(init_options) if init_options else None, "world_size": world_size,
           "config": config.to_dict()}
    (run_dir / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")


def run_config(run_dir: str | Path) -> TrainConfig:
    """The training config recorded in a run's `run.json`."""
    return TrainConfig.from_dict(read_run(run_dir)["config"], source=str(Path(run_dir) / RUN_FILE))


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


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (VALUE as JSON, else a plain string) -> a dict of training options."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ElmoError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set dropout=0.2")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def run_arguments(
    out_dir: str | Path,
    resume: bool,
    config_name: str | None,
    train_data: Sequence[str],
    vocab_file: str | None,
    valid_data: Sequence[str],
    init: str | None,
    init_options: str | None,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """The keyword arguments of `train` for the `elmo train` options.

    A fresh run needs --train, --vocab and --config (or --init, whose shape is used with the
    default training options). A resumed run reads them from RUN_DIR/run.json; it accepts new
    --train/--valid paths (the same data, moved) and a new step or epoch limit, nothing else.
    """
    if resume:
        run = read_run(out_dir)
        changing = [name for name, value in (("--config", config_name), ("--init", init), ("--init-options", init_options))
                    if value]
        changing += [f"--set {key}" if key not in ("max_steps", "epochs") else "" for key in overrides]
        changing = [name for name in changing if name]
        if changing:
            raise ElmoError(f"--resume continues the run as configured in {Path(out_dir) / RUN_FILE}: "
                            f"{', '.join(changing)} cannot change (only --max-steps / --epochs and data paths)")
        config = TrainConfig.from_dict(run["config"], source=str(Path(out_dir) / RUN_FILE))
        config = config.replace(**overrides)
        return dict(config=config, train_data=list(train_data) or run["train"], vocab_file=None,
                    valid_data=list(valid_data) or run.get("valid"), init=None, init_options=None, resume=True)
    if not train_data:
        raise ElmoError("--train is required (the training corpus: files or globs)")
    if config_name is None and init is None:
        raise ElmoError(f"--config is required: a preset ({', '.join(PRESETS)}) or a JSON file")
    config = resolve_config(config_name) if config_name is not None else TrainConfig()
    if overrides:
        config = TrainConfig.from_dict({**config.to_dict(), **overrides}, source="--set")
    return dict(config=config, train_data=list(train_data), vocab_file=vocab_file, valid_data=list(valid_data) or None,
                init=init, init_options=init_options, resume=False)
