"""Embedding speed, peak memory, load time and accuracy of `elmo_lm.Embedder` on the bench sentences.

Builds seeded random weights of the original (2x4096_512) and small (2x1024_128) shapes, writes
them as `options.json` + `weights.hdf5`, and runs each (precision, size) configuration in its own
process: load through the public API (timed), one warm-up pass, then `--passes` timed passes of
`Embedder.encode` over `../shared/bench/bench_sentences.json` (beside the project) (file order, batch 32). Accuracy
is measured against `reference_layers` below: a plain per-step float32 forward pass written from
ELMO.md, reading the hdf5 file itself, that shares no code with the library.

Each configuration runs in `--repeats` processes (round robin), so the figures are medians over
several processes; the CPU share column (the process's CPU time over wall time and threads) drops
below about 0.95 when another job competes for the cores. Tokens per CPU-second (tokens over the
process's CPU time) stays comparable under such competition when run on one thread
(`OMP_NUM_THREADS=1`; with more, threads waiting for each other also count as CPU time). Every
table records the CPU model and its vector flags.

With `--reference-python PYTHON` (a venv with AllenNLP, see `reference_allennlp.py`), each round
also runs the reference on the same weights and sentences right after this project's float32 process
for that size, and a second table gives the pairs (this project's float32 against the reference,
tokens/s, each process's median pass) and their median ratio.

Run: nice python benchmarks/embed_speed.py [--sizes original small] [--precisions float32 bfloat16 int8]
     [--passes 3] [--repeats 3] [--cache] [--reference-python /tmp/allennlp-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

BENCH = Path(__file__).resolve().parents[2] / "shared/bench/bench_sentences.json"
SIZES = {"original": dict(lstm_dim=4096, projection_dim=512, n_highway=2),
         "small": dict(lstm_dim=1024, projection_dim=128, n_highway=1)}


def write_random_model(size: str, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Seeded random weights of a released shape, written in the AllenNLP layout."""
    from elmo_lm import ElmoBiLM, ModelConfig
    from elmo_lm.io import save_allennlp_weights

    torch.manual_seed(seed)
    config = ModelConfig(**SIZES[size])
    model = ElmoBiLM(config)
    with torch.no_grad():
        for k in range(config.n_highway):
            model.token_encoder.highway_carry[k].bias.fill_(-2.0)  # as at the start of training
        for bias in model.lstm.bias:
            bias.uniform_(-0.1, 0.1)
    options, weights = folder / f"{size}_options.json", folder / f"{size}_weights.hdf5"
    save_allennlp_weights(config, model.state_dict(), options, weights)
    return options, weights


# ---- the plain float32 reference: one step at a time, straight from ELMO.md and the hdf5 file ----

def _token_vectors(h5: h5py.File, options: dict, sentences: list[list[str]]) -> list[torch.Tensor]:
    """Context-free vectors of `<S> w1 .. wn </S>` for each sentence: CNN, highway, projection."""
    cnn = options["char_cnn"]

    def char_ids(token: str) -> list[int]:
        specials = {"<S>": [256], "</S>": [257]}
        raw = specials.get(token) or list(token.encode("utf-8", "ignore")[:48])
        return ([258] + raw + [259] + [260] * 50)[:50]  # raw ids, no +1 shift: the file's table

    table = torch.from_numpy(h5["char_embed"][...])  # (261, e)
    vectors = []
    for sentence in sentences:
        ids = torch.tensor([char_ids(t) for t in ["<S>", *sentence, "</S>"]])  # (n+2, 50)
        chars = table[ids]  # (n+2, 50, e)
        features = []
        for i, (width, _) in enumerate(cnn["filters"]):
            kernel = torch.from_numpy(h5[f"CNN/W_cnn_{i}"][0])  # (w, e, n_i)
            windows = chars.unfold(1, width, 1)  # (n+2, 50-w+1, e, w)
            conv = torch.einsum("tpew,wen->tpn", windows, kernel) + torch.from_numpy(h5[f"CNN/b_cnn_{i}"][...])
            features.append(conv.max(dim=1).values)  # (n+2, n_i)
        x = torch.cat(features, dim=1)  # (n+2, F)
        x = torch.relu(x) if cnn["activation"] == "relu" else torch.tanh(x)
        for k in range(cnn.get("n_highway", 0)):
            g = torch.sigmoid(x @ torch.from_numpy(h5[f"CNN_high_{k}/W_carry"][...]) + torch.from_numpy(
                h5[f"CNN_high_{k}/b_carry"][...]))
            t = torch.relu(x @ torch.from_numpy(h5[f"CNN_high_{k}/W_transform"][...]) + torch.from_numpy(
                h5[f"CNN_high_{k}/b_transform"][...]))
            x = g * t + (1 - g) * x
        vectors.append(x @ torch.from_numpy(h5["CNN_proj/W_proj"][...]) + torch.from_numpy(h5["CNN_proj/b_proj"][...]))
    return vectors


