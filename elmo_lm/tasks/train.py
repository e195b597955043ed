"""Training a head on precomputed features: shuffled length-bucketed batches, Adam, early stopping on dev.

Only the head (and its scalar mix) learns; the language model's layers come from a `Ragged`
cache, so an epoch costs the head's own compute and nothing else.
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

from ..arguments import integer, positive_int, positive_number
from .features import Batch, Ragged, make_batch
from .heads import TaskHead

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

    epochs: int = 20
    """Most passes over the training set."""
    batch_size: int = 32
    """Sentences per step."""
    learning_rate: float = 1e-3
    """Adam's learning rate."""
    patience: int = 3
    """Stop after this many epochs without a better dev accuracy (with a dev set)."""
    grad_clip: float = 5.0
    """Global gradient-norm clip."""
    seed: int = 0
    """Seeds the batch order and dropout."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            positive_int(getattr(self, name), name)
        for name in ("learning_rate", "grad_clip"):
            positive_number(getattr(self, name), name)
        integer(self.seed, "seed")


def _padded_targets(data: TaskData, indices: Sequence[int], task: str, T: int) -> torch.Tensor:
    """Targets of a batch: `(B, T)` tag ids padded with IGNORE, or `(B,)` label ids."""
    if task == "classifier":
        return torch.tensor([int(data.targets[i][0]) for i in indices])  # (B,)
    padded = torch.full((len(indices), T), IGNORE, dtype=torch.long)  # (B, T)
    for row, i in enumerate(indices):
        padded[row, : len(data.targets[i])] = torch.from_numpy(data.targets[i])
    return padded


def _loss(head: TaskHead, data: TaskData, indices: Sequence[int]) -> torch.Tensor:
    """Mean cross-entropy of a batch (over tokens for a tagger) plus the mix penalty."""
    batch = data.batch(indices)
    logits = head(batch)  # (B, T, C) or (B, C)
    targets = _padded_targets(data, indices, head.config.task, batch.mask.shape[1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)
    if not torch.isfinite(loss):  # a batch whose every target is IGNORE
        loss = logits.sum() * 0.0
    return loss + head.penalty()


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
        predicted = head(data.batch(indices)).argmax(dim=-1).numpy()  # (B, T) or (B,)
        for row, i in enumerate(indices):
            results[i] = predicted[row, : lengths[i]] if head.config.task == "tagger" else predicted[row : row + 1]
    head.train(was_training)
    return results


def score(task: str, gold: Sequence[np.ndarray], predicted: Sequence[np.ndarray], n_labels: int) -> dict[str, Any]:
    """Accuracy and error rate (plus macro F1 for a classifier); unknown gold labels count wrong."""
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
    return metrics


def evaluate_head(head: TaskHead, data: TaskData, batch_size: int = 64) -> dict[str, Any]:
    """Score `head` on a labelled set (see `score`)."""
    return score(head.config.task, data.targets, predict_ids(head, data, batch_size), len(head.config.labels))


def train_head(
    head: TaskHead,
    train: TaskData,
    dev: TaskData | None,
    settings: TrainSettings | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train `head` in place; with `dev`, keep the weights of the best dev accuracy and stop early.

    Args:
        head: a fresh head.
        train, dev: labelled sets (dev may be None: then all epochs run and the last weights stay).
        settings: epochs, batch size, learning rate, patience, seed.
        log: called with one line per epoch.

    Returns:
        A summary: best epoch, its dev metrics, per-epoch history, layer weights and gamma.
    """
    settings = settings or TrainSettings()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    trainable = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=settings.learning_rate)
    lengths = train.lengths()
    history: list[dict[str, Any]] = []
    best_accuracy, best_epoch, best_state = -1.0, 0, None
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
            record["dev"] = evaluate_head(head, dev)
        history.append(record)
        if log is not None:
            dev_text = f", dev accuracy {record['dev']['accuracy']:.4f}" if "dev" in record else ""
            log(f"epoch {epoch}: train loss {record['train_loss']:.4f}{dev_text}")
        if "dev" not in record:
            best_epoch = epoch
            continue
        if record["dev"]["accuracy"] > best_accuracy:
            best_accuracy, best_epoch = record["dev"]["accuracy"], epoch
            best_state = copy.deepcopy(head.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    summary: dict[str, Any] = {"best_epoch": best_epoch, "epochs_run": len(history), "history": history,
                               "layer_weights": head.layer_weights(), "gamma": head.gamma()}
    if best_state is not None:
        summary["dev"] = history[best_epoch - 1]["dev"]
    return summary
