"""A quick pass over a corpus before training: every line valid UTF-8, no binary file, and its size.

Training streams the corpus many times over hours; a bad byte found in the middle of an epoch
would stop the run late. This pass finds it first (naming the file and line) and counts lines and
tokens for the progress bar's estimate.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ElmoError

CHUNK_BYTES = 8 * 2**20


@dataclass
class CorpusStats:
    """Size of a corpus as whitespace splitting sees it."""

    files: int = 0
    sentences: int = 0
    """Lines holding at least one token."""
    tokens: int = 0
    """Whitespace-separated tokens (the built-in tokenizer, if used, makes somewhat more)."""
    bytes: int = 0


def check_corpus(files: Sequence[Path]) -> CorpusStats:
    """Check and count the corpus files.

    Raises:
        ElmoError: naming the file and line of the first invalid UTF-8 byte or NUL byte.
    """
    stats = CorpusStats(files=len(files))
    for path in files:
        decoder = codecs.getincrementaldecoder("utf-8")()
        line_number, tail = 1, ""
        try:
            handle = open(path, "rb")  # noqa: SIM115
        except OSError as error:
            raise ElmoError(f"{path}: cannot read ({error.strerror})") from None
        with handle:
            while True:
                raw = handle.read(CHUNK_BYTES)
                final = not raw
                try:
                    text = tail + decoder.decode(raw, final=final)
                except UnicodeDecodeError:
                    raise ElmoError(f"{path}: line {_bad_utf8_line(path)} is not valid UTF-8") from None
                if "\0" in text:
                    number = line_number + text[: text.index("\0")].count("\n")
                    raise ElmoError(f"{path}: line {number} holds a NUL byte; is this a binary file?")
                stats.bytes += len(raw)
                lines = text.split("\n")
                tail = "" if final else lines.pop()  # the last line may continue in the next chunk
                for line in lines:
                    n = len(line.split())
                    stats.tokens += n
                    stats.sentences += n > 0
                line_number += len(lines)
                if final:
                    break
    return stats


def _bad_utf8_line(path: Path) -> int:
    """The number of the first line of `path` that does not decode."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0
