"""Plot what an ELMo model does with ambiguous words, and what a task head learned to use.

For each ambiguous word, the contextual vectors of its occurrences across sentences are
projected to 2-D (PCA, per layer) and coloured by sense: layer 0 (context-free) puts every
occurrence on one point, the LSTM layers should pull the senses apart. Each panel's title gives
the leave-one-out nearest-neighbour sense accuracy (cosine) in that layer. With `--head`, a last
panel shows the learned scalar-mix weights of each trained head (`elmo task train` folders, or the
`--heads-out` folders of scripts/evaluate_downstream.py).

    python scripts/plot_senses.py --model MODEL_DIR --out senses.png [--head HEAD_DIR ...]
    python scripts/plot_senses.py --options options.json --weights weights.hdf5 --out senses.png

`--sentences FILE` replaces the built-in examples: one `word<TAB>sense<TAB>sentence` per line.
Needs matplotlib (`pip install elmo-lm[plot]`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from elmo_lm import Embedder, ElmoError  # noqa: E402
from elmo_lm.neighbors import find_word  # noqa: E402
from elmo_lm.tasks.run import ModelSource  # noqa: E402
from elmo_lm.textfile import read_lines  # noqa: E402
from elmo_lm.tokenize import tokenize  # noqa: E402

EXAMPLES = {
    "bank": {
        "river": ["We had a picnic on the grassy bank of the river .",
                  "The boat drifted towards the muddy bank .",
                  "Reeds grew thick along the bank of the stream .",
                  "He climbed up the steep bank and looked at the water .",
                  "The flood washed away part of the east bank ."],
        "money": ["She opened a savings account at the bank .",
                  "The bank raised its interest rates on Monday .",
                  "He asked the bank for a loan to buy a house .",
                  "The central bank warned about rising prices .",
                  "I need to transfer money from my bank to yours ."],
    },
    "play": {
        "theatre": ["The play opened on Broadway last night .",
                    "Shakespeare wrote the play in 1606 .",
                    "The actors rehearsed the new play for weeks .",
                    "We saw a wonderful play at the local theatre .",
                    "The critics hated the play but audiences loved it ."],
        "game": ["The children went outside to play football .",
                 "They play tennis every Sunday morning .",
                 "Can the kids play in the garden after lunch ?",
                 "The team will play its final match on Saturday .",
                 "Dogs love to play with a ball ."],
    },
    "light": {
        "illumination": ["Turn on the light , it is getting dark .",
                         "The light from the window fell across the floor .",
                         "Plants need light and water to grow .",
                         "A bright light shone in the distance .",
                         "The speed of light is a physical constant ."],
        "not heavy": ["The bag was light enough for a child to carry .",
                      "She wore a light jacket on the warm evening .",
                      "This laptop is very light and thin .",
                      "We had a light lunch before the walk .",
                      "The box felt surprisingly light ."],
    },
}
"""word -> sense -> sentences, written for this script."""


def read_examples(path: Path) -> dict[str, dict[str, list[str]]]:
    """`word<TAB>sense<TAB>sentence` lines -> word -> sense -> sentences."""
    examples: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ElmoError(f"{path}, line {number}: expected 'word<TAB>sense<TAB>sentence'")
        word, sense, sentence = fields
        examples[word][sense].append(sentence)
    return examples


def all_same(vectors: np.ndarray) -> bool:
    """True if the rows of `(n, d)` are equal up to rounding (as in the context-free layer 0)."""
    spread = np.linalg.norm(vectors - vectors.mean(axis=0))
    return bool(spread <= 1e-5 * max(float(np.linalg.norm(vectors)), 1e-12))


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project `(n, d)` onto its first two principal components: `(n, 2)` (zeros if all rows are equal)."""
    if all_same(vectors):
        return np.zeros((len(vectors), 2))
    centered = vectors - vectors.mean(axis=0)  # (n, d)
    _, _, components = np.linalg.svd(centered, full_matrices=False)  # (k, d)
    projected = centered @ components[:2].T  # (n, <=2)
    return np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))  # (n, 2)


