"""Timing the inference kernels' candidates at a model's shapes: which packed layout the per-step
float32 weights use, whether tanh runs via sigmoid, and how many rows an input-projection chunk
holds. `tuning` keeps the winners; `autotune` measures briefly at a model's first use on a CPU,
`tune` (`elmo tune`) with more repeats."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable

import torch

from . import tuning
from ..cpu_features import is_intel
from .matmul import MKL_PACKED, ONEDNN, linear, pack_mkl, pack_onednn
from .packed_lstm import default_chunk_rows

AUTOTUNE_REPEATS = 3
"""Timed calls per candidate at first use (after one warm-up call): about a second for the original
model's shapes, a tenth of that for the small one's."""

AUTOTUNE_BUDGET_SECONDS = 2.0
"""Past this much time, the remaining candidates of a first-use measurement get one timed call each."""

GAIN = 0.1
"""A candidate replaces the vendor rule's choice only when it ran this much faster: a few timed calls
on a busy machine can rank near-equal candidates either way (3 calls under load once put MKL's
packed matmul ahead on an AMD EPYC, where it ran 2x slower in a quiet `elmo tune`)."""

CHUNK_GAIN = 0.05
"""A chunk of fewer rows than the default is chosen only when it runs this much faster per row (it
also holds less memory, but the default was set by whole passes, `benchmarks/RESULTS-kernels.md`)."""


def _winner(timed: dict[str, float], rule: str) -> str:
    """The fastest candidate where it beat the rule's choice by `GAIN`, else the rule's choice."""
    best = min(timed, key=timed.get)
    return best if rule not in timed or timed[best] < (1 - GAIN) * timed[rule] else rule

_attempted: set[tuple[int, int]] = set()
"""The shapes `autotune` measured (or tried to) in this process."""

_clock: Callable[[], float] = time.thread_time
"""The clock candidates are timed by: thread CPU time, fair under competition (tests replace it)."""


def _time(run: Callable[[], object], repeats: int, deadline: float = float("inf")) -> float:
    """Median seconds of `run` over `repeats` calls (one after `deadline`, a `time.monotonic` value),
    after one warm-up call."""
    run()
    times = []
    for _ in range(repeats if time.monotonic() < deadline else 1):
        start = _clock()
        run()
        times.append(_clock() - start)
    return statistics.median(times)


def measure(lstm_dim: int, projection_dim: int, rows: int = 32, repeats: int = 20,
            deadline: float = float("inf")) -> dict:
    """Time the candidates at an LSTMP's shapes: `{"packing": {...}, "tanh_via_sigmoid": {...},
    "chunk_rows": {...}, "seconds": {...}}` (the last: per-candidate medians, for the report)."""
    C, P = lstm_dim, projection_dim
    packing, seconds = {}, {}
    for N, K in ((4 * C, P), (P, C)):  # the recurrent and the projection weight
        weight, x = torch.randn(N, K) * 0.05, torch.randn(rows, K)  # (N, K), (rows, K)
        candidates: dict[str, Callable[[], object]] = {"plain": lambda: torch.mm(x, weight.t())}
        if ONEDNN:
            packed = pack_onednn(weight)
            candidates["onednn"] = lambda: linear(x, packed)
        if MKL_PACKED:
            mkl = pack_mkl(weight)
            candidates["mkl"] = lambda: linear(x, mkl)
        timed = {name: _time(run, repeats, deadline) for name, run in candidates.items()}
        rule = "mkl" if MKL_PACKED and is_intel() else "onednn" if ONEDNN else "plain"  # as `matmul.pack`
        packing[f"{N}x{K}"] = _winner(timed, rule)
        seconds[f"{N}x{K}"] = timed
    via_sigmoid = {}
    for numel in (rows * C, 4 * rows * C):
        z = torch.randn(numel)
        direct = _time(lambda: torch.tanh(z), repeats, deadline)
        sigmoid = _time(lambda: torch.mul(z, 2.0).sigmoid_().mul_(2.0).sub_(1.0), repeats, deadline)
        rule = "direct" if is_intel() else "via sigmoid"  # as `packed_lstm._via_sigmoid`
        via_sigmoid[str(numel)] = _winner({"direct": direct, "via sigmoid": sigmoid}, rule) == "via sigmoid"
        seconds[f"tanh {numel}"] = {"direct": direct, "via sigmoid": sigmoid}
    chunk_rows = {f"{4 * C}x{P}": _chunk_rows(C, P, repeats, deadline, seconds)}
    return {"packing": packing, "tanh_via_sigmoid": via_sigmoid, "chunk_rows": chunk_rows, "seconds": seconds}


def _chunk_rows(C: int, P: int, repeats: int, deadline: float, seconds: dict) -> int:
    """Rows per input-projection chunk `(n, P) x (P, 4C)`: the default (the memory bound), or a half
    or a quarter of it where that ran `CHUNK_GAIN` faster per row."""
    weight, bias = torch.randn(4 * C, P) * 0.05, torch.zeros(4 * C)  # (4C, P), (4C,)
    default = default_chunk_rows(C)
    per_row = {}
    for n in dict.fromkeys((default, max(16, default // 2), max(16, default // 4))):
        x = torch.randn(n, P)  # (n, P)
        per_row[n] = _time(lambda: linear(x, weight, bias, into_buffer=True), repeats, deadline) / n
    seconds[f"chunk {4 * C}x{P}"] = {str(n): t for n, t in per_row.items()}
    best = min(per_row, key=per_row.get)
    return best if per_row[best] < (1 - CHUNK_GAIN) * per_row[default] else default


def tune(shapes: list[tuple[int, int]], rows: int = 32) -> dict:
    """Measure each `(lstm_dim, projection_dim)` and store the choices for this CPU (merged with any
    kept before); returns this CPU's entry."""
    return tuning.store([measure(lstm_dim, projection_dim, rows) for lstm_dim, projection_dim in shapes])


def autotune(lstm_dim: int, projection_dim: int) -> bool:
    """At a model's first use on this CPU: when the cache has no choices for its shapes (and
    `ELMO_LM_AUTOTUNE` is not 0), time the candidates briefly and store the winners. True when it measured."""
    if not tuning.autotune_enabled() or (lstm_dim, projection_dim) in _attempted \
            or not tuning.needs_tuning(lstm_dim, projection_dim):
        return False
    _attempted.add((lstm_dim, projection_dim))  # once per process, whatever happens
    deadline = time.monotonic() + AUTOTUNE_BUDGET_SECONDS
    measured = measure(lstm_dim, projection_dim, repeats=AUTOTUNE_REPEATS, deadline=deadline)
    try:
        tuning.store([measured])
    except OSError as error:  # a read-only cache folder, say
        warnings.warn(f"{tuning.cache_file()}: cannot keep the kernel choices ({error}); using the default "
                      "kernels", RuntimeWarning, stacklevel=2)
        return False
    return True
