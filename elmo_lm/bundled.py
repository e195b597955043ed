"""Where the model that ships inside the package lives."""

from __future__ import annotations

from pathlib import Path

from .errors import ElmoError

BUNDLED_MODEL = Path(__file__).parent / "pretrained" / "elmo-en-small"


def bundled_model_path() -> Path:
    """The bundled English model's folder; `ElmoError` if this installation has none."""
    if not (BUNDLED_MODEL / "config.json").is_file():
        raise ElmoError("no model given, and this version of elmo-lm bundles none yet: "
                        "pass --model DIR, or --options FILE --weights FILE")
    return BUNDLED_MODEL
