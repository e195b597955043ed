"""A trained head as a folder: `config.json` (settings and label set), `head.safetensors`, `metrics.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import ElmoError
from ..io.atomic import atomic_path
from .heads import HeadConfig, TaskHead, build_head

HEAD_CONFIG = "config.json"
HEAD_WEIGHTS = "head.safetensors"
METRICS = "metrics.json"


def save_head(head: TaskHead, folder: str | Path, metrics: dict[str, Any] | None = None) -> None:
    """Write `head` (and `metrics`, if given) to `folder`, creating it; each file atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().cpu().contiguous() for key, value in head.state_dict().items()}
    with atomic_path(folder / HEAD_WEIGHTS) as temporary:
        save_file(tensors, str(temporary), metadata={"format": "pt"})
    config = {"model_type": "elmo-task-head", **head.config.to_dict()}
    with atomic_path(folder / HEAD_CONFIG) as temporary:
        temporary.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if metrics is not None:
        write_json(folder / METRICS, metrics)


def load_head(folder: str | Path) -> TaskHead:
    """Rebuild a head saved by `save_head`, in eval mode; `ElmoError` naming the broken file."""
    folder = Path(folder)
    config_path, weights_path = folder / HEAD_CONFIG, folder / HEAD_WEIGHTS
    if not config_path.is_file():
        raise ElmoError(f"{folder}: not a head folder ({HEAD_CONFIG} not found)")
    try:
        values = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ElmoError(f"{config_path}: not valid JSON ({error})") from None
    if values.pop("model_type", None) != "elmo-task-head":
        raise ElmoError(f"{config_path}: not a task head config (model_type is not 'elmo-task-head')")
    head = build_head(HeadConfig.from_dict(values, source=str(config_path)))
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise ElmoError(f"{weights_path}: not a readable safetensors file ({error})") from None
    try:
        head.load_state_dict(state)
    except RuntimeError as error:
        raise ElmoError(f"{weights_path}: does not match {HEAD_CONFIG} ({str(error).splitlines()[0]})") from None
    return head.eval()


def write_json(path: str | Path, values: dict[str, Any]) -> None:
    """Write `values` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(values, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
