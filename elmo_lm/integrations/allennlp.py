"""AllenNLP 0.9's `ElmoEmbedder` (removed in AllenNLP 1.0), drop-in: change only the import line.

    from elmo_lm.allennlp import ElmoEmbedder     # was: from allennlp.commands.elmo import ElmoEmbedder

Same constructor, methods, return types and shapes. Stateful by default, as the reference was
(each batch row carries its LSTM state to the next call, so the same sentence can get different
vectors); `stateful=False` gives every sentence a fresh state: the same vectors wherever it is.
Differences: files must be local (AllenNLP downloaded URLs; the default model is the bundled one,
not AllenNLP's original English model), an empty line in `embed_file` gets an `(L+1, 0, 2P)`
dataset instead of an error, and an empty sentence's array has the model's width instead of 1024.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO

import h5py
import numpy as np
import torch

from ..embed import Embedder, select_layers
from ..errors import ElmoError
from ..io.atomic import atomic_path

DEFAULT_BATCH_SIZE = 64


class ElmoEmbedder:
    """Embed tokenised sentences with all of a model's layers, as AllenNLP 0.9's class did."""

    def __init__(
        self,
        options_file: str | Path | None = None,
        weight_file: str | Path | None = None,
        cuda_device: int = -1,
        *,
        stateful: bool = True,
        model: str | Path | None = None,
    ) -> None:
        """Args:
            options_file, weight_file: an AllenNLP/bilm-tf model's two local files; both None for
                the model bundled with elmo-lm. A model folder can also be given as `options_file`
                alone, or as `model`.
            cuda_device: the GPU to run on, -1 for the CPU.
            stateful: carry LSTM state per batch row between calls (the reference behaviour).
        """
        for name in (options_file, weight_file):
            if isinstance(name, str) and name.startswith(("http://", "https://", "s3://")):
                raise ElmoError(f"{name}: elmo-lm does not download models; fetch the file and pass its local path")
        if options_file is not None and weight_file is None and model is None:
            model, options_file = options_file, None
        if (options_file is None) != (weight_file is None):
            raise ElmoError("give both options_file and weight_file (or neither, for the bundled model)")
        device = "cpu" if cuda_device < 0 else f"cuda:{cuda_device}"
        self.embedder = Embedder(model, options_file=options_file, weight_file=weight_file, device=device,
                                 batch_size=DEFAULT_BATCH_SIZE, stateful=stateful)
        self.cuda_device = cuda_device

    def reset_states(self) -> None:
        """Stateful mode: start every batch row from zero state again."""
        self.embedder.reset_states()

    def _empty(self) -> np.ndarray:
        config = self.embedder.model.config
        return np.zeros((config.n_output_layers, 0, config.output_dim), np.float32)  # (L+1, 0, 2P)

    def batch_to_embeddings(self, batch: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Activations `(B, L+1, T, 2P)` (zero at padding) and a long mask `(B, T)`, on the model's device."""
        arrays = self.embedder.embed_batch(batch)  # each (L+1, n_i, 2P)
        config = self.embedder.model.config
        longest = max((len(tokens) for tokens in batch), default=0)
        activations = torch.zeros(len(batch), config.n_output_layers, longest, config.output_dim)  # (B, L+1, T, 2P)
        mask = torch.zeros(len(batch), longest, dtype=torch.long)  # (B, T)
        for row, array in enumerate(arrays):
            activations[row, :, : array.shape[1]] = torch.from_numpy(array)
            mask[row, : array.shape[1]] = 1
        return activations.to(self.embedder.device), mask.to(self.embedder.device)

    def embed_sentence(self, sentence: list[str]) -> np.ndarray:
        """All layers `(L+1, n, 2P)` of one tokenised sentence."""
        return self.embed_batch([sentence])[0]

    def embed_batch(self, batch: list[list[str]]) -> list[np.ndarray]:
        """All layers `(L+1, n_i, 2P)` of each sentence of one batch, in order."""
        if batch == [[]]:  # as the reference: nothing runs, no state changes
            return [self._empty()]
        return [np.asarray(array) for array in self.embedder.embed_batch([list(tokens) for tokens in batch])]

    def embed_sentences(self, sentences: Iterable[list[str]], batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[np.ndarray]:
        """Yield all layers `(L+1, n, 2P)` of each sentence, in order, `batch_size` sentences at a time."""
        if not self.embedder.stateful:  # any batching gives the same vectors: let the embedder sort by length
            yield from self.embedder.embed_sentences(sentences, batch_size)
            return
        iterator = iter(sentences)
        while batch := list(islice(iterator, batch_size)):
            yield from self.embed_batch(batch)

    def embed_file(
        self,
        input_file: IO[str] | str | Path,
        output_file_path: str | Path,
        output_format: str = "all",
        batch_size: int = DEFAULT_BATCH_SIZE,
        forget_sentences: bool = False,
        use_sentence_keys: bool = False,
    ) -> None:
        """Embed a file of whitespace-tokenised sentences, one per line, into HDF5 (written atomically).

        One float32 dataset per line, keyed by its 0-based line number (or by the sentence with
        `use_sentence_keys`): `(L+1, n, 2P)` for "all", `(n, 2P)` for "top" and "average"; plus
        `sentence_to_index` (JSON: sentence -> key) unless `forget_sentences` or `use_sentence_keys`.
        """
        if output_format not in ("all", "top", "average"):
            raise ElmoError(f"output_format must be 'all', 'top' or 'average', not {output_format!r}")
        if isinstance(input_file, (str, Path)):
            from ..textfile import read_lines

            lines = [line.strip() for line in read_lines(input_file)]
        else:
            lines = [line.strip() for line in input_file]
        keys = lines if use_sentence_keys else [str(i) for i in range(len(lines))]
        if use_sentence_keys and len(set(keys)) != len(keys):
            raise ElmoError(f"{output_file_path}: duplicate sentences cannot be keys; drop use_sentence_keys")
        vectors = self.embed_sentences((line.split() for line in lines), batch_size)
        with atomic_path(output_file_path) as temporary, h5py.File(temporary, "w") as h5:
            for key, layers in zip(keys, vectors):
                h5.create_dataset(key, data=select_layers(layers, output_format).astype(np.float32))
            if not forget_sentences and not use_sentence_keys:
                h5.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype(),
                                  data=[json.dumps(dict(zip(lines, keys)), ensure_ascii=False)])
