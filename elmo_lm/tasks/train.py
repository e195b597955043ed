"""Training a head on precomputed features: shuffled length-bucketed batches, Adam, model selection on dev.

Only the head (and its scalar mix) learns; the language model's layers come from a `Ragged`
cache, so an epoch costs the head's own compute and nothing else. The kept weights are those of
the epoch with the best dev score on the task's own metric (`selection_metric`): span F1 for a
span tag set, token accuracy for other tag sets, macro F1 for imbalanced classes, else accuracy.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..arguments import integer, non_negative_number, positive_int, positive_number
from ..errors import ElmoError
from .features import Batch, Ragged, make_batch
from .heads import HeadConfig, TaskHead
from .spans import SPAN_SCHEMES, span_scores

IGNORE = -1
"""Target id of a gold label outside the head's label set: ignored by the loss, counted wrong."""


@dataclass
class TaskData:
    """A labelled set, ready for a head: precomputed inputs and target label ids."""

    layers: Ragged | None
    """ELMo layers `(n_i, L+1, 2P)` per sentence, or None."""
    static: Ragged | None
    """Static vectors `(n_i, D)` per sentence, or None."""
    targets: list[np.ndarray]
    """Per sentence: `(n_i,)` tag ids (tagger) or `(1,)` label id (classifier); IGNORE if unknown."""

    def __len__(self) -> int:
        return len(self.targets)

    def lengths(self) -> np.ndarray:
        """`(N,)` tokens per sentence."""
        source = self.layers if self.layers is not None else self.static
        assert source is not None
        return source.lengths()

    def batch(self, indices: Sequence[int]) -> Batch:
        """Padded inputs of sentences `indices`."""
        return make_batch(self.layers, self.static, indices)


def encode_targets(label_lists: Sequence[Sequence[str]], labels: Sequence[str]) -> list[np.ndarray]:
    """Label strings -> id arrays over `labels`; labels outside the set become `IGNORE`."""
    index = {label: i for i, label in enumerate(labels)}
    return [np.array([index.get(label, IGNORE) for label in items], np.int64) for items in label_lists]


@dataclass
class TrainSettings:
    """How a head is trained."""

    epochs: int = 30
    """Most passes over the training set."""
    batch_size: int = 32
    """Sentences per step."""
    learning_rate: float = 5e-3
    """Adam's learning rate (at 1e-3 a BiLSTM head on a set with 95% `O` tags still predicts only
    `O` after hundreds of steps)."""
    patience: int = 5
    """Stop after this many epochs in a row without a better dev score on the selection metric
    (counted from `min_epochs` on; with a dev set)."""
    min_epochs: int = 5
    """Never stop before this many epochs: a head on a skewed set first learns the majority class."""
    metric: str = "auto"
    """The dev score that picks the kept epoch: "span_f1", "accuracy", "macro_f1", or "auto"
    (`selection_metric`)."""
    grad_clip: float = 5.0
    """Global gradient-norm clip."""
    seed: int = 0
    """Seeds the batch order and dropout."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            positive_int(getattr(self, name), name)
        non_negative_number(self.learning_rate, "learning_rate")  # 0: a head that does not learn (tests use it)
        positive_number(self.grad_clip, "grad_clip")
        integer(self.seed, "seed")


METRICS = ("auto", "span_f1", "accuracy", "macro_f1")
IMBALANCE = 1.5
"""A label set is imbalanced when its most frequent class has this many times the examples of its rarest."""


def selection_metric(config: HeadConfig, targets: Sequence[np.ndarray], requested: str = "auto") -> str:
    """The dev score that selects a head's epoch: span F1 for a tagger with a span scheme (BIO,
    IOB1, BIOES), accuracy for other taggers, macro F1 for a classifier whose training labels are
    imbalanced (see `IMBALANCE`), accuracy for a balanced one. `requested` other than "auto" wins."""
    if requested != "auto":
        usable = {"tagger": ("accuracy", "span_f1") if config.tag_scheme in SPAN_SCHEMES else ("accuracy",),
                  "classifier": ("accuracy", "macro_f1")}[config.task]
        if requested not in usable:
            raise ElmoError(f"metric {requested!r} does not apply to this {config.task} (use {' or '.join(usable)})")
        return requested
    if config.task == "tagger":
        return "span_f1" if config.tag_scheme in SPAN_SCHEMES else "accuracy"
    counts = np.bincount(np.concatenate(list(targets)).clip(min=0), minlength=len(config.labels)) if targets else []
    counts = [c for c in counts if c > 0]
    return "macro_f1" if counts and max(counts) > IMBALANCE * min(counts) else "accuracy"


def _padded_targets(data: TaskData, indices: Sequence[int], task: str, T: int) -> torch.Tensor:
    """Targets of a batch: `(B, T)` tag ids padded with IGNORE, or `(B,)` label ids."""
    if task == "classifier":
        return torch.tensor([int(data.targets[i][0]) for i in indices])  # (B,)
    padded = torch.full((len(indices), T), IGNORE, dtype=torch.long)  # (B, T)
    for row, i in enumerate(indices):
        padded[row, : len(data.targets[i])] = torch.from_numpy(data.targets[i])
    return padded


def _loss(head: TaskHead, data: TaskData, indices: Sequence[int]) -> torch.Tensor:
    """The head's loss on a batch (per token for a tagger) plus the mix penalty."""
    batch = data.batch(indices)
    targets = _padded_targets(data, indices, head.config.task, batch.mask.shape[1])
    return head.loss(batch, targets) + head.penalty()


