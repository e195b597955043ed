"""elmo-lm: ELMo language models in PyTorch.

The public names are imported on first use (PEP 562), so that `elmo --version`, `elmo --help`
and usage errors answer without loading PyTorch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import ElmoError

if TYPE_CHECKING:
    from .chars import batch_to_ids
    from .config import ModelConfig
    from .embed import Embedder
    from .io import load_model, save_pretrained
    from .elmo import Elmo, ScalarMix
    from .model import ElmoBiLM

_LAZY = {"batch_to_ids": ".chars", "ModelConfig": ".config", "Embedder": ".embed", "load_model": ".io",
         "save_pretrained": ".io", "Elmo": ".elmo", "ScalarMix": ".elmo", "ElmoBiLM": ".model"}
"""Public name -> the module that defines it."""

__all__ = ["batch_to_ids", "Elmo", "ElmoBiLM", "ElmoError", "Embedder", "ModelConfig", "ScalarMix", "load_model",
           "save_pretrained"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
