"""This project's model folder (`config.json` + `model.safetensors`) and `load_model`, which opens
any model a user can name: such a folder, a folder holding `options.json` + `weights.hdf5`, or the
two AllenNLP/bilm-tf files given separately.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import ModelConfig
from ..errors import ElmoError
from ..model import ElmoBiLM
from .allennlp import Take, load_allennlp_weights
from .atomic import atomic_path
from .int8_storage import STORAGE_KEY, SCALE_SUFFIX, check_stored, decode, encode, read_storage

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VOCAB_NAME = "vocab.txt"
FORMAT_VERSION = 1
"""The folder format written (1: every weight in one float type); folders with int8-stored weights are 2."""
INT8_FORMAT_VERSION = 2
"""The format of a folder with a `storage` entry (`int8_storage`): older readers cannot load it."""


def save_pretrained(
    model: ElmoBiLM, folder: str | Path, vocab_file: str | Path | None = None, dtype: torch.dtype = torch.float32,
    int8: Collection[str] = (),
) -> None:
    """Write `model` as a model folder; each file is written atomically.

    Args:
        model: the model (its softmax, if any, is saved too).
        folder: created if missing.
        vocab_file: the softmax's vocabulary, copied in as `vocab.txt`.
        dtype: storage type of the weights (float32, or float16/bfloat16 to halve the size).
        int8: state-dict names of weights stored instead as int8 with a float32 scale per output
            channel (`int8_storage`; a quarter of the float32 size); read back as float32 `values * scale`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "elmo", "format_version": FORMAT_VERSION, **model.config.to_options()}
    if model.softmax is not None:
        config["vocab_size"] = model.softmax.out_features
    folder_options = getattr(model.token_encoder, "folder_options", None)  # another format's token encoder
    if folder_options is not None:
        config["token_encoder"] = folder_options()
        model.token_encoder.save_vocabularies(folder)
    state = model.state_dict()
    tensors = {key: value.detach().to("cpu", dtype).contiguous() for key, value in state.items() if key not in int8}
    tensors.update({key: state[key] for key in int8 if key in state})  # quantised from float32 by `encode`
    if int8:
        config["format_version"] = INT8_FORMAT_VERSION
        config[STORAGE_KEY] = encode(tensors, int8)
    with atomic_path(folder / WEIGHTS_NAME) as temporary:
        save_file(tensors, str(temporary), metadata={"format": "pt"})
    with atomic_path(folder / CONFIG_NAME) as temporary:
        temporary.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if vocab_file is not None and Path(vocab_file).resolve() != (folder / VOCAB_NAME).resolve():
        with atomic_path(folder / VOCAB_NAME) as temporary:
            shutil.copyfile(vocab_file, temporary)


def _load_folder(folder: Path, take: Take | None = None) -> ElmoBiLM:
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    try:
        options = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as bad:
        raise ElmoError(f"{config_path}: not valid JSON ({bad})") from None
    if not weights_path.is_file():
        raise ElmoError(f"{folder}: {WEIGHTS_NAME} not found beside {CONFIG_NAME}")
    config = ModelConfig.from_options(options, source=str(config_path))
    version = options.get("format_version", FORMAT_VERSION)
    if version not in (FORMAT_VERSION, INT8_FORMAT_VERSION):
        raise ElmoError(f"{config_path}: format_version {version!r}; this version of elmo-lm reads "
                        f"{FORMAT_VERSION} and {INT8_FORMAT_VERSION}")
    storage = read_storage(options, str(config_path))
    take = take or (lambda key, tensor: tensor)
    try:
        with safe_open(str(weights_path), framework="pt") as file:  # one tensor at a time, through `take`
            keys = set(file.keys())
            check_stored(storage, keys, str(weights_path))
            state = {}
            for key in file.keys():
                if key.endswith(SCALE_SUFFIX) and key.removesuffix(SCALE_SUFFIX) in storage:
                    continue  # read with its weight
                tensor = file.get_tensor(key)
                if key in storage:
                    tensor = decode(key, tensor, file.get_tensor(key + SCALE_SUFFIX), str(weights_path))
                state[key] = take(key, tensor)
    except (SafetensorError, OSError) as error:
        raise ElmoError(f"{weights_path}: not a readable safetensors file ({error})") from None
    if "token_encoder" in options:  # a converted model with another format's token encoder
        from .elmoformanylangs import TYPE, load_converted

        if not isinstance(options["token_encoder"], dict) or options["token_encoder"].get("type") != TYPE:
            raise ElmoError(f"{config_path}: unknown token_encoder {options['token_encoder']!r}")
        return load_converted(folder, options, state)
    return _model_from_state(config, state, str(weights_path))


