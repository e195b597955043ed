"""Shards of a corpus embedding: what each holds (`CorpusSettings`), where the model comes from
(`ModelSpec`), the shards of the input lines (`plan_shards`), and `ShardWriter`, which embeds one shard
into a Parquet file. Shared by the local engine (`corpus_embed`) and the Ray engine (`corpus_ray`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .embed import Embedder, Layers, select_layers, sentence_vector
from .errors import ElmoError
from .io.atomic import atomic_path


@dataclass(frozen=True)
class CorpusSettings:
    """What each shard holds; a resumed run must use the same."""

    layers: Layers = "top"
    """all: `(L+1, n, 2P)` per sentence; top or average: `(n, 2P)`."""
    output: str = "token"
    """token: vectors per token; sentence: their mean over the tokens (`(L+1, 2P)` or `(2P,)`)."""
    dtype: str = "float32"
    """float32 or float16 in the files."""
    tokenize: bool = False
    """Split lines with the built-in tokenizer (else on whitespace)."""
    shard_size: int = 10_000
    """Lines per shard."""


@dataclass(frozen=True)
class ModelSpec:
    """Where each worker opens the model (folders or files, so that any process can)."""

    model_dir: str | None = None
    options_file: str | None = None
    weight_file: str | None = None

    def open(self):
        from .bundled import open_model

        return open_model(self.model_dir, self.options_file, self.weight_file)


@dataclass(frozen=True)
class Shard:
    """One shard's place in the corpus."""

    name: str
    file: str
    first_line: int
    """1-based line of `file` where the shard starts."""
    offset: int
    """Byte offset of that line."""
    rows: int
    first_id: int


def plan_shards(inputs: list[Path], shard_size: int) -> tuple[list[Shard], list[dict]]:
    """Cut the files into shards, checking every line (UTF-8, no NUL byte); also a record per input."""
    shards, records, next_id = [], [], 0
    for path in inputs:
        digest = hashlib.sha256()
        line_number, offset, start = 0, 0, None
        with open(path, "rb") as handle:
            for raw in handle:
                digest.update(raw)
                line_number += 1
                if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw, offset = raw[3:], 3
                _check_line(path, line_number, raw)
                if start is None:
                    start = (line_number, offset)
                offset += len(raw)
                if line_number - start[0] + 1 == shard_size:
                    shards.append(Shard(f"shard-{len(shards):05d}.parquet", str(path), start[0], start[1],
                                        shard_size, next_id))
                    next_id += shard_size
                    start = None
        if start is not None:
            rows = line_number - start[0] + 1
            shards.append(Shard(f"shard-{len(shards):05d}.parquet", str(path), start[0], start[1], rows, next_id))
            next_id += rows
        records.append({"path": str(path), "lines": line_number, "sha256": digest.hexdigest()})
    return shards, records


def _check_line(path: Path, number: int, raw: bytes) -> None:
    if b"\x00" in raw:
        raise ElmoError(f"{path}, line {number}: contains a NUL byte; is this a text file?")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ElmoError(f"{path}, line {number}: invalid UTF-8 at byte {error.start}") from None


def read_shard_lines(shard: Shard) -> list[str]:
    """The shard's lines, without line endings."""
    with open(shard.file, "rb") as handle:
        handle.seek(shard.offset)
        return [handle.readline().decode("utf-8").rstrip("\n").rstrip("\r") for _ in range(shard.rows)]


