"""onnxruntime on the exported graph against elmo-lm's own path (`Embedder`), same model, same threads.

For each shape (batch x tokens per sentence) both run alternately in one process (A/B interleaved,
--rounds rounds, each the median of --repeats calls), on the bundled model unless --model; the table
gives tokens/s and the ratio onnxruntime / elmo-lm (above 1: onnxruntime is faster for that shape).
Real words from the bench sentences (or examples/sentences.txt), cut or repeated to each length.

Run: python benchmarks/onnx_speed.py [--threads 1] [--shapes 1x10 1x50 32x20 64x40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared/bench/bench_sentences.json"


def words() -> list[str]:
    if BENCH.is_file():
        return [token for sentence in json.loads(BENCH.read_text()) for token in sentence]
    return (ROOT / "examples/sentences.txt").read_text().split()


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="A model folder (default: the bundled model).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", nargs="+", default=["1x10", "1x50", "8x20", "32x20", "64x40"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    from elmo_lm import Embedder, batch_to_ids, load_model
    from elmo_lm.bundled import bundled_model_path
    from elmo_lm.onnx_export import export_onnx

    model_dir = args.model or bundled_model_path()
    embedder = Embedder(model_dir)
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(load_model(model_dir), Path(folder) / "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    pool = words()
    print(f"| batch x tokens | elmo-lm tokens/s | onnxruntime tokens/s | onnxruntime / elmo-lm | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    for shape in args.shapes:
        batch, length = (int(part) for part in shape.split("x"))
        sentences = [[pool[(b * 97 + t) % len(pool)] for t in range(length)] for b in range(batch)]
        ids = batch_to_ids(sentences).numpy()
        ours = lambda: embedder.embed_batch(sentences)  # noqa: E731
        theirs = lambda: session.run(None, {"char_ids": ids})  # noqa: E731
        difference = float(np.abs(np.stack(ours()) - theirs()[0]).max())
        ours_times, theirs_times = [], []
        for _ in range(args.rounds):
            ours_times.append(timed(ours, args.repeats))
            theirs_times.append(timed(theirs, args.repeats))
        tokens = batch * length
        a, b = tokens / statistics.median(ours_times), tokens / statistics.median(theirs_times)
        print(f"| {batch} x {length} | {a:,.0f} | {b:,.0f} | {b / a:.2f} | {difference:.1e} |", flush=True)
    print(f"\n{platform.machine()}, {args.threads} thread(s), onnxruntime {ort.__version__}, torch {torch.__version__}, "
          f"model {model_dir}")


if __name__ == "__main__":
    main()
