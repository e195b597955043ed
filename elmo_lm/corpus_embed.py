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
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .corpus_shards import (CorpusSettings, ModelSpec, Shard, ShardWriter, file_hash, model_hash, plan_shards,
                            read_vectors)
from .embed import select_layers
from .errors import ElmoError
from .io.atomic import atomic_path

__all__ = ["CorpusSettings", "ModelSpec", "embed_corpus", "read_vectors"]

MANIFEST = "manifest.json"
FORMAT = "elmo-lm corpus embeddings 1"


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
        if shard_path.is_file() and file_hash(shard_path) == entry.get("sha256"):
            kept[name] = entry
        else:
            log(f"{name}: missing or changed, embedding it again")
    return kept


def _write_manifest(out: Path, manifest: dict) -> None:
    with atomic_path(out / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
