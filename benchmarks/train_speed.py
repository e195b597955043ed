"""Training throughput (target tokens per second, per direction) of the presets on this machine.

Trains each preset for a few steps on the fixture corpus (its vocabulary of 6,451 words: the
full softmax, since that is at most 2 x n_negative_samples) and prints the median tokens/s of
the steps after the first few (warm-up). Data loading, forward, backward and the update are all
timed; validation and checkpoints are not run.

It also prints the share of the machine's float32 matmul peak (measured here: the best of a few
2048^3 matmuls with the same threads) that the step reaches, counting model FLOPs: 3x the forward
pass (forward + backward) of both directions per target token, with the character CNN counted
over all 50 slots of every position, as the training path computes it.

Run: python benchmarks/train_speed.py [--presets tiny small] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from elmo_lm.config import ModelConfig

from elmo_lm.training.loop import train
from elmo_lm.training.config import preset
from elmo_lm.vocab import build_vocabulary

CORPUS = Path(__file__).resolve().parents[2] / "shared/fixtures/allennlp/corpus"


VOCAB_SIZE = 6451
"""Words in the fixture corpus's vocabulary."""


def forward_flops_per_token(model: ModelConfig, softmax_rows: int) -> float:
    """Matmul FLOPs of one direction's forward pass for one target token (multiply-add = 2)."""
    e, P, C, L = model.char_embed_dim, model.projection_dim, model.lstm_dim, model.n_layers
    slots = model.max_characters_per_token
    cnn = sum(2 * e * width * count * (slots - width + 1) for width, count in model.filters)
    highway = model.n_highway * 2 * (2 * model.n_filters**2)
    projection = 2 * model.n_filters * P
    lstm = L * (2 * (2 * P) * (4 * C) + 2 * C * P)  # [x ; m] @ W_0, then the projection
    return cnn + highway + projection + lstm + 2 * P * softmax_rows


def matmul_peak(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of a `size`^3 matmul with the given threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def measure(name: str, steps: int, warmup: int, batch_size: int | None) -> tuple[float, int, str]:
    shards = sorted(CORPUS.glob("shard*"))
    with tempfile.TemporaryDirectory() as folder:
        vocab_file = Path(folder) / "vocab.txt"
        build_vocabulary(shards).save(vocab_file)
        config = preset(name).replace(max_steps=steps, log_every=1, checkpoint_every=10**9, plot=False, epochs=None)
        if batch_size is not None:
            config = config.replace(batch_size=batch_size)
        train(config, [str(p) for p in shards], vocab_file, Path(folder) / "run", quiet=True, log=lambda _: None,
              tune_allocator=True)  # as `elmo train`
        records = [json.loads(line) for line in (Path(folder) / "run" / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in records if r["split"] == "train" and r["step"] > warmup]
    softmax = "sampled" if config.use_sampled_softmax(6451) else "full"
    return statistics.median(speeds), config.batch_size, softmax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    peak = matmul_peak(args.threads)
    print(f"float32 matmul peak with {args.threads} thread(s): {peak:,.0f} GFLOP/s (2048^3, best of 5)")
    print(f"{'preset':<10} {'batch':>6} {'softmax':>8} {'threads':>8} {'tokens/s':>10} {'MFLOP/token':>12} "
          f"{'GFLOP/s':>8} {'of peak':>8}")
    for name in args.presets:
        speed, batch, softmax = measure(name, args.steps, args.warmup, args.batch_size)
        config = preset(name)
        rows = VOCAB_SIZE if softmax == "full" else config.n_negative_samples + 1
        flops = 3 * 2 * forward_flops_per_token(config.model, rows)  # forward + backward, both directions
        achieved = speed * flops / 1e9
        print(f"{name:<10} {batch:>6} {softmax:>8} {args.threads:>8} {speed:>10,.0f} {flops / 1e6:>12,.1f} "
              f"{achieved:>8,.1f} {achieved / peak:>8.1%}")


if __name__ == "__main__":
    main()
