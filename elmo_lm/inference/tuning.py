"""Kernel choices measured on this CPU, cached per CPU model and torch version: reading and storing them.

The inference kernels have a rule per CPU vendor for the choices that decide most of a step's time:
which packed layout the per-step float32 weights use (MKL's, oneDNN's, or none) and whether large
tanh runs as `2 * sigmoid(2x) - 1`; and a fixed bound on the rows of one input-projection chunk.
The rules were set on one Intel Xeon and one AMD EPYC; a CPU of another kind (an AVX2-only EPYC,
say) may want the other choice. The candidates are timed at a model's shapes (`kernel_timing`):
briefly at the first use of a model's shapes on a CPU (`Embedder`, hence `elmo embed`; off with
`ELMO_LM_AUTOTUNE=0`), or more thoroughly by `elmo tune`. The winners are kept in the user's cache
folder (`$XDG_CACHE_HOME/elmo-lm/kernels.json`, else `~/.cache/elmo-lm/kernels.json`), under a key
naming the CPU model, its vector flags and the torch version; `tuned` reads them back, and the
kernels use them where present (the vendor rules otherwise). A cache that cannot be read gives one
warning and the vendor rules, never an error.
"""

from __future__ import annotations

import json
import os
import warnings
from functools import lru_cache
from pathlib import Path

import torch

from ..cpu_features import CPUINFO

CACHE_NAME = "kernels.json"
PACKINGS = ("mkl", "onednn", "plain")
PARTS = ("packing", "tanh_via_sigmoid", "chunk_rows", "seconds")
"""The parts of a CPU's entry: choices by shape or size, and the timings behind them."""

AUTOTUNE_VARIABLE = "ELMO_LM_AUTOTUNE"
"""Set to 0 (or false, no, off) to stop `Embedder` from timing kernels at a model's first use on a CPU."""


def cache_file() -> Path:
    """Where the measured choices are kept (the XDG cache folder)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "elmo-lm" / CACHE_NAME


def autotune_enabled() -> bool:
    """Whether a model's first use on a CPU times the kernels (`ELMO_LM_AUTOTUNE`, on by default)."""
    return os.environ.get(AUTOTUNE_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")


def cpu_key() -> str:
    """The CPU model, its vector flags and the torch version: choices are kept per key."""
    fields: dict[str, str] = {}
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = sorted(f for f in fields.get("flags", "").split() if f.startswith(("avx", "amx")) or "vnni" in f)
    return f"{fields.get('model name', 'unknown CPU')} | {' '.join(flags)} | torch {torch.__version__}"


class UnreadableCache(Exception):
    """The cache file exists but holds no JSON object (`_read_cache`)."""


def _read_cache() -> dict:
    """The cache file's contents (`{}` when there is none); raises `UnreadableCache` with the reason."""
    path = cache_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableCache(f"{path}: cannot read the kernel tuning cache ({error})") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UnreadableCache(f"{path}: the kernel tuning cache is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise UnreadableCache(f"{path}: the kernel tuning cache is not a JSON object")
    return data


def _clean(entry: object) -> dict:
    """The well-formed choices of a cache entry (anything else in it is ignored)."""
    entry = entry if isinstance(entry, dict) else {}

    def part(name: str, valid) -> dict:
        values = entry.get(name)
        return {k: v for k, v in values.items() if isinstance(k, str) and valid(k, v)} if isinstance(values, dict) \
            else {}

    return {"packing": part("packing", lambda k, v: v in PACKINGS),
            "tanh_via_sigmoid": part("tanh_via_sigmoid", lambda k, v: k.isdigit() and isinstance(v, bool)),
            "chunk_rows": part("chunk_rows", lambda k, v: type(v) is int and v > 0),
            "seconds": part("seconds", lambda k, v: isinstance(v, dict))}


@lru_cache(maxsize=1)
def _entry() -> tuple[dict, bool]:
    """This CPU's choices and whether the cache could be read (warns once when it could not)."""
    try:
        return _clean(_read_cache().get(cpu_key())), True
    except UnreadableCache as problem:
        warnings.warn(f"{problem}; using the default kernels (run `elmo tune` to measure again)", RuntimeWarning,
                      stacklevel=4)
        return _clean(None), False


def tuned() -> dict:
    """This CPU's measured choices (empty parts when nothing was measured here): `packing` by weight
    shape `"NxK"`, `tanh_via_sigmoid` by tensor size, `chunk_rows` by input weight shape `"NxK"`."""
    return _entry()[0]


def forget() -> None:
    """Read the cache file again at the next use (after it changed)."""
    _entry.cache_clear()


def packing_for(shape: tuple[int, int]) -> str | None:
    """The measured packing of a float32 step weight `(N, K)`, or None (not tuned)."""
    return tuned()["packing"].get(f"{shape[0]}x{shape[1]}")


def tanh_via_sigmoid_for(numel: int) -> bool | None:
    """Whether tanh of this many elements measured faster via sigmoid, or None (not tuned)."""
    sizes = tuned()["tanh_via_sigmoid"]
    if not sizes:
        return None
    nearest = min(sizes, key=lambda size: abs(int(size) - numel))  # the measured size closest to this one
    return sizes[nearest]


def chunk_rows_for(shape: tuple[int, int]) -> int | None:
    """The measured rows per input-projection chunk for an LSTM input weight `(4C, P)`, or None."""
    return tuned()["chunk_rows"].get(f"{shape[0]}x{shape[1]}")


def needs_tuning(lstm_dim: int, projection_dim: int) -> bool:
    """Whether this CPU's entry lacks the choices for these shapes (False when the cache is unreadable:
    the defaults are used then, and the file is left as it is)."""
    entry, readable = _entry()
    C, P = lstm_dim, projection_dim
    return readable and not (f"{4 * C}x{P}" in entry["packing"] and f"{P}x{C}" in entry["packing"]
                             and f"{4 * C}x{P}" in entry["chunk_rows"] and entry["tanh_via_sigmoid"])


def store(measured: list[dict]) -> dict:
    """Merge measured choices into this CPU's entry of the cache file (other models' shapes and other
    CPUs' entries stay; an unreadable file is replaced) and write it atomically; returns the entry."""
    from ..io.atomic import atomic_path

    try:
        data = _read_cache()
    except UnreadableCache:
        data = {}
    entry = _clean(data.get(cpu_key()))
    for choices in measured:
        for part in PARTS:
            entry[part].update(choices.get(part, {}))
    data[cpu_key()] = entry
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    forget()
    return entry
