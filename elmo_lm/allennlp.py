"""`from elmo_lm.allennlp import ElmoEmbedder`: AllenNLP 0.9's embedder, drop-in (see elmo_lm.integrations.allennlp)."""

from .integrations.allennlp import ElmoEmbedder

__all__ = ["ElmoEmbedder"]
