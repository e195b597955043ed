"""Corpus files: one sentence per line, UTF-8; found by paths or globs and streamed line by line.

Shared by the vocabulary builder (`elmo vocab`) and the training batches (`training.data`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from .errors import ElmoError

Corpus = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
"""A file, a glob, or a list of them."""


def expand_corpus(patterns: Corpus) -> list[Path]:
    """The corpus files named by paths or glob patterns (`**` allowed), sorted, without repeats.

    Raises:
        ElmoError: a pattern matches no file, or names a directory.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    files: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            files.add(path)
            continue
        if path.is_dir():
            raise ElmoError(f"{pattern} is a directory: pass its files, e.g. {path / '*'}")
        matched = [Path(p) for p in glob.glob(os.fspath(pattern), recursive=True) if Path(p).is_file()]
        if not matched:
            raise ElmoError(f"no files matched {os.fspath(pattern)}")
        files.update(matched)
    if not files:
        raise ElmoError("no corpus files given")
    return sorted(files)


def nonblank_lines(paths: Iterable[Path]) -> Iterator[tuple[Path, int, bytes]]:
    """(file, 1-based line number, raw bytes) of every line that is not ASCII-blank, in order."""
    for path in paths:
        try:
            handle = open(path, "rb")  # noqa: SIM115
        except OSError as error:
            raise ElmoError(f"{path}: cannot read ({error.strerror})") from None
        with handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield path, number, line


def decode_line(path: Path, number: int, line: bytes) -> str:
    """A corpus line as text; raises ElmoError naming file and line when it is not valid UTF-8."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ElmoError(f"{path}: line {number} is not valid UTF-8 (byte {error.start + 1})") from None


def splitter(tokenize: bool) -> Callable[[str], list[str]]:
    """Whitespace splitting, or the built-in tokenizer (imported only when asked for)."""
    if not tokenize:
        return str.split
    from .tokenize import tokenize as builtin_tokenize

    return builtin_tokenize


def iter_sentences(paths: Iterable[Path], tokenize: bool = False) -> Iterator[list[str]]:
    """Stream the sentences of corpus files in order: one token list per line with a token.

    Blank lines (and lines that split into no token) are skipped. Long tokens are kept whole
    (character ids cut them to 48 bytes later).

    Args:
        paths: corpus files, read in the order given.
        tokenize: split with the built-in tokenizer instead of on whitespace.

    Raises:
        ElmoError: naming file and line, for a line that is not valid UTF-8. Training data is
            never silently skipped; `elmo vocab` reads the whole corpus first, so this shows up
            before training starts.
    """
    split = splitter(tokenize)
    for path, number, line in nonblank_lines(paths):
        tokens = split(decode_line(path, number, line))
        if tokens:
            yield tokens
