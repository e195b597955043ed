"""Training throughput (target tokens per second, per direction) of the presets on this machine.

Trains each preset for a few steps on the fixture corpus (its vocabulary of 6,451 words: the
full softmax, since that is at most 2 x n_negative_samples) and prints the median tokens/s of
the steps after the first few (warm-up). Data loading, forward, backward and the update are all
timed; validation and checkpoints are not run.

Run: python benchmarks/train_speed.py [--presets tiny small] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from elmo_lm.train import train
from elmo_lm.train_config import preset
from elmo_lm.vocab import build_vocabulary

CORPUS = Path(__file__).resolve().parents[2] / "shared/fixtures/allennlp/corpus"


def measure(name: str, steps: int, warmup: int, batch_size: int | None) -> tuple[float, int, str]:
    shards = sorted(CORPUS.glob("shard*"))
    with tempfile.TemporaryDirectory() as folder:
        vocab_file = Path(folder) / "vocab.txt"
        build_vocabulary(shards).save(vocab_file)
        config = preset(name).replace(max_steps=steps, log_every=1, checkpoint_every=10**9, plot=False, epochs=None)
        if batch_size is not None:
            config = config.replace(batch_size=batch_size)
        train(config, [str(p) for p in shards], vocab_file, Path(folder) / "run", quiet=True, log=lambda _: None)
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
    torch.set_num_threads(args.threads)
    print(f"{'preset':<10} {'batch':>6} {'softmax':>8} {'threads':>8} {'tokens/s':>10}")
    for name in args.presets:
        speed, batch, softmax = measure(name, args.steps, args.warmup, args.batch_size)
        print(f"{name:<10} {batch:>6} {softmax:>8} {args.threads:>8} {speed:>10,.0f}")


if __name__ == "__main__":
    main()
