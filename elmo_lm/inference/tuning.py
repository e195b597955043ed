"""Kernel choices measured on this CPU (`elmo tune`), cached per CPU model and torch version: reading and storing them.

The inference kernels have a rule per CPU vendor for two choices that decide most of a step's time:
which packed layout the per-step float32 weights use (MKL's, oneDNN's, or none) and whether large
tanh runs as `2 * sigmoid(2x) - 1`. The rules were set on one Intel Xeon and one AMD EPYC; a CPU of
another kind (an AVX2-only EPYC, say) may want the other choice. `tune` times the candidates at a
model's step shapes and stores the winners in the user's cache folder
(`$XDG_CACHE_HOME/elmo-lm/kernels.json`, else `~/.cache/elmo-lm/kernels.json`), under a key naming
the CPU model, its vector flags and the torch version; `tuned` reads them back, and the kernels use
them where present (the vendor rules otherwise). The timing itself is in `kernel_timing`.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import torch

from ..cpu_features import CPUINFO

CACHE_NAME = "kernels.json"
PACKINGS = ("mkl", "onednn", "plain")


def cache_file() -> Path:
    """Where the measured choices are kept (the XDG cache folder)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "elmo-lm" / CACHE_NAME


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


def _read_cache() -> dict:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@lru_cache(maxsize=1)
def tuned() -> dict:
    """This CPU's measured choices (`{}` when `elmo tune` has not run here): `packing` by weight
    shape `"NxK"` and `tanh_via_sigmoid` by tensor size `"rows x columns"`."""
    entry = _read_cache().get(cpu_key(), {})
    return entry if isinstance(entry, dict) else {}


def packing_for(shape: tuple[int, int]) -> str | None:
    """The measured packing of a float32 step weight `(N, K)`, or None (not tuned)."""
    choice = tuned().get("packing", {}).get(f"{shape[0]}x{shape[1]}")
    return choice if choice in PACKINGS else None


def tanh_via_sigmoid_for(numel: int) -> bool | None:
    """Whether tanh of this many elements measured faster via sigmoid, or None (not tuned)."""
    sizes = tuned().get("tanh_via_sigmoid", {})
    if not sizes:
        return None
    nearest = min(sizes, key=lambda size: abs(int(size) - numel))  # the measured size closest to this one
    return bool(sizes[nearest])


def store(measured: list[dict]) -> dict:
    """Merge measured choices into this CPU's entry of the cache file (other models' shapes stay) and
    write it atomically; returns the entry."""
    from ..io.atomic import atomic_path

    data = _read_cache()
    kept = data.get(cpu_key())
    entry: dict = {part: dict(kept.get(part, {})) if isinstance(kept, dict) else {}
                   for part in ("packing", "tanh_via_sigmoid", "seconds")}
    for choices in measured:
        for part in entry:
            entry[part].update(choices[part])
    data[cpu_key()] = entry
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=1))
    tuned.cache_clear()
    return entry
