"""The AllenNLP / bilm-tf weight format: `options.json` + `weights.hdf5` <-> `ElmoBiLM` state dict.

The whole name map is in `_dataset_map`; every non-obvious step is commented there. All steps are
exact (slices, stacks, transposes, one prepended zero row), so load -> save -> load is bit-exact.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from ..config import ModelConfig
from ..errors import ElmoError
from .atomic import atomic_path

Array = np.ndarray


def _rnn(direction: int, layer: int, name: str) -> str:
    return f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/{name}"


def _dataset_map(config: ModelConfig) -> list[tuple[str, tuple[int, ...], str, Callable[[Array], Array]]]:
    """(dataset, its shape, state-dict key, dataset -> parameter) for every non-LSTM weight."""
    e, F_, P = config.char_embed_dim, config.n_filters, config.projection_dim
    entries = [
        # The file's table has raw ids 0..260; the model shifts ids by +1 and keeps row 0 for padding.
        ("char_embed", (261, e), "token_encoder.char_embedding.weight",
         lambda a: np.concatenate([np.zeros((1, e), a.dtype), a])),
    ]
    for i, (width, count) in enumerate(config.filters):
        # TensorFlow conv2d kernel (1, width, in, out) -> torch Conv1d weight (out, in, width).
        entries.append((f"CNN/W_cnn_{i}", (1, width, e, count), f"token_encoder.convolutions.{i}.weight",
                        lambda a: a[0].transpose(2, 1, 0)))
        entries.append((f"CNN/b_cnn_{i}", (count,), f"token_encoder.convolutions.{i}.bias", lambda a: a))
    for k in range(config.n_highway):
        # Used as x @ W in the file; torch Linear computes x @ weight.T.
        for part in ("carry", "transform"):
            entries.append((f"CNN_high_{k}/W_{part}", (F_, F_), f"token_encoder.highway_{part}.{k}.weight",
                            lambda a: a.T))
            entries.append((f"CNN_high_{k}/b_{part}", (F_,), f"token_encoder.highway_{part}.{k}.bias",
                            lambda a: a))
    entries.append(("CNN_proj/W_proj", (F_, P), "token_encoder.projection.weight", lambda a: a.T))
    entries.append(("CNN_proj/b_proj", (P,), "token_encoder.projection.bias", lambda a: a))
    return entries


def _inverse(key: str, value: Array) -> Array:
    """Parameter -> dataset for the entries of `_dataset_map`."""
    if key == "token_encoder.char_embedding.weight":
        return value[1:]
    if key.startswith("token_encoder.convolutions.") and key.endswith(".weight"):
        return value.transpose(2, 1, 0)[None]
    if value.ndim == 2:
        return value.T
    return value


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
        state = {key: take(key, torch.from_numpy(np.ascontiguousarray(convert(_read(h5, name, shape, path)))))
                 for name, shape, key, convert in _dataset_map(config)}
        P, C = config.projection_dim, config.lstm_dim
        for layer in range(config.n_layers):
            # W_0's rows are [x ; m_prev]: the first P rows act on the input, the rest on the state.
            # Gate blocks stay in TensorFlow's order i, j, f, o; the +1 forget bias is not stored.
            # Each slice is read straight into its stacked (D, ...) array, one array at a time (each
            # through `take` before the next is read).
            sources = {"input_weight": ("W_0", (2 * P, 4 * C), slice(0, P), (P, 4 * C)),
                       "recurrent_weight": ("W_0", (2 * P, 4 * C), slice(P, 2 * P), (P, 4 * C)),
                       "bias": ("B", (4 * C,), slice(None), (4 * C,)),
                       "projection_weight": ("W_P_0", (C, P), slice(None), (C, P))}
            for name, (dataset, shape, rows, part) in sources.items():
                array = np.empty((2, *part), np.float32)
                for direction in range(2):
                    _read_into(h5, _rnn(direction, layer, dataset), shape, path, array[direction], rows)
                key = f"lstm.{name}.{layer}"
                state[key] = take(key, torch.from_numpy(array))
                del array
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
            for name, _, key, _ in _dataset_map(config):
                h5.create_dataset(name, data=_inverse(key, arrays[key]))
            for layer in range(config.n_layers):
                w0 = np.concatenate([arrays[f"lstm.input_weight.{layer}"], arrays[f"lstm.recurrent_weight.{layer}"]],
                                    axis=1)  # (D, 2P, 4C)
                for direction in range(2):
                    h5.create_dataset(_rnn(direction, layer, "W_0"), data=w0[direction])
                    h5.create_dataset(_rnn(direction, layer, "B"), data=arrays[f"lstm.bias.{layer}"][direction])
                    h5.create_dataset(_rnn(direction, layer, "W_P_0"),
                                      data=arrays[f"lstm.projection_weight.{layer}"][direction])
            if "softmax.weight" in arrays:
                h5.create_dataset("softmax/W", data=arrays["softmax.weight"])
                h5.create_dataset("softmax/b", data=arrays["softmax.bias"])
    with atomic_path(options_file) as temporary:
        config.save(temporary)
