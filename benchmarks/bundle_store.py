"""What each way of storing a model folder costs: size, vectors against float32, validation perplexity.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bundle_store.py RUN_DIR --valid VALID.txt --batches 100

For each store (all float16, all bfloat16, int8 highway, int8 highway + projection + LSTM
matrices; the rest float16) the run's model is written without its softmax as `bundle_model.py`
writes it (vocab.txt included), loaded back and compared with the float32 model: the folder's
size; per layer the largest absolute difference and the mean and lowest per-token cosine of the
vectors of tests/fixtures' 30 + 200 sentences (stateless, float32 inference); and the validation
perplexity (full softmax, both directions, stateful in `--batch-size` rows of `--unroll` steps, as
`elmo evaluate` reads) with the encoder round-tripped through the store and the run's float32
softmax (`elmo_lm.training.evaluate.stateful_totals`, each store over the same first `--batches` batches).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from elmo_lm.cpu_features import describe_this_cpu  # noqa: E402
from elmo_lm.embed import Embedder  # noqa: E402
from elmo_lm.io import load_model, save_pretrained  # noqa: E402
from elmo_lm.io.int8_storage import int8_keys  # noqa: E402
from elmo_lm.model import ElmoBiLM  # noqa: E402
from elmo_lm.training.evaluate import stateful_totals  # noqa: E402
from elmo_lm.training.run_folder import load_run_model  # noqa: E402
from elmo_lm.vocab import Vocabulary  # noqa: E402

FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
STORES = {  # name: (float type of the rest, int8 choice or None)
    "float16": (torch.float16, None),
    "bfloat16": (torch.bfloat16, None),
    "int8 highway": (torch.float16, "highway"),
    "int8 all matrices": (torch.float16, "matrices"),
}


def test_sentences() -> list[list[str]]:
    """The fixtures' sentences: allennlp's 30 and the benchmark's 200."""
    lines = (FIXTURES / "allennlp" / "sentences.txt").read_text(encoding="utf-8").splitlines()
    bench = json.loads((FIXTURES / "bench" / "bench_sentences.json").read_text(encoding="utf-8"))
    return [line.split() for line in lines if line.strip()] + [s.split() if isinstance(s, str) else s for s in bench]


def stored(model: ElmoBiLM, store: str, folder: Path, vocab: Path) -> tuple[ElmoBiLM, int]:
    """`model` without its softmax written as `store`, loaded back (float32), and the folder's size in bytes."""
    dtype, choice = STORES[store]
    softmax, model.softmax = model.softmax, None
    try:
        keys = int8_keys(model.state_dict(), choice) if choice else []
        save_pretrained(model, folder, vocab_file=vocab, dtype=dtype, int8=keys)
    finally:
        model.softmax = softmax
    size = sum(path.stat().st_size for path in folder.iterdir())
    return load_model(folder), size


def vector_differences(reference: list[np.ndarray], other: list[np.ndarray]) -> list[tuple[float, float, float]]:
    """Per layer: max |difference|, mean and lowest per-token cosine over all sentences."""
    a = np.concatenate(reference, axis=1)  # (L+1, N, 2P)
    b = np.concatenate(other, axis=1)  # (L+1, N, 2P)
    cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)  # (L+1, N)
    return [(float(np.abs(a[k] - b[k]).max()), float(cosine[k].mean()), float(cosine[k].min()))
            for k in range(a.shape[0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--valid", required=True, help="validation text (one sentence per line)")
    parser.add_argument("--batches", type=int, default=100, help="stateful batches to read (default 100)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--unroll", type=int, default=20)
    parser.add_argument("--scratch", type=Path, default=Path("bundle_store_scratch"),
                        help="where the folders are written (removed at the end)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    reference = load_run_model(args.run_dir)
    vocab_path = args.run_dir / "vocab.txt"
    sentences = test_sentences()
    reference_vectors = list(Embedder(reference).embed_sentences(sentences))
    models: dict[str, ElmoBiLM] = {"float32": reference}
    sizes: dict[str, int] = {}
    vectors: dict[str, list] = {}
    for store in STORES:
        model, sizes[store] = stored(reference, store, args.scratch / store.replace(" ", "-"), vocab_path)
        model.softmax = reference.softmax  # the run's float32 softmax, shared
        models[store] = model
        vectors[store] = vector_differences(reference_vectors, list(Embedder(model).embed_sentences(sentences)))
        print(f"{store}: {sizes[store] / 1e6:.2f} MB, vectors {vectors[store]}", file=sys.stderr, flush=True)
    shutil.rmtree(args.scratch, ignore_errors=True)

    vocab = Vocabulary.load(vocab_path)
    totals = {}
    for name, model in models.items():
        start = time.perf_counter()
        totals[name] = stateful_totals(model, args.valid, vocab, args.batch_size, args.unroll, max_batches=args.batches)
        print(f"{name}: ppl {totals[name].record()['ppl']:.3f} ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr, flush=True)

    base = totals["float32"].record()
    print(f"run {args.run_dir}; valid {args.valid}: {base['tokens']:,} targets per direction "
          f"({args.batches} batches of {args.batch_size} x {args.unroll}); CPU {describe_this_cpu()}, 1 thread\n")
    print("| store | MB | ppl fwd / bwd / avg | avg vs float32 | layer 0 max abs / mean cos / min cos "
          "| layer 1 | layer 2 |")
    print("|---|---|---|---|---|---|---|")
    for name in models:
        record = totals[name].record()
        cells = [f"{m:.2e} / {c:.6f} / {low:.5f}" for m, c, low in vectors.get(name, [])] or ["exact"] * 3
        size = f"{sizes[name] / 1e6:.2f}" if name in sizes else "(float32)"
        print(f"| {name} | {size} | {record['forward_ppl']:.3f} / {record['backward_ppl']:.3f} / {record['ppl']:.3f} "
              f"| {100 * (record['ppl'] / base['ppl'] - 1):+.3f}% | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
