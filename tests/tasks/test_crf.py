"""The CRF against brute force: the forward algorithm's log-partition is the log-sum-exp of every
path's score, Viterbi is the best-scoring path, and decoding never takes a transition the tag
scheme forbids."""

from __future__ import annotations

import itertools

import pytest
import torch

from elmo_lm.tasks import CRF, allowed_transitions

LABELS = {"BIO": ["O", "B-A", "I-A", "B-B", "I-B"],
          "IOB1": ["O", "B-A", "I-A", "B-B", "I-B"],
          "BIOES": ["O", "B-A", "I-A", "E-A", "S-A", "S-B"],
          "plain": ["O", "A", "B"]}


def random_crf(scheme: str, seed: int) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(LABELS[scheme], scheme)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    return crf


def all_paths(crf: CRF, emissions: torch.Tensor, length: int):
    """Every tag path of `length` tokens with its score, for sentence 0 of `emissions (1, T, C)`."""
    C = emissions.shape[-1]
    mask = torch.zeros(1, emissions.shape[1], dtype=torch.bool)
    mask[0, :length] = True
    for path in itertools.product(range(C), repeat=length):
        tags = torch.zeros(1, emissions.shape[1], dtype=torch.long)
        tags[0, :length] = torch.tensor(path)
        with torch.no_grad():
            yield path, float(crf.path_score(emissions, tags, mask)[0])


def is_allowed(path, scheme: str) -> bool:
    start, trans, end = allowed_transitions(LABELS[scheme], scheme)
    return bool(start[path[0]] and end[path[-1]] and all(trans[a, b] for a, b in zip(path, path[1:])))


@pytest.mark.parametrize("scheme", sorted(LABELS))
def test_log_partition_and_viterbi_match_brute_force(scheme):
    crf = random_crf(scheme, seed=len(scheme))
    C = len(LABELS[scheme])
    lengths = [4, 1, 3]  # padded batch: a full sentence, a one-token one, a shorter one
    emissions = torch.randn(len(lengths), max(lengths), C) * 2  # (B, T, C)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    with torch.no_grad():
        log_z = crf.log_partition(emissions, mask)
    decoded = crf.viterbi(emissions, mask)
    for row, length in enumerate(lengths):
        scored = list(all_paths(crf, emissions[row : row + 1], length))
        allowed = [(path, score) for path, score in scored if is_allowed(path, scheme)]
        exact = torch.logsumexp(torch.tensor([score for _, score in allowed], dtype=torch.float64), dim=0)
        assert float(log_z[row]) == pytest.approx(float(exact), abs=1e-4)
        every = torch.logsumexp(torch.tensor([score for _, score in scored], dtype=torch.float64), dim=0)
        assert float(log_z[row]) == pytest.approx(float(every), abs=1e-4)  # forbidden paths weigh nothing
        best_path, _ = max(scored, key=lambda item: item[1])
        assert tuple(decoded[row, :length].tolist()) == best_path
        assert decoded[row, length:].eq(0).all()


def test_negative_log_likelihood_is_a_normalised_distribution():
    """exp(-nll) over all allowed paths sums to one."""
    crf = random_crf("BIO", seed=3)
    emissions = torch.randn(1, 3, 5)
    mask = torch.ones(1, 3, dtype=torch.bool)
    total = 0.0
    for path in itertools.product(range(5), repeat=3):
        if is_allowed(path, "BIO"):
            with torch.no_grad():
                nll = crf.negative_log_likelihood(emissions, torch.tensor([path]), mask)
            total += float(torch.exp(-nll))
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("scheme", ["BIO", "IOB1", "BIOES"])
def test_decoding_never_takes_a_forbidden_transition(scheme):
    """Emissions that favour forbidden tags (I- first, I- after O...) still decode to allowed paths."""
    crf = random_crf(scheme, seed=7)
    generator = torch.Generator().manual_seed(11)
    C = len(LABELS[scheme])
    emissions = torch.randn(64, 9, C, generator=generator) * 20  # (B, T, C) strong, arbitrary preferences
    lengths = torch.randint(1, 10, (64,), generator=generator)
    mask = torch.arange(9)[None, :] < lengths[:, None]
    decoded = crf.viterbi(emissions, mask)
    for row in range(64):
        path = decoded[row, : lengths[row]].tolist()
        assert is_allowed(path, scheme), (scheme, [LABELS[scheme][i] for i in path])


def test_allowed_transitions_follow_the_scheme():
    labels = LABELS["BIO"]
    start, trans, end = allowed_transitions(labels, "BIO")
    index = {label: i for i, label in enumerate(labels)}
    assert not start[index["I-A"]] and start[index["B-A"]] and start[index["O"]]
    assert trans[index["B-A"], index["I-A"]] and trans[index["I-A"], index["I-A"]]
    assert not trans[index["O"], index["I-A"]] and not trans[index["B-B"], index["I-A"]]
    assert end.all()
    start, trans, end = allowed_transitions(LABELS["IOB1"], "IOB1")
    assert not start[index["B-A"]] and start[index["I-A"]]
    assert trans[index["I-A"], index["B-A"]] and not trans[index["O"], index["B-A"]]
    bioes = {label: i for i, label in enumerate(LABELS["BIOES"])}
    start, trans, end = allowed_transitions(LABELS["BIOES"], "BIOES")
    assert not end[bioes["B-A"]] and end[bioes["E-A"]] and not start[bioes["E-A"]]
    assert trans[bioes["B-A"], bioes["E-A"]] and not trans[bioes["B-A"], bioes["O"]]
    assert trans[bioes["S-A"], bioes["S-B"]] and not trans[bioes["E-A"], bioes["I-A"]]
