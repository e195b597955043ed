"""elmo-lm inside other libraries, one module each, every one an optional extra.

- `allennlp`: AllenNLP 0.9's `ElmoEmbedder`, drop-in (no extra needed; also `elmo_lm.allennlp`).
- `hub`: `from_pretrained` / `push_to_hub` for model folders on the Hugging Face Hub (`elmo-lm[hub]`).
- `sentence_transformers`: an input module for `SentenceTransformer` (`elmo-lm[sentence-transformers]`).
- `flair`: `ElmoLmEmbeddings`, a flair `TokenEmbeddings` (`elmo-lm[flair]`).
- `spacy`: the `elmo` pipeline component (`elmo-lm[spacy]`).
- ELMoForManyLangs models convert with `elmo convert --from elmoformanylangs` (`elmo_lm.io.elmoformanylangs`).

Importing this package imports none of those libraries.
"""