def _run_direction(h5: h5py.File, lstm: dict, direction: int, inputs: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Each layer's outputs for each sentence (in reading order), all sentences as one padded batch."""
    lengths = [len(x) for x in inputs]
    layer_outputs = []
    layer_input = inputs
    for layer in range(lstm["n_layers"]):
        name = f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/"
        w0 = torch.from_numpy(h5[name + "W_0"][...])  # (2P, 4C)
        b = torch.from_numpy(h5[name + "B"][...])  # (4C,)
        wp = torch.from_numpy(h5[name + "W_P_0"][...])  # (C, P)
        n, C, P = len(inputs), lstm["dim"], lstm["projection_dim"]
        c, m = torch.zeros(n, C), torch.zeros(n, P)
        outputs = [[] for _ in range(n)]
        for t in range(max(lengths)):
            x = torch.stack([s[t] if t < len(s) else torch.zeros(P) for s in layer_input])  # (n, P)
            z = torch.cat([x, m], dim=1) @ w0 + b  # (n, 4C), blocks i, j, f, o
            i, j, f, o = z.split(C, dim=1)
            c_new = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
            if lstm.get("cell_clip"):
                c_new = c_new.clamp(-lstm["cell_clip"], lstm["cell_clip"])
            m_new = (torch.sigmoid(o) * torch.tanh(c_new)) @ wp
            if lstm.get("proj_clip"):
                m_new = m_new.clamp(-lstm["proj_clip"], lstm["proj_clip"])
            for row in range(n):
                if t < lengths[row]:
                    c[row], m[row] = c_new[row], m_new[row]
                    residual = layer_input[row][t] if layer > 0 and lstm.get("use_skip_connections") else 0
                    outputs[row].append(m_new[row] + residual)
        layer_outputs.append(outputs)
        layer_input = [torch.stack(rows) for rows in outputs]
    return layer_outputs


def reference_layers(options_file: Path, weight_file: Path, sentences: list[list[str]]) -> list[np.ndarray]:
    """`(L+1, n, 2P)` per sentence, plain float32, each step computed as in ELMO.md section 1."""
    options = json.loads(options_file.read_text())
    torch.set_num_threads(2)
    with torch.no_grad(), h5py.File(weight_file, "r") as h5:
        tokens = _token_vectors(h5, options, sentences)  # each (n+2, P)
        forward = _run_direction(h5, options["lstm"], 0, tokens)
        backward = _run_direction(h5, options["lstm"], 1, [x.flip(0) for x in tokens])
    results = []
    for s, sentence in enumerate(sentences):
        n = len(sentence)
        layers = [torch.cat([tokens[s], tokens[s]], dim=1)]
        for fwd, bwd in zip(forward, backward):
            layers.append(torch.cat([torch.stack(fwd[s]), torch.stack(bwd[s]).flip(0)], dim=1))
        results.append(torch.stack(layers)[:, 1 : n + 1].numpy())  # drop <S> and </S>
    return results


# ---- one configuration, in its own process ----

def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Unlike `ru_maxrss`, which survives fork and exec
    and so counts the parent's memory too, VmHWM belongs to this process's own address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux

def run_configuration(size: str, precision: str, folder: Path, passes: int, batch_size: int, cache: bool) -> dict:
    """Load, warm up, time `passes` passes; return figures as a dict (run in a child process)."""
    from elmo_lm import Embedder
    from elmo_lm.cpu_features import describe_this_cpu

    sentences = json.loads(BENCH.read_text())
    n_tokens = sum(len(s) for s in sentences)
    start = time.perf_counter()
    extra = {"precision": precision} if precision != "float32" else {}
    if cache:
        extra["token_cache"] = True
    embedder = Embedder(options_file=folder / f"{size}_options.json", weight_file=folder / f"{size}_weights.hdf5",
                        batch_size=batch_size, tune_allocator=True, **extra)  # as `elmo embed`
    load_seconds = time.perf_counter() - start
    embedder.encode(sentences)  # warm-up (its vectors are dropped at once)
    times, busy, cpu_times = [], [], []
    outputs = None
    for _ in range(passes):
        outputs = None  # hold one pass's vectors at a time, as a user embedding a corpus would
        start, cpu = time.perf_counter(), time.process_time()
        outputs = embedder.encode(sentences)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
        busy.append(cpu_times[-1] / times[-1] / torch.get_num_threads())
    reference = np.load(folder / f"{size}_reference.npz")
    max_diff, cosines = 0.0, []
    for s, output in enumerate(outputs):
        expected = reference[str(s)]  # (L+1, n, 2P)
        max_diff = max(max_diff, float(np.abs(output - expected).max()))
        dot = (output * expected).sum(-1)
        norms = np.linalg.norm(output, axis=-1) * np.linalg.norm(expected, axis=-1)
        cosines.append(dot / np.maximum(norms, 1e-30))  # (L+1, n)
    per_layer = np.concatenate(cosines, axis=1)  # (L+1, N)
    return {"size": size, "precision": precision, "cache": cache, "tokens_per_s": n_tokens / statistics.median(times),
            "all_tokens_per_s": [round(n_tokens / t) for t in times], "threads": torch.get_num_threads(),
            "cpu_share": [round(b, 2) for b in busy], "tokens_per_cpu_s": [round(n_tokens / t) for t in cpu_times],
            "peak_rss_mb": peak_rss_mb(),
            "load_s": load_seconds, "max_abs_diff": max_diff, "mean_cosine": float(per_layer.mean()),
            "layer_mean_cosine": [round(float(c), 6) for c in per_layer.mean(axis=1)],
            "layer_worst_cosine": [round(float(c), 6) for c in per_layer.min(axis=1)], "cpu": describe_this_cpu()}


def _child(args: argparse.Namespace) -> None:
    result = run_configuration(args.size, args.precision, Path(args.folder), args.passes, args.batch_size,
                               args.cache)
    print(json.dumps(result))


def _reference_child(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    sentences = json.loads(BENCH.read_text())
    layers = reference_layers(folder / f"{args.size}_options.json", folder / f"{args.size}_weights.hdf5", sentences)
    np.savez(folder / f"{args.size}_reference.npz", **{str(i): a for i, a in enumerate(layers)})


def _child_result(command: list[str]) -> dict:
    """Run one measuring process (its errors go to stderr); its last line of output, a JSON object (echoed
    to stderr)."""
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    print(output, file=sys.stderr, flush=True)
    return json.loads(output)


def print_pairs(runs: dict[tuple, list[dict]], references: dict[str, list[dict]]) -> None:
    """The float32 and reference processes of each round as pairs (each process's median pass), and the
    median of their ratios per size."""
    print("\nPairs, this project's float32 against AllenNLP's Elmo, one round each (process medians, tokens/s):")
    print("| size | pairs | float32 | reference | ratios | median ratio |")
    print("|---|---:|---|---|---|---:|")
    for size, reference in references.items():
        ours = [statistics.median(r["all_tokens_per_s"]) for r in runs.get(("float32", size, False), [])]
        theirs = [statistics.median(r["tokens_per_s"]) for r in reference]
        ratios = [a / b for a, b in zip(ours, theirs)]
        if ratios:
            print(f"| {size} | {len(ratios)} | {', '.join(f'{a:,.0f}' for a in ours)} | "
                  f"{', '.join(f'{b:,.0f}' for b in theirs)} | {', '.join(f'{r:.2f}' for r in ratios)} | "
                  f"{statistics.median(ratios):.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["original", "small"], choices=list(SIZES))
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "int8"])
    parser.add_argument("--passes", type=int, default=3, help="timed passes per process, after one warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="processes per configuration (peak RSS: the largest)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", action="store_true", help="also run with the token-vector cache on")
    parser.add_argument("--folder", help="reuse a folder of weights and references (created when missing)")
    parser.add_argument("--reference-python", help="a Python with AllenNLP: run the reference in each round too")
    parser.add_argument("--child", choices=["run", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--cache-on", dest="cache_on", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "run":
        args.cache = args.cache_on
        return _child(args)
    if args.child == "reference":
        return _reference_child(args)

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(args.folder or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            if not (folder / f"{size}_reference.npz").is_file():
                write_random_model(size, folder)
                subprocess.run([sys.executable, __file__, "--child", "reference", "--size", size,
                                "--folder", str(folder)], check=True)
        configurations = [(precision, size, cache) for precision in args.precisions for size in args.sizes
                          for cache in ([False, True] if args.cache else [False])]
        runs: dict[tuple, list[dict]] = {c: [] for c in configurations}
        references: dict[str, list[dict]] = {size: [] for size in args.sizes}
        for _ in range(args.repeats):  # round robin, so that a disturbance spreads over all configurations
            for precision, size, cache in configurations:
                command = [sys.executable, __file__, "--child", "run", "--size", size, "--precision", precision,
                           "--folder", str(folder), "--passes", str(args.passes),
                           "--batch-size", str(args.batch_size)] + (["--cache-on"] if cache else [])
                runs[(precision, size, cache)].append(_child_result(command))
                if args.reference_python and precision == "float32" and not cache:  # its pair, right after
                    references[size].append(_child_result([
                        args.reference_python, str(Path(__file__).with_name("reference_allennlp.py")), str(folder),
                        "--child", size, "--passes", str(args.passes), "--batch-size", str(args.batch_size)]))
        print(f"{args.repeats} processes x {args.passes} timed passes per configuration, batch {args.batch_size}, "
              f"{runs[configurations[0]][0]['threads']} threads, torch {torch.__version__}; tokens/s: median over "
              f"all passes\nCPU: {runs[configurations[0]][0]['cpu']}")
        print("| precision | size | token cache | tokens/s | tokens per CPU-s | peak RSS | load | max abs diff | "
              "mean cosine | CPU share |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for (precision, size, cache), results in runs.items():
            speeds = [speed for r in results for speed in r["all_tokens_per_s"]]
            shares = [share for r in results for share in r["cpu_share"]]
            per_cpu = statistics.median(speed for r in results for speed in r["tokens_per_cpu_s"])
            print(f"| {precision} | {size} | {'on' if cache else 'off'} | {statistics.median(speeds):,.0f} | {per_cpu:,.0f} | "
                  f"{max(r['peak_rss_mb'] for r in results):,.0f} MB | "
                  f"{statistics.median(r['load_s'] for r in results):.2f} s | "
                  f"{max(r['max_abs_diff'] for r in results):.1e} | {results[0]['mean_cosine']:.6f} | "
                  f"{min(shares):.2f}-{max(shares):.2f} |")
        if args.reference_python:
            print_pairs(runs, references)
        print("\nCosine to the float32 reference per layer (mean / worst token), from each configuration's first process:")
        for (precision, size, cache), results in runs.items():
            layers = ", ".join(f"{m:.6f} / {w:.6f}" for m, w in zip(results[0]["layer_mean_cosine"],
                                                                    results[0]["layer_worst_cosine"]))
            print(f"- {precision} {size}{' (cache)' if cache else ''}: {layers}")


if __name__ == "__main__":
    main()
