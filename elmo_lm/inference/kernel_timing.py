"""Timing the inference kernels' candidates at a model's step shapes, for `elmo tune`: which packed
layout the per-step float32 weights use and whether tanh runs via sigmoid. `tuning` keeps the winners."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from . import tuning
from .matmul import MKL_PACKED, ONEDNN, linear, pack_mkl, pack_onednn


def _time(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of `run` (after two warm-up calls), by thread CPU time: fair under competition."""
    run()
    run()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        run()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def measure(lstm_dim: int, projection_dim: int, rows: int = 32, repeats: int = 20) -> dict:
    """Time the candidates at an LSTMP's step shapes: `{"packing": {...}, "tanh_via_sigmoid": {...},
    "seconds": {...}}` (the per-candidate medians, for the report)."""
    C, P = lstm_dim, projection_dim
    packing, seconds = {}, {}
    for N, K in ((4 * C, P), (P, C)):  # the recurrent and the projection weight
        weight, x = torch.randn(N, K) * 0.05, torch.randn(rows, K)
        candidates: dict[str, Callable[[], object]] = {"plain": lambda: torch.mm(x, weight.t())}
        if ONEDNN:
            packed = pack_onednn(weight)
            candidates["onednn"] = lambda: linear(x, packed)
        if MKL_PACKED:
            mkl = pack_mkl(weight)
            candidates["mkl"] = lambda: linear(x, mkl)
        timed = {name: _time(run, repeats) for name, run in candidates.items()}
        packing[f"{N}x{K}"] = min(timed, key=timed.get)
        seconds[f"{N}x{K}"] = timed
    via_sigmoid = {}
    for numel in (rows * C, 4 * rows * C):
        z = torch.randn(numel)
        direct = _time(lambda: torch.tanh(z), repeats)
        sigmoid = _time(lambda: torch.mul(z, 2.0).sigmoid_().mul_(2.0).sub_(1.0), repeats)
        via_sigmoid[str(numel)] = sigmoid < direct
        seconds[f"tanh {numel}"] = {"direct": direct, "via sigmoid": sigmoid}
    return {"packing": packing, "tanh_via_sigmoid": via_sigmoid, "seconds": seconds}


def tune(shapes: list[tuple[int, int]], rows: int = 32) -> dict:
    """Measure each `(lstm_dim, projection_dim)` and store the choices for this CPU (merged with any
    kept before); returns this CPU's entry."""
    return tuning.store([measure(lstm_dim, projection_dim, rows) for lstm_dim, projection_dim in shapes])
