"""Checks of public arguments, once at the entry: a bad value is an `ElmoError` naming the argument
and what it accepts ("batch_size must be a positive integer, not -1"), as the CLI reports it, never
a wrong result or an error from deep inside."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any, NoReturn

from .errors import ElmoError


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(value: Any, name: str) -> int:
    """`value` if it is an integer >= 1."""
    if not _is_integer(value) or value < 1:
        _refuse(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def optional_positive_int(value: Any, name: str) -> int | None:
    """`value` if it is None or an integer >= 1."""
    if value is not None and (not _is_integer(value) or value < 1):
        _refuse(f"{name} must be a positive integer or None, not {value!r}")
    return None if value is None else int(value)


def integer(value: Any, name: str) -> int:
    """`value` if it is an integer."""
    if not _is_integer(value):
        _refuse(f"{name} must be an integer, not {value!r}")
    return int(value)


def non_negative_int(value: Any, name: str) -> int:
    """`value` if it is an integer >= 0."""
    if not _is_integer(value) or value < 0:
        _refuse(f"{name} must be an integer >= 0, not {value!r}")
    return int(value)


def positive_number(value: Any, name: str) -> float:
    """`value` if it is a number > 0."""
    if not _is_number(value) or not value > 0:
        _refuse(f"{name} must be a positive number, not {value!r}")
    return float(value)


def non_negative_number(value: Any, name: str) -> float:
    """`value` if it is a number >= 0."""
    if not _is_number(value) or not value >= 0:
        _refuse(f"{name} must be a number >= 0, not {value!r}")
    return float(value)


def probability(value: Any, name: str) -> float:
    """`value` if it is a number in [0, 1) (a dropout rate)."""
    if not _is_number(value) or not 0 <= value < 1:
        _refuse(f"{name} must be a number in [0, 1), not {value!r}")
    return float(value)


def boolean(value: Any, name: str) -> bool:
    """`value` if it is True or False."""
    if not isinstance(value, bool):
        _refuse(f"{name} must be True or False, not {value!r}")
    return value


def one_of(value: Any, name: str, choices: Iterable[str]) -> str:
    """`value` if it is one of `choices`."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        _refuse(f"{name} must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
    return value


def _refuse(message: str) -> NoReturn:
    raise ElmoError(message)
