"""Weight formats: the AllenNLP/bilm-tf hdf5 layout and this project's model folder."""

from .allennlp import load_allennlp_weights, save_allennlp_weights
from .folder import load_model, save_pretrained

__all__ = ["load_allennlp_weights", "save_allennlp_weights", "load_model", "save_pretrained"]
