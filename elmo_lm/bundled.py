"""Where the model that ships inside the package lives, and `open_model`: that model unless told otherwise."""

from __future__ import annotations

from pathlib import Path

from .errors import ElmoError
from .io import load_model
from .io.allennlp import Take
from .model import ElmoBiLM

BUNDLED_MODEL = Path(__file__).parent / "pretrained" / "elmo-en-small"


def bundled_model_path() -> Path:
    """The bundled English model's folder; `ElmoError` if this installation has none."""
    if not (BUNDLED_MODEL / "config.json").is_file():
        raise ElmoError("no model given, and this version of elmo-lm bundles none yet: "
                        "pass --model DIR, or --options FILE --weights FILE")
    return BUNDLED_MODEL


def open_model(model: str | Path | None = None, options_file: str | Path | None = None,
               weight_file: str | Path | None = None, take: Take | None = None) -> ElmoBiLM:
    """`io.load_model` of the model named, or of the bundled model when none of the three is given.

    The one place that default is decided: the `elmo` commands, `Embedder()` and the task heads use it.
    """
    if model is None and options_file is None and weight_file is None:
        model = bundled_model_path()
    return load_model(model, options_file, weight_file, take)
