"""The exploration page's data: nearest tokens in context, a PCA plot of a word's uses, a head's layer weights.

`Explorer` holds a reference set (one sentence per line, tokens separated by spaces, optionally
`<TAB>label` after the sentence) embedded once at start, and answers the page's questions from the
vectors of a query sentence (which the service computes through its model worker).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..embed import Embedder
from ..errors import ElmoError
from ..neighbors import ContextIndex, find_word
from ..textfile import read_lines


class Explorer:
    """The reference set and the optional task head behind the page."""

    def __init__(self, embedder: Embedder, reference_file: str | Path, head_dir: str | Path | None = None) -> None:
        sentences, labels = [], []
        for number, line in enumerate(read_lines(reference_file), start=1):
            text, _, label = line.partition("\t")
            if text.split():
                sentences.append(text.split())
                labels.append(label.strip() or None)
        if not sentences:
            raise ElmoError(f"{reference_file}: no reference sentences")
        self.labels = labels if any(labels) else None
        self.index = ContextIndex(embedder, sentences)
        self.head = _head_summary(head_dir) if head_dir else None

    def neighbours(self, sentence_layers: np.ndarray, tokens: list[str], word: str, k: int,
                   same_word: bool) -> dict:
        """The page's table: per layer, the `k` nearest reference tokens to `word` of `tokens`."""
        position = find_word(tokens, word)
        results = self.index.nearest(sentence_layers, tokens, position, k=k, same_word=same_word)
        return {"tokens": tokens, "position": position,
                "layers": [{"layer": layer, "neighbours": [
                    {"score": round(n.score, 4), "token": n.token, "sentence": n.sentence, "context": n.context(),
                     "label": self.labels[n.sentence] if self.labels else None} for n in found]}
                    for layer, found in enumerate(results)]}

    def projection(self, word: str, layer: int, query: np.ndarray | None = None) -> dict:
        """The occurrences of `word` at `layer` on their first two principal components (and the query's)."""
        if not 0 <= layer < self.index.n_layers:
            raise ElmoError(f"layer {layer} does not exist: the model has layers 0..{self.index.n_layers - 1}")
        where = self.index.occurrences(word)
        if len(where) == 0:
            raise ElmoError(f"{word!r} does not occur in the reference sentences")
        vectors = self.index.vectors[layer, where].astype(np.float32)  # (M, 2P), unit length
        mean = vectors.mean(axis=0)  # (2P,)
        centred = vectors - mean  # (M, 2P)
        _, singular, directions = np.linalg.svd(centred, full_matrices=False)  # directions (r, 2P)
        axes = np.zeros((2, vectors.shape[1]), np.float32)  # (2, 2P)
        axes[: min(2, len(directions))] = directions[:2]
        coordinates = centred @ axes.T  # (M, 2)
        variance = singular**2
        explained = (variance[:2] / variance.sum()).tolist() if variance.sum() > 0 else [0.0, 0.0]
        points = []
        for (x, y), flat in zip(coordinates.tolist(), where):
            sentence = int(self.index.sentence_of[flat])
            position = int(self.index.position_of[flat])
            tokens = self.index.sentences[sentence]
            points.append({"x": x, "y": y, "sentence": sentence,
                           "label": self.labels[sentence] if self.labels else None,
                           "context": " ".join(tokens[:position] + [f"[{tokens[position]}]"] + tokens[position + 1:])})
        result = {"word": word, "layer": layer, "explained": explained, "points": points}
        if query is not None:
            unit = query / max(float(np.linalg.norm(query)), 1e-12)  # (2P,)
            qx, qy = ((unit - mean) @ axes.T).tolist()
            result["query"] = {"x": qx, "y": qy}
        return result


def _head_summary(head_dir: str | Path) -> dict:
    """A trained head's task, labels and learned layer weights."""
    from ..tasks.folder import load_head

    head = load_head(head_dir)
    return {"folder": str(head_dir), "task": head.config.task, "labels": list(head.config.labels),
            "elmo": head.config.elmo, "layer_weights": head.layer_weights(), "gamma": head.gamma()}