def _training_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of sentences of similar length (sorted within random pools of 50 batches)."""
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def predict_ids(head: TaskHead, data: TaskData, batch_size: int = 64) -> list[np.ndarray]:
    """Predicted label ids per sentence: `(n_i,)` for a tagger, `(1,)` for a classifier."""
    was_training = head.training
    head.eval()
    lengths = data.lengths()
    order = np.argsort(-lengths, kind="stable")
    results: list[np.ndarray] = [np.zeros(0, np.int64)] * len(data)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        predicted = head.predict(data.batch(indices)).numpy()  # (B, T) or (B,)
        for row, i in enumerate(indices):
            results[i] = predicted[row, : lengths[i]] if head.config.task == "tagger" else predicted[row : row + 1]
    head.train(was_training)
    return results


def score(task: str, gold: Sequence[np.ndarray], predicted: Sequence[np.ndarray], labels: Sequence[str],
          tag_scheme: str = "plain", gold_tags: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """Accuracy and error rate; macro F1 for a classifier; span precision, recall and F1 (micro and
    per type, see `spans.span_scores`) for a tagger with a span scheme. Unknown gold labels
    (`IGNORE`) count wrong; for spans, pass the gold tag strings as `gold_tags` to score them
    exactly (otherwise an unknown tag reads as `O`)."""
    n_labels = len(labels)
    gold_all = np.concatenate(list(gold)) if gold else np.zeros(0, np.int64)
    predicted_all = np.concatenate(list(predicted)) if predicted else np.zeros(0, np.int64)
    correct = int((gold_all == predicted_all).sum())
    total = len(gold_all)
    accuracy = correct / total if total else 0.0
    metrics: dict[str, Any] = {"accuracy": accuracy, "error_rate": 1.0 - accuracy,
                               "tokens" if task == "tagger" else "examples": total}
    if task == "classifier":
        f1s = []
        for label in range(n_labels):
            tp = int(((predicted_all == label) & (gold_all == label)).sum())
            fp = int(((predicted_all == label) & (gold_all != label)).sum())
            fn = int(((predicted_all != label) & (gold_all == label)).sum())
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        metrics["macro_f1"] = float(np.mean(f1s))
    elif tag_scheme in SPAN_SCHEMES:
        if gold_tags is None:
            gold_tags = [[labels[i] if i >= 0 else "O" for i in ids] for ids in gold]
        predicted_tags = [[labels[i] for i in ids] for ids in predicted]
        metrics.update(span_scores(gold_tags, predicted_tags, tag_scheme))
    return metrics


@torch.no_grad()
def dev_loss(head: TaskHead, data: TaskData, batch_size: int = 64) -> float:
    """The head's loss on a labelled set, averaged over its batches (without the mix penalty)."""
    was_training = head.training
    head.eval()
    total, batches = 0.0, 0
    for start in range(0, len(data), batch_size):
        indices = list(range(start, min(start + batch_size, len(data))))
        batch = data.batch(indices)
        total += float(head.loss(batch, _padded_targets(data, indices, head.config.task, batch.mask.shape[1])))
        batches += 1
    head.train(was_training)
    return total / max(batches, 1)


