"""ELMoForManyLangs models (Che et al. 2018; their code is the PyPI package `elmoformanylangs`) as elmo-lm models.

The format's token encoder lives here too: it exists only to run models of this format.

    elmo convert --from elmoformanylangs MODEL_DIR --to folder OUT

Their language model is ELMo's (two LSTM-with-projection stacks, clipped, with skip connections), so its
weights map onto `LstmpStack` exactly: PyTorch's `x @ W.T` becomes `x @ W`, the gate blocks (i, f, g, o)
are reordered to TensorFlow's (i, j, f, o), and the forget bias gives up the 1.0 that `LstmpStack` adds.
Their token encoder is not ELMo's, and the folder format gains one section to hold it:

- characters come from a vocabulary of Unicode characters (`char.dic`, any size) instead of UTF-8 bytes,
  with their own marks (and their code's order: a word starts with `<eow>`'s row and ends with `<bow>`'s);
- a word embedding (`word.dic`, `word_dim` wide) is concatenated to the highway output before the projection;
- the highway layer is one `(F, 2F)` matrix (transform half, then carry gate), as in AllenNLP's modules.

A converted folder holds `config.json` (the usual `lstm` and `char_cnn` sections plus `"token_encoder":
{"type": "elmoformanylangs", ...}`), `model.safetensors`, and their `char.dic` and `word.dic` unchanged.
`load_model` opens it; the model is then an `ElmoBiLM` whose `token_encoder` is `VocabularyTokenEncoder`,
so the embedder, `Elmo` and the integrations use it unchanged. Float32 only; no stateful mode differences:
their embedder carries LSTM state between calls (the reference behaviour), elmo-lm's starts from zeros
unless `stateful=True`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..chars import BOS_CHAR, EOS_CHAR, EOW_CHAR
from ..config import ModelConfig
from ..errors import ElmoError
from ..model import ElmoBiLM

TYPE = "elmoformanylangs"
CHAR_VOCAB, WORD_VOCAB = "char.dic", "word.dic"
BOS, EOS, OOV, PAD = "<bos>", "<eos>", "<oov>", "<pad>"
GATES_TO_TF = (0, 2, 1, 3)
"""Their gate blocks are (input, forget, cell candidate, output); `LstmpStack` reads TensorFlow's (i, j, f, o)."""


def read_vocabulary(path: Path) -> dict[str, int]:
    """A `.dic` file as their code reads it: `entry<TAB>id` per line; a line with only an id is U+3000."""
    vocabulary = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ElmoError(f"{path}: cannot read the vocabulary ({error})") from None
    for number, line in enumerate(lines, start=1):
        fields = line.strip().split("\t")
        if len(fields) == 1:
            fields.insert(0, "\u3000")
        try:
            entry, index = fields
            vocabulary[entry] = int(index)
        except ValueError:
            raise ElmoError(f"{path}, line {number}: expected 'entry<TAB>id'") from None
    return vocabulary


