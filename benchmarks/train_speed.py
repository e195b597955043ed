"""Training throughput of one model shape, A/B against another source tree, with per-part times.

Each variant trains the same model (default: elmo-en-small's shape, batch 128 x 20, 8,192 sampled
negatives over the corpus's vocabulary) for a few steps in a child process, timing every part
of a step on its own graph: the character CNN (forward + backward), the LSTM (forward +
backward), the softmax (forward + backward), the optimizer (clip + Adam update), and the
batch itself. Variants run interleaved, round after round, so a machine shared with other jobs
slows them alike; the table shows medians over rounds of each round's median step.

Variants:
    baseline  the code in --baseline (e.g. `git archive eb1e306 | tar -x -C /tmp/baseline`), float32
    float32   this tree, float32 matmuls
    bfloat16  this tree, bfloat16 products (only where the CPU has native bfloat16 dot products)

The same run measures the float32 and bfloat16 matmul peaks (the best of a few 2048^3 products)
with the same threads. "Model GFLOP/s" counts one definition of the work for every variant (the
matmul FLOPs of forward + backward, the CNN over all 50 slots of each distinct token), so it
rises with speed, not with work skipped; its share of the float32 peak is printed beside it.

Run: python benchmarks/train_speed.py --baseline /tmp/baseline --corpus CORPUS.txt [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PARTS = ("data", "cnn", "lstm", "softmax", "optimizer", "step")
ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared/fixtures/allennlp/corpus/shard1"


def child(args: argparse.Namespace) -> None:
    """Train `args.steps` steps of one variant and print the per-part median seconds as JSON."""
    import torch
    import torch.nn.functional as F

    from elmo_lm.config import PRESET_SHAPES, ModelConfig
    from elmo_lm.model import ElmoBiLM
    from elmo_lm.vocab import Vocabulary, build_vocabulary

    try:
        from elmo_lm.training.data import IGNORE_INDEX, LMBatches
        from elmo_lm.training.softmax import LogUniformSampler, sampled_softmax_nll
    except ImportError:  # a baseline tree from before elmo_lm/training/
        from elmo_lm.data import IGNORE_INDEX, LMBatches  # type: ignore[no-redef]
        from elmo_lm.softmax import LogUniformSampler, sampled_softmax_nll  # type: ignore[no-redef]

    from elmo_lm.allocator import keep_freed_memory

    keep_freed_memory()  # as `elmo train` does
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = Vocabulary.load(args.vocab) if args.vocab else build_vocabulary([args.corpus])
    model = ElmoBiLM(ModelConfig(**PRESET_SHAPES[args.shape]), vocab_size=len(vocab)).train()
    model.lstm.dropout = 0.1
    dtype = torch.bfloat16 if args.variant == "bfloat16" else torch.float32
    low = {}
    if args.variant != "baseline":
        model.token_encoder.matmul_dtype = model.lstm.matmul_dtype = dtype
        low = {"matmul_dtype": dtype}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler, generator = LogUniformSampler(len(vocab)), torch.Generator().manual_seed(0)
    n_negative = min(args.negatives, len(vocab) // 2)
    batches = iter(LMBatches(args.corpus, vocab, args.batch_size, 20, shuffle=True, seed=0))
    times: dict[str, list[float]] = {part: [] for part in PARTS}
    softmax = model.softmax
    assert softmax is not None
    for _ in range(args.steps):
        t0 = time.perf_counter()
        batch = next(batches)
        sample = sampler.sample(n_negative, generator)
        chars = torch.stack([batch.forward_chars, batch.backward_chars])  # (2, B, T, 50)
        mask = (chars > 0).any(dim=-1)  # (2, B, T)
        targets = torch.stack([batch.forward_targets, batch.backward_targets])  # (2, B, T)
        real = targets != IGNORE_INDEX
        t1 = time.perf_counter()
        # Each part on its own graph: forward, then its backward from the next part's input gradient.
        tokens = model.encode_tokens(chars, mask)  # (2, B, T, P)
        t2 = time.perf_counter()
        tokens_in = tokens.detach().requires_grad_()
        outputs, _ = model.lstm(tokens_in, mask)
        top = F.dropout(outputs[-1], 0.1)  # (2, B, T, P)
        t3 = time.perf_counter()
        top_in = top.detach().requires_grad_()
        nll = sampled_softmax_nll(top_in[real], targets[real], softmax.weight, softmax.bias, sample, sampler, **low)
        optimizer.zero_grad(set_to_none=True)
        (nll.sum() / (2 * batch.n_tokens)).backward()
        t4 = time.perf_counter()
        top.backward(top_in.grad)
        t5 = time.perf_counter()
        tokens.backward(tokens_in.grad)
        t6 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        t7 = time.perf_counter()
        for part, seconds in zip(PARTS, (t1 - t0, (t2 - t1) + (t6 - t5), (t3 - t2) + (t5 - t4), t4 - t3, t7 - t6,
                                         t7 - t0)):
            times[part].append(seconds)
    kept = {part: statistics.median(values[args.warmup:]) for part, values in times.items()}
    print(json.dumps({"seconds": kept, "tokens": args.batch_size * 20, "vocab": len(vocab),
                      "negatives": n_negative}))


def matmul_peaks(threads: int, size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best float32 and bfloat16 GFLOP/s of a `size`^3 matmul with the given threads."""
    import torch

    torch.set_num_threads(threads)
    peaks = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        peaks[str(dtype).removeprefix("torch.")] = 2 * size**3 / best / 1e9
    return peaks


