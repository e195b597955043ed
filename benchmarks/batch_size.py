"""Tokens/s of `Embedder.encode` on the bench sentences against the batch: by sentence count and by tokens.

One process per model size (the weights of `embed_speed.py`, written there with `--folder`);
within it the batch settings take turns pass by pass (round robin, `--rounds` rounds after one
warm-up round), so that a disturbance spreads over all of them; medians. Speed is reported as
tokens per second of wall time and per CPU-second (comparable under competition for the cores
when run on one thread). The CPU model and flags head the table.

Run: OMP_NUM_THREADS=1 python benchmarks/batch_size.py --folder /tmp/bench [--sizes small original]
     [--precision float32] [--batch-sizes 8 16 32 64 128] [--batch-tokens 500 1000 2000 4000 8000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_speed import BENCH, write_random_model  # noqa: E402

from elmo_lm.cpu_features import describe_this_cpu  # noqa: E402


def measure(size: str, folder: Path, precision: str, settings: list[tuple[str, int]], rounds: int) -> dict:
    """{setting: (wall tokens/s, CPU tokens/s)} medians over `rounds` passes each, settings interleaved."""
    from elmo_lm import Embedder

    sentences = json.loads(BENCH.read_text())
    n_tokens = sum(len(s) for s in sentences)
    embedder = Embedder(options_file=folder / f"{size}_options.json", weight_file=folder / f"{size}_weights.hdf5",
                        precision=precision)
    wall: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    cpu: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    for round_ in range(rounds + 1):
        for setting in settings:
            kind, value = setting
            embedder.batch_size, embedder.batch_tokens = (value, None) if kind == "sentences" else (4096, value)
            start, cpu_start = time.perf_counter(), time.process_time()
            embedder.encode(sentences)
            if round_:  # the first round warms up
                wall[setting].append(n_tokens / (time.perf_counter() - start))
                cpu[setting].append(n_tokens / (time.process_time() - cpu_start))
    return {s: (statistics.median(wall[s]), statistics.median(cpu[s])) for s in settings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="weights of embed_speed.py (written when missing)")
    parser.add_argument("--sizes", nargs="+", default=["small", "original"])
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "int8"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 16, 32, 64, 128])
    parser.add_argument("--batch-tokens", nargs="+", type=int, default=[500, 1000, 2000, 4000, 8000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = [("sentences", n) for n in args.batch_sizes] + [("tokens", n) for n in args.batch_tokens]
    print(f"CPU: {describe_this_cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.precision}, {args.rounds} rounds (median)")
    print("| size | batch by | batch | tokens/s | tokens per CPU-s |")
    print("|---|---|---:|---:|---:|")
    for size in args.sizes:
        if not (folder / f"{size}_weights.hdf5").is_file():
            write_random_model(size, folder)
        for (kind, value), (wall, cpu) in measure(size, folder, args.precision, settings, args.rounds).items():
            print(f"| {size} | {kind} | {value:,} | {wall:,.0f} | {cpu:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