class VocabularyTokenEncoder(nn.Module):
    """ELMoForManyLangs' token encoder: a character CNN over a character vocabulary, highway layers, an
    optional word embedding, a projection. Takes elmo-lm's character ids (`(N, 50)`, UTF-8 bytes) or strings."""

    def __init__(self, config: ModelConfig, characters: dict[str, int], words: dict[str, int] | None,
                 word_dim: int, max_characters: int, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config, self.characters, self.words = config, characters, words
        self.max_characters = max_characters
        for mark in ("<bow>", "<eow>", OOV, PAD, BOS, EOS):
            if mark not in characters:
                raise ElmoError(f"{CHAR_VOCAB}: the character vocabulary has no {mark!r}")
        if words is not None and (OOV not in words or PAD not in words):
            raise ElmoError(f"{WORD_VOCAB}: the word vocabulary needs '<oov>' and '<pad>'")
        self.char_embedding = nn.Embedding(max(characters.values()) + 1, config.char_embed_dim, device=device)
        self.word_embedding = (nn.Embedding(max(words.values()) + 1, word_dim, device=device)
                               if words is not None else None)
        self.convolutions = nn.ModuleList(nn.Conv1d(config.char_embed_dim, count, width, device=device)
                                          for width, count in config.filters)
        n_features = config.n_filters
        self.highways = nn.ModuleList(nn.Linear(n_features, 2 * n_features, device=device)
                                      for _ in range(config.n_highway))
        self.projection = nn.Linear(n_features + (word_dim if words is not None else 0), config.projection_dim,
                                    device=device)

    def folder_options(self) -> dict[str, Any]:
        """The `token_encoder` section of `config.json`."""
        return {"type": TYPE, "char_vocab": CHAR_VOCAB, "word_vocab": WORD_VOCAB if self.words is not None else None,
                "word_dim": self.word_embedding.embedding_dim if self.word_embedding is not None else 0,
                "max_characters_per_token": self.max_characters}

    def save_vocabularies(self, folder: Path) -> None:
        """Write `char.dic` (and `word.dic`) in their format."""
        tables = [(CHAR_VOCAB, self.characters)] + ([(WORD_VOCAB, self.words)] if self.words is not None else [])
        for name, table in tables:
            (folder / name).write_text("".join(f"{entry}\t{index}\n" for entry, index in table.items()),
                                       encoding="utf-8")

    def _ids(self, tokens: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Character ids `(N, max_characters)` and word ids `(N,)` as their `create_one_batch` makes them."""
        chars, device = self.characters, self.char_embedding.weight.device
        start, end = chars["<eow>"], chars["<bow>"]  # sic: their code swaps the two marks
        ids = torch.full((len(tokens), self.max_characters), chars[PAD], dtype=torch.long)  # (N, W)
        for row, token in enumerate(tokens):
            content = [chars[token]] if token in (BOS, EOS) else [
                chars.get(c, chars[OOV]) for c in token[: self.max_characters - 2]]
            ids[row, : len(content) + 2] = torch.tensor([start, *content, end])
        words = None
        if self.words is not None:
            words = torch.tensor([self.words.get(token[: self.max_characters - 2], self.words[OOV])
                                  for token in tokens], device=device)  # (N,)
        return ids.to(device), words

    def encode_strings(self, tokens: Sequence[str], precision: str = "float32") -> torch.Tensor:
        """Token vectors `(N, P)` of token strings (`<S>` and `</S>` are the sentence marks)."""
        if precision != "float32":
            raise ElmoError(f"an ELMoForManyLangs model runs in float32 only, not {precision}")
        tokens = [BOS if t == "<S>" else EOS if t == "</S>" else t for t in tokens]
        char_ids, word_ids = self._ids(tokens)
        chars = self.char_embedding(char_ids).transpose(1, 2)  # (N, e, W)
        activation = torch.relu if self.config.activation == "relu" else torch.tanh
        x = torch.cat([activation(conv(chars).amax(dim=-1)) for conv in self.convolutions], dim=-1)  # (N, F)
        for highway in self.highways:
            transform, gate = highway(x).chunk(2, dim=-1)  # each (N, F)
            gate = torch.sigmoid(gate)
            x = gate * x + (1 - gate) * F.relu(transform)  # (N, F)
        if word_ids is not None:
            x = torch.cat([self.word_embedding(word_ids), x], dim=-1)  # (N, word_dim + F)
        return self.projection(x)  # (N, P)

    def forward(self, char_ids: torch.Tensor, precision: str = "float32") -> torch.Tensor:
        """Token vectors `(N, P)` from elmo-lm's character ids `(N, 50)`: each row read back into its string
        (a token cut to 48 bytes by the ids is read as those bytes; `encode_strings` has no such limit)."""
        return self.encode_strings([_token_of(row) for row in char_ids.tolist()], precision)


def _token_of(ids: list[int]) -> str:
    """The string behind one row of elmo-lm's character ids (shifted by +1; all zeros for padding)."""
    raw = [i - 1 for i in ids]
    if raw[1] == BOS_CHAR:
        return "<S>"
    if raw[1] == EOS_CHAR:
        return "</S>"
    payload = raw[1 : raw.index(EOW_CHAR)] if EOW_CHAR in raw else []
    return bytes(b for b in payload if 0 <= b < 256).decode("utf-8", errors="ignore")


def _their_config(folder: Path) -> dict[str, Any]:
    """Their model config: `config.json` names it by `config_path` (relative, or only its file name)."""
    top = _read_json(folder / "config.json")
    name = top.get("config_path")
    if not isinstance(name, str):
        raise ElmoError(f"{folder / 'config.json'}: no 'config_path'; is this an ELMoForManyLangs model folder?")
    for candidate in (folder / name, folder / Path(name).name):
        if candidate.is_file():
            return _read_json(candidate)
    raise ElmoError(f"{folder}: the model config {name!r} named by config.json is not in the folder")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ElmoError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ElmoError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ElmoError(f"{path}: expected a JSON object")
    return value


def load_elmoformanylangs(folder: str | Path) -> ElmoBiLM:
    """Read their folder (`config.json`, its model config, `char.dic`, `word.dic`, `token_embedder.pkl`,
    `encoder.pkl`) into an `ElmoBiLM` with a `VocabularyTokenEncoder`."""
    folder = Path(folder)
    options = _their_config(folder)
    try:
        encoder, embedder = options["encoder"], options["token_embedder"]
        if encoder["name"].lower() != "elmo" or embedder["name"].lower() != "cnn":
            raise ElmoError(f"{folder}: only the ELMo encoder with the CNN token embedder converts "
                            f"(this model: {encoder['name']} / {embedder['name']})")
        config = ModelConfig(char_embed_dim=int(embedder["char_dim"]), filters=tuple(map(tuple, embedder["filters"])),
                             n_highway=int(embedder["n_highway"]), activation=embedder.get("activation", "relu"),
                             lstm_dim=int(encoder["dim"]), projection_dim=int(encoder["projection_dim"]),
                             n_layers=int(encoder["n_layers"]), cell_clip=encoder.get("cell_clip") or None,
                             proj_clip=encoder.get("proj_clip") or None, use_skip_connections=True)
        word_dim, max_characters = int(embedder["word_dim"]), int(embedder["max_characters_per_token"])
    except (KeyError, TypeError, ValueError) as error:
        raise ElmoError(f"{folder}: malformed model config ({error!r})") from None
    if int(embedder["char_dim"]) <= 0:
        raise ElmoError(f"{folder}: a model without characters (char_dim 0) does not convert")
    words = read_vocabulary(folder / WORD_VOCAB) if word_dim > 0 else None
    tokens = _load_state(folder / "token_embedder.pkl")
    lstm = _load_state(folder / "encoder.pkl")
    state = {f"token_encoder.{key}": value for key, value in _token_encoder_state(tokens, config).items()}
    state.update(_lstm_state(lstm, config, folder / "encoder.pkl"))
    return build_model(config, state, read_vocabulary(folder / CHAR_VOCAB), words, word_dim, max_characters,
                       str(folder))


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ElmoError(f"{path}: not found") from None
    except Exception as error:  # torch raises many kinds for a bad pickle
        raise ElmoError(f"{path}: not a readable PyTorch state dict ({error})") from None


def _token_encoder_state(theirs: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Their `ConvTokenEmbedder` keys -> `VocabularyTokenEncoder` keys (same layout, other names)."""
    state = {"char_embedding.weight": theirs.get("char_emb_layer.embedding.weight"),
             "projection.weight": theirs.get("projection.weight"), "projection.bias": theirs.get("projection.bias")}
    if "word_emb_layer.embedding.weight" in theirs:
        state["word_embedding.weight"] = theirs["word_emb_layer.embedding.weight"]
    for i in range(len(config.filters)):
        for part in ("weight", "bias"):
            state[f"convolutions.{i}.{part}"] = theirs.get(f"convolutions.{i}.{part}")
    for k in range(config.n_highway):
        for part in ("weight", "bias"):
            state[f"highways.{k}.{part}"] = theirs.get(f"highways._layers.{k}.{part}")
    return state


def _gates(matrix: torch.Tensor, cell: int) -> torch.Tensor:
    """Reorder the 4 gate blocks of the last axis from (i, f, g, o) to (i, j=g, f, o)."""
    blocks = matrix.split(cell, dim=-1)
    return torch.cat([blocks[g] for g in GATES_TO_TF], dim=-1)


def _lstm_state(theirs: dict[str, torch.Tensor], config: ModelConfig, path: Path) -> dict[str, torch.Tensor]:
    """Their `forward_layer_k` / `backward_layer_k` cells -> `LstmpStack` parameters of layer k, direction 0 / 1."""
    C, state = config.lstm_dim, {}
    for layer in range(config.n_layers):
        parts: dict[str, list[torch.Tensor]] = {"input_weight": [], "recurrent_weight": [], "bias": [],
                                                "projection_weight": []}
        for direction in ("forward", "backward"):
            prefix = f"{direction}_layer_{layer}."
            try:
                input_weight = theirs[prefix + "input_linearity.weight"].T  # (P, 4C), x @ W
                recurrent_weight = theirs[prefix + "state_linearity.weight"].T  # (P, 4C)
                bias = theirs[prefix + "state_linearity.bias"]  # (4C,)
                projection = theirs[prefix + "state_projection.weight"].T  # (C, P)
            except KeyError as missing:
                raise ElmoError(f"{path}: missing weight {missing.args[0]!r}") from None
            bias = _gates(bias, C).clone()
            bias[2 * C : 3 * C] -= 1.0  # LstmpStack adds 1.0 to the forget gate at every step
            parts["input_weight"].append(_gates(input_weight, C))
            parts["recurrent_weight"].append(_gates(recurrent_weight, C))
            parts["bias"].append(bias)
            parts["projection_weight"].append(projection)
        for name, pair in parts.items():
            state[f"lstm.{name}.{layer}"] = torch.stack(pair).float().contiguous()  # (2, ...)
    return state


def build_model(config: ModelConfig, state: dict[str, torch.Tensor], characters: dict[str, int],
                words: dict[str, int] | None, word_dim: int, max_characters: int, source: str) -> ElmoBiLM:
    """An `ElmoBiLM` with a `VocabularyTokenEncoder`, its weights loaded strictly from `state`."""
    model = ElmoBiLM(config, device="meta")
    model.token_encoder = VocabularyTokenEncoder(config, characters, words, word_dim, max_characters, device="meta")
    expected = model.state_dict()
    for key, value in expected.items():
        if state.get(key) is None:
            raise ElmoError(f"{source}: missing weight {key!r}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ElmoError(f"{source}: weight {key!r} has shape {tuple(state[key].shape)}, "
                            f"the config says {tuple(value.shape)}")
    unexpected = sorted(key for key in state if key not in expected and state[key] is not None)
    if unexpected:
        raise ElmoError(f"{source}: unexpected weights {unexpected[:3]}")
    model.load_state_dict({key: state[key].float().contiguous() for key in expected}, assign=True)
    return model.eval()


def load_converted(folder: Path, options: dict[str, Any], state: dict[str, torch.Tensor]) -> ElmoBiLM:
    """Open a converted folder (`load_model` calls this for a `token_encoder` section of type elmoformanylangs)."""
    section = options["token_encoder"]
    config = ModelConfig.from_options(options, source=str(folder / "config.json"))
    words = read_vocabulary(folder / section["word_vocab"]) if section.get("word_vocab") else None
    return build_model(config, state, read_vocabulary(folder / section["char_vocab"]), words,
                       int(section.get("word_dim", 0)), int(section["max_characters_per_token"]), str(folder))




