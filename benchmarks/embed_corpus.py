"""Throughput of `embed_corpus` with 1 and 2 workers (local processes, and Ray actors with --ray).

Builds a corpus from the bench sentences (or examples/sentences.txt), repeated to --lines lines,
and embeds it into a fresh folder per run (top layer, float16, shards of --shard-size lines), runs
alternating between configurations (--rounds each, median); each worker gets one torch thread, so
the comparison is workers, not threads ("1 worker x 2 threads" is there too). Model loading and
process start are included: they are part of a real run.

Run: python benchmarks/embed_corpus.py [--lines 4000] [--rounds 2] [--ray]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared/bench/bench_sentences.json"


def sentences() -> list[str]:
    if BENCH.is_file():
        return [" ".join(tokens) for tokens in json.loads(BENCH.read_text())]
    return [line for line in (ROOT / "examples/sentences.txt").read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=4000)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ray", action="store_true", help="Also Ray Data with 1 and 2 actors (local cluster).")
    args = parser.parse_args()
    from elmo_lm.corpus_embed import CorpusSettings, embed_corpus

    pool = sentences()
    lines = [pool[i % len(pool)] for i in range(args.lines)]
    tokens = sum(len(line.split()) for line in lines)
    settings = CorpusSettings(dtype="float16", shard_size=args.shard_size)
    configurations = [("local, 1 worker x 1 thread", "local", 1, 1), ("local, 2 workers x 1 thread", "local", 2, 1),
                      ("local, 1 worker x 2 threads", "local", 1, 2)]
    if args.ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        configurations += [("ray, 1 actor x 1 thread", "ray", 1, 1), ("ray, 2 actors x 1 thread", "ray", 2, 1)]
    times: dict[str, list[float]] = {name: [] for name, *_ in configurations}
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.txt"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for round_number in range(args.rounds):
            for name, engine, workers, threads in configurations:
                out = Path(folder) / f"out-{round_number}-{len(times[name])}-{engine}-{workers}-{threads}"
                start = time.perf_counter()
                embed_corpus(str(corpus), out, settings=settings, engine=engine, workers=workers, threads=threads)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times[configurations[0][0]])
    print("| configuration | seconds | sentences/s | tokens/s | vs 1 worker |")
    print("|---|---:|---:|---:|---:|")
    for name, *_ in configurations:
        seconds = statistics.median(times[name])
        print(f"| {name} | {seconds:.1f} | {len(lines) / seconds:,.0f} | {tokens / seconds:,.0f} | "
              f"{base / seconds:.2f}x |")
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, {len(lines):,} lines, {tokens:,} tokens, "
          f"shards of {args.shard_size}, median of {args.rounds} rounds; load average at the end "
          f"{os.getloadavg()[0]:.1f} (other jobs on the machine)")


if __name__ == "__main__":
    main()
