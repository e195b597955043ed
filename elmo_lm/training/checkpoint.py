"""Training checkpoints: everything a resumed run needs to continue exactly.

A checkpoint (`RUN_DIR/checkpoint.pt`, written atomically: a killed run leaves the previous one
intact) holds the model and optimizer states, the progress (step, epoch, batches consumed in the
epoch: the data stream is deterministic, so the position is enough to rebuild it), the sampler's
random state, and for every process its torch random state, the LSTM state it carries into
the next batch, and the partial sums of the next metrics record.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ElmoError
from ..io.atomic import atomic_path

FORMAT_VERSION = 1


@dataclass
class Progress:
    """How far a run got."""

    step: int = 0
    """Optimizer steps taken."""
    epoch: int = 0
    """The epoch being read."""
    batch_in_epoch: int = 0
    """Batches of `epoch` already consumed (per process)."""
    tokens: int = 0
    """Real targets per direction seen so far, over all processes."""
    elapsed_s: float = 0.0
    """Training time so far (validation and checkpointing included)."""


def save_checkpoint(
    path: str | os.PathLike[str],
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    progress: Progress,
    sampler_rng: torch.Tensor,
    process_states: list[dict[str, Any]],
) -> None:
    """Write a checkpoint atomically.

    Args:
        model_state: the `ElmoBiLM` state dict (softmax included).
        optimizer_state: the optimizer's state dict.
        progress: step, epoch and data position.
        sampler_rng: state of the negative sampler's generator (the same on every process).
        process_states: per process, in rank order: `torch_rng` (and `cuda_rng`), `lstm_state`
            (a `(h, c)` pair of CPU tensors, or None at an epoch start), and `metrics_window` /
            `metrics_window_time` (the loss sums and time since the last metrics record).
    """
    payload = {
        "format_version": FORMAT_VERSION,
        "model": {key: value.detach().cpu() for key, value in model_state.items()},
        "optimizer": optimizer_state,
        "progress": asdict(progress),
        "sampler_rng": sampler_rng,
        "processes": process_states,
    }
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors on the CPU).

    Raises:
        ElmoError: the file is missing, unreadable, or not a checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise ElmoError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file
        raise ElmoError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ElmoError(f"{path}: not an elmo-lm checkpoint (format {FORMAT_VERSION})")
    payload["progress"] = Progress(**payload["progress"])
    return payload