def model_hash(model) -> str:
    """SHA-256 over the model's weight names and float32 values: the same weights, the same hash."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ShardWriter:
    """Embeds shards with one model and writes them; one per process (or Ray actor)."""

    def __init__(self, model: ModelSpec, settings: CorpusSettings, out_dir: str, batch_size: int = 64,
                 threads: int | None = None, opened=None) -> None:
        """`opened`: the model already loaded from `model`, if this process has it."""
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.embedder = Embedder(opened if opened is not None else model.open(), batch_size=batch_size)
        self.settings = settings
        self.out_dir = Path(out_dir)

    def write(self, shard: Shard) -> dict:
        """Embed and write one shard atomically; its manifest entry."""
        from .tokenize import tokenize

        settings = self.settings
        lines = read_shard_lines(shard)
        token_lists = [tokenize(line) if settings.tokenize else line.split() for line in lines]
        vectors = self.embedder.encode(token_lists, layers="all")
        chosen = [select_layers(v, settings.layers) for v in vectors]
        if settings.output == "sentence":
            chosen = [sentence_vector(v, settings.layers) for v in chosen]
        table = _table(shard, lines, token_lists, chosen, settings)
        path = self.out_dir / shard.name
        with atomic_path(path) as temporary:
            import pyarrow.parquet as pq

            pq.write_table(table, temporary, compression="zstd")
        return {**asdict(shard), "sha256": file_hash(path), "bytes": path.stat().st_size}


def _table(shard: Shard, lines, token_lists, vectors: list[np.ndarray], settings: CorpusSettings):
    """The shard as an Arrow table; `vectors` nested as their numpy shapes (`(L+1, n, 2P)` etc.)."""
    import pyarrow as pa

    dtype = np.float16 if settings.dtype == "float16" else np.float32
    n = len(lines)
    columns = {
        "id": pa.array(np.arange(shard.first_id, shard.first_id + n, dtype=np.int64)),
        "file": pa.array([shard.file] * n, pa.string()),
        "line": pa.array(np.arange(shard.first_line, shard.first_line + n, dtype=np.int64)),
        "text": pa.array(lines, pa.string()),
        "tokens": pa.array(token_lists, pa.list_(pa.string())),
        "vectors": _nested(vectors, dtype, all_layers=settings.layers == "all", per_token=settings.output == "token"),
    }
    return pa.table(columns)


def _nested(vectors: list[np.ndarray], dtype, all_layers: bool, per_token: bool):
    """One Arrow list column from per-row arrays: fixed-size lists for the fixed axes, lists for tokens."""
    import pyarrow as pa

    if per_token and all_layers:  # (L+1, n, 2P) -> layers of token lists: stored as (L+1) x list x 2P
        n_layers, width = vectors[0].shape[0], vectors[0].shape[2]
        flat = np.concatenate([v.reshape(-1) for v in vectors]).astype(dtype)
        values = pa.FixedSizeListArray.from_arrays(pa.array(flat), width)
        counts = np.repeat([v.shape[1] for v in vectors], n_layers)
        tokens = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)), values)
        return pa.FixedSizeListArray.from_arrays(tokens, n_layers)
    if per_token:  # (n, 2P)
        width = vectors[0].shape[-1]
        flat = np.concatenate([v.reshape(-1) for v in vectors]).astype(dtype)
        values = pa.FixedSizeListArray.from_arrays(pa.array(flat), width)
        counts = [v.shape[0] for v in vectors]
        return pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)), values)
    stacked = np.stack(vectors).astype(dtype)  # (N, 2P) or (N, L+1, 2P)
    column = pa.FixedSizeListArray.from_arrays(pa.array(stacked.reshape(-1)), stacked.shape[-1])
    if stacked.ndim == 3:
        column = pa.FixedSizeListArray.from_arrays(column, stacked.shape[1])
    return column


def read_vectors(path: str | Path) -> list[np.ndarray]:
    """The `vectors` column of a shard back as one numpy array per row, in its stored dtype."""
    import pyarrow.parquet as pq

    column = pq.read_table(path, columns=["vectors"]).column("vectors")
    arrow_type = column.type
    while hasattr(arrow_type, "value_type"):
        arrow_type = arrow_type.value_type
    dtype = np.dtype(arrow_type.to_pandas_dtype())
    return [np.asarray(row, dtype=dtype) for row in column.to_pylist()]


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
