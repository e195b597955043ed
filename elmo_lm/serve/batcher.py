"""Micro-batching: requests from many connections queue here and one worker thread embeds them together.

The worker takes the first waiting request, then keeps collecting until the collected sentences
hold `max_batch_tokens` tokens or `max_wait_ms` have passed since the first one arrived, and runs
them through `Embedder.encode` in one call (which sorts them by length and batches them as offline
`encode` does). Every request's vectors are therefore exactly what `encode` gives for the sentences
of its flush. Only the worker touches the model; the event loop only waits on futures.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..embed import Embedder

_STOP = object()
"""Queued by `close`: the worker finishes what is queued before it, then exits."""


@dataclass
class _Job:
    """One request's sentences and where to deliver their all-layer vectors."""

    sentences: list[list[str]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = sum(len(tokens) for tokens in self.sentences)


@dataclass
class BatcherStats:
    """Counters for /info."""

    requests: int = 0
    sentences: int = 0
    tokens: int = 0
    flushes: int = 0


class MicroBatcher:
    """A queue of embedding requests in front of one model worker thread."""

    def __init__(self, embedder: Embedder, max_batch_tokens: int = 2048, max_wait_ms: float = 5.0) -> None:
        """Args:
            embedder: the model; only the worker thread calls it.
            max_batch_tokens: flush once the collected requests hold this many tokens.
            max_wait_ms: flush at the latest this long after the first collected request arrived.
        """
        self.embedder = embedder
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatcherStats()
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self.in_flight = 0
        """Requests accepted and not yet answered (read by /info; only the event loop changes it)."""
        self._worker = threading.Thread(target=self._work, name="elmo-model-worker", daemon=True)
        self._worker.start()

    async def embed(self, sentences: list[list[str]]) -> list[np.ndarray]:
        """All layers `(L+1, n_i, 2P)` of each sentence (token lists), computed in some flush."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        loop = asyncio.get_running_loop()
        job = _Job(sentences, loop, loop.create_future())
        self.in_flight += 1
        try:
            self._queue.put(job)
            return await job.future
        finally:
            self.in_flight -= 1

    @property
    def waiting(self) -> int:
        """Requests queued and not yet taken by the worker."""
        return self._queue.qsize()

    def close(self, timeout: float | None = None) -> None:
        """Finish every queued request, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        self._worker.join(timeout)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs, stop = self._collect(first)
            self._run(jobs)
            if stop:
                return

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """`first` and the requests that arrive until the token or time budget is spent."""
        jobs, tokens = [first], first.tokens
        deadline = time.monotonic() + self.max_wait
        while tokens < self.max_batch_tokens:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
            tokens += job.tokens
        return jobs, False

    def _run(self, jobs: list[_Job]) -> None:
        """Embed the sentences of `jobs` in one `encode` call and hand each job its share."""
        sentences = [tokens for job in jobs for tokens in job.sentences]
        try:
            vectors = self.embedder.encode(sentences, layers="all")
        except Exception as error:  # noqa: BLE001 - delivered to every waiting request, the worker lives on
            for job in jobs:
                _post(job, _deliver_error, error)
            return
        self.stats.flushes += 1
        start = 0
        for job in jobs:
            share = vectors[start : start + len(job.sentences)]
            start += len(job.sentences)
            self.stats.requests += 1
            self.stats.sentences += len(job.sentences)
            self.stats.tokens += job.tokens
            _post(job, _deliver, share)


def _post(job: _Job, deliver, value) -> None:
    """Hand `value` to the job's event loop; a loop that has gone away no longer wants it."""
    try:
        job.loop.call_soon_threadsafe(deliver, job.future, value)
    except RuntimeError:  # the loop is closed
        pass


def _deliver(future: asyncio.Future, result: list[np.ndarray]) -> None:
    if not future.done():  # a request whose client went away may have been cancelled
        future.set_result(result)


def _deliver_error(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
