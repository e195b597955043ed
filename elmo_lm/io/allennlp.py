"""The AllenNLP / bilm-tf weight format: `options.json` + `weights.hdf5` <-> `ElmoBiLM` state dict.

The whole name map, with its inverse, is `name_map`; every non-obvious step is commented there. All
steps are exact (slices, stacks, transposes, one prepended zero row), so load -> save -> load is bit-exact.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import torch

from ..chars import N_RAW_CHARS
from ..config import ModelConfig
from ..errors import ElmoError
from .atomic import atomic_path

Array = np.ndarray


def _rnn(direction: int, layer: int, name: str) -> str:
    return f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/{name}"


def _same(a: Array) -> Array:
    return a


class Entry(NamedTuple):
    """One dataset of the file (or rows of it) and the state-dict parameter (or direction of it) it holds."""

    dataset: str
    shape: tuple[int, ...]
    """The whole dataset's shape."""
    key: str
    direction: int | None = None
    """For the LSTM parameters `(D, ...)`: the direction this dataset fills; None: the whole parameter."""
    rows: slice | None = None
    """The dataset's rows this entry covers (None: all)."""
    to_param: Callable[[Array], Array] = _same
    """Dataset -> parameter (for whole parameters; LSTM slices are stored as they are)."""
    to_file: Callable[[Array], Array] = _same
    """Parameter -> dataset: the inverse of `to_param`."""

    def part_shape(self) -> tuple[int, ...]:
        """Shape of the part of the dataset this entry covers."""
        if self.rows is None:
            return self.shape
        return (self.rows.stop - self.rows.start, *self.shape[1:])


def name_map(config: ModelConfig) -> list[Entry]:
    """Every weight of the file and where it goes: the one name map, read by load and save alike."""
    e, F_, P, C = config.char_embed_dim, config.n_filters, config.projection_dim, config.lstm_dim
    entries = [
        # The file's table has raw ids 0..260; the model shifts ids by +1 and keeps row 0 for padding.
        Entry("char_embed", (N_RAW_CHARS, e), "token_encoder.char_embedding.weight",
              to_param=lambda a: np.concatenate([np.zeros((1, a.shape[1]), a.dtype), a]), to_file=lambda a: a[1:]),
    ]
    for i, (width, count) in enumerate(config.filters):
        # TensorFlow conv2d kernel (1, width, in, out) -> torch Conv1d weight (out, in, width).
        entries.append(Entry(f"CNN/W_cnn_{i}", (1, width, e, count), f"token_encoder.convolutions.{i}.weight",
                             to_param=lambda a: a[0].transpose(2, 1, 0), to_file=lambda a: a.transpose(2, 1, 0)[None]))
        entries.append(Entry(f"CNN/b_cnn_{i}", (count,), f"token_encoder.convolutions.{i}.bias"))
    for k in range(config.n_highway):
        # Used as x @ W in the file; torch Linear computes x @ weight.T.
        for part in ("carry", "transform"):
            entries.append(Entry(f"CNN_high_{k}/W_{part}", (F_, F_), f"token_encoder.highway_{part}.{k}.weight",
                                 to_param=np.transpose, to_file=np.transpose))
            entries.append(Entry(f"CNN_high_{k}/b_{part}", (F_,), f"token_encoder.highway_{part}.{k}.bias"))
    entries.append(Entry("CNN_proj/W_proj", (F_, P), "token_encoder.projection.weight",
                         to_param=np.transpose, to_file=np.transpose))
    entries.append(Entry("CNN_proj/b_proj", (P,), "token_encoder.projection.bias"))
    for layer in range(config.n_layers):
        for direction in range(2):
            # W_0's rows are [x ; m_prev]: the first P rows act on the input, the rest on the state.
            # Gate blocks stay in TensorFlow's order i, j, f, o; the +1 forget bias is not stored.
            w0 = _rnn(direction, layer, "W_0")
            entries.append(Entry(w0, (2 * P, 4 * C), f"lstm.input_weight.{layer}", direction, slice(0, P)))
            entries.append(Entry(w0, (2 * P, 4 * C), f"lstm.recurrent_weight.{layer}", direction, slice(P, 2 * P)))
            entries.append(Entry(_rnn(direction, layer, "B"), (4 * C,), f"lstm.bias.{layer}", direction))
            entries.append(Entry(_rnn(direction, layer, "W_P_0"), (C, P), f"lstm.projection_weight.{layer}", direction))
    return entries


def _dataset(h5: h5py.File, name: str, shape: tuple[int, ...], path: Path) -> h5py.Dataset:
    if name not in h5:
        raise ElmoError(f"{path}: missing dataset {name!r}")
    dataset = h5[name]
    if not isinstance(dataset, h5py.Dataset):
        raise ElmoError(f"{path}: {name!r} is a group, expected a dataset")
    if tuple(dataset.shape) != shape:
        raise ElmoError(f"{path}: dataset {name!r} has shape {tuple(dataset.shape)}, the options say {shape}")
    return dataset


