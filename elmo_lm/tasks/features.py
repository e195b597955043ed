"""Precomputed inputs of the heads: frozen ELMo layers and static vectors, computed once per sentence.

A head that does not fine-tune the language model only ever sees the same `(L+1, n, 2P)` layers
for a sentence, so they are computed once and kept (float16, in memory or memory-mapped from
disk) and every epoch trains only the scalar mix and the head. `Ragged` stores many
variable-length arrays as one flat array plus offsets; `make_batch` pads a few of them into
tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..embed import Embedder
from .static import StaticVectors


class Ragged:
    """Variable-length arrays `(n_i, *shape)` stored as one `(sum n_i, *shape)` array and offsets."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        """Args:
            data: `(total, *shape)`; array i is `data[offsets[i]:offsets[i + 1]]`.
            offsets: `(N + 1,)` int64, starting at 0 and ending at `total`.
        """
        self.data = data
        self.offsets = offsets

    @classmethod
    def empty(cls, lengths: Sequence[int], shape: tuple[int, ...], dtype: np.dtype | type,
              path: Path | None = None) -> Ragged:
        """Room for arrays of the given lengths, in memory or as a `.npy` memory map at `path`."""
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        full = (int(offsets[-1]), *shape)
        if path is None:
            data = np.zeros(full, dtype)
        else:
            data = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=full)
        return cls(data, offsets)

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], dtype: np.dtype | type | None = None) -> Ragged:
        """Pack a list of arrays that share their trailing shape."""
        lengths = [len(array) for array in arrays]
        first = arrays[0] if arrays else np.zeros((0,))
        ragged = cls.empty(lengths, first.shape[1:], dtype or first.dtype)
        for i, array in enumerate(arrays):
            ragged[i] = array
        return ragged

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i] : self.offsets[i + 1]]

    def __setitem__(self, i: int, value: np.ndarray) -> None:
        self.data[self.offsets[i] : self.offsets[i + 1]] = value

    def lengths(self) -> np.ndarray:
        """`(N,)` the length of each array."""
        return np.diff(self.offsets)

    def subset(self, indices: Sequence[int]) -> Ragged:
        """A new in-memory `Ragged` holding arrays `indices`, in that order."""
        return Ragged.from_arrays([np.asarray(self[i]) for i in indices], self.data.dtype)


def _fingerprint(sentences: Sequence[Sequence[str]], model_key: str) -> str:
    """A hash of the sentences and a description of the model, to validate a disk cache."""
    digest = hashlib.sha256(model_key.encode("utf-8"))
    for tokens in sentences:
        digest.update(("\x1f".join(tokens) + "\x1e").encode("utf-8"))
    return digest.hexdigest()


def elmo_layers(
    embedder: Embedder,
    sentences: Sequence[Sequence[str]],
    cache_dir: str | Path | None = None,
    model_key: str = "",
    dtype: type = np.float16,
    show_progress_bar: bool = False,
) -> Ragged:
    """All layers of every sentence as a `Ragged` of `(n_i, L+1, 2P)` arrays (token-major).

    Args:
        embedder: runs the (frozen) language model.
        sentences: token lists.
        cache_dir: keep the layers in this folder as a memory-mapped `.npy` and reuse them when
            the sentences and `model_key` match those of the stored copy.
        model_key: identifies the model for the cache (a path, say).
        dtype: storage type (float16 halves the memory; the heads compute in float32).
        show_progress_bar: a progress bar on stderr.
    """
    from tqdm.auto import tqdm

    config = embedder.model.config
    shape = (config.n_output_layers, config.output_dim)
    key = _fingerprint(sentences, f"{model_key}|{np.dtype(dtype).name}|{shape}")
    data_path = meta_path = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        data_path, meta_path = cache_dir / "layers.npy", cache_dir / "layers.json"
        if meta_path.is_file() and data_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("key") == key:
                offsets = np.array(meta["offsets"], np.int64)
                return Ragged(np.load(data_path, mmap_mode="r"), offsets)
            meta_path.unlink()
    # A cache is written under a temporary name and renamed: a copy that another array still maps
    # is never truncated in place, and an interrupted run leaves no file that looks complete.
    temporary = data_path.with_name(f".layers.{os.getpid()}.npy") if data_path is not None else None
    ragged = Ragged.empty([len(tokens) for tokens in sentences], shape, dtype, temporary)
    total = int(ragged.offsets[-1])
    with tqdm(total=total, unit="tok", disable=not show_progress_bar, desc="ELMo layers") as progress:
        for i, layers in enumerate(embedder.embed_sentences(sentences)):
            ragged[i] = layers.transpose(1, 0, 2)  # (n, L+1, 2P)
            progress.update(layers.shape[1])
    if temporary is not None and data_path is not None and meta_path is not None:
        ragged.data.flush()
        os.replace(temporary, data_path)
        meta_path.write_text(json.dumps({"key": key, "offsets": ragged.offsets.tolist()}))
    return ragged


def static_features(vectors: StaticVectors, sentences: Sequence[Sequence[str]]) -> Ragged:
    """The static vectors of every sentence as a `Ragged` of `(n_i, D)` float32 arrays."""
    ragged = Ragged.empty([len(tokens) for tokens in sentences], (vectors.dim,), np.float32)
    for i, tokens in enumerate(sentences):
        if tokens:
            ragged[i] = vectors.lookup(tokens)
    return ragged


@dataclass
class Batch:
    """Padded inputs of a few sentences."""

    layers: torch.Tensor | None
    """(B, L+1, T, 2P) float32 ELMo layers, zero at padding; None without ELMo."""
    static: torch.Tensor | None
    """(B, T, D) static vectors, zero at padding; None without them."""
    mask: torch.Tensor
    """(B, T) bool, True at real tokens."""


def make_batch(layers: Ragged | None, static: Ragged | None, indices: Sequence[int]) -> Batch:
    """Pad sentences `indices` of the given feature sets into one `Batch`."""
    source = layers if layers is not None else static
    assert source is not None, "a batch needs ELMo layers or static vectors"
    lengths = source.lengths()[list(indices)]
    B, T = len(indices), max(int(lengths.max()) if len(lengths) else 0, 1)
    mask = torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]  # (B, T)
    layer_batch = static_batch = None
    if layers is not None:
        padded = np.zeros((B, T, *layers.data.shape[1:]), np.float32)  # (B, T, L+1, 2P)
        for row, i in enumerate(indices):
            padded[row, : lengths[row]] = layers[i]
        layer_batch = torch.from_numpy(padded).permute(0, 2, 1, 3)  # (B, L+1, T, 2P)
    if static is not None:
        padded = np.zeros((B, T, static.data.shape[1]), np.float32)  # (B, T, D)
        for row, i in enumerate(indices):
            padded[row, : lengths[row]] = static[i]
        static_batch = torch.from_numpy(padded)
    return Batch(layer_batch, static_batch, mask)
