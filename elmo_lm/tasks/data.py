"""Readers for the two labelled formats of `elmo task`, with errors that name the file and line.

Tagging: one token per line, `token<TAB>tag` (or `token tag`), a blank line between sentences.
Classification: one example per line, `text<TAB>label`; the text is split on whitespace (or by
the built-in tokenizer with `tokenize=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ElmoError
from ..textfile import read_lines


@dataclass
class Example:
    """One labelled sentence: its tokens and either one tag per token or one label."""

    tokens: list[str]
    """The sentence's tokens."""
    labels: list[str]
    """Tagging: one tag per token. Classification: a single label."""
    line: int
    """1-based line where the example starts in its file (for messages)."""


def read_tagged(path: str | Path) -> list[Example]:
    """Read a token-per-line tagging file: `token<TAB>tag` or `token tag`, blank line between sentences.

    A line with a tab splits at its last tab (the token may then contain spaces); otherwise it
    must hold exactly two whitespace-separated fields. Raises `ElmoError` naming the file and
    line for a malformed line, and for a file without any sentence.
    """
    examples: list[Example] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            if tokens:
                examples.append(Example(tokens, tags, start))
                tokens, tags = [], []
            continue
        if "\t" in line:
            token, _, tag = line.rpartition("\t")
            token, tag = token.strip(), tag.strip()
        else:
            fields = line.split()
            if len(fields) != 2:
                raise ElmoError(f"{path}, line {number}: expected 'token<TAB>tag' or 'token tag', "
                                f"found {len(fields)} field{'s' if len(fields) != 1 else ''}: {line[:80]!r}")
            token, tag = fields
        if not token or not tag or any(ch.isspace() for ch in tag):
            raise ElmoError(f"{path}, line {number}: expected 'token<TAB>tag' with a non-empty token "
                            f"and a tag without spaces: {line[:80]!r}")
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
    if tokens:
        examples.append(Example(tokens, tags, start))
    if not examples:
        raise ElmoError(f"{path}: no sentences found (expected 'token<TAB>tag' lines)")
    return examples


def read_classification(path: str | Path, tokenize: bool = False) -> list[Example]:
    """Read a `text<TAB>label` file, one example per line; blank lines are skipped.

    Raises `ElmoError` naming the file and line for a line without a tab, an empty text or an
    empty label, and for a file without any example.
    """
    if tokenize:
        from ..tokenize import tokenize as split
    else:
        split = str.split
    examples: list[Example] = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        text, tab, label = line.rpartition("\t")
        label = label.strip()
        if not tab:
            raise ElmoError(f"{path}, line {number}: expected 'text<TAB>label', found no tab: {line[:80]!r}")
        tokens = split(text)
        if not tokens:
            raise ElmoError(f"{path}, line {number}: empty text before the tab")
        if not label:
            raise ElmoError(f"{path}, line {number}: empty label after the tab")
        examples.append(Example(tokens, [label], number))
    if not examples:
        raise ElmoError(f"{path}: no examples found (expected 'text<TAB>label' lines)")
    return examples


def read_examples(path: str | Path, task: str, tokenize: bool = False) -> list[Example]:
    """`read_tagged` for task "tagger", `read_classification` for "classifier"."""
    if task == "tagger":
        return read_tagged(path)
    if task == "classifier":
        return read_classification(path, tokenize=tokenize)
    raise ElmoError(f"task must be 'tagger' or 'classifier', not {task!r}")