def _read(h5: h5py.File, name: str, shape: tuple[int, ...], path: Path) -> Array:
    dataset = _dataset(h5, name, shape, path)
    try:
        return np.asarray(dataset[...], dtype=np.float32)
    except OSError as error:
        raise ElmoError(f"{path}: cannot read dataset {name!r} ({error}); is the file truncated?") from None


def _read_into(h5: h5py.File, name: str, shape: tuple[int, ...], path: Path, out: Array,
               rows: slice = slice(None)) -> None:
    """Read `rows` of a dataset straight into `out` (float32): no temporary copy of large weights."""
    dataset = _dataset(h5, name, shape, path)
    try:
        if dataset.dtype == np.float32:
            dataset.read_direct(out, source_sel=np.s_[rows])
        else:
            out[...] = dataset[rows]
    except OSError as error:
        raise ElmoError(f"{path}: cannot read dataset {name!r} ({error}); is the file truncated?") from None


Take = Callable[[str, torch.Tensor], torch.Tensor]
"""`take(key, tensor)`: given each state-dict entry as soon as it is read, returns what the state
dict keeps instead (the tensor itself, or a converted one, or a meta placeholder of its shape when
the caller keeps the weight in another form): large weights then never all exist at once."""


def load_allennlp_weights(
    options_file: str | Path, weight_file: str | Path, take: Take | None = None
) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Read a model in the AllenNLP/bilm-tf layout.

    Returns the config and an `ElmoBiLM` state dict (with `softmax.weight` / `softmax.bias` when
    the file stores a softmax), each entry passed through `take` when given. Raises `ElmoError`
    naming the file and the missing dataset or the shape that does not fit.
    """
    take = take or (lambda key, tensor: tensor)
    config = ModelConfig.load(options_file)
    path = Path(weight_file)
    if not path.is_file():
        raise ElmoError(f"{path}: weight file not found")
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise ElmoError(f"{path}: not a readable HDF5 file ({error})") from None
    with h5:
        state: dict[str, torch.Tensor] = {}
        stacked: dict[str, Array] = {}  # the LSTM parameters (D, ...), filled direction by direction
        for entry in name_map(config):
            if entry.direction is None:
                array = entry.to_param(_read(h5, entry.dataset, entry.shape, path))
                state[entry.key] = take(entry.key, torch.from_numpy(np.ascontiguousarray(array)))
                continue
            if entry.key not in stacked:
                stacked[entry.key] = np.empty((2, *entry.part_shape()), np.float32)
            # Each slice is read straight into its stacked (D, ...) array.
            _read_into(h5, entry.dataset, entry.shape, path, stacked[entry.key][entry.direction],
                       entry.rows or slice(None))
            if entry.direction == 1:  # complete: through `take` before more is read
                state[entry.key] = take(entry.key, torch.from_numpy(stacked.pop(entry.key)))
        state.update({key: take(key, torch.from_numpy(array)) for key, array in stacked.items()})
        P = config.projection_dim
        if "softmax" in h5:
            weight = np.asarray(h5["softmax/W"][...], dtype=np.float32)
            bias = np.asarray(h5["softmax/b"][...], dtype=np.float32)
            if weight.ndim != 2 or weight.shape[1] != P or bias.shape != (weight.shape[0],):
                raise ElmoError(f"{path}: softmax/W {weight.shape} and softmax/b {bias.shape} do not fit "
                                f"projection_dim {P}")
            state["softmax.weight"] = torch.from_numpy(weight)
            state["softmax.bias"] = torch.from_numpy(bias)
    return config, state


def save_allennlp_weights(
    config: ModelConfig, state: dict[str, torch.Tensor], options_file: str | Path, weight_file: str | Path
) -> None:
    """Write `options.json` and `weights.hdf5` in the AllenNLP/bilm-tf layout, each atomically."""
    arrays = {key: value.detach().cpu().float().numpy() for key, value in state.items()}
    with atomic_path(weight_file) as temporary:
        with h5py.File(temporary, "w") as h5:
            datasets: dict[str, list[Entry]] = {}  # dataset -> its entries, in the map's order
            for entry in name_map(config):
                datasets.setdefault(entry.dataset, []).append(entry)
            for name, entries in datasets.items():
                parts = [entry.to_file(arrays[entry.key]) if entry.direction is None
                         else arrays[entry.key][entry.direction] for entry in entries]
                h5.create_dataset(name, data=parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0))
            if "softmax.weight" in arrays:
                h5.create_dataset("softmax/W", data=arrays["softmax.weight"])
                h5.create_dataset("softmax/b", data=arrays["softmax.bias"])
    with atomic_path(options_file) as temporary:
        config.save(temporary)