def evaluate_head(head: TaskHead, data: TaskData, batch_size: int = 64) -> dict[str, Any]:
    """Score `head` on a labelled set (see `score`)."""
    return score(head.config.task, data.targets, predict_ids(head, data, batch_size), head.config.labels,
                 head.config.tag_scheme)


def train_head(
    head: TaskHead,
    train: TaskData,
    dev: TaskData | None,
    settings: TrainSettings | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train `head` in place; with `dev`, keep the weights of the best dev score and stop early.

    The dev score is `settings.metric` (by default the task's own, see `selection_metric`); of
    two epochs with the same score the one with the lower dev loss is better. Training stops
    after `settings.patience` epochs in a row without a better score, but never before
    `settings.min_epochs`.

    Args:
        head: a fresh head.
        train, dev: labelled sets (dev may be None: then all epochs run and the last weights stay).
        settings: epochs, batch size, learning rate, patience, minimum epochs, metric, seed.
        log: called with one line per epoch.

    Returns:
        A summary: the selection metric, best epoch, its dev metrics, per-epoch history, layer
        weights and gamma.
    """
    settings = settings or TrainSettings()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    if train.layers is not None:
        head.fit_standardization(train.layers)
    trainable = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=settings.learning_rate)
    lengths = train.lengths()
    history: list[dict[str, Any]] = []
    metric = selection_metric(head.config, train.targets, settings.metric)
    best_score: tuple[float, float] = (-1.0, 0.0)
    best_epoch, best_state = 0, None
    started = time.monotonic()
    for epoch in range(1, settings.epochs + 1):
        head.train()
        total_loss, steps = 0.0, 0
        for indices in _training_batches(lengths, settings.batch_size, rng):
            loss = _loss(head, train, indices)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
            optimizer.step()
            total_loss += float(loss.detach())
            steps += 1
        record: dict[str, Any] = {"epoch": epoch, "train_loss": total_loss / max(steps, 1),
                                  "seconds": round(time.monotonic() - started, 2)}
        if dev is not None and len(dev):
            record["dev"] = {**evaluate_head(head, dev), "loss": dev_loss(head, dev)}
        history.append(record)
        if log is not None:
            dev_text = f", dev {metric} {record['dev'][metric]:.4f}" if "dev" in record else ""
            log(f"epoch {epoch}: train loss {record['train_loss']:.4f}{dev_text}")
        if "dev" not in record:
            best_epoch = epoch
            continue
        # Ties (a span F1 still at zero, say) go to the lower dev loss: the head is still learning.
        current = (record["dev"][metric], -record["dev"]["loss"])
        if current > best_score:
            best_score, best_epoch = current, epoch
            best_state = copy.deepcopy(head.state_dict())
        elif epoch >= settings.min_epochs and epoch - max(best_epoch, settings.min_epochs) >= settings.patience:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    summary: dict[str, Any] = {"selection_metric": metric, "best_epoch": best_epoch, "epochs_run": len(history), "history": history,
                               "layer_weights": head.layer_weights(), "gamma": head.gamma()}
    if best_state is not None:
        summary["dev"] = history[best_epoch - 1]["dev"]
    return summary
