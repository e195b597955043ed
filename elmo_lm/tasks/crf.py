"""A linear-chain CRF over tag scores: exact log-likelihood (forward algorithm) and Viterbi decoding,
with the transitions that a tag scheme forbids (`I-PER` after `O` in BIO, say) ruled out.

A path's score is `start[y_1] + sum_t emission[t, y_t] + sum_t transition[y_t, y_t+1] + end[y_n]`.
Forbidden transitions, starts and ends get `FORBIDDEN` added: exp(FORBIDDEN) underflows to zero in
float32, so the partition function sums over the allowed paths only, and Viterbi never picks a
forbidden step while an allowed path exists (one always does: all `O`, or all `B-X`/`S-X`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .spans import OUTSIDE, split_tag

FORBIDDEN = -1e4
"""Score added to a forbidden transition, start or end."""


def allowed_transitions(labels: Sequence[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which starts `(C,)`, transitions `(C, C)` (from, to) and ends `(C,)` a tag scheme allows.

    BIO: `I-X` only after `B-X` or `I-X`. IOB1: `B-X` only after `I-X` or `B-X`. BIOES: inside a
    span (after `B-X`/`I-X`) only `I-X` or `E-X`; outside one (at the start, after `O`, `E-`, `S-`)
    only `O`, `B-` or `S-`; the sentence ends outside a span. "plain": everything.
    """
    C = len(labels)
    start, trans, end = torch.ones(C, dtype=torch.bool), torch.ones(C, C, dtype=torch.bool), torch.ones(C, dtype=torch.bool)
    if scheme == "plain":
        return start, trans, end
    parts = [split_tag(label) or (OUTSIDE, "") for label in labels]
    for j, (prefix, kind) in enumerate(parts):
        if scheme == "BIO" and prefix == "I":
            start[j] = False
            for i, (before, before_kind) in enumerate(parts):
                trans[i, j] = before in ("B", "I") and before_kind == kind
        elif scheme == "IOB1" and prefix == "B":
            start[j] = False
            for i, (before, before_kind) in enumerate(parts):
                trans[i, j] = before in ("B", "I") and before_kind == kind
        elif scheme == "BIOES":
            inside = prefix in ("I", "E")
            start[j] = not inside
            end[j] = prefix in (OUTSIDE, "E", "S")
            for i, (before, before_kind) in enumerate(parts):
                open_span = before in ("B", "I")
                trans[i, j] = (open_span and inside and before_kind == kind) or (not open_span and not inside)
    return start, trans, end


class CRF(nn.Module):
    """Transition, start and end scores over C tags, with the scheme's forbidden moves masked."""

    def __init__(self, labels: Sequence[str], scheme: str = "plain") -> None:
        super().__init__()
        C = len(labels)
        self.transitions = nn.Parameter(torch.zeros(C, C))  # (C, C) from -> to
        self.start = nn.Parameter(torch.zeros(C))  # (C,)
        self.end = nn.Parameter(torch.zeros(C))  # (C,)
        start, trans, end = allowed_transitions(labels, scheme)
        # Rebuilt from the labels and scheme, so not part of a saved head.
        self.register_buffer("start_mask", (~start).float() * FORBIDDEN, persistent=False)  # (C,)
        self.register_buffer("transition_mask", (~trans).float() * FORBIDDEN, persistent=False)  # (C, C)
        self.register_buffer("end_mask", (~end).float() * FORBIDDEN, persistent=False)  # (C,)

    def _scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.start + self.start_mask, self.transitions + self.transition_mask, self.end + self.end_mask

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per sentence `(B,)` by the forward algorithm; `emissions (B, T, C)`, `mask (B, T)` with
        every sentence's tokens first."""
        start, trans, end = self._scores()
        alpha = start + emissions[:, 0]  # (B, C)
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha[:, :, None] + trans[None], dim=1) + emissions[:, t]  # (B, C)
            alpha = torch.where(mask[:, t, None], step, alpha)  # (B, C)
        return torch.logsumexp(alpha + end, dim=1)  # (B,)

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Score of the tag paths `tags (B, T)` (any value at padding) per sentence `(B,)`."""
        start, trans, end = self._scores()
        tags = tags.clamp(min=0)  # (B, T)
        real = mask.float()  # (B, T)
        emitted = emissions.gather(2, tags[..., None]).squeeze(2)  # (B, T)
        score = start[tags[:, 0]] + (emitted * real).sum(dim=1)  # (B,)
        if tags.shape[1] > 1:
            score = score + (trans[tags[:, :-1], tags[:, 1:]] * real[:, 1:]).sum(dim=1)  # (B,)
        last = tags.gather(1, (mask.sum(dim=1) - 1).clamp(min=0)[:, None]).squeeze(1)  # (B,)
        return score + end[last]

    def negative_log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """-log p(tags | emissions) per sentence `(B,)`."""
        return self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)

    @torch.no_grad()
    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The best tag path per sentence `(B, T)` (zeros at padding)."""
        start, trans, end = self._scores()
        B, T, C = emissions.shape
        best = start + emissions[:, 0]  # (B, C)
        pointers = []
        for t in range(1, T):
            candidates = best[:, :, None] + trans[None]  # (B, C from, C to)
            step, pointer = candidates.max(dim=1)  # (B, C)
            real = mask[:, t, None]  # (B, 1)
            best = torch.where(real, step + emissions[:, t], best)
            # At padding each tag points to itself, so backtracking passes through unchanged.
            pointers.append(torch.where(real, pointer, torch.arange(C).expand(B, C)))
        tag = (best + end).argmax(dim=1)  # (B,)
        path = [tag]
        for pointer in reversed(pointers):
            tag = pointer.gather(1, tag[:, None]).squeeze(1)  # (B,)
            path.append(tag)
        return torch.stack(path[::-1], dim=1) * mask  # (B, T)
