"""Training throughput of one model shape, A/B against another source tree, with per-part times.

Each variant trains the same model (default: elmo-en-small's shape, batch 128 x 20, 8,192 sampled
negatives over the corpus's vocabulary), timing every part of a step on its own graph: the
character CNN (forward + backward), the LSTM (forward + backward), the softmax (forward +
backward), the optimizer (clip + Adam update), and the batch itself. All variants live in one
child process (the baseline tree imported as `elmo_lm_base`) and take their steps in turn, so a
machine shared with other jobs slows them alike; the table shows each variant's median step.

Variants:
    baseline  the code in --baseline (e.g. `git archive eb1e306 | tar -x -C /tmp/baseline`), float32
    float32   this tree, float32 matmuls
    bfloat16  this tree, bfloat16 products (only where the CPU has native bfloat16 dot products)
    baseline-bfloat16  the --baseline tree with bfloat16 products (a tree that already has them)

The same run measures the float32 and bfloat16 matmul peaks (the best of a few 2048^3 products)
with the same threads. `--clock cpu` times each part by the process's CPU time instead of the wall clock: on
a machine shared with other jobs, time spent waiting for a core is then not counted (with more than one thread it
sums the threads' time, so compare ratios only). "Model GFLOP/s" counts one definition of the work for every variant (the
matmul FLOPs of forward + backward, the CNN over all 50 slots of each distinct token), so it
rises with speed, not with work skipped; its share of the float32 peak is printed beside it.

Run: python benchmarks/train_speed.py --baseline /tmp/baseline --corpus CORPUS.txt [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("data", "cnn", "lstm", "softmax", "optimizer", "step")
ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared/fixtures/allennlp/corpus/shard1"


def _packages(baseline: Path | None):
    """(variant name -> the modules it trains with): this tree's, and the baseline tree's under another name."""
    import importlib
    import shutil
    
    names = ("config", "model", "vocab")
    trees = {"this": "elmo_lm"}
    if baseline is not None:
        # The baseline package is imported as elmo_lm_base (its imports are relative), so both run in one process.
        folder = Path(tempfile.mkdtemp())
        shutil.copytree(baseline / "elmo_lm", folder / "elmo_lm_base")
        sys.path.insert(0, str(folder))
        trees["baseline"] = "elmo_lm_base"
    modules = {}
    for tree, package in trees.items():
        found = {name: importlib.import_module(f"{package}.{name}") for name in names}
        for name, old, new in (("data", "data", "training.data"), ("softmax", "softmax", "training.softmax")):
            try:
                found[name] = importlib.import_module(f"{package}.{new}")
            except ImportError:  # a tree from before elmo_lm/training/
                found[name] = importlib.import_module(f"{package}.{old}")
        modules[tree] = found
    return modules


class _Variant:
    """One model, optimizer and sampler trained with one tree's code and one matmul dtype."""

    def __init__(self, name: str, modules: dict, args: argparse.Namespace, vocab_file: str) -> None:
        import torch

        self.name, self.m = name, modules
        torch.manual_seed(0)
        self.vocab = modules["vocab"].Vocabulary.load(vocab_file)
        config = modules["config"].ModelConfig(**modules["config"].PRESET_SHAPES[args.shape])
        self.model = modules["model"].ElmoBiLM(config, vocab_size=len(self.vocab)).train()
        self.model.lstm.dropout = 0.1
        self.low = {}
        if name != "baseline":  # this tree (float32 or bfloat16), or a baseline tree that has bfloat16 products
            dtype = torch.bfloat16 if name.endswith("bfloat16") else torch.float32
            self.model.token_encoder.matmul_dtype = self.model.lstm.matmul_dtype = dtype
            self.low = {"matmul_dtype": dtype}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.sampler = modules["softmax"].LogUniformSampler(len(self.vocab))
        self.generator = torch.Generator().manual_seed(0)
        self.n_negative = min(args.negatives, len(self.vocab) // 2)
        self.batches = iter(modules["data"].LMBatches(args.corpus, self.vocab, args.batch_size, 20, shuffle=True,
                                                      seed=0))
        self.times: dict[str, list[float]] = {part: [] for part in PARTS}

    def step(self, clock) -> None:
        """One training step, each part on its own graph: forward, then its backward from the next part's input
        gradient; times recorded per part (by `clock`)."""
        import torch
        import torch.nn.functional as F

        model, softmax = self.model, self.model.softmax
        t0 = clock()
        batch = next(self.batches)
        sample = self.sampler.sample(self.n_negative, self.generator)
        chars = torch.stack([batch.forward_chars, batch.backward_chars])  # (2, B, T, 50)
        mask = (chars > 0).any(dim=-1)  # (2, B, T)
        targets = torch.stack([batch.forward_targets, batch.backward_targets])  # (2, B, T)
        real = targets != self.m["data"].IGNORE_INDEX
        t1 = clock()
        tokens = model.encode_tokens(chars, mask)  # (2, B, T, P)
        t2 = clock()
        tokens_in = tokens.detach().requires_grad_()
        outputs, _ = model.lstm(tokens_in, mask)
        top = F.dropout(outputs[-1], 0.1)  # (2, B, T, P)
        t3 = clock()
        top_in = top.detach().requires_grad_()
        nll = self.m["softmax"].sampled_softmax_nll(top_in[real], targets[real], softmax.weight, softmax.bias, sample,
                                                    self.sampler, **self.low)
        self.optimizer.zero_grad(set_to_none=True)
        (nll.sum() / (2 * batch.n_tokens)).backward()
        t4 = clock()
        top.backward(top_in.grad)
        t5 = clock()
        tokens.backward(tokens_in.grad)
        t6 = clock()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        self.optimizer.step()
        t7 = clock()
        for part, seconds in zip(PARTS, (t1 - t0, (t2 - t1) + (t6 - t5), (t3 - t2) + (t5 - t4), t4 - t3, t7 - t6,
                                         t7 - t0)):
            self.times[part].append(seconds)


def child(args: argparse.Namespace) -> None:
    """All variants in this process, one step of each in turn; print each one's per-step part times as JSON."""
    import torch

    from elmo_lm.allocator import keep_freed_memory
    from elmo_lm.vocab import build_vocabulary

    keep_freed_memory()  # as `elmo train` does
    torch.set_num_threads(args.threads)
    vocab_file = args.vocab
    if vocab_file is None:
        vocab_file = str(Path(tempfile.mkdtemp()) / "vocab.txt")
        build_vocabulary([args.corpus]).save(vocab_file)
    modules = _packages(args.baseline)
    variants = [_Variant(name, modules["baseline" if name.startswith("baseline") else "this"], args, vocab_file)
                for name in args.variants]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for _ in range(args.steps):
        for variant in variants:
            variant.step(clock)
    print(json.dumps({v.name: v.times for v in variants} | {"tokens": args.batch_size * 20,
                                                             "vocab": len(variants[0].vocab),
                                                             "negatives": variants[0].n_negative}))


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
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["baseline", "float32", "bfloat16"],
                        choices=["baseline", "baseline-bfloat16", "float32", "bfloat16"])
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="time the parts by the wall clock or by the process's CPU time (a loaded machine)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    from elmo_lm.cpu_features import bfloat16_is_fast, describe_this_cpu

    variants = [v for v in args.variants if not v.startswith("baseline") or args.baseline is not None]
    if not bfloat16_is_fast() and any(v.endswith("bfloat16") for v in variants):
        print("this CPU has no native bfloat16 dot products: skipping the bfloat16 variants")
        variants = [v for v in variants if not v.endswith("bfloat16")]
    print(f"CPU: {describe_this_cpu()}; {os.cpu_count()} cores")
    peaks = matmul_peaks(args.threads)
    print(f"matmul peak with {args.threads} thread(s), 2048^3: float32 {peaks['float32']:,.0f} GFLOP/s, "
          f"bfloat16 {peaks['bfloat16']:,.0f} GFLOP/s")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    command = [sys.executable, __file__, "--variant", "all", "--corpus", args.corpus, "--shape", args.shape,
               "--batch-size", str(args.batch_size), "--negatives", str(args.negatives), "--steps", str(args.steps),
               "--threads", str(args.threads), "--clock", args.clock, "--variants", *variants]
    if args.vocab:
        command += ["--vocab", args.vocab]
    if args.baseline is not None:
        command += ["--baseline", str(args.baseline)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/")
    if done.returncode != 0:
        raise SystemExit(f"the benchmark process failed:\n{done.stderr}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    for step in range(args.steps):
        print(f"step {step + 1}: " + ", ".join(f"{v} {info[v]['step'][step]:.2f} s" for v in variants))
    distinct = distinct_tokens(args.corpus, args.batch_size)
    flops = model_flops(args.shape, info["tokens"], distinct, info["negatives"])
    print(f"\nshape {args.shape}, batch {args.batch_size} x 20, vocabulary {info['vocab']:,}, {info['negatives']:,} "
          f"negatives, {distinct:,} distinct tokens per batch; {args.steps - args.warmup} timed steps of each "
          f"variant, interleaved step by step in one process; medians ({'CPU ' if args.clock == 'cpu' else ''}seconds per "
          "step)")
    header = f"{'variant':<18}" + "".join(f"{p:>10}" for p in PARTS) + f"{'tok/s':>9}{'GFLOP/s':>9}{'of fp32':>8}{'speed-up':>9}"
    print(header)
    reference = None
    for variant in variants:
        medians = {p: statistics.median(info[variant][p][args.warmup:]) for p in PARTS}
        tokens_per_s = info["tokens"] / medians["step"]
        reference = reference or tokens_per_s
        achieved = flops / medians["step"] / 1e9
        print(f"{variant:<18}" + "".join(f"{medians[p]:>10.3f}" for p in PARTS)
              + f"{tokens_per_s:>9,.0f}{achieved:>9,.1f}{achieved / peaks['float32']:>8.1%}"
              + f"{tokens_per_s / reference:>8.2f}x")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # "this tree" is the one this script is in, not whichever elmo_lm is installed
    main()
