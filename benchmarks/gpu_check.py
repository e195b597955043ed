"""The first run on a GPU, in one script of at most about 5 minutes: exactness, embedding speed, training.

1. The reference fixture model (tests/fixtures/allennlp, or ../shared/fixtures/allennlp) embeds its
   sentences on the GPU and on the CPU: the largest difference must be at most 1e-5.
2. Seeded random weights of the original size (`embed_speed.write_random_model`) embed the bench
   sentences at float32, bfloat16 and float16: tokens/s, peak GPU memory, mean cosine to float32.
3. The `small` training preset trains 50 steps on the bench sentences: tokens/s, peak memory, and
   the last logged losses.
4. A fused-step estimate: a step of one layer and direction reads its recurrent and projection
   weights once; at the GPU's measured copy bandwidth that bounds the tokens/s of a kernel that
   fuses the step (docs/GPU.md), against what the unfused step reaches here.

`--dry-run` runs the same code on the CPU with small stand-ins (the small size, 20 sentences, the
`tiny` preset for 2 steps) so that the script cannot rot: tests/test_gpu_check.py runs it.

Run: python benchmarks/gpu_check.py [--dry-run] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_speed import BENCH, SIZES, write_random_model  # noqa: E402

from elmo_lm.cpu_features import describe_this_cpu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIRS = [ROOT / "tests/fixtures", ROOT.parent / "shared/fixtures"]
EXACT_TOLERANCE = 1e-5


def bench_sentences() -> list[list[str]]:
    """The bench sentences: the tests' copy where present, else embed_speed.py's."""
    copy = ROOT / "tests/fixtures/bench/bench_sentences.json"
    return json.loads((copy if copy.is_file() else BENCH).read_text())


def fixtures() -> Path:
    """The first fixtures folder that exists."""
    for folder in FIXTURE_DIRS:
        if (folder / "allennlp/options.json").is_file():
            return folder
    raise SystemExit(f"no fixtures found in {' or '.join(map(str, FIXTURE_DIRS))}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory allocated on the GPU since the last reset (None on the CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def copy_bandwidth(device: torch.device, megabytes: int) -> float:
    """Bytes per second of a device-to-device copy (read + write), best of 5."""
    source = torch.empty(megabytes * 2**18, device=device)  # float32
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best


def check_fixtures(device: torch.device) -> dict:
    """The fixture model on `device` against the CPU: the largest absolute difference."""
    from elmo_lm import Embedder

    allennlp = fixtures() / "allennlp"
    model = dict(options_file=allennlp / "options.json", weight_file=allennlp / "lm_weights.hdf5")
    sentences = [line.split() for line in (allennlp / "sentences.txt").read_text().splitlines()]
    on_cpu = Embedder(**model).encode(sentences)
    on_device = Embedder(**model, device=device).encode(sentences)
    largest = max(float(np.abs(a - b).max()) for a, b in zip(on_cpu, on_device) if a.size)
    return {"max_abs_diff": largest, "ok": largest <= EXACT_TOLERANCE}


def embed_speeds(device: torch.device, size: str, sentences: list[list[str]], folder: Path) -> list[dict]:
    """Tokens/s, peak memory and mean cosine to float32 at each precision for the bench sentences."""
    from elmo_lm import Embedder

    options, weights = write_random_model(size, folder)
    n_tokens = sum(len(s) for s in sentences)
    rows, exact = [], None
    for precision in ("float32", "bfloat16", "float16"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the slow-bfloat16 / float16-on-CPU warnings
            embedder = Embedder(options_file=options, weight_file=weights, device=device, precision=precision,
                                batch_size=32)
        embedder.encode(sentences[:32])  # warm-up
        reset_peak(device)
        synchronize(device)
        start = time.perf_counter()
        vectors = embedder.encode(sentences)
        synchronize(device)
        seconds = time.perf_counter() - start
        exact = vectors if exact is None else exact
        cosines = [((a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30))
                   .ravel() for a, b in zip(exact, vectors)]
        rows.append({"size": size, "precision": precision, "tokens_per_s": n_tokens / seconds,
                     "peak_memory_mb": peak_memory_mb(device), "mean_cosine": float(np.concatenate(cosines).mean())})
        del embedder
    return rows


def train_steps(device: torch.device, preset_name: str, steps: int, folder: Path) -> dict:
    """Train a preset for `steps` steps on the bench sentences (repeated to fill them; the bilm-tf
    fixture's vocabulary): tokens/s, peak memory, the log's last lines."""
    from elmo_lm.training.config import preset
    from elmo_lm.training.loop import train

    config = preset(preset_name).replace(max_steps=steps, epochs=None, log_every=1, valid_every=10**9,
                                         checkpoint_every=10**9)
    bench = [" ".join(s) for s in bench_sentences()]
    needed = steps * config.batch_size * config.unroll_steps
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(bench * (needed // sum(len(s.split()) for s in bench) + 1)) + "\n", encoding="utf-8")
    lines: list[str] = []
    reset_peak(device)
    start = time.perf_counter()
    train(config, [str(corpus)], fixtures() / "bilm-tf/train/vocab.txt", folder / f"train-{preset_name}",
          device=device.type, quiet=True, log=lines.append)
    synchronize(device)
    seconds = time.perf_counter() - start
    done = next((re.search(r"([\d,]+) tokens", line) for line in reversed(lines) if line.startswith("done")), None)
    tokens = int(done[1].replace(",", "")) if done else needed
    return {"preset": preset_name, "steps": steps, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "peak_memory_mb": peak_memory_mb(device), "log_tail": lines[-3:]}


def fused_step_estimate(size: str, bandwidth: float, batch: int, measured: float) -> list[dict]:
    """Per precision: the tokens/s bound of a fused LSTMP step that reads each step's weights once."""
    shape = SIZES[size]
    C, P, layers = shape["lstm_dim"], shape["projection_dim"], 2
    weights_per_step = (P * 4 * C + C * P) * layers * 2  # recurrent + projection, every layer and direction
    rows = []
    for precision, width in (("float32", 4), ("bfloat16", 2), ("float16", 2)):
        seconds_per_step = weights_per_step * width / bandwidth
        rows.append({"precision": precision, "bytes_per_step": weights_per_step * width,
                     "tokens_per_s_bound": batch / seconds_per_step})
    rows.append({"measured_float32_tokens_per_s": measured})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, with small stand-ins (for CI)")
    parser.add_argument("--out", help="also write the report as JSON here")
    args = parser.parse_args()
    if args.dry_run:
        device, size, n_sentences, train_preset, steps, copy_mb = torch.device("cpu"), "small", 20, "tiny", 2, 64
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no GPU is available to PyTorch; use --dry-run to check the script on the CPU")
        device, size, n_sentences, train_preset, steps, copy_mb = torch.device("cuda"), "original", None, "small", 50, 1024
    began = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else describe_this_cpu()
    report: dict = {"device": name, "torch": torch.__version__, "dry_run": args.dry_run}
    print(f"device: {name}; torch {torch.__version__}", flush=True)

    report["fixtures"] = check_fixtures(device)
    print(f"fixtures, {device.type} vs CPU: max abs diff {report['fixtures']['max_abs_diff']:.1e} "
          f"({'ok' if report['fixtures']['ok'] else 'FAILED'}, bound {EXACT_TOLERANCE:g})", flush=True)

    sentences = bench_sentences()[:n_sentences]
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        report["embed"] = embed_speeds(device, size, sentences, folder)
        for row in report["embed"]:
            memory = f"{row['peak_memory_mb']:,.0f} MB" if row["peak_memory_mb"] is not None else "n/a"
            print(f"embed {size} {row['precision']}: {row['tokens_per_s']:,.0f} tokens/s, peak {memory}, "
                  f"mean cosine to float32 {row['mean_cosine']:.6f}", flush=True)
        report["train"] = train_steps(device, train_preset, steps, folder)
        train_row = report["train"]
        memory = f"{train_row['peak_memory_mb']:,.0f} MB" if train_row["peak_memory_mb"] is not None else "n/a"
        print(f"train {train_preset}, {steps} steps: {train_row['tokens_per_s']:,.0f} tokens/s, peak {memory}; "
              f"last log lines: {train_row['log_tail']}", flush=True)

    bandwidth = copy_bandwidth(device, copy_mb)
    report["bandwidth_gb_s"] = bandwidth / 1e9
    report["fused_step"] = fused_step_estimate(size, bandwidth, 32, report["embed"][0]["tokens_per_s"])
    print(f"copy bandwidth {bandwidth / 1e9:,.0f} GB/s; a fused step reading each step's weights once at that "
          f"rate, batch 32, {size} size: " + ", ".join(
              f"{row['precision']} <= {row['tokens_per_s_bound']:,.0f} tokens/s"
              for row in report["fused_step"] if "precision" in row)
          + f" (unfused, measured above: {report['embed'][0]['tokens_per_s']:,.0f})", flush=True)
    report["seconds"] = time.perf_counter() - began
    print(f"done in {report['seconds']:.0f} s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    if not report["fixtures"]["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
