"""Interleaved A/B of two source trees of elmo-lm in one process: embedding speed on the bench sentences.

Copies each tree's `elmo_lm/` into a temporary folder under its own name (`elmo_lm_a`, `elmo_lm_b`; the
package imports itself only relatively), loads one `Embedder` from each on the same weights, and times
`encode` over the bench sentences (batch 32) pass by pass, A and B alternating (and which goes first
alternating too), so that the machine's drift hits both alike. Prints per size the median tokens/s of each
(by wall clock and by process CPU time, which a loaded machine disturbs less), their ratios, and the largest
difference between the two trees' vectors. Embedders are built as `elmo embed` builds them (with
`tune_allocator` where the tree has it).

Run: python benchmarks/ab_trees.py OLD_TREE NEW_TREE --folder /tmp/bench [--sizes small original] [--passes 8]
(`--folder`: the weights `embed_speed.py --folder` writes.)
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parents[1] / "tests/fixtures/bench/bench_sentences.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--sizes", nargs="+", default=["small", "original"])
    parser.add_argument("--passes", type=int, default=8)
    args = parser.parse_args()
    sentences = json.loads(BENCH.read_text())
    n = sum(len(s) for s in sentences)
    with tempfile.TemporaryDirectory() as temporary:
        for name, tree in (("elmo_lm_a", args.old), ("elmo_lm_b", args.new)):
            shutil.copytree(tree / "elmo_lm", Path(temporary) / name)
        sys.path.insert(0, temporary)
        import elmo_lm_a
        import elmo_lm_b

        print(f"{n} tokens, batch 32, {torch.get_num_threads()} threads, torch {torch.__version__}")
        print("| size | A tokens/s | B tokens/s | B/A | median pass ratio | A tokens per CPU-s | B tokens per CPU-s "
              "| B/A | max abs diff |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size in args.sizes:
            files = {"options_file": args.folder / f"{size}_options.json",
                     "weight_file": args.folder / f"{size}_weights.hdf5"}
            embedders = {}
            for key, package in (("A", elmo_lm_a), ("B", elmo_lm_b)):
                extra = {"tune_allocator": True} if "tune_allocator" in inspect.signature(package.Embedder).parameters \
                    else {}
                embedders[key] = package.Embedder(batch_size=32, **files, **extra)
            warm = {key: embedder.encode(sentences) for key, embedder in embedders.items()}
            diff = max(float(np.abs(a - b).max()) for a, b in zip(warm["A"], warm["B"]) if a.size)
            del warm
            wall: dict[str, list[float]] = {"A": [], "B": []}
            cpu: dict[str, list[float]] = {"A": [], "B": []}
            for rep in range(args.passes):
                for key in ("A", "B") if rep % 2 == 0 else ("B", "A"):
                    start, busy = time.perf_counter(), time.process_time()
                    embedders[key].encode(sentences)
                    wall[key].append(time.perf_counter() - start)
                    cpu[key].append(time.process_time() - busy)
            a, b = n / statistics.median(wall["A"]), n / statistics.median(wall["B"])
            ca, cb = n / statistics.median(cpu["A"]), n / statistics.median(cpu["B"])
            ratio = statistics.median(x / y for x, y in zip(wall["A"], wall["B"]))
            print(f"| {size} | {a:,.0f} | {b:,.0f} | {b / a:.3f} | {ratio:.3f} | {ca:,.0f} | {cb:,.0f} | {cb / ca:.3f} "
                  f"| {diff:.1e} |", flush=True)
            del embedders


if __name__ == "__main__":
    main()
