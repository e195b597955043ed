"""elmo-lm: ELMo language models in PyTorch."""

from .chars import batch_to_ids
from .config import ModelConfig
from .embed import Embedder
from .errors import ElmoError
from .io import load_model, save_pretrained
from .elmo import Elmo, ScalarMix
from .model import ElmoBiLM

__all__ = ["batch_to_ids", "Elmo", "ElmoBiLM", "ElmoError", "Embedder", "ModelConfig", "ScalarMix", "load_model",
           "save_pretrained"]
__version__ = "0.1.0"
