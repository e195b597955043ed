"""Training settings: the model shape plus every training option, and the named presets.

`TrainConfig` is the one place where the training options are documented (a docstring per field).
A config comes from a preset name (`tiny`, `small`, `medium`, `original`) or a JSON file:

    {"preset": "small",                      # optional base; default: the bilm-tf options
     "batch_size": 64, "learning_rate": 0.1, # any TrainConfig field, by name
     "lstm": {...}, "char_cnn": {...}}       # optional model shape in the options.json layout

Without a preset, the base is the bilm-tf options and the original model shape. A bilm-tf
training `options.json` also works: its keys `n_epochs`, `all_clip_norm_val`,
`n_negative_samples_batch` are read as `epochs`, `clip_norm`, `n_negative_samples`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import BILM_TF_TRAINING_KEYS, PRESET_SHAPES, ModelConfig
from ..errors import ElmoError
from ..textfile import read_json_object

TINY_SHAPE = dict(
    char_embed_dim=8, filters=((1, 16), (2, 16), (3, 32), (4, 64)), n_highway=1, lstm_dim=256,
    projection_dim=64, n_layers=2,
)
"""A model small enough to learn a toy corpus on one CPU core in seconds (about 0.5M parameters)."""

BILM_TF_ALIASES = {key: name for key, name in BILM_TF_TRAINING_KEYS.items() if name is not None and name != key}
"""bilm-tf option names read as the TrainConfig field they mean (from `config.BILM_TF_TRAINING_KEYS`)."""

IGNORED_BILM_TF_KEYS = tuple(key for key, name in BILM_TF_TRAINING_KEYS.items() if name is None)
"""bilm-tf training keys with no TrainConfig field (facts about the data, or fixed choices here)."""

OPTIMIZERS = ("adagrad", "adam")
PRECISIONS = ("float32", "bfloat16", "auto")
SOFTMAX_KINDS = ("auto", "full", "sampled")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `elmo train` needs besides the data: the model shape and the training options.

    Defaults are those of the original bilm-tf training (ELMO.md, "Training objective") except
    where a preset says otherwise.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    """Shape of the model (ignored with `--init`, which brings its own shape)."""
    batch_size: int = 128
    """Rows per batch and process; with N processes the global batch has N * batch_size rows."""
    unroll_steps: int = 20
    """Positions per row and batch: the truncated-backpropagation window (state carries over)."""
    dropout: float = 0.1
    """Dropout on the input of each LSTM layer and on the top layer before the softmax."""
    optimizer: str = "adagrad"
    """`adagrad` (the original) or `adam`."""
    learning_rate: float | None = None
    """Constant learning rate; None: 0.2 for Adagrad (bilm-tf), 1e-3 for Adam."""
    adagrad_initial_accumulator: float = 1.0
    """Adagrad's initial accumulator value (bilm-tf: 1.0)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's beta1 and beta2."""
    weight_decay: float = 0.0
    """L2 penalty added by the optimizer (0: none, as in bilm-tf)."""
    clip_norm: float | None = 10.0
    """Clip the global gradient norm (over all parameters) to this value; None: no clipping."""
    epochs: int | None = 10
    """Passes over the training corpus; training stops at `epochs` or `max_steps`, whichever comes
    first. None: no epoch limit (then `max_steps` is required)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (None: only `epochs` limits training)."""
    softmax: str = "auto"
    """`full`, `sampled`, or `auto`: sampled when the vocabulary has more than
    `2 * n_negative_samples` words, else full. Evaluation always uses the full softmax."""
    n_negative_samples: int = 8192
    """Negatives per step for the sampled softmax (drawn once per step, shared by both directions
    and all rows), from a log-uniform (Zipfian) distribution over the count-sorted vocabulary."""
    seed: int = 0
    """Seeds the initial weights, the data shuffle, dropout and the negative sampler."""
    log_every: int = 10
    """Steps between `metrics.jsonl` records (averages over those steps) and plot points."""
    valid_every: int = 1000
    """Steps between validation runs (when `--valid` is given); validation also runs at the end."""
    valid_max_batches: int | None = None
    """Limit each validation run to this many batches per process (None: the whole set)."""
    checkpoint_every: int = 500
    """Steps between checkpoints; a checkpoint is also written at the end."""
    tokenize: bool = False
    """Split corpus lines with the built-in tokenizer instead of on whitespace."""
    shuffle_buffer: int = 100_000
    """Lines held by the shuffle buffer of the data stream (files are shuffled too)."""
    plot: bool = True
    """Draw `learning_curves.png` at the end (needs matplotlib, an optional dependency)."""
    precision: str = "float32"
    """Products of the training matmuls: `float32`, `bfloat16` (master weights, cell state, losses and
    optimizer stay float32), or `auto`: bfloat16 where the CPU has native bfloat16 dot products (AMX, or
    AMD's AVX-512 BF16, read from its flags), else float32. Evaluation always runs in float32."""

    def __post_init__(self) -> None:
        positive = ("batch_size", "unroll_steps", "log_every", "valid_every", "checkpoint_every", "n_negative_samples",
                    "shuffle_buffer")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ElmoError(f"training option {name} must be a positive integer, not {getattr(self, name)!r}")
        for name in ("epochs", "max_steps", "valid_max_batches"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ElmoError(f"training option {name} must be a positive integer or null, not {value!r}")
        if self.epochs is None and self.max_steps is None:
            raise ElmoError("training needs a limit: set epochs or max_steps")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ElmoError(f"training option dropout must be a number in [0, 1), not {self.dropout!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ElmoError(f"training option optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ElmoError(f"training option precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.softmax not in SOFTMAX_KINDS:
            raise ElmoError(f"training option softmax must be one of {', '.join(SOFTMAX_KINDS)}, not {self.softmax!r}")
        for name in ("tokenize", "plot"):
            if not isinstance(getattr(self, name), bool):
                raise ElmoError(f"training option {name} must be true or false, not {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ElmoError(f"training option seed must be an integer, not {self.seed!r}")
        for name in ("adagrad_initial_accumulator", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ElmoError(f"training option {name} must be a number >= 0, not {value!r}")
        for name in ("learning_rate", "clip_norm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ElmoError(f"training option {name} must be a positive number or null, not {value!r}")

    @property
    def lr(self) -> float:
        """The learning rate in effect (the optimizer's default when `learning_rate` is None)."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 0.2 if self.optimizer == "adagrad" else 1e-3

    def matmul_dtype(self, device_type: str = "cpu") -> Any:
        """The torch dtype of the training matmuls' products for `precision` on this machine."""
        import torch

        from ..cpu_features import bfloat16_is_fast

        if self.precision == "bfloat16" or (self.precision == "auto" and device_type == "cpu" and bfloat16_is_fast()):
            return torch.bfloat16
        return torch.float32

    def use_sampled_softmax(self, vocab_size: int) -> bool:
        """Whether training over `vocab_size` words uses the sampled softmax."""
        if self.softmax == "auto":
            return vocab_size > 2 * self.n_negative_samples
        return self.softmax == "sampled"

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that `from_dict` reads back: training fields plus the model shape."""
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        options["adam_betas"] = list(self.adam_betas)
        model = self.model.to_options()
        return {**options, "lstm": model["lstm"], "char_cnn": model["char_cnn"]}

    @classmethod
    def from_dict(cls, options: dict[str, Any], source: str = "config") -> TrainConfig:
        """Read a config dict (see the module docstring); `source` names it in error messages."""
        options = dict(options)
        base = preset(str(options.pop("preset")), source=source) if "preset" in options else cls()
        changes: dict[str, Any] = {}
        if "lstm" in options or "char_cnn" in options:
            shape = {key: options.pop(key) for key in ("lstm", "char_cnn") if key in options}
            if set(shape) != {"lstm", "char_cnn"}:
                raise ElmoError(f"{source}: give both 'lstm' and 'char_cnn' for the model shape, or neither")
            changes["model"] = ModelConfig.from_options(shape, source=source)
        for key in IGNORED_BILM_TF_KEYS:
            options.pop(key, None)
        names = {f.name for f in dataclasses.fields(cls)} - {"model"}
        for key, value in options.items():
            name = BILM_TF_ALIASES.get(key, key)
            if name not in names:
                raise ElmoError(f"{source}: unknown training option {key!r} (known: {', '.join(sorted(names))})")
            if name == "adam_betas":
                value = tuple(value)
            changes[name] = value
        try:
            return base.replace(**changes)
        except (TypeError, ValueError) as bad:
            raise ElmoError(f"{source}: {bad}") from None
        except ElmoError as bad:
            raise ElmoError(f"{source}: {bad}") from None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a JSON config file."""
        options = read_json_object(path, "config file")
        return cls.from_dict(options, source=str(path))


def preset(name: str, source: str = "--config") -> TrainConfig:
    """The named preset: `tiny` (quick CPU experiments) or a released shape with bilm-tf options.

    `small`, `medium` and `original` are the released model shapes (`config.PRESET_SHAPES`)
    trained with the original options (batch 128, unroll 20, 8192 negatives, Adagrad 0.2,
    dropout 0.1, clip 10, 10 epochs).
    """
    if name == "tiny":
        return TrainConfig(model=ModelConfig(**TINY_SHAPE), batch_size=16, n_negative_samples=1024,
                           valid_every=100, checkpoint_every=100)
    if name in PRESET_SHAPES:
        return TrainConfig(model=ModelConfig(**PRESET_SHAPES[name]))
    raise ElmoError(f"{source}: unknown preset {name!r} (presets: {', '.join(PRESETS)})")


PRESETS = ("tiny", *PRESET_SHAPES)
"""Names accepted by `preset` and `--config`."""


def resolve_config(name_or_file: str) -> TrainConfig:
    """`--config`: a preset name, or the path of a JSON config file."""
    if name_or_file in PRESETS:
        return preset(name_or_file)
    if Path(name_or_file).suffix == ".json" or Path(name_or_file).exists():
        return TrainConfig.load(name_or_file)
    raise ElmoError(f"--config {name_or_file!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