def _model_from_state(config: ModelConfig, state: dict[str, torch.Tensor], source: str) -> ElmoBiLM:
    """Build the model and load `state`, naming any missing key or mismatched shape."""
    vocab_size = state["softmax.weight"].shape[0] if "softmax.weight" in state else None
    # No memory and no random init: the loaded tensors become the parameters. (Not the
    # `torch.device("meta")` context manager: it imports torch._dynamo, 74 MB of RSS.)
    model = ElmoBiLM(config, vocab_size=vocab_size, device="meta")
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise ElmoError(f"{source}: missing weight {key!r}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ElmoError(f"{source}: weight {key!r} has shape {tuple(state[key].shape)}, "
                            f"the config says {tuple(value.shape)}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ElmoError(f"{source}: unexpected weights {unexpected[:3]}")
    model.load_state_dict({key: value.float().contiguous() for key, value in state.items()}, assign=True)
    model.eval()
    return model


def model_config(model: str | Path | None = None, options_file: str | Path | None = None) -> ModelConfig | None:
    """The config of the model `load_model` would open (read from its options or config file alone, no
    weights), or None where it cannot tell (`load_model` then names the problem)."""
    folder = Path(model) if model is not None else None
    if options_file is None and folder is not None:
        options_file = next((folder / name for name in (CONFIG_NAME, "options.json") if (folder / name).is_file()),
                            None)
    if options_file is None:
        return None
    try:
        return ModelConfig.load(options_file)
    except (ElmoError, OSError, ValueError):
        return None


def load_model(model: str | Path | None = None, options_file: str | Path | None = None,
               weight_file: str | Path | None = None, take: Take | None = None) -> ElmoBiLM:
    """Open a model, in evaluation mode.

    Args:
        model: a model folder (`config.json` + `model.safetensors`), or a folder holding
            `options.json` and `weights.hdf5` (or `lm_weights.hdf5`, or a single `*.hdf5`).
        options_file, weight_file: an AllenNLP/bilm-tf model given as its two files.
        take: each weight as it is read goes through `take(key, tensor)`, and the model gets its
            result (see `allennlp.Take`).
    """
    if options_file is not None or weight_file is not None:
        if options_file is None or weight_file is None:
            raise ElmoError("give both --options and --weights (or a model folder)")
        config, state = load_allennlp_weights(options_file, weight_file, take)
        return _model_from_state(config, state, str(weight_file))
    if model is None:
        raise ElmoError("no model given: name a model folder, or --options and --weights")
    folder = Path(model)
    if not folder.is_dir():
        raise ElmoError(f"{folder}: model folder not found")
    if (folder / CONFIG_NAME).is_file():
        return _load_folder(folder, take)
    named = [folder / name for name in ("weights.hdf5", "lm_weights.hdf5") if (folder / name).is_file()]
    weight_files = named[:1] or sorted(folder.glob("*.hdf5"))
    if (folder / "options.json").is_file() and len(weight_files) == 1:
        return load_model(options_file=folder / "options.json", weight_file=weight_files[0], take=take)
    raise ElmoError(f"{folder}: expected {CONFIG_NAME} + {WEIGHTS_NAME}, or options.json + weights.hdf5")
