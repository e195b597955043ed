"""Peak memory and time of embedding one 100,000-token line (a small-size model with random weights).

Run: python benchmarks/long_input.py [--tokens 100000] [--size small|original]
Prints the output's size beside the process's peak RSS and the RSS of the loaded model before.
"""

import argparse
import resource
import time

import numpy as np
import torch

from elmo_lm import ElmoBiLM, Embedder, ModelConfig
from elmo_lm.config import PRESET_SHAPES


def rss_mb() -> float:
    """Current resident set size in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--size", choices=sorted(PRESET_SHAPES), default="small")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = ElmoBiLM(ModelConfig(**PRESET_SHAPES[args.size])).eval()
    embedder = Embedder(model, tune_allocator=True)  # as `elmo embed`
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)] + [",", ".", "the", "of"]
    line = [words[i] for i in rng.integers(0, len(words), args.tokens)]
    embedder.embed_sentence(line[:50])  # warm up
    before = rss_mb()
    start = time.perf_counter()
    layers = embedder.embed_sentence(line)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    output_mb = layers.nbytes / 2**20
    print(f"{args.size} model, one line of {args.tokens:,} tokens: output {layers.shape} = {output_mb:.0f} MB; "
          f"RSS before {before:.0f} MB, peak {peak:.0f} MB (peak - before = {peak - before:.0f} MB, "
          f"{(peak - before) / output_mb:.2f}x the output); {seconds:.1f} s, {args.tokens / seconds:,.0f} tokens/s")


if __name__ == "__main__":
    main()
