"""Tag schemes and span scores: which scheme a tag set uses, which spans a tag sequence holds, and
conlleval-style precision, recall and F1 over those spans.

Schemes: "BIO" (IOB2: every span starts with `B-`), "IOB1" (`B-` only between two adjacent spans
of one type), "BIOES" (also `E-` ends and `S-` single-token spans; BIOUL's `L-` and `U-` read as
`E-` and `S-`) and "plain" (labels without a prefix: a span is a run of one label other than `O`).

Spans are read as conlleval reads them, leniently: an `I-X` after `O` or after another type
starts a span, and a change of type inside a run ends one span and starts the next. A predicted
span counts as correct only when its start, end and type all match a gold span.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

Scheme = Literal["BIO", "IOB1", "BIOES", "plain"]
SCHEMES: tuple[str, ...] = ("BIO", "IOB1", "BIOES", "plain")
SPAN_SCHEMES: tuple[str, ...] = ("BIO", "IOB1", "BIOES")
"""Schemes whose tags mark span boundaries (scored by span F1, decoded with a constrained CRF)."""
OUTSIDE = "O"
_PREFIXES = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}


def split_tag(tag: str) -> tuple[str, str] | None:
    """`("B", "PER")` for `B-PER` (also `B_PER`; `L`/`U` become `E`/`S`), `("O", "")` for `O`,
    None for a tag without a scheme prefix."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in _PREFIXES:
        return _PREFIXES[tag[0]], tag[2:]
    return None


def detect_scheme(labels: Sequence[str], sequences: Sequence[Sequence[str]] = ()) -> Scheme:
    """The scheme of a tag set, told apart from BIO / IOB1 by the gold `sequences` when given.

    Any label other than `O` without a prefix makes the set "plain"; `E-`/`S-` (or `L-`/`U-`)
    make it "BIOES". With only `B-`/`I-`, the scheme that the sequences break less often wins
    (BIO: `I-X` only after `B-X`/`I-X`; IOB1: `B-X` only after `I-X`/`B-X`); a tie is BIO.
    """
    parts = [split_tag(label) for label in labels if label != OUTSIDE]
    if not parts or any(part is None for part in parts):
        return "plain"
    prefixes = {part[0] for part in parts if part is not None}
    if prefixes & {"E", "S"}:
        return "BIOES"
    if not sequences:
        return "BIO" if "B" in prefixes else "IOB1"
    bio_breaks = iob1_breaks = 0
    for tags in sequences:
        previous: tuple[str, str] = (OUTSIDE, "")
        for tag in tags:
            current = split_tag(tag) or (OUTSIDE, "")
            continues = previous[0] != OUTSIDE and previous[1] == current[1]
            if current[0] == "I" and not continues:
                bio_breaks += 1
            if current[0] == "B" and not continues:
                iob1_breaks += 1
            previous = current
    return "IOB1" if iob1_breaks < bio_breaks else "BIO"


def _parts(tag: str, scheme: str) -> tuple[str, str]:
    """(prefix, type) of a tag under `scheme`; a plain label is an inside tag of its own type."""
    if scheme == "plain":
        return (OUTSIDE, "") if tag == OUTSIDE else ("I", tag)
    return split_tag(tag) or (OUTSIDE, "")


def _ends(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """Whether a span open at the previous tag ends before the current one (conlleval's rule)."""
    prefix, kind = previous
    if prefix in ("E", "S"):
        return True
    if prefix in ("B", "I") and current[0] in ("B", "S", OUTSIDE):
        return True
    return prefix != OUTSIDE and kind != current[1]


def _starts(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """Whether a span starts at the current tag (conlleval's rule)."""
    prefix, kind = current
    if prefix in ("B", "S"):
        return True
    if previous[0] in ("E", "S", OUTSIDE) and prefix in ("I", "E"):
        return True
    return prefix != OUTSIDE and previous[1] != kind


def spans(tags: Sequence[str], scheme: str) -> list[tuple[int, int, str]]:
    """The spans of one tag sequence as `(start, end, type)`, `end` exclusive."""
    found: list[tuple[int, int, str]] = []
    start = -1
    previous: tuple[str, str] = (OUTSIDE, "")
    for i, tag in enumerate(tags):
        current = _parts(tag, scheme)
        if start >= 0 and _ends(previous, current):
            found.append((start, i, previous[1]))
            start = -1
        if _starts(previous, current):
            start = i
        previous = current
    if start >= 0:
        found.append((start, len(tags), previous[1]))
    return found


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float | int]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold": gold, "predicted": predicted,
            "correct": correct}


def span_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str) -> dict[str, Any]:
    """Micro precision, recall and F1 over the spans of all sentences, and the same per span type.

    Returns `span_precision`, `span_recall`, `span_f1`, `gold_spans`, `predicted_spans`,
    `correct_spans` and `per_type` (type -> precision, recall, f1, gold, predicted, correct).
    """
    counts: dict[str, list[int]] = {}  # type -> [correct, predicted, gold]
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        gold_spans, predicted_spans = set(spans(gold_tags, scheme)), set(spans(predicted_tags, scheme))
        for span in gold_spans:
            counts.setdefault(span[2], [0, 0, 0])[2] += 1
        for span in predicted_spans:
            counts.setdefault(span[2], [0, 0, 0])[1] += 1
            if span in gold_spans:
                counts[span[2]][0] += 1
    totals = [sum(values[k] for values in counts.values()) for k in range(3)]
    overall = _prf(*totals)
    return {"span_precision": overall["precision"], "span_recall": overall["recall"], "span_f1": overall["f1"],
            "gold_spans": totals[2], "predicted_spans": totals[1], "correct_spans": totals[0],
            "per_type": {kind: _prf(*counts[kind]) for kind in sorted(counts)}}
