"""The model's shape as a dataclass that round-trips the AllenNLP/bilm-tf `options.json`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chars import MAX_CHARS, N_CHARS, N_RAW_CHARS
from .errors import ElmoError
from .textfile import read_json_object

BILM_TF_TRAINING_KEYS: dict[str, str | None] = {
    "bidirectional": None,  # always true here
    "dropout": "dropout",
    "batch_size": "batch_size",
    "unroll_steps": "unroll_steps",
    "n_tokens_vocab": None,  # the vocabulary's size
    "n_negative_samples_batch": "n_negative_samples",
    "sample_softmax": None,  # whether the sampled softmax was used (`softmax: auto` decides by size)
    "learning_rate": "learning_rate",
    "all_clip_norm_val": "clip_norm",
    "n_epochs": "epochs",
    "n_train_tokens": None,  # a fact about the corpus
    "share_embedding_softmax": None,  # never shared here
}
"""The training keys of a bilm-tf `options.json`, each with the `TrainConfig` field it means (None:
no field). Inference ignores them (`ModelConfig.extra` keeps them); `TrainConfig.from_dict` reads
them; `training.export.bilm_tf_options` writes them, in this order."""

TRAINING_ONLY_KEYS = tuple(BILM_TF_TRAINING_KEYS)
"""Top-level options.json keys that inference ignores (kept in `ModelConfig.extra`)."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of an ELMo model: the character CNN, the highway layers and the two LSTMP stacks."""

    char_embed_dim: int = 16
    """Width `e` of the character table."""
    filters: tuple[tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))
    """(width, count) of each convolution filter over the 50 character slots."""
    n_highway: int = 2
    """Highway layers after the CNN (0 for none)."""
    activation: str = "relu"
    """Activation after each filter's max-pool: `relu` or `tanh`."""
    max_characters_per_token: int = MAX_CHARS
    """Character slots per token, boundary marks included."""
    lstm_dim: int = 4096
    """Cell size C of each LSTMP layer."""
    projection_dim: int = 512
    """Projection size P: the token vector, each LSTM output and the LSTM's recurrent input."""
    n_layers: int = 2
    """LSTMP layers per direction."""
    cell_clip: float | None = 3.0
    """Clip of the cell state to [-cell_clip, cell_clip]; None for none."""
    proj_clip: float | None = 3.0
    """Clip of the projected output; None for none."""
    use_skip_connections: bool = True
    """Layers 1 and above add their input to their output."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Training-only options kept for writing back; inference ignores them."""

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "tanh"):
            raise ElmoError(f"char_cnn.activation must be 'relu' or 'tanh', not {self.activation!r}")
        if self.max_characters_per_token != MAX_CHARS:
            raise ElmoError(f"char_cnn.max_characters_per_token must be {MAX_CHARS}, not {self.max_characters_per_token}")
        for width, count in self.filters:
            if not (1 <= width <= MAX_CHARS and count >= 1):
                raise ElmoError(f"char_cnn.filters has an invalid entry [{width}, {count}]")
        for name in ("char_embed_dim", "lstm_dim", "projection_dim", "n_layers"):
            if getattr(self, name) < 1:
                raise ElmoError(f"{name} must be at least 1, not {getattr(self, name)}")

    @property
    def n_filters(self) -> int:
        """F, the width of the CNN output: the sum of the filter counts."""
        return sum(count for _, count in self.filters)

    @property
    def output_dim(self) -> int:
        """2P: the width of every output layer."""
        return 2 * self.projection_dim

    @property
    def n_output_layers(self) -> int:
        """L + 1: the token layer and one per LSTM layer."""
        return self.n_layers + 1

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_options(cls, options: dict[str, Any], source: str = "options.json") -> ModelConfig:
        """Read the AllenNLP/bilm-tf options dict; `source` names the file in error messages."""
        try:
            lstm, cnn = options["lstm"], options["char_cnn"]
            config = cls(
                char_embed_dim=int(cnn["embedding"]["dim"]),
                filters=tuple((int(w), int(n)) for w, n in cnn["filters"]),
                n_highway=int(cnn.get("n_highway") or 0),
                activation=str(cnn.get("activation", "relu")),
                max_characters_per_token=int(cnn.get("max_characters_per_token", MAX_CHARS)),
                lstm_dim=int(lstm["dim"]),
                projection_dim=int(lstm["projection_dim"]),
                n_layers=int(lstm["n_layers"]),
                cell_clip=float(lstm["cell_clip"]) if lstm.get("cell_clip") else None,
                proj_clip=float(lstm["proj_clip"]) if lstm.get("proj_clip") else None,
                use_skip_connections=bool(lstm.get("use_skip_connections", False)),
                extra={k: options[k] for k in TRAINING_ONLY_KEYS if k in options},
            )
        except KeyError as missing:
            raise ElmoError(f"{source}: missing key {missing.args[0]!r}") from None
        except (TypeError, ValueError) as bad:
            raise ElmoError(f"{source}: malformed options ({bad})") from None
        n_characters = cnn.get("n_characters", N_CHARS)
        if n_characters not in (N_RAW_CHARS, N_CHARS):
            raise ElmoError(f"{source}: char_cnn.n_characters must be {N_RAW_CHARS} or {N_CHARS}, not {n_characters}")
        return config

    def to_options(self) -> dict[str, Any]:
        """The options dict in the AllenNLP/bilm-tf layout (`n_characters` `N_CHARS`, as bilm-tf's training writes)."""
        lstm: dict[str, Any] = {
            "dim": self.lstm_dim,
            "projection_dim": self.projection_dim,
            "n_layers": self.n_layers,
            "use_skip_connections": self.use_skip_connections,
        }
        if self.cell_clip:
            lstm["cell_clip"] = _plain_number(self.cell_clip)
        if self.proj_clip:
            lstm["proj_clip"] = _plain_number(self.proj_clip)
        options: dict[str, Any] = dict(self.extra)
        options["lstm"] = lstm
        options["char_cnn"] = {
            "embedding": {"dim": self.char_embed_dim},
            "filters": [list(f) for f in self.filters],
            "n_highway": self.n_highway,
            "activation": self.activation,
            "max_characters_per_token": self.max_characters_per_token,
            "n_characters": N_CHARS,
        }
        return options

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        """Read an `options.json` file."""
        options = read_json_object(path, "options file")
        return cls.from_options(options, source=str(path))

    def save(self, path: str | Path) -> None:
        """Write an `options.json` file."""
        Path(path).write_text(json.dumps(self.to_options(), indent=2) + "\n", encoding="utf-8")


def _plain_number(value: float) -> int | float:
    """3.0 -> 3, so that written options look like the released ones."""
    return int(value) if float(value).is_integer() else value


PRESET_SHAPES = {
    "small": dict(lstm_dim=1024, projection_dim=128, n_highway=1),
    "medium": dict(lstm_dim=2048, projection_dim=256, n_highway=1),
    "original": dict(lstm_dim=4096, projection_dim=512, n_highway=2),
}
"""The released model shapes (ELMO.md section 2); all share the default CNN and clips."""
