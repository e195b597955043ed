"""The Ray engine of `embed_corpus`: shards as rows of a Ray Dataset, embedded by a pool of actors.

Each actor opens the model once (`ShardWriter`) and writes whole shards, atomically, to the output
folder (a shared file system on a multi-node cluster). Ray Data restarts an actor that dies and
retries its shard: a retried shard is written again whole, so no row is lost or duplicated. The
driver records each shard in the manifest as its result arrives.

Needs the `ray` extra (`pip install 'elmo-lm[ray]'`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from .corpus_shards import CorpusSettings, ModelSpec, Shard, ShardWriter


class _ShardActor:
    """A Ray Data actor: one model for its life; a batch of shard rows in, their manifest entries out."""

    def __init__(self, model: ModelSpec, settings: CorpusSettings, out_dir: str, batch_size: int,
                 threads: int) -> None:
        self.writer = ShardWriter(model, settings, out_dir, batch_size, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fields = list(Shard.__dataclass_fields__)
        entries = [self.writer.write(Shard(**{key: _plain(batch[key][i]) for key in fields}))
                   for i in range(len(batch["name"]))]
        return {key: np.array([entry[key] for entry in entries]) for key in entries[0]}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def run_on_ray(shards: list[Shard], model: ModelSpec, settings: CorpusSettings, out_dir: str, batch_size: int,
               workers: int, threads: int, address: str | None, finished: Callable[[dict], None]) -> None:
    """Embed `shards` with `workers` actors of `threads` CPUs each; `finished(entry)` per shard."""
    import ray

    if not shards:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        dataset = ray.data.from_items([asdict(shard) for shard in shards], override_num_blocks=len(shards))
        results = dataset.map_batches(
            _ShardActor, batch_size=1, concurrency=workers, num_cpus=threads,
            fn_constructor_kwargs={"model": model, "settings": settings, "out_dir": out_dir,
                                   "batch_size": batch_size, "threads": threads})  # Ray Data restarts dead actors, retries
        for row in results.iter_rows():
            finished({key: _plain(value) for key, value in row.items()})
    finally:
        if started_here:
            ray.shutdown()
