"""`Embedder`: text in, numpy vectors out; batching, length sorting, layer choice, HDF5 files.

Stateless by default: every sentence starts from zero LSTM state, so its vectors do not depend on
its batch, its row or what came before, and sentences can be sorted by length for speed (the
caller's order is restored). `stateful=True` reproduces the reference implementations: batches
in the given order, each row index carrying its state to the next batch (ELMO.md section 6).

Each batch runs the character CNN once per distinct token string (optionally once per token for
the embedder's life, `token_cache`), and the model's inference kernels (`elmo_lm.inference`).
`precision="bfloat16"` is an explicit, approximate option (about 3 significant digits).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from .allocator import release_free_memory, return_large_blocks
from .arguments import boolean, one_of, positive_int
from .batching import split_batches
from .bundled import bundled_model_path, open_model
from .chars import BOS_TOKEN, EOS_TOKEN, batch_to_ids, tokens_to_ids
from .cpu_features import choose_precision
from .errors import ElmoError
from .inference import PRECISIONS, int8, keep_weights_in, use_precision
from .inference import tuning
from .inference.int8_model import QuantizingLoad, keep_in_int8
from .inference.kernel_timing import autotune
from .io.folder import model_config
from .io.hdf5_output import atomic_hdf5
from .io.output_path import check_output_file
from .model import ElmoBiLM
from .state import RowStates
from .textfile import read_lines
from .token_cache import DEFAULT_MAX_TOKENS, TokenVectorCache

Layers = Literal["all", "top", "average"]
Sentence = Sequence[str] | str

SORT_WINDOW_BATCHES = 16
"""`embed_sentences` sorts this many batches' worth of sentences at a time."""


def select_layers(layers: np.ndarray, which: Layers) -> np.ndarray:
    """`(L+1, n, 2P)` -> itself for "all", the top layer or the layer average `(n, 2P)`."""
    if which == "all":
        return layers
    if which == "top":
        return layers[-1]
    if which == "average":
        return layers.mean(axis=0)
    return one_of(which, "layers", LAYER_CHOICES)  # raises


LAYER_CHOICES = ("all", "top", "average")


def _device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device; an ElmoError for a name torch does not know."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ElmoError(f"device must be a torch device such as 'cpu' or 'cuda', not {device!r}") from None


def _autotune_kernels(model: ElmoBiLM | str | Path | None, options_file: str | Path | None) -> None:
    """Time the kernels' candidates at the model's shapes when this CPU has no choices for them yet
    (`kernel_timing.autotune`: about a second, once per CPU kind; `ELMO_LM_AUTOTUNE=0` turns it off)."""
    if not tuning.autotune_enabled():
        return
    if isinstance(model, ElmoBiLM):
        config = model.config
    else:
        config = model_config(bundled_model_path() if model is None and options_file is None else model, options_file)
    if config is not None:
        autotune(config.lstm_dim, config.projection_dim)


