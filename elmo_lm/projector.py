"""TensorBoard projector files of a reference set's contextual vectors: `tensors.tsv` and `metadata.tsv`.

Load them at https://projector.tensorflow.org ("Load": the two files) or in TensorBoard's projector.
One row per reference token at one layer (unit length, as `ContextIndex` keeps them), plus the
query word's own vector first when given; the metadata names the token, its line and its context.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io.atomic import atomic_path
from .neighbors import ContextIndex


def export_projector(index: ContextIndex, out_dir: str | Path, layer: int, lines: list[int] | None = None,
                     query: tuple[np.ndarray, list[str], int] | None = None) -> int:
    """Write `tensors.tsv` and `metadata.tsv` for `layer` into `out_dir`; returns the number of rows.

    Args:
        index: the embedded reference set.
        layer: 0..L.
        lines: the file line of each reference sentence (default: its 1-based position).
        query: the query's `(L+1, n, 2P)` layers, its tokens and the word's position, added as row 0.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows_meta = []
    vectors = []
    if query is not None:
        layers, tokens, position = query
        vector = layers[layer, position].astype(np.float32)  # (2P,)
        vectors.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        rows_meta.append((tokens[position], "query", _context(tokens, position)))
    for flat in range(index.vectors.shape[1]):
        sentence, position = int(index.sentence_of[flat]), int(index.position_of[flat])
        tokens = index.sentences[sentence]
        line = lines[sentence] if lines is not None else sentence + 1
        rows_meta.append((tokens[position], str(line), _context(tokens, position)))
    matrix = np.concatenate([np.stack(vectors), index.vectors[layer].astype(np.float32)]) if vectors else \
        index.vectors[layer].astype(np.float32)  # (rows, 2P)
    with atomic_path(out / "tensors.tsv") as temporary:
        np.savetxt(temporary, matrix, fmt="%.6g", delimiter="\t")
    with atomic_path(out / "metadata.tsv") as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write("token\tline\tcontext\n")
            for row in rows_meta:
                handle.write("\t".join(_clean(value) for value in row) + "\n")
    return len(rows_meta)


def _context(tokens: list[str], position: int) -> str:
    return " ".join(tokens[:position] + [f"[{tokens[position]}]"] + tokens[position + 1:])


def _clean(value: str) -> str:
    """A metadata cell: no TAB or newline (the projector splits on them)."""
    return value.replace("\t", " ").replace("\n", " ").replace("\r", " ")
