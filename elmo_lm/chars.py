"""Character ids: how a token becomes the 50 integers the character CNN reads (ELMO.md section 3).

Pure functions over strings and lists; `batch_to_ids` returns a tensor for the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MAX_CHARS = 50
"""Slots per token, including the begin-of-word and end-of-word marks."""

# Raw ids 0..255 are UTF-8 bytes; the specials follow.
BOS_CHAR = 256
EOS_CHAR = 257
BOW_CHAR = 258
EOW_CHAR = 259
PAD_CHAR = 260
N_RAW_CHARS = 261
"""Rows of the character table stored in a weight file (raw ids 0..260)."""
N_CHARS = 262
"""Rows at inference: raw ids shifted by +1, with 0 for a padding token."""

BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"
UNK_TOKEN = "<UNK>"


def _raw_ids_for_bytes(payload: Sequence[int], max_chars: int = MAX_CHARS) -> list[int]:
    """[BOW, b1 .. bn, EOW, PAD, ...]: `max_chars` raw ids, the payload cut to max_chars - 2."""
    kept = list(payload[: max_chars - 2])
    ids = [BOW_CHAR, *kept, EOW_CHAR]
    return ids + [PAD_CHAR] * (max_chars - len(ids))


def token_to_raw_ids(token: str, max_chars: int = MAX_CHARS) -> list[int]:
    """Raw (unshifted, 0..260) character ids of one token.

    `<S>` and `</S>` map to the sentence-boundary rows; any other string is its UTF-8 bytes,
    characters that cannot be encoded (lone surrogates) dropped, the first `max_chars - 2` kept.
    """
    if token == BOS_TOKEN:
        return _raw_ids_for_bytes([BOS_CHAR], max_chars)
    if token == EOS_TOKEN:
        return _raw_ids_for_bytes([EOS_CHAR], max_chars)
    return _raw_ids_for_bytes(token.encode("utf-8", errors="ignore"), max_chars)


def token_to_ids(token: str, max_chars: int = MAX_CHARS) -> list[int]:
    """Inference character ids of one token: the raw ids shifted by +1 (values 1..261)."""
    return [i + 1 for i in token_to_raw_ids(token, max_chars)]


BOS_IDS = token_to_ids(BOS_TOKEN)
EOS_IDS = token_to_ids(EOS_TOKEN)


def batch_to_ids(batch: Sequence[Sequence[str]], max_chars: int = MAX_CHARS) -> torch.Tensor:
    """Character ids of a batch of token lists, padded on the right with all-zero tokens.

    Returns a `(B, T, max_chars)` int64 tensor, T the longest sentence. Boundaries are not added:
    the model wraps every sentence in `<S> .. </S>` itself (as AllenNLP's `batch_to_ids`).
    """
    longest = max((len(sentence) for sentence in batch), default=0)
    padding_token = [0] * max_chars
    cache: dict[str, list[int]] = {}
    rows = []
    for sentence in batch:
        if isinstance(sentence, str):
            raise TypeError("batch_to_ids takes lists of tokens, not strings: split the text first")
        row = []
        for token in sentence:
            if token not in cache:
                cache[token] = token_to_ids(token, max_chars)
            row.append(cache[token])
        rows.append(row + [padding_token] * (longest - len(row)))
    return torch.tensor(rows, dtype=torch.long).reshape(len(batch), longest, max_chars)  # (B, T, 50)