class Embedder:
    """Embed sentences with an ELMo model."""

    def __init__(
        self,
        model: ElmoBiLM | str | Path | None = None,
        *,
        options_file: str | Path | None = None,
        weight_file: str | Path | None = None,
        batch_size: int = 64,
        batch_tokens: int | None = None,
        stateful: bool = False,
        device: str | torch.device = "cpu",
        precision: str = "float32",
        token_cache: bool | int = False,
        tune_allocator: bool = False,
    ) -> None:
        """Args:
            model: a loaded `ElmoBiLM`, a model folder, or None for the bundled model.
            options_file, weight_file: an AllenNLP/bilm-tf model given as its two files.
            batch_size: sentences per batch (at most, with `batch_tokens`).
            batch_tokens: stateless only: fewer sentences per batch where they are long, so that a
                batch holds at most this many padded tokens (rows x longest, `<S>`/`</S>` included).
                Batches of similar work, large enough to amortise reading the weights at every
                step; `benchmarks/batch_size.py` measures tokens/s against both.
            stateful: carry LSTM state per batch row between batches (the reference behaviour).
            device: where the model runs ("cpu", or "cuda": the CPU-only kernels are then
                bypassed; docs/GPU.md).
            precision: "float32" (exact), "bfloat16" (bfloat16 matmuls, float32 cell state and
                clips: up to twice as fast on CPUs with AMX or AMD's AVX-512 BF16, no faster
                elsewhere, where a RuntimeWarning says so; mean cosine to float32 about 0.99999;
                on a CPU without bfloat16 instructions (AVX2 only) it runs float32, with a
                RuntimeWarning; `self.precision` tells which runs), "int8" (CPU only: int8 weights
                per output channel, inputs quantised per matmul, float32 cell state and clips; see
                the README for its speed and accuracy), or "float16" (meant for GPUs: float16
                matmuls, float32 cell state and clips). A model the embedder loads itself then
                keeps its weight matrices in bfloat16 (half the memory) or int8 (a quarter). Such
                a model, in any precision, is for inference only.
            token_cache: keep each token string's context-free vector across batches (True for up
                to 50,000 tokens, or the number to keep); exact, it saves the character CNN.
            tune_allocator: in float32 and int8, fix glibc's mmap and trim thresholds for this whole process
                (`allocator.return_large_blocks`: about 40 MB less peak memory for the small model,
                same speed). Off by default, as it changes the host process; `elmo embed` turns it on.
        """
        batch_size = positive_int(batch_size, "batch_size")
        stateful = boolean(stateful, "stateful")
        tune_allocator = boolean(tune_allocator, "tune_allocator")
        one_of(precision, "precision", PRECISIONS)
        if not isinstance(token_cache, bool):
            token_cache = positive_int(token_cache, "token_cache")
        device = _device(device)
        precision = choose_precision(precision, torch.device(device).type)  # float32 on a CPU without bfloat16
        if precision == "float16" and torch.device(device).type == "cpu":
            warnings.warn("precision='float16' is meant for GPUs: CPUs run its matmuls slowly (bfloat16 or int8 "
                          "are the CPU's approximate precisions)", RuntimeWarning, stacklevel=2)
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ElmoError("device='cuda': no GPU is available to PyTorch here")
        if precision == "int8" and not (int8.AVAILABLE and torch.device(device).type == "cpu"):
            raise ElmoError("precision='int8' runs on the CPU through PyTorch's quantised engines (fbgemm or "
                            "oneDNN), which this PyTorch build or device lacks; use float32 or bfloat16")
        if tune_allocator and precision == "int8":
            return_large_blocks()  # before loading too: its freed temporaries then go back (peak 665 -> 563 MB)
        if device.type == "cpu":  # before loading: the timing's temporaries never sit beside the model
            _autotune_kernels(model, options_file)
        self.source: ElmoBiLM | Path | tuple[Path, Path] = model if isinstance(model, ElmoBiLM) else (
            (Path(options_file), Path(weight_file)) if options_file is not None and weight_file is not None else None)
        """What the model was opened from: the model given, a model folder, or an options and a weight file."""
        if not isinstance(model, ElmoBiLM):
            if model is None and options_file is None and weight_file is None:
                model = bundled_model_path()
            if model is not None:
                self.source = Path(model)
            if precision == "int8":  # quantised as read: the float32 model never exists whole
                load = QuantizingLoad()
                model = open_model(model, options_file, weight_file, take=load)
                keep_in_int8(model, load)
            else:
                model = open_model(model, options_file, weight_file).to(device)
                keep_weights_in(model, precision)  # our own model: weights stored as the kernels read them
            release_free_memory()  # the loading's temporaries
        if tune_allocator and precision in ("float32", "int8"):
            return_large_blocks()  # bounds the freed memory glibc keeps (see elmo_lm.allocator)
        if model.lstm.bias[0].device != device:
            model = model.to(device)
        self.model = model.eval()
        self.device = device
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.stateful = stateful
        self.precision = precision
        self._states = RowStates()
        self._token_cache: TokenVectorCache | None = None
        if token_cache:
            self._token_cache = TokenVectorCache(DEFAULT_MAX_TOKENS if token_cache is True else int(token_cache))

    def _batch_size(self, batch_size: int | None) -> int:
        """A method's `batch_size` argument, checked; the embedder's own for None."""
        return self.batch_size if batch_size is None else positive_int(batch_size, "batch_size")

    @classmethod
    def from_pretrained(cls, name: str | Path, *, revision: str | None = None, token: str | bool | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool = False, **kwargs) -> Embedder:
        """An embedder for a model folder, or for a Hugging Face Hub repo ("org/name", downloaded to the
        Hub cache; needs `pip install "elmo-lm[hub]"`). Other keyword arguments go to `Embedder`."""
        from .integrations.hub import resolve

        folder = resolve(name, revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)
        return cls(folder, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload this embedder's model and a model card to the Hub repo `repo_id` (created if missing);
        returns the commit URL. Keyword arguments as `elmo_lm.integrations.hub.push_to_hub`."""
        from .integrations.hub import push_to_hub

        source = self.source
        if isinstance(source, tuple):
            from .io import load_model

            source = load_model(options_file=source[0], weight_file=source[1])
        return push_to_hub(source, repo_id, **kwargs)

    def reset_states(self) -> None:
        """Stateful mode: start every row from zeros again."""
        self._states.reset()

    @torch.inference_mode()
    def embed_batch(self, sentences: Sequence[Sentence]) -> list[np.ndarray]:
        """All layers `(L+1, n_i, 2P)` of each sentence of one batch, in the given order."""
        token_lists = [_tokens(sentence) for sentence in sentences]
        if not token_lists:
            return []
        vectors, index, mask = self._token_vectors(token_lists)  # (U, P), (B, T+2), (B, T+2)
        initial = None
        if self.stateful:
            initial = self._states.initial(self.model.lstm, len(token_lists), self.model.lstm.bias[0])
        with use_precision(self.precision):
            output = self.model.contextualize_indexed(vectors, index, mask, state=initial,
                                                      return_state=self.stateful)
        del vectors, index, mask
        if self.stateful:
            self._states.update(output.state)
        layers = output.layers.float().cpu().numpy()  # (B, L+1, T, 2P)
        return [layers[row, :, : len(tokens)] for row, tokens in enumerate(token_lists)]

    def _token_vectors(self, token_lists: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each distinct token of the batch encoded once: vectors `(U, P)`, and the row of each
        position of `<S> w1 .. wn </S>` `(B, T+2)` (0 at padding) with its mask `(B, T+2)`."""
        rows: dict[str, int] = {BOS_TOKEN: 0, EOS_TOKEN: 1}  # the literal strings share these rows
        longest = max(len(tokens) for tokens in token_lists)
        index = torch.zeros(len(token_lists), longest + 2, dtype=torch.long)  # (B, T+2)
        for b, tokens in enumerate(token_lists):
            index[b, 1 : len(tokens) + 1] = torch.tensor([rows.setdefault(t, len(rows)) for t in tokens],
                                                         dtype=torch.long)
            index[b, len(tokens) + 1] = 1
        lengths = torch.tensor([len(tokens) + 2 for tokens in token_lists])  # (B,)
        mask = torch.arange(longest + 2)[None, :] < lengths[:, None]  # (B, T+2)
        distinct = list(rows)
        if self._token_cache is not None:
            vectors = self._token_cache.lookup(distinct, self._encode_strings)
        else:
            vectors = self._encode_strings(distinct)
        return vectors, index.to(self.device), mask.to(self.device)

    def _encode_strings(self, tokens: list[str]) -> torch.Tensor:
        """Context-free vectors `(len(tokens), P)` of token strings."""
        encode_strings = getattr(self.model.token_encoder, "encode_strings", None)  # a vocabulary-based encoder
        if encode_strings is not None:
            return encode_strings(tokens, self.precision)
        char_ids = torch.from_numpy(tokens_to_ids(tokens)).to(self.device)  # (U, 50)
        with use_precision(self.precision):
            return self.model.token_encoder(char_ids)  # (U, P)

    def embed_sentence(self, sentence: Sentence) -> np.ndarray:
        """All layers `(L+1, n, 2P)` of one sentence (a token list, or a string to tokenize)."""
        return self.embed_batch([sentence])[0]

    def embed_sentences(self, sentences: Iterable[Sentence], batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Yield all layers `(L+1, n, 2P)` of each sentence, in order, from any iterable."""
        batch_size = self._batch_size(batch_size)
        window = batch_size if self.stateful else batch_size * SORT_WINDOW_BATCHES
        buffer: list[Sentence] = []
        for sentence in sentences:
            buffer.append(sentence)
            if len(buffer) == window:
                yield from self._embed_in_order(buffer, batch_size)
                buffer = []
        if buffer:
            yield from self._embed_in_order(buffer, batch_size)

    def _embed_in_order(self, sentences: list[Sentence], batch_size: int) -> list[np.ndarray]:
        """Embed a list in batches (sorted by length when stateless) and return it in order."""
        results: list[np.ndarray | None] = [None] * len(sentences)
        for indices, vectors in self._batches(sentences, batch_size):
            for index, vector in zip(indices, vectors):
                results[index] = vector
        return results  # type: ignore[return-value]

    def _batches(
        self, sentences: Sequence[Sentence], batch_size: int, progress: tqdm | None = None
    ) -> Iterator[tuple[list[int], list[np.ndarray]]]:
        """(indices, vectors) per batch; longest sentences first when stateless, else in order."""
        tokenized = [_tokens(sentence) for sentence in sentences]
        order = list(range(len(tokenized)))
        if not self.stateful:
            order.sort(key=lambda i: -len(tokenized[i]))
        for indices in split_batches(order, [len(t) for t in tokenized], batch_size,
                              None if self.stateful else self.batch_tokens):
            vectors = self.embed_batch([tokenized[i] for i in indices])
            if progress is not None:
                progress.update(sum(len(tokenized[i]) for i in indices))
            yield indices, vectors

    def encode(
        self,
        sentences: Sequence[Sentence],
        layers: Layers = "all",
        batch_size: int | None = None,
        show_progress_bar: bool = False,
        output: Literal["token", "sentence"] = "token",
    ) -> list[np.ndarray] | np.ndarray:
        """Embed many sentences at once (the sentence-transformers convention).

        Args:
            sentences: token lists, or strings (tokenized with the built-in tokenizer).
            layers: "all" `(L+1, n, 2P)`, "top" or "average" `(n, 2P)` per sentence.
            batch_size: sentences per batch (the embedder's default when None).
            show_progress_bar: a progress bar over tokens on stderr.
            output: "token" for one array per sentence; "sentence" for one vector per sentence,
                the mean over its tokens of the chosen layers: an `(N, 2P)` array (`(N, L+1, 2P)`
                for "all"); an empty sentence gets zeros.

        Returns:
            A list of arrays in the caller's order, or one array for `output="sentence"`.
        """
        if isinstance(sentences, str):
            raise ElmoError("encode takes a list of sentences; use embed_sentence for one")
        one_of(layers, "layers", LAYER_CHOICES)
        batch_size = self._batch_size(batch_size)
        boolean(show_progress_bar, "show_progress_bar")
        one_of(output, "output", ("token", "sentence"))
        tokenized = [_tokens(sentence) for sentence in sentences]
        results: list[np.ndarray | None] = [None] * len(tokenized)
        total = sum(len(tokens) for tokens in tokenized)
        with tqdm(total=total, unit="tok", disable=not show_progress_bar, desc="embedding") as progress:
            for indices, vectors in self._batches(tokenized, batch_size, progress):
                for index, vector in zip(indices, vectors):
                    chosen = select_layers(vector, layers)
                    results[index] = sentence_vector(chosen, layers) if output == "sentence" else chosen
        if output == "sentence":
            dim = (self.model.config.n_output_layers, self.model.config.output_dim) if layers == "all" else (
                self.model.config.output_dim,)
            return np.stack(results) if results else np.zeros((0, *dim), np.float32)
        return results  # type: ignore[return-value]

    def similarity(self, a: Sentence, b: Sentence, layers: Layers = "average") -> float:
        """Cosine similarity of two sentences (token lists, or strings split by the built-in
        tokenizer), each pooled as the mean of its token vectors over `layers`: "average" of all
        layers (default), "top", or "all" (the per-layer means concatenated). See `elmo_lm.similarity`."""
        from .similarity import similarity

        return similarity(self, a, b, layers)

    def embed_file(
        self,
        input_file: str | Path,
        output_file: str | Path,
        layers: Layers = "all",
        batch_size: int | None = None,
        overwrite: bool = False,
        tokenize: bool = False,
        show_progress_bar: bool = False,
    ) -> int:
        """Embed a text file (one sentence per line) into HDF5; returns the number of lines.

        The output has one float32 dataset per input line, named by its 0-based line number, and
        a string dataset `sentence_to_index` (JSON: sentence text -> line number). It is written
        to a temporary file and renamed at the end: an interrupted run leaves no partial output.
        """
        one_of(layers, "layers", LAYER_CHOICES)  # every argument checked before any work
        batch_size = self._batch_size(batch_size)
        for name, flag in (("overwrite", overwrite), ("tokenize", tokenize), ("show_progress_bar", show_progress_bar)):
            boolean(flag, name)
        output_file = check_output_file(output_file, overwrite)
        lines = read_lines(input_file)
        sentences: list[Sentence] = [line.strip() if tokenize else line.split() for line in lines]
        total = sum(len(_tokens(sentence)) for sentence in sentences) if not tokenize else None
        with atomic_hdf5(output_file) as output:  # a full disk: one ElmoError, no temporary left
            h5 = output.file
            with tqdm(total=total, unit="tok", disable=not show_progress_bar, desc="embedding") as progress:
                for indices, vectors in self._batches(sentences, batch_size, progress):
                    for index, vector in zip(indices, vectors):
                        h5.create_dataset(str(index), data=select_layers(vector, layers).astype(np.float32))
                    output.check()
            sentence_to_index = {line.strip(): index for index, line in enumerate(lines)}
            h5.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype(),
                              data=[json.dumps(sentence_to_index, ensure_ascii=False)])
        return len(lines)


def dump_token_embeddings(vocab_file: str | Path, output_file: str | Path, model: ElmoBiLM,
                          overwrite: bool = False) -> int:
    """Write the context-free token vector of each line of `vocab_file` to `output_file` (HDF5 dataset
    `embedding`, `(V, P)` float32, written atomically); returns V.

    Raises:
        ElmoError: the output exists and not `overwrite`, or cannot be written; the vocabulary file is not
            valid UTF-8 text; the disk filled up.
    """
    check_output_file(output_file, boolean(overwrite, "overwrite"))  # before the work
    words = read_lines(vocab_file)
    with torch.inference_mode():
        vectors = model.token_encoder(batch_to_ids([words])[0]) if words else torch.zeros(0, model.config.projection_dim)
    with atomic_hdf5(output_file) as output:  # a full disk: one ElmoError naming the file
        output.file.create_dataset("embedding", data=vectors.float().numpy())  # (V, P)
    return len(words)


def sentence_vector(chosen: np.ndarray, layers: Layers) -> np.ndarray:
    """Mean over the token axis of `(L+1, n, 2P)` or `(n, 2P)`; zeros for an empty sentence."""
    token_axis = 1 if layers == "all" else 0
    if chosen.shape[token_axis] == 0:
        return np.zeros(chosen.shape[:token_axis] + chosen.shape[token_axis + 1 :], np.float32)
    return chosen.mean(axis=token_axis)


def _tokens(sentence: Sentence) -> list[str]:
    """A token list as given, or a string split by the built-in tokenizer."""
    if isinstance(sentence, str):
        from .tokenize import tokenize

        return tokenize(sentence)
    if not isinstance(sentence, (list, tuple)) or not all(isinstance(token, str) for token in sentence):
        raise ElmoError(f"a sentence must be a string or a list of token strings, not {_short(sentence)}")
    return list(sentence)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