def nearest_neighbour_accuracy(vectors: np.ndarray, senses: list[str]) -> float:
    """Leave-one-out 1-NN accuracy of the sense labels under cosine similarity."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # (n, d)
    similarity = unit @ unit.T  # (n, n)
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    return float(np.mean([senses[i] == senses[j] for i, j in enumerate(nearest)]))


def word_vectors(embedder: Embedder, word: str, by_sense: dict[str, list[str]]) -> tuple[np.ndarray, list[str]]:
    """All layers of `word` in every sentence: `(L+1, n, 2P)`, and the sense of each occurrence."""
    rows, senses = [], []
    for sense, sentences in by_sense.items():
        for sentence in sentences:
            tokens = tokenize(sentence)
            rows.append(embedder.embed_sentence(tokens)[:, find_word(tokens, word)])  # (L+1, 2P)
            senses.append(sense)
    return np.stack(rows, axis=1), senses


def head_weights(folder: Path) -> tuple[str, list[float]]:
    """A head folder's name and learned layer weights (from its metrics.json)."""
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    if not metrics.get("layer_weights"):
        raise ElmoError(f"{folder}: this head has no learned scalar mix")
    return folder.name, metrics["layer_weights"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: the bundled model)")
    parser.add_argument("--options", help="AllenNLP/bilm-tf options.json (with --weights)")
    parser.add_argument("--weights", help="AllenNLP/bilm-tf weights.hdf5 (with --options)")
    parser.add_argument("--sentences", type=Path, help="word<TAB>sense<TAB>sentence lines (default: built-in)")
    parser.add_argument("--head", type=Path, action="append", default=[], help="head folder(s) for the weights panel")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the cores are shared)")
    args = parser.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plotting needs matplotlib: pip install matplotlib")
    import torch

    torch.set_num_threads(args.threads)
    try:
        embedder = Embedder(ModelSource(args.model, args.options, args.weights).load())
        examples = read_examples(args.sentences) if args.sentences else EXAMPLES
        heads = [head_weights(folder) for folder in args.head]
        n_layers = embedder.model.config.n_output_layers
        rows = len(examples) + (1 if heads else 0)
        figure, axes = plt.subplots(rows, n_layers, figsize=(3.6 * n_layers, 3.2 * rows + 0.4), squeeze=False)
        figure.suptitle(f"ELMo model {args.model or args.weights or 'bundled'}: occurrences of ambiguous words, "
                        "PCA per layer", fontsize=10)
        for row, (word, by_sense) in enumerate(examples.items()):
            vectors, senses = word_vectors(embedder, word, by_sense)  # (L+1, n, 2P)
            for layer in range(n_layers):
                axis = axes[row][layer]
                points = pca_2d(vectors[layer])  # (n, 2)
                for sense in by_sense:
                    chosen = [i for i, s in enumerate(senses) if s == sense]
                    axis.scatter(points[chosen, 0], points[chosen, 1], label=sense, s=28, alpha=0.8)
                name = "token layer" if layer == 0 else f"LSTM layer {layer}"
                if all_same(vectors[layer]):
                    score = "one point: no context"
                else:
                    score = f"1-NN sense accuracy {nearest_neighbour_accuracy(vectors[layer], senses):.0%}"
                axis.set_title(f'"{word}", {name}\n{score}', fontsize=9)
                axis.set_xticks([])
                axis.set_yticks([])
                print(f"{word:<8} layer {layer}: {score}")
            axes[row][0].legend(fontsize=8, loc="best")
        if heads:
            # One panel across the whole last row, values on the bars (weights near 1/(L+1) look alike
            # otherwise) and the legend above the bars, not over them.
            grid = axes[-1][0].get_gridspec()
            for axis in axes[-1]:
                axis.remove()
            axis = figure.add_subplot(grid[-1, :])
            width = 0.8 / len(heads)
            for k, (name, weights) in enumerate(heads):
                if len(weights) != n_layers:
                    raise ElmoError(f"{name}: {len(weights)} layer weights, the model has {n_layers} layers")
                bars = axis.bar(np.arange(len(weights)) + k * width, weights, width, label=name)
                axis.bar_label(bars, fmt="%.3f", fontsize=7)
                print(f"{name}: layer weights {' '.join(f'{w:.3f}' for w in weights)}")
            names = ["token layer"] + [f"LSTM layer {j}" for j in range(1, n_layers)]
            axis.set_xticks(np.arange(n_layers) + width * (len(heads) - 1) / 2, names)
            axis.set_ylim(0, 1.35 * max(max(weights) for _, weights in heads))  # room for the legend
            axis.set_ylabel("softmax weight")
            axis.set_title("learned scalar-mix weights of the task heads", fontsize=9)
            axis.legend(fontsize=8, loc="upper center", ncol=len(heads))
        figure.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=110)
    except ElmoError as error:
        sys.exit(f"plot_senses: error: {error}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
