"""The matmul floor of an embedding pass: how fast the bench could go if only its matmuls took time.

Runs one pass of `Embedder.encode` over the bench sentences (file order, batch 32) with
every call of `elmo_lm.inference.matmul.linear` recorded (rows, inner and output sizes, bias).
Then it times each distinct matmul shape alone, in a loop with its weight warm in cache, through
every CPU path PyTorch has here (oneDNN on the plain weight and on its packed copy, MKL's packed
matmul, `torch.addmm`, which is MKL) and keeps the fastest. The sum over the pass of those fastest
times is a floor: with these libraries the pass cannot take less, whatever else it did. The
tokens/s that floor allows is a ceiling on any implementation of this model built on them.

It prints, per size: the pass's own median time, the floor, the ceiling in tokens/s, and the
floor split by kind of matmul (character CNN and highway, LSTM input projection, LSTM steps).

With `--precision bfloat16` the embedder and the timed matmuls run in bfloat16 (MKL's packed
matmul is float32-only and drops out). Uses the weights `embed_speed.py` writes (`--folder`, made
there when missing).
Run: python benchmarks/matmul_floor.py [--sizes original small] [--precision float32] [--folder /tmp/bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

from elmo_lm.inference import char_cnn, matmul, packed_lstm

BENCH = Path(__file__).resolve().parents[2] / "shared/bench/bench_sentences.json"

Shape = tuple[int, int, int, bool, str]
"""(rows M, inner K, outputs N, has bias, kind)."""


def record_matmuls(embedder, sentences: list[list[str]]) -> Counter[Shape]:
    """Every `linear` call of one pass, counted by shape."""
    calls: Counter[Shape] = Counter()
    real = matmul.linear

    def recording(module_name: str):
        def linear(x, weight, bias=None, into_buffer=False):
            N, K = weight.shape.shape if isinstance(weight, matmul.MklPacked) else weight.shape
            kind = "CNN + highway" if module_name == "char_cnn" else ("LSTM steps" if bias is None else "LSTM input")
            calls[(x.shape[0], K, N, bias is not None, kind)] += 1
            return real(x, weight, bias, into_buffer)
        return linear

    patched = {char_cnn: recording("char_cnn"), packed_lstm: recording("packed_lstm")}
    originals = {module: module.linear for module in patched}
    try:
        for module, function in patched.items():
            module.linear = function
        embedder.encode(sentences)
    finally:
        for module, function in originals.items():
            module.linear = function
    return calls


def _seconds(run, budget: float = 0.02, repeats: int = 5) -> float:
    """Median seconds per call of `run`, in loops of about `budget` seconds each."""
    run()
    start = time.perf_counter()
    run()
    loops = max(1, int(budget / max(time.perf_counter() - start, 1e-6)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            run()
        times.append((time.perf_counter() - start) / loops)
    return statistics.median(times)


def fastest_seconds(M: int, K: int, N: int, has_bias: bool, dtype: torch.dtype = torch.float32) -> tuple[float, str]:
    """The fastest of the CPU matmul paths for `x (M, K) @ w (N, K).T (+ b)` in `dtype`, and its name."""
    x, weight = torch.randn(M, K, dtype=dtype), torch.randn(N, K, dtype=dtype)  # (M, K), (N, K)
    bias = torch.randn(N) if has_bias else None  # (N,), float32 as the library passes it
    paths = {"torch.addmm": (lambda: torch.addmm(bias.to(dtype), x, weight.t())) if has_bias else (lambda: x @ weight.t())}
    if matmul.ONEDNN:
        packed = matmul.pack_onednn(weight)
        paths["oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        paths["oneDNN packed"] = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    if matmul.MKL_PACKED and dtype == torch.float32:
        mkl = matmul.pack_mkl(weight)
        paths["MKL packed"] = lambda: matmul.linear(x, mkl, bias)
    timed = {name: _seconds(run) for name, run in paths.items()}
    best = min(timed, key=timed.get)
    return timed[best], best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["original", "small"])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench"))
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from elmo_lm import Embedder
    from elmo_lm.cpu_features import describe_this_cpu
    from embed_speed import write_random_model

    sentences = json.loads(BENCH.read_text())
    n_tokens = sum(len(s) for s in sentences)
    args.folder.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, args.precision)
    print(f"{n_tokens} tokens, batch 32, {args.precision}, {torch.get_num_threads()} threads, torch {torch.__version__}"
          f"\nCPU: {describe_this_cpu()}")
    print("| size | pass (median) | tok/s | matmul floor | ceiling tok/s | floor: CNN + highway | LSTM input | LSTM steps |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        options, weights = args.folder / f"{size}_options.json", args.folder / f"{size}_weights.hdf5"
        if not weights.exists():
            write_random_model(size, args.folder)
        extra = {"precision": args.precision} if args.precision != "float32" else {}
        with warnings.catch_warnings():  # the slow-bfloat16 warning: this table shows it in figures
            warnings.simplefilter("ignore")
            embedder = Embedder(options_file=options, weight_file=weights, batch_size=32, tune_allocator=True,
                                **extra)
        embedder.encode(sentences)  # warm-up
        passes = []
        for _ in range(args.passes):
            start = time.perf_counter()
            embedder.encode(sentences)
            passes.append(time.perf_counter() - start)
        calls = record_matmuls(embedder, sentences)
        by_kind: Counter[str] = Counter()
        paths: Counter[str] = Counter()
        for (M, K, N, has_bias, kind), count in calls.items():
            seconds, path = fastest_seconds(M, K, N, has_bias, dtype)
            by_kind[kind] += count * seconds
            paths[path] += count
        floor, spent = sum(by_kind.values()), statistics.median(passes)
        print(f"| {size} | {spent:.2f} s | {n_tokens / spent:,.0f} | {floor:.2f} s | {n_tokens / floor:,.0f} | "
              f"{by_kind['CNN + highway']:.2f} s | {by_kind['LSTM input']:.2f} s | {by_kind['LSTM steps']:.2f} s |")
        print(f"  ({sum(calls.values())} matmuls of {len(calls)} shapes; fastest path by call: "
              + ", ".join(f"{name} {count}" for name, count in paths.most_common()) + ")")
        del embedder


if __name__ == "__main__":
    main()
