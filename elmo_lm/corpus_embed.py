"""Embedding a corpus into Parquet shards, resumably: `elmo embed-corpus INPUT_GLOB OUT_DIR`.

The input files (sorted) are cut into shards of `shard_size` consecutive lines, never across a
file; sentence ids number every line of the corpus from 0 in that order (empty lines included, as
`elmo embed` keeps them). Each shard becomes `shard-NNNNN.parquet` with columns `id`, `file`,
`line` (1-based), `text`, `tokens` and `vectors`, written atomically; `manifest.json` holds the
model's hash, the settings, the inputs and, per finished shard, its rows and SHA-256. A rerun with
the same settings skips the shards the manifest lists as finished (their files intact) and redoes
the rest, so a killed run loses at most the shards in flight. The work runs in this process, in
`workers` local processes, or on a Ray cluster (`elmo_lm.corpus_ray`).

Needs pyarrow (`pip install 'elmo-lm[corpus]'`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .embed import Embedder, Layers, select_layers, sentence_vector
from .errors import ElmoError
from .io.atomic import atomic_path

MANIFEST = "manifest.json"
FORMAT = "elmo-lm corpus embeddings 1"


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
        from .bundled import bundled_model_path
        from .io import load_model

        if self.model_dir is None and self.options_file is None:
            return load_model(bundled_model_path())
        return load_model(self.model_dir, self.options_file, self.weight_file)


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
        return {**asdict(shard), "sha256": _file_hash(path), "bytes": path.stat().st_size}


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


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_WORKER: ShardWriter | None = None
"""The process's own writer in a local worker process."""


def _start_worker(model: ModelSpec, settings: CorpusSettings, out_dir: str, batch_size: int, threads: int) -> None:
    global _WORKER
    _WORKER = ShardWriter(model, settings, out_dir, batch_size, threads)


def _write_in_worker(shard: Shard) -> dict:
    assert _WORKER is not None
    return _WORKER.write(shard)


def embed_corpus(
    inputs: str | list[str],
    out_dir: str | Path,
    model: ModelSpec | None = None,
    settings: CorpusSettings | None = None,
    *,
    batch_size: int = 64,
    workers: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Embed every line of the files matching `inputs` into Parquet shards in `out_dir`; the manifest.

    Args:
        inputs: a glob (or several), matched in sorted order.
        out_dir: created if needed; a manifest already there from the same model, settings and
            inputs is resumed, one from others is an error.
        model: which model each worker opens (the bundled one by default).
        settings: layers, output, dtype, tokenizer, shard size.
        batch_size: sentences per model batch.
        workers: processes (local) or actors (ray) embedding shards at once.
        engine: "local" (this process for one worker, else a process pool) or "ray" (Ray Data).
        ray_address: the Ray cluster to join (default: `RAY_ADDRESS`, else a local one).
        threads: torch threads per worker (default: the cores shared among the workers).
    """
    model = model or ModelSpec()
    settings = settings or CorpusSettings()
    log = log or (lambda line: None)
    if settings.dtype not in ("float32", "float16") or settings.output not in ("token", "sentence"):
        raise ElmoError(f"dtype must be float32 or float16 and output token or sentence, not {settings.dtype!r} "
                        f"and {settings.output!r}")
    select_layers(np.zeros((1, 0, 1)), settings.layers)  # checks `layers`
    if engine not in ("local", "ray"):
        raise ElmoError(f"engine must be 'local' or 'ray', not {engine!r}")
    files = _match(inputs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".shard-*.tmp"):  # left by a killed run
        stale.unlink()
    shards, records = plan_shards(files, settings.shard_size)
    opened = model.open()
    manifest = {"format": FORMAT, "model": {**asdict(model), "sha256": model_hash(opened)},
                "settings": asdict(settings), "inputs": records, "shards": {}, "complete": False}
    manifest["shards"] = _resume(out, manifest, log)
    todo = [shard for shard in shards if shard.name not in manifest["shards"]]
    log(f"{len(shards)} shards, {len(shards) - len(todo)} already done, {len(todo)} to embed")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)

    def finished(entry: dict) -> None:
        manifest["shards"][entry["name"]] = entry
        _write_manifest(out, manifest)
        log(f"{entry['name']}: {entry['rows']} rows")

    _write_manifest(out, manifest)
    if engine == "ray":
        from .corpus_ray import run_on_ray

        run_on_ray(todo, model, settings, str(out), batch_size, workers, threads, ray_address, finished)
    elif workers == 1:
        writer = ShardWriter(model, settings, str(out), batch_size, threads, opened) if todo else None
        for shard in todo:
            finished(writer.write(shard))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                                 initargs=(model, settings, str(out), batch_size, threads)) as pool:
            for future in as_completed([pool.submit(_write_in_worker, shard) for shard in todo]):
                finished(future.result())
    manifest["shards"] = {shard.name: manifest["shards"][shard.name] for shard in shards}  # in corpus order
    manifest["complete"] = True
    _write_manifest(out, manifest)
    return manifest


def _match(inputs: str | list[str]) -> list[Path]:
    patterns = [inputs] if isinstance(inputs, str) else list(inputs)
    files = sorted({Path(name) for pattern in patterns for name in glob.glob(pattern, recursive=True)
                    if Path(name).is_file()})
    if not files:
        raise ElmoError(f"no input file matches {' '.join(patterns)}")
    return files


def _resume(out: Path, manifest: dict, log: Callable[[str], None]) -> dict:
    """The finished shards of an earlier run into `out` (with intact files), after checking it matches."""
    path = out / MANIFEST
    if not path.is_file():
        return {}
    from .textfile import read_json_object

    earlier = read_json_object(path, "manifest")
    for key in ("format", "model", "settings", "inputs"):
        if earlier.get(key) != manifest[key]:
            raise ElmoError(f"{path}: an earlier run with another {key} wrote this folder; "
                            "use a new output folder (or delete this one)")
    kept = {}
    for name, entry in earlier.get("shards", {}).items():
        shard_path = out / name
        if shard_path.is_file() and _file_hash(shard_path) == entry.get("sha256"):
            kept[name] = entry
        else:
            log(f"{name}: missing or changed, embedding it again")
    return kept


def _write_manifest(out: Path, manifest: dict) -> None:
    with atomic_path(out / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
