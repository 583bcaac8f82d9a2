"""Training input as a stream: batch sources and the bounded prefetch queue that feeds the runner.

A run's memory must not depend on its number of steps, so training never holds ``steps`` batches:

* a *source* gives the batch of step ``i`` (``batch(i)``): ``SyntheticStream`` draws it on demand
  (stateless, seeded by the step index, so both frameworks see the same batches); ``LoadedBatches`` rotates
  over batches already in memory (a TSV or MovieLens split, cut once in linear time);
* ``Prefetcher`` runs the production (draw or slice, then the framework's ``stage``) in a worker thread,
  ahead of the consumer, into a queue of at most ``depth`` batches, and keeps how long each ``get`` waited;
* ``produce`` times the production of some batches on the calling thread: the pipeline's throughput alone.

Shared code: numpy only, no framework import.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from recsys_impls.config import PREFETCH_DEPTH
from recsys_impls.data.batch import Batch
from recsys_impls.data.dataset import Dataset
from recsys_impls.errors import UsageError

DEFAULT_DEPTH = PREFETCH_DEPTH  # batches the worker may run ahead of the consumer


class BatchSource(Protocol):
    batch_size: int
    distinct: int | None  # distinct batches it has (None: a new one at every index)

    def batch(self, index: int) -> Batch: ...

    def describe(self) -> dict[str, Any]: ...


class LoadedBatches:
    """Batches already in memory, rotated: step ``i`` gets ``batches[i % len(batches)]`` (epochs)."""

    def __init__(self, batches: list[Batch]) -> None:
        if not batches:
            raise ValueError("LoadedBatches needs at least one batch")
        self.batches = batches
        self.distinct = len(batches)
        self.batch_size = batches[0].batch_size

    def batch(self, index: int) -> Batch:
        return self.batches[index % self.distinct]

    def describe(self) -> dict[str, Any]:
        return {"kind": "loaded split, rotated", "batch_size": self.batch_size, "distinct_batches": self.distinct}


def training_source(data: Dataset, batch_size: int) -> BatchSource:
    """Where a run's training batches come from: the data's on-demand stream, or its loaded split cut into
    batches (once, linear in the data)."""
    if data.stream is not None and data.stream.batch_size == batch_size:
        return data.stream
    batches = data.train.split(batch_size)
    if not batches:
        raise UsageError(f"--batch-size {batch_size}: larger than the {data.train.batch_size} training samples "
                         "available")
    return LoadedBatches(batches)


@dataclass
class Produced:
    """What producing some batches on one thread cost: the pipeline's throughput alone."""

    items: list[Any]
    seconds: float
    samples: int
    nbytes: int

    def summary(self) -> dict[str, Any]:
        ok = self.seconds > 0
        return {"batches": len(self.items), "samples": self.samples, "seconds": self.seconds,
                "samples_per_s": self.samples / self.seconds if ok else None,
                "mb_per_s": self.nbytes / 1e6 / self.seconds if ok else None}


def produce(source: BatchSource, indices: range, convert: Callable[[Batch], Any] = lambda b: b) -> Produced:
    """``convert(source.batch(i))`` for each index, timed on this thread."""
    items, samples, nbytes = [], 0, 0
    start = time.perf_counter()
    for i in indices:
        b = source.batch(i)
        samples += b.batch_size
        nbytes += b.nbytes
        items.append(convert(b))
    return Produced(items, time.perf_counter() - start, samples, nbytes)


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class Prefetcher:
    """A worker thread puts ``convert(source.batch(i))`` for ``i`` in ``[start, start + steps)`` into a queue of at
    most ``depth`` items; ``get()`` returns them in order and records how long it waited.

    At most ``depth + 1`` produced items exist that the consumer has not taken (the queue, and the one being
    produced), whatever ``steps`` is. A failure in the worker is raised by the next ``get``.
    """

    def __init__(self, source: BatchSource, steps: int, convert: Callable[[Batch], Any] = lambda b: b,
                 depth: int = DEFAULT_DEPTH, start: int = 0) -> None:
        if depth < 1 or steps < 0:
            raise ValueError(f"Prefetcher: depth={depth} must be >= 1 and steps={steps} >= 0")
        self.depth = depth
        self.waits: list[float] = []
        self.produce_seconds = 0.0
        self.produced = 0
        self.max_ahead = 0  # most items produced and not yet taken, seen by the worker
        self._taken = 0
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, start, steps, convert), daemon=True,
                                        name="recsys-input")
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: BatchSource, start: int, steps: int, convert: Callable[[Batch], Any]) -> None:
        try:
            for i in range(start, start + steps):
                if self._stop.is_set():
                    return
                t0 = time.perf_counter()
                item = convert(source.batch(i))
                self.produce_seconds += time.perf_counter() - t0
                self.max_ahead = max(self.max_ahead, self.produced + 1 - self._taken)
                if not self._put(item):
                    return
                self.produced += 1
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(_Failed(exc))

    def get(self) -> Any:
        t0 = time.perf_counter()
        item = self._q.get()
        self.waits.append(time.perf_counter() - t0)
        if isinstance(item, _Failed):
            raise item.exc
        if item is _END:
            raise IndexError("Prefetcher: more batches asked for than the steps it was given")
        self._taken += 1
        return item

    def close(self) -> None:
        """Stop the worker and drop what it queued."""
        self._stop.set()
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
