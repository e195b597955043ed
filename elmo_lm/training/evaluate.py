"""Perplexity of a trained model on a corpus, with the full softmax.

Two ways to read the corpus:

- **stateless**: each sentence `<S> w1 .. wn </S>` on its own, from a zero LSTM state; the forward
  LM predicts `w1 .. wn </S>`, the backward LM `wn .. w1 <S>`. Independent of batching.
- **stateful**: bilm-tf's streams (`data.LMBatches` in corpus order): sentences packed back to back
  into `batch_size` rows read `unroll_steps` positions at a time, each row's state carried over.
  The same quantity bilm-tf's evaluation reports; it depends a little on batch size and window.

Perplexity is exp of the mean negative log-likelihood per target; the average perplexity is exp
of the mean of the two directions' losses.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..bundled import open_model
from ..chars import BOS_IDS, EOS_IDS, MAX_CHARS, token_to_ids
from ..corpus import Corpus, expand_corpus
from ..errors import ElmoError
from ..model import ElmoBiLM, LstmState
from ..vocab import Vocabulary
from .data import IGNORE_INDEX, LMBatches, training_sentences
from .metrics import perplexity_record
from .objective import LMObjective
from .run_folder import VOCAB_NAME, is_run_folder, load_run_model

SORT_WINDOW = 64
"""Stateless mode sorts sentences by length within windows of this many batches."""


@dataclass
class LossTotals:
    """Summed negative log-likelihoods (nats) and target counts of both directions."""

    forward: float = 0.0
    backward: float = 0.0
    n_tokens: int = 0

    def add(self, loss_sums: torch.Tensor, n_tokens: int) -> None:
        """Add one batch's `(2,)` loss sums over `n_tokens` targets per direction."""
        forward, backward = loss_sums.tolist()
        self.forward += forward
        self.backward += backward
        self.n_tokens += n_tokens

    def as_tensor(self) -> torch.Tensor:
        """`(3,)` float64 [forward, backward, n_tokens], for summing over processes."""
        return torch.tensor([self.forward, self.backward, float(self.n_tokens)], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> LossTotals:
        forward, backward, n = values.tolist()
        return cls(forward, backward, int(round(n)))

    def record(self) -> dict[str, float]:
        """Mean losses and perplexities (forward, backward, average) plus the token count."""
        n = max(self.n_tokens, 1)
        return {**perplexity_record(self.forward / n, self.backward / n), "tokens": self.n_tokens}


def stateful_totals(
    model: ElmoBiLM,
    paths: Corpus,
    vocab: Vocabulary,
    batch_size: int = 32,
    unroll_steps: int = 20,
    tokenize: bool = False,
    max_batches: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> LossTotals:
    """Losses over bilm-tf-style streams with carried state (this process's share of the corpus)."""
    batches = LMBatches(paths, vocab, batch_size, unroll_steps, rank=rank, world_size=world_size, shuffle=False,
                        tokenize=tokenize)
    objective = LMObjective(model, dropout=model.lstm.dropout)
    was_training = model.training
    objective.eval()
    device = next(model.parameters()).device
    totals = LossTotals()
    state: LstmState | None = None
    with torch.inference_mode():
        for batch in itertools.islice(batches, max_batches):
            batch = batch.to(device)
            out = objective(batch.forward_chars, batch.forward_targets, batch.backward_chars, batch.backward_targets,
                            state)
            state = out.state
            totals.add(out.loss_sums, batch.n_tokens)
    objective.train(was_training)
    return totals


def _sentence_batches(paths: Corpus, batch_size: int, tokenize: bool) -> Iterator[list[list[str]]]:
    """Sentences in corpus order, cut into batches of similar lengths (sorted within windows)."""
    sentences = training_sentences(expand_corpus(paths), shuffle=False, tokenize=tokenize)
    while True:
        window = list(itertools.islice(sentences, batch_size * SORT_WINDOW))
        if not window:
            return
        window.sort(key=len)
        for start in range(0, len(window), batch_size):
            yield window[start : start + batch_size]


def _stateless_tensors(sentences: list[list[str]], vocab: Vocabulary) -> tuple[torch.Tensor, ...]:
    """Forward/backward character ids `(B, T, 50)` and targets `(B, T)` of whole sentences, T = longest n + 1."""
    B, T = len(sentences), max(len(s) for s in sentences) + 1
    forward_chars = np.zeros((B, T, MAX_CHARS), dtype=np.int64)  # (B, T, 50)
    backward_chars = np.zeros((B, T, MAX_CHARS), dtype=np.int64)  # (B, T, 50)
    forward_targets = np.full((B, T), IGNORE_INDEX, dtype=np.int64)  # (B, T)
    backward_targets = np.full((B, T), IGNORE_INDEX, dtype=np.int64)  # (B, T)
    cache: dict[str, list[int]] = {}
    for i, tokens in enumerate(sentences):
        for token in tokens:
            if token not in cache:
                cache[token] = token_to_ids(token)
        chars = np.array([BOS_IDS, *(cache[t] for t in tokens), EOS_IDS], dtype=np.int64)  # (n + 2, 50)
        ids = np.array([vocab.bos_id, *vocab.ids(tokens), vocab.eos_id], dtype=np.int64)  # (n + 2,)
        n1 = len(tokens) + 1
        forward_chars[i, :n1], forward_targets[i, :n1] = chars[:-1], ids[1:]
        backward_chars[i, :n1], backward_targets[i, :n1] = chars[::-1][:-1], ids[::-1][1:]
    return tuple(torch.from_numpy(a) for a in (forward_chars, forward_targets, backward_chars, backward_targets))


def stateless_totals(
    model: ElmoBiLM, paths: Corpus, vocab: Vocabulary, batch_size: int = 32, tokenize: bool = False
) -> LossTotals:
    """Losses with every sentence read on its own from a zero state."""
    objective = LMObjective(model, dropout=model.lstm.dropout)
    was_training = model.training
    objective.eval()
    device = next(model.parameters()).device
    totals = LossTotals()
    with torch.inference_mode():
        for sentences in _sentence_batches(paths, batch_size, tokenize):
            tensors = [t.to(device) for t in _stateless_tensors(sentences, vocab)]
            out = objective(*tensors)
            totals.add(out.loss_sums, sum(len(s) + 1 for s in sentences))
    objective.train(was_training)
    return totals


def evaluate(
    model: ElmoBiLM,
    paths: Corpus,
    vocab: Vocabulary,
    modes: tuple[str, ...] = ("stateless", "stateful"),
    batch_size: int = 32,
    unroll_steps: int = 20,
    tokenize: bool = False,
) -> dict[str, dict[str, float]]:
    """Perplexities of `model` on a corpus: for each mode, the record of `LossTotals.record`.

    Raises:
        ElmoError: no file matched, a line is not valid UTF-8, the vocabulary does not fit the
            softmax, or the corpus has no sentence.
    """
    if model.softmax is None:
        raise ElmoError("the model has no softmax, so it has no perplexity: evaluate a trained (or exported) model")
    if model.softmax.out_features != len(vocab):
        raise ElmoError(f"the vocabulary has {len(vocab)} tokens but the model's softmax has "
                        f"{model.softmax.out_features} rows: pass the vocabulary the model was trained with")
    results = {}
    for mode in modes:
        if mode == "stateless":
            totals = stateless_totals(model, paths, vocab, batch_size, tokenize)
        else:
            totals = stateful_totals(model, paths, vocab, batch_size, unroll_steps, tokenize)
        if totals.n_tokens == 0:
            raise ElmoError(f"no sentences in {', '.join(map(str, [paths] if isinstance(paths, str) else paths))}: "
                            "every file is empty or blank")
        results[mode] = totals.record()
    return results


def evaluate_folder(model_dir: str | Path, data: Corpus, vocab_file: str | Path | None = None,
                    modes: tuple[str, ...] = ("stateless", "stateful"), batch_size: int = 32, unroll_steps: int = 20,
                    tokenize: bool = False) -> dict[str, dict[str, float]]:
    """`evaluate` the model in `model_dir`: a training run folder (its latest checkpoint) or a model folder.

    Args:
        vocab_file: the softmax's vocabulary (default: `vocab.txt` in `model_dir`).

    Raises:
        ElmoError: no model or no vocabulary there; bad corpus.
    """
    folder = Path(model_dir)
    model = load_run_model(folder) if is_run_folder(folder) else open_model(folder)
    vocab_path = Path(vocab_file) if vocab_file else folder / VOCAB_NAME
    if not vocab_path.is_file():
        raise ElmoError(f"{vocab_path}: vocabulary not found; name the model's vocabulary with --vocab")
    return evaluate(model, data, Vocabulary.load(vocab_path), modes, batch_size, unroll_steps, tokenize)
