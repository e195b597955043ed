"""Character ids: how a token becomes the 50 integers the character CNN reads (ELMO.md section 3).

Pure functions over strings and lists; `batch_to_ids` returns a tensor for the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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
"""Rows of the character table stored in a weight file (raw ids 0..260); an inference `options.json`'s
`n_characters`."""
N_CHARS = 262
"""Rows at inference: raw ids shifted by +1, with 0 for a padding token; a bilm-tf training
`options.json`'s `n_characters` (and what this project writes)."""

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


def tokens_to_ids(tokens: Sequence[str], max_chars: int = MAX_CHARS) -> np.ndarray:
    """Inference character ids of each token, `(len(tokens), max_chars)` int64: `token_to_ids` of
    each, with the bytes of all tokens scattered into one array at once."""
    encoded = [token.encode("utf-8", errors="ignore")[: max_chars - 2] for token in tokens]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))  # (U,)
    payload = np.frombuffer(b"".join(encoded), dtype=np.uint8)  # (sum of lengths,)
    rows = np.repeat(np.arange(len(encoded)), lengths)  # (sum of lengths,)
    starts = np.cumsum(lengths) - lengths  # (U,)
    columns = np.arange(len(payload)) - np.repeat(starts, lengths) + 1  # (sum of lengths,)
    ids = np.full((len(encoded), max_chars), PAD_CHAR + 1, dtype=np.int64)  # (U, max_chars)
    ids[:, 0] = BOW_CHAR + 1
    ids[rows, columns] = payload.astype(np.int64) + 1
    ids[np.arange(len(encoded)), lengths + 1] = EOW_CHAR + 1
    for row, token in enumerate(tokens):
        if token in (BOS_TOKEN, EOS_TOKEN):
            ids[row] = token_to_ids(token, max_chars)
    return ids


def batch_to_ids(batch: Sequence[Sequence[str]], max_chars: int = MAX_CHARS) -> torch.Tensor:
    """Character ids of a batch of token lists, padded on the right with all-zero tokens.

    Returns a `(B, T, max_chars)` int64 tensor, T the longest sentence. Boundaries are not added:
    the model wraps every sentence in `<S> .. </S>` itself (as AllenNLP's `batch_to_ids`).
    """
    longest = max((len(sentence) for sentence in batch), default=0)
    rows: dict[str, int] = {}  # each distinct token's row of the table; row 0 is the padding token
    index = np.zeros((len(batch), longest), dtype=np.int64)  # (B, T)
    for b, sentence in enumerate(batch):
        if isinstance(sentence, str):
            raise TypeError("batch_to_ids takes lists of tokens, not strings: split the text first")
        index[b, : len(sentence)] = [rows.setdefault(token, len(rows) + 1) for token in sentence]
    table = np.concatenate([np.zeros((1, max_chars), dtype=np.int64), tokens_to_ids(list(rows), max_chars)])
    return torch.from_numpy(table[index])  # (B, T, max_chars)
