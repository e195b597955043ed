"""How long the training batcher takes to build a full 128 x 20 batch (median and fastest).

Run: python benchmarks/data_speed.py
"""

import statistics
import time
from pathlib import Path

from elmo_lm.training.data import LMBatches
from elmo_lm.vocab import build_vocabulary

SHARDS = sorted((Path(__file__).resolve().parents[2] / "shared/fixtures/allennlp/corpus").glob("shard*"))


def main() -> None:
    vocab = build_vocabulary(SHARDS)
    batches = LMBatches(SHARDS, vocab, batch_size=128, unroll_steps=20, seed=0, shuffle_buffer=200)
    list(batches)  # warm the character cache
    times, start = [], time.perf_counter()
    for batch in batches.iter_epoch(1):
        now = time.perf_counter()
        if batch.n_tokens == 128 * 20:
            times.append(now - start)
        start = now
    print(f"full 128x20 batches: {len(times)}, median {statistics.median(times) * 1000:.2f} ms, "
          f"fastest {min(times) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
