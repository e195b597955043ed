"""Reading user text files strictly: UTF-8, with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ElmoError


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file, without their line endings.

    Raises `ElmoError` naming the file and the 1-based line for invalid UTF-8 or a NUL byte (a
    sign of a binary file). A UTF-8 byte-order mark at the start is dropped.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ElmoError(f"{path}: input file not found") from None
    except IsADirectoryError:
        raise ElmoError(f"{path}: is a folder, expected a text file") from None
    except OSError as error:
        raise ElmoError(f"{path}: cannot read ({error.strerror})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    decoded = []
    for number, line in enumerate(lines, start=1):
        if b"\x00" in line:
            raise ElmoError(f"{path}, line {number}: contains a NUL byte; is this a text file?")
        try:
            decoded.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as error:
            raise ElmoError(f"{path}, line {number}: invalid UTF-8 at byte {error.start} "
                            f"({line[error.start:error.start + 4]!r})") from None
    return decoded


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON file holding one object; `what` names the file's role in error messages."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ElmoError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ElmoError(f"{path}: is a folder, expected a {what}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as bad:
        raise ElmoError(f"{path}: not a valid JSON {what} ({bad})") from None
    if not isinstance(value, dict):
        raise ElmoError(f"{path}: expected a JSON object")
    return value
