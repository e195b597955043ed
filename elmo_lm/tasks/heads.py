"""Downstream heads over ELMo: a sequence tagger and a sentence classifier.

Both start the same way (paper section 3.3): the ELMo layers are reduced to one vector per token
(a learned scalar mix, the top layer, or the plain average), optionally concatenated with static
word vectors, then dropout. The tagger runs an optional BiLSTM and either a per-token softmax or a
linear-chain CRF (on by default for span tag sets); the classifier an optional BiLSTM, then mean,
max or self-attentive pooling over the tokens and a small MLP.

The mix's layer normalisation (when on) uses one mean and variance per layer over the batch's
real tokens (AllenNLP's rule, without the `<S>`/`</S>` positions, which are not cached).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..errors import ElmoError
from ..elmo import ScalarMix
from .crf import CRF
from .features import Batch, Ragged
from .spans import SCHEMES

ElmoInput = Literal["mix", "top", "average", "none"]


@dataclass
class HeadConfig:
    """Everything needed to rebuild a head (saved as the head folder's `config.json`)."""

    task: Literal["tagger", "classifier"]
    """"tagger" (a label per token) or "classifier" (a label per sentence)."""
    labels: list[str]
    """The label set, in output order."""
    elmo: ElmoInput = "mix"
    """How the ELMo layers enter: learned scalar "mix", the "top" layer, the "average", or "none"."""
    n_layers: int = 0
    """L+1, the number of ELMo layers (0 with elmo="none")."""
    elmo_dim: int = 0
    """2P, the width of each ELMo layer (0 with elmo="none")."""
    static_dim: int = 0
    """Width of the static word vectors concatenated to ELMo (0: none)."""
    do_layer_norm: bool = False
    """Layer-normalise each ELMo layer before mixing."""
    standardize: bool = False
    """Shift and scale every dimension of every ELMo layer by its mean and standard deviation over
    the training tokens (kept with the head): ELMo vectors share a large common direction, and
    without this a head learns rare tags slowly."""
    dropout: float = 0.5
    """Dropout on the token features (and inside the classifier's MLP)."""
    encoder: Literal["lstm", "none"] = "lstm"
    """A BiLSTM over the token features before the output ("none": straight to it)."""
    hidden_dim: int = 128
    """BiLSTM size per direction, and the classifier MLP's hidden size."""
    pooling: Literal["mean", "max", "attention"] = "mean"
    """Classifier: how token vectors become one sentence vector ("attention": a learned score per
    token, softmax over the sentence, weighted sum)."""
    crf: bool = False
    """Tagger: a linear-chain CRF output (transitions constrained by `tag_scheme`) instead of a
    per-token softmax."""
    tag_scheme: str = "plain"
    """Tagger: the tag set's scheme, BIO, IOB1, BIOES or plain (see `spans.detect_scheme`)."""
    mix_l2: float = 0.0
    """Coefficient of the L2 penalty `mix_l2 * sum(w ** 2)` on the mix weights (before softmax)."""
    inputs: dict[str, Any] = field(default_factory=dict)
    """Where the inputs came from (ELMo model, static vectors, tokenization), for evaluation."""

    def __post_init__(self) -> None:
        if self.task not in ("tagger", "classifier"):
            raise ElmoError(f"task must be 'tagger' or 'classifier', not {self.task!r}")
        if self.elmo not in ("mix", "top", "average", "none"):
            raise ElmoError(f"elmo input must be mix, top, average or none, not {self.elmo!r}")
        if self.elmo == "none" and self.static_dim == 0:
            raise ElmoError("a head needs ELMo layers or static vectors (elmo='none' without static vectors)")
        if self.elmo != "none" and (self.n_layers < 1 or self.elmo_dim < 1):
            raise ElmoError("n_layers and elmo_dim must be set when the head uses ELMo")
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 1:
            raise ElmoError("labels must be a non-empty list without repeats")
        if self.tag_scheme not in SCHEMES:
            raise ElmoError(f"tag scheme must be one of {', '.join(SCHEMES)}, not {self.tag_scheme!r}")
        if self.pooling not in ("mean", "max", "attention"):
            raise ElmoError(f"pooling must be 'mean', 'max' or 'attention', not {self.pooling!r}")
        if self.crf and self.task != "tagger":
            raise ElmoError("only a tagger has a CRF output")

    @property
    def feature_dim(self) -> int:
        """Width of a token's features: ELMo (2P, if used) plus static vectors (D)."""
        return (self.elmo_dim if self.elmo != "none" else 0) + self.static_dim

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> HeadConfig:
        """Rebuild from `to_dict`'s output; unknown keys are an error naming `source`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ElmoError(f"{source}: unknown head setting {unknown[0]!r}")
        try:
            return cls(**values)
        except TypeError as error:
            raise ElmoError(f"{source}: {error}") from None


class TaskHead(nn.Module):
    """The shared front of both heads: ELMo mix, static vectors, dropout, optional BiLSTM."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.mix: ScalarMix | None = None
        if config.elmo in ("mix", "average"):
            self.mix = ScalarMix(config.n_layers, do_layer_norm=config.do_layer_norm,
                                 trainable=config.elmo == "mix")
        if config.standardize and config.elmo != "none":
            self.register_buffer("layer_mean", torch.zeros(config.n_layers, config.elmo_dim))  # (L+1, 2P)
            self.register_buffer("layer_scale", torch.ones(config.n_layers, config.elmo_dim))  # (L+1, 2P)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm: nn.LSTM | None = None
        self.encoded_dim = config.feature_dim
        if config.encoder == "lstm":
            self.lstm = nn.LSTM(config.feature_dim, config.hidden_dim, batch_first=True, bidirectional=True)
            self.encoded_dim = 2 * config.hidden_dim
        elif config.encoder != "none":
            raise ElmoError(f"encoder must be 'lstm' or 'none', not {config.encoder!r}")

    def token_features(self, batch: Batch) -> torch.Tensor:
        """Mixed ELMo layers and static vectors, concatenated: `(B, T, 2P + D)`."""
        parts = []
        if self.config.elmo != "none":
            if batch.layers is None:
                raise ElmoError("this head needs ELMo layers")
            layers = batch.layers  # (B, L+1, T, 2P)
            if self.config.standardize:
                layers = (layers - self.layer_mean[None, :, None]) / self.layer_scale[None, :, None]
            if self.mix is not None:
                parts.append(self.mix(layers, batch.mask))  # (B, T, 2P)
            else:
                parts.append(layers[:, -1])  # (B, T, 2P)
        if self.config.static_dim:
            if batch.static is None:
                raise ElmoError("this head needs static word vectors")
            parts.append(batch.static)  # (B, T, D)
        features = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]  # (B, T, 2P + D)
        return features * batch.mask[..., None]

    def encode(self, batch: Batch) -> torch.Tensor:
        """Token features after dropout and the optional BiLSTM: `(B, T, H)`, zero at padding."""
        features = self.dropout(self.token_features(batch))  # (B, T, 2P + D)
        if self.lstm is None:
            return features
        lengths = batch.mask.sum(dim=1).clamp(min=1).cpu()  # (B,)
        packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
        encoded, _ = self.lstm(packed)
        encoded, _ = pad_packed_sequence(encoded, batch_first=True, total_length=features.shape[1])  # (B, T, 2H)
        return self.dropout(encoded) * batch.mask[..., None]

    @torch.no_grad()
    def fit_standardization(self, layers: Ragged) -> None:
        """Set the per-dimension mean and scale of each ELMo layer from training tokens `(N, L+1, 2P)`."""
        if not self.config.standardize or self.config.elmo == "none":
            return
        total = np.zeros(self.layer_mean.shape, np.float64)  # (L+1, 2P)
        squares = np.zeros(self.layer_mean.shape, np.float64)
        count = len(layers.data)
        for start in range(0, count, 65536):
            chunk = np.asarray(layers.data[start : start + 65536], np.float64)  # (n, L+1, 2P)
            total += chunk.sum(axis=0)
            squares += (chunk**2).sum(axis=0)
        mean = total / max(count, 1)
        std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
        self.layer_mean.copy_(torch.from_numpy(mean))
        self.layer_scale.copy_(torch.from_numpy(np.maximum(std, 1e-6)))

    def penalty(self) -> torch.Tensor:
        """`mix_l2 * sum(w ** 2)` over the scalar mix parameters (zero without a learned mix)."""
        if self.mix is None or self.config.elmo != "mix" or not self.config.mix_l2:
            return torch.zeros(())
        return self.config.mix_l2 * (self.mix.scalar_parameters**2).sum()

    def layer_weights(self) -> list[float] | None:
        """softmax(w) of the mix, one weight per ELMo layer; None without a mix."""
        if self.mix is None:
            return None
        return [float(w) for w in self.mix.layer_weights().detach()]

    def gamma(self) -> float | None:
        """The mix's scale gamma; None without a mix."""
        return None if self.mix is None else float(self.mix.gamma.detach())

    def loss(self, batch: Batch, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the targets that are not `ignore` (-1): `(B, T)` or `(B,)` ids."""
        logits = self(batch)  # (B, T, C) or (B, C)
        if not (targets >= 0).any():  # a batch whose every target is unknown
            return logits.sum() * 0.0
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        """Label ids: `(B, T)` for a tagger, `(B,)` for a classifier."""
        return self(batch).argmax(dim=-1)


class Tagger(TaskHead):
    """A label for every token: per-token softmax, or a CRF over the tag scores."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__(config)
        self.output = nn.Linear(self.encoded_dim, len(config.labels))
        self.crf = CRF(config.labels, config.tag_scheme) if config.crf else None

    def forward(self, batch: Batch) -> torch.Tensor:
        """Tag scores `(B, T, C)` (the CRF's emissions with a CRF)."""
        return self.output(self.encode(batch))  # (B, T, C)

    def loss(self, batch: Batch, targets: torch.Tensor) -> torch.Tensor:
        """With a CRF: the negative log-likelihood of the gold paths per token (sentences holding an
        unknown tag left out); without: the per-token cross-entropy."""
        if self.crf is None:
            return super().loss(batch, targets)
        emissions = self(batch)  # (B, T, C)
        mask = batch.mask.clone()
        mask[:, 0] = True  # a CRF path needs a first token; an empty sentence weighs nothing below
        known = ((targets >= 0) | ~batch.mask).all(dim=1) & batch.mask.any(dim=1)  # (B,)
        nll = self.crf.negative_log_likelihood(emissions, targets, mask)  # (B,)
        tokens = (batch.mask.sum(dim=1) * known).sum().clamp(min=1)
        return (nll * known).sum() / tokens

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        """Tag ids `(B, T)`: the Viterbi path with a CRF, else the best tag per token."""
        if self.crf is None:
            return super().predict(batch)
        mask = batch.mask.clone()
        mask[:, 0] = True
        return self.crf.viterbi(self(batch), mask)  # (B, T)


class Classifier(TaskHead):
    """A label for every sentence."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__(config)
        self.mlp = nn.Sequential(
            nn.Linear(self.encoded_dim, config.hidden_dim),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, len(config.labels)),
        )
        self.attention = nn.Linear(self.encoded_dim, 1) if config.pooling == "attention" else None

    def pool(self, encoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean, max or attention over the real tokens of `(B, T, H)` -> `(B, H)`; zeros for an empty sentence."""
        if self.attention is not None:
            scores = self.attention(encoded).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, T)
            weights = torch.softmax(scores, dim=1).nan_to_num(0.0)  # (B, T); an empty row gives NaN -> 0
            return (weights[..., None] * encoded).sum(dim=1)  # (B, H)
        if self.config.pooling == "max":
            filled = encoded.masked_fill(~mask[..., None], float("-inf"))  # (B, T, H)
            pooled = filled.max(dim=1).values  # (B, H)
            return torch.where(mask.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))
        counts = mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
        return encoded.sum(dim=1) / counts  # (B, H)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Label logits `(B, C)`."""
        pooled = self.pool(self.encode(batch), batch.mask)  # (B, H)
        return self.mlp(pooled)  # (B, C)


def build_head(config: HeadConfig) -> TaskHead:
    """A fresh `Tagger` or `Classifier` for `config`."""
    return Tagger(config) if config.task == "tagger" else Classifier(config)
