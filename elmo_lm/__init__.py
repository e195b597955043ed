"""elmo-lm: ELMo language models in PyTorch."""

from .chars import batch_to_ids
from .config import ModelConfig
from .errors import ElmoError

__all__ = ["batch_to_ids", "ModelConfig", "ElmoError"]
__version__ = "0.1.0"