def model_flops(shape: str, tokens: int, distinct: int, negatives: int) -> float:
    """Matmul FLOPs of one step, forward + backward (3x forward), both directions."""
    from elmo_lm.config import PRESET_SHAPES, ModelConfig

    m = ModelConfig(**PRESET_SHAPES[shape])
    e, P, C, L, Fn = m.char_embed_dim, m.projection_dim, m.lstm_dim, m.n_layers, m.n_filters
    cnn = sum(2 * e * width * count * (50 - width + 1) for width, count in m.filters)
    per_distinct = cnn + m.n_highway * 2 * 2 * Fn * Fn + 2 * Fn * P
    per_position = L * (2 * 2 * P * 4 * C + 2 * C * P) + 2 * P * (negatives + 1)
    return 3 * (distinct * per_distinct + 2 * tokens * per_position)


def distinct_tokens(corpus: str, batch_size: int) -> int:
    """Distinct tokens in a typical batch (the first one of the corpus's stream), counted for the FLOPs."""
    from elmo_lm.training.data import LMBatches
    from elmo_lm.vocab import build_vocabulary

    batch = next(iter(LMBatches(corpus, build_vocabulary([corpus]), batch_size, 20, shuffle=True, seed=0)))
    import torch

    chars = torch.cat([batch.forward_chars.flatten(0, 1), batch.backward_chars.flatten(0, 1)])
    return int(torch.unique(chars[(chars > 0).any(-1)], dim=0).shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="source tree of the code to compare against")
    parser.add_argument("--corpus", default=str(FIXTURE), help="training text (one sentence per line)")
    parser.add_argument("--vocab", help="vocabulary file (default: every word of the corpus)")
    parser.add_argument("--shape", default="small")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--negatives", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["baseline", "float32", "bfloat16"])
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    from elmo_lm.cpu_features import bfloat16_is_fast, this_cpu

    variants = [v for v in args.variants if v != "baseline" or args.baseline is not None]
    if "bfloat16" in variants and not bfloat16_is_fast():
        print("this CPU has no native bfloat16 dot products: skipping the bfloat16 variant")
        variants.remove("bfloat16")
    cpu = this_cpu()
    model_name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith("model name")), platform.processor())
    flags = sorted(f for f in (cpu[1] if cpu else ()) if f.startswith(("avx512", "amx")))
    print(f"CPU: {model_name}; {os.cpu_count()} cores; flags: {' '.join(flags) or 'no AVX-512/AMX'}")
    peaks = matmul_peaks(args.threads)
    print(f"matmul peak with {args.threads} thread(s), 2048^3: float32 {peaks['float32']:,.0f} GFLOP/s, "
          f"bfloat16 {peaks['bfloat16']:,.0f} GFLOP/s")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    info: dict = {}
    for round_ in range(args.rounds):
        for variant in variants:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
            if variant == "baseline":
                env["PYTHONPATH"] = str(args.baseline)
            command = [sys.executable, __file__, "--variant", variant, "--corpus", args.corpus, "--shape", args.shape,
                       "--batch-size", str(args.batch_size), "--negatives", str(args.negatives),
                       "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
            if args.vocab:
                command += ["--vocab", args.vocab]
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/")
            if done.returncode != 0:
                raise SystemExit(f"{variant} failed:\n{done.stderr}")
            record = json.loads(done.stdout.strip().splitlines()[-1])
            info = record
            results[variant].append(record["seconds"])
            print(f"round {round_ + 1} {variant}: " + ", ".join(f"{p} {record['seconds'][p]:.3f}" for p in PARTS)
                  + " s", flush=True)
    distinct = distinct_tokens(args.corpus, args.batch_size)
    flops = model_flops(args.shape, info["tokens"], distinct, info["negatives"])
    print(f"\nshape {args.shape}, batch {args.batch_size} x 20, vocabulary {info['vocab']:,}, {info['negatives']:,} "
          f"negatives, {distinct:,} distinct tokens per batch; {args.rounds} rounds x {args.steps - args.warmup} "
          f"timed steps; medians (seconds per step)")
    header = f"{'variant':<10}" + "".join(f"{p:>10}" for p in PARTS) + f"{'tok/s':>9}{'GFLOP/s':>9}{'of fp32':>8}{'speed-up':>9}"
    print(header)
    reference = None
    for variant in variants:
        medians = {p: statistics.median(r[p] for r in results[variant]) for p in PARTS}
        tokens_per_s = info["tokens"] / medians["step"]
        reference = reference or tokens_per_s
        achieved = flops / medians["step"] / 1e9
        print(f"{variant:<10}" + "".join(f"{medians[p]:>10.3f}" for p in PARTS)
              + f"{tokens_per_s:>9,.0f}{achieved:>9,.1f}{achieved / peaks['float32']:>8.1%}"
              + f"{tokens_per_s / reference:>8.2f}x")


if __name__ == "__main__":
    main()
