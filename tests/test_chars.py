"""Character ids (ELMO.md section 3)."""

import torch

from elmo_lm.chars import BOS_IDS, EOS_IDS, MAX_CHARS, batch_to_ids, token_to_ids, tokens_to_ids


def test_token_ids_match_the_documented_example():
    assert token_to_ids("Hi") == [259, 73, 106, 260] + [261] * 46


def test_sentence_boundaries_have_their_own_rows():
    assert BOS_IDS[:4] == [259, 257, 260, 261] and EOS_IDS[:4] == [259, 258, 260, 261]
    assert token_to_ids("<S>") == BOS_IDS and token_to_ids("</S>") == EOS_IDS


def test_long_tokens_keep_their_first_48_bytes():
    ids = token_to_ids("x" * 100)
    assert len(ids) == 50 and ids[0] == 259 and ids[-1] == 260 and ids[1:49] == [ord("x") + 1] * 48


def test_multibyte_characters_become_their_utf8_bytes():
    assert token_to_ids("é")[:4] == [259, 0xC3 + 1, 0xA9 + 1, 260]
    assert token_to_ids("\ud800a")[:3] == [259, ord("a") + 1, 260]  # a lone surrogate is dropped


def test_empty_string_is_still_a_token():
    assert token_to_ids("")[:3] == [259, 260, 261]


def test_batch_pads_with_all_zero_tokens():
    ids = batch_to_ids([["a", "b", "c"], ["d"], []])
    assert ids.shape == (3, 3, 50) and ids.dtype == torch.long
    assert ids[1, 1:].eq(0).all() and ids[2].eq(0).all() and ids[0].ne(0).any(dim=-1).all()


def test_the_array_form_equals_token_to_ids_for_every_kind_of_token():
    tokens = ["<S>", "</S>", "", "a", "Über", "漢字", "x" * 60, "lone\ud800surrogate", "<UNK>", "the"]
    assert tokens_to_ids(tokens).tolist() == [token_to_ids(token) for token in tokens]
    assert tokens_to_ids([]).shape == (0, MAX_CHARS)
