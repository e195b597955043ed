"""Speed and peak memory of the reference implementation, AllenNLP's `Elmo`, on the bench sentences.

The same input and batching as `embed_speed.py` (file order, batch 32, 2 threads), so that the two
tables can be compared as ratios measured on one machine. AllenNLP is archived and pins old
versions of torch and many packages, so it is installed without its dependencies into a venv
that sees this machine's torch; the packages its `__init__` files import but the ELMo modules
never use (spaCy, transformers, ...) are replaced by empty stand-ins at import time. The
numeric code that runs is AllenNLP's own, unmodified.

Setup (once):  python3.11 -m venv /tmp/allennlp-venv
               /tmp/allennlp-venv/bin/pip install torch==2.13.0 h5py numpy tqdm requests
               /tmp/allennlp-venv/bin/pip install --no-deps allennlp==2.10.1
               (pip then lists AllenNLP's unmet pins: expected, the ELMo modules need none of them)
Run:           /tmp/allennlp-venv/bin/python benchmarks/reference_allennlp.py FOLDER [--repeats 3]
or, interleaved with this project's runs in one command (pairs and their median ratio):
               python benchmarks/embed_speed.py --folder FOLDER --reference-python /tmp/allennlp-venv/bin/python
FOLDER holds `{size}_options.json` and `{size}_weights.hdf5` (`embed_speed.py --folder FOLDER` writes them).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "shared/bench/bench_sentences.json"
OPTIONAL = ["transformers", "spacy", "nltk", "cached_path", "lmdb", "termcolor", "overrides", "_jsonnet",
            "base58", "dill", "sentencepiece", "huggingface_hub", "torchvision", "tensorboardX", "wandb",
            "fairscale", "more_itertools", "sklearn", "boto3", "botocore", "google", "rich", "sacremoses",
            "datasets", "traitlets"]
"""Packages AllenNLP imports somewhere; those missing here get a stand-in."""


class _Anything:
    """A stand-in class: any attribute is another stand-in; used as a decorator it changes nothing."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and not kwargs and callable(args[0]) else self

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stand_in(name)

    def __class_getitem__(cls, item):
        return cls


def _stand_in(name: str) -> type:
    class Meta(type):
        def __getattr__(cls, attribute):
            if attribute.startswith("__"):
                raise AttributeError(attribute)
            return _stand_in(attribute)

        def __call__(cls, *args, **kwargs):
            return args[0] if len(args) == 1 and not kwargs and callable(args[0]) else type.__call__(cls)

        def __or__(cls, other):
            return cls

        __ror__ = __or__

    return Meta(name, (_Anything,), {})


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _stand_in(name)
        setattr(self, name, value)
        return value


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots: set[str]) -> None:
        self.roots = roots

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        if module.__name__ == "cached_path":
            module.cached_path = lambda path, **kwargs: str(path)  # local files only


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_size(folder: Path, size: str, passes: int, batch_size: int) -> dict:
    """One process: load (timed), one warm-up pass, `passes` timed passes."""
    sys.meta_path.insert(0, _StandInFinder({name for name in OPTIONAL if importlib.util.find_spec(name) is None}))
    import torch
    from allennlp.modules.elmo import Elmo, batch_to_ids

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))  # as embed_speed.py's processes
    sentences = json.loads(BENCH.read_text())
    n_tokens = sum(len(s) for s in sentences)
    batches = [batch_to_ids(sentences[i : i + batch_size]) for i in range(0, len(sentences), batch_size)]
    start = time.perf_counter()
    elmo = Elmo(str(folder / f"{size}_options.json"), str(folder / f"{size}_weights.hdf5"), 1, dropout=0).eval()
    load_seconds = time.perf_counter() - start

    def one_pass() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for ids in batches:
                elmo(ids)
        return time.perf_counter() - start

    one_pass()
    speeds = [n_tokens / one_pass() for _ in range(passes)]
    return {"size": size, "tokens_per_s": speeds, "peak_rss_mb": _peak_rss_mb(), "load_s": load_seconds,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sizes", nargs="+", default=["original", "small"])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="processes per size, round robin")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_size(args.folder, args.child, args.passes, args.batch_size)))
        return
    runs: dict[str, list[dict]] = {size: [] for size in args.sizes}
    for _ in range(args.repeats):
        for size in args.sizes:
            command = [sys.executable, __file__, str(args.folder), "--child", size, "--passes", str(args.passes),
                       "--batch-size", str(args.batch_size)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[size].append(json.loads(output.strip().splitlines()[-1]))
            print(output.strip().splitlines()[-1], file=sys.stderr, flush=True)
    print(f"AllenNLP Elmo, {args.repeats} processes x {args.passes} timed passes, batch {args.batch_size}, 2 threads")
    print("| size | tokens/s | peak RSS | load |")
    print("|---|---:|---:|---:|")
    for size, results in runs.items():
        speeds = [speed for r in results for speed in r["tokens_per_s"]]
        print(f"| {size} | {statistics.median(speeds):,.0f} | {max(r['peak_rss_mb'] for r in results):,.0f} MB | "
              f"{statistics.median(r['load_s'] for r in results):.2f} s |")


if __name__ == "__main__":
    main()
