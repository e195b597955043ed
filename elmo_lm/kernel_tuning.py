"""`elmo tune` as a library call: measure the inference kernels' choices for a model on this CPU and keep them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import ModelConfig


@dataclass
class TuningReport:
    """What `tune_kernels` measured and where it kept it."""

    cpu_key: str
    """The CPU model, its vector flags and the torch version the choices are kept under."""
    entry: dict
    """This CPU's choices: `packing`, `tanh_via_sigmoid` and the per-candidate `seconds`."""
    cache_file: Path
    """The cache file holding them."""


def tune_kernels(config: ModelConfig) -> TuningReport:
    """Time the per-step matmul paths and tanh at `config`'s step shapes and store the fastest."""
    from .inference import kernel_timing, tuning

    entry = kernel_timing.tune([(config.lstm_dim, config.projection_dim)])
    return TuningReport(tuning.cpu_key(), entry, tuning.cache_file())
