"""Span scores against hand-counted cases (conlleval's reading of each tag scheme), and scheme detection."""

from __future__ import annotations

import pytest

from elmo_lm.tasks import detect_scheme, span_scores, spans


@pytest.mark.parametrize("scheme, tags, expected", [
    ("BIO", ["B-PER", "I-PER", "O", "B-LOC"], [(0, 2, "PER"), (3, 4, "LOC")]),
    ("BIO", ["O", "I-PER", "I-PER", "O"], [(1, 3, "PER")]),  # an I- without a B- starts a span
    ("BIO", ["B-PER", "I-PER", "I-LOC", "O"], [(0, 2, "PER"), (2, 3, "LOC")]),  # type change inside a run
    ("BIO", ["O", "B-ORG", "I-ORG"], [(1, 3, "ORG")]),  # a span at the sentence end
    ("BIO", ["B-PER", "B-PER", "I-PER"], [(0, 1, "PER"), (1, 3, "PER")]),
    ("BIO", ["O", "O"], []),
    ("IOB1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"], [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),
    ("BIOES", ["B-PER", "E-PER", "S-LOC", "O", "B-ORG", "I-ORG", "E-ORG"],
     [(0, 2, "PER"), (2, 3, "LOC"), (4, 7, "ORG")]),
    ("BIOES", ["B-PER", "L-PER", "U-LOC", "U-LOC"], [(0, 2, "PER"), (2, 3, "LOC"), (3, 4, "LOC")]),  # BIOUL
    ("BIOES", ["B-PER", "S-PER", "I-ORG"], [(0, 1, "PER"), (1, 2, "PER"), (2, 3, "ORG")]),
    ("plain", ["PER", "PER", "O", "LOC", "LOC", "PER"], [(0, 2, "PER"), (3, 5, "LOC"), (5, 6, "PER")]),
])
def test_spans_read_as_conlleval_does(scheme, tags, expected):
    assert spans(tags, scheme) == expected


def test_span_scores_hand_counted():
    gold = [["B-PER", "I-PER", "O", "B-LOC"],
            ["O", "I-PER", "I-PER", "O"],  # I- without B-
            ["B-PER", "I-PER", "I-LOC"]]  # type change, a span at the end
    predicted = [["B-PER", "I-PER", "O", "B-ORG"],  # PER right, LOC missed, ORG spurious
                 ["O", "B-PER", "I-PER", "O"],  # the same span as gold
                 ["B-PER", "I-PER", "I-PER"]]  # one long PER: neither gold span
    # gold spans: PER 3, LOC 2; predicted: PER 3, ORG 1; correct: PER 2.
    scores = span_scores(gold, predicted, "BIO")
    assert (scores["gold_spans"], scores["predicted_spans"], scores["correct_spans"]) == (5, 4, 2)
    assert scores["span_precision"] == pytest.approx(2 / 4)
    assert scores["span_recall"] == pytest.approx(2 / 5)
    assert scores["span_f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    per_type = scores["per_type"]
    assert sorted(per_type) == ["LOC", "ORG", "PER"]
    assert per_type["PER"]["precision"] == pytest.approx(2 / 3) and per_type["PER"]["recall"] == pytest.approx(2 / 3)
    assert (per_type["LOC"]["gold"], per_type["LOC"]["predicted"], per_type["LOC"]["f1"]) == (2, 0, 0.0)
    assert (per_type["ORG"]["gold"], per_type["ORG"]["predicted"], per_type["ORG"]["correct"]) == (0, 1, 0)


def test_span_scores_perfect_and_empty():
    gold = [["B-A", "I-A", "O"], ["O"]]
    assert span_scores(gold, gold, "BIO")["span_f1"] == 1.0
    nothing = span_scores(gold, [["O", "O", "O"], ["O"]], "BIO")
    assert (nothing["span_precision"], nothing["span_recall"], nothing["span_f1"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        span_scores(gold, gold[:1], "BIO")


@pytest.mark.parametrize("labels, sequences, expected", [
    (["O", "B-PER", "I-PER"], [["B-PER", "I-PER", "O"]], "BIO"),
    (["O", "B-PER", "I-PER"], [["I-PER", "I-PER", "B-PER", "O", "I-PER"]], "IOB1"),
    (["O", "I-PER", "I-LOC"], [], "IOB1"),
    (["O", "B-PER", "I-PER"], [], "BIO"),
    (["O", "B-X", "I-X", "E-X", "S-X"], [], "BIOES"),
    (["O", "U-X", "L-X", "B-X"], [], "BIOES"),
    (["NN", "VB", "DT"], [], "plain"),
    (["O", "PER", "LOC"], [], "plain"),
    (["O", "B-PER", "NN"], [], "plain"),  # not every label has a prefix
    (["O"], [], "plain"),
])
def test_detect_scheme(labels, sequences, expected):
    assert detect_scheme(labels, sequences) == expected
