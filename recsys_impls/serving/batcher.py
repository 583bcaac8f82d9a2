"""The dynamic batcher between LoadGen and a runtime: samples queue up, and a worker thread runs them
in batches of at most ``max_batch``, waiting at most ``max_wait_s`` after the first queued sample for
more to arrive.

That wait is the Server scenario's knob: a longer wait fills bigger batches (more samples per second
from a runtime whose cost per batch is mostly fixed) at the price of latency. ``max_batch=1`` is serving
without batching. The batcher is independent of LoadGen: ``complete(ids, probabilities)`` is whatever the
caller wants done with a finished batch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recsys_impls.errors import UsageError
from recsys_impls.serving.layout import ServingInputs

Complete = Callable[[list[int], np.ndarray], None]


class DynamicBatcher:
    """Queue of (response id, sample index) pairs, drained in batches by one worker thread."""

    def __init__(self, predict: Callable[[ServingInputs], np.ndarray], samples: ServingInputs, complete: Complete,
                 max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1 or not 0 <= max_wait_s <= 10:
            raise UsageError(f"batcher: max batch {max_batch}, max wait {max_wait_s} s; accepted: max batch >= 1, "
                             "max wait 0 to 10 s")
        self.predict = predict
        self.samples = samples
        self.complete = complete
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self._queue: deque[tuple[int, int]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self.batch_sizes: list[int] = []
        self._worker = threading.Thread(target=self._run, name="dynamic-batcher", daemon=True)
        self._worker.start()

    def submit(self, items: Sequence[tuple[int, int]]) -> None:
        """Queue (response id, sample index) pairs; returns at once (LoadGen's issue thread calls it)."""
        with self._cond:
            self._queue.extend(items)
            self._cond.notify()

    def _take(self) -> list[tuple[int, int]] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            deadline = time.perf_counter() + self.max_wait_s
            while len(self._queue) < self.max_batch and not self._closed:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            ids = [b[0] for b in batch]
            try:
                probs = self.predict(self.samples.take([b[1] for b in batch]))
            except BaseException as exc:  # noqa: BLE001 - re-raised by close() in the caller's thread
                self._error = exc
                probs = np.full(len(ids), np.nan, np.float32)
            self.batch_sizes.append(len(ids))
            self.complete(ids, probs)

    def close(self) -> None:
        """Finish what is queued, stop the worker, and raise the first error a batch hit."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join()
        if self._error is not None:
            raise self._error

    def describe(self) -> dict[str, Any]:
        sizes = np.asarray(self.batch_sizes or [0])
        return {"max_batch": self.max_batch, "max_wait_ms": self.max_wait_s * 1e3, "batches": len(self.batch_sizes),
                "mean_batch": float(sizes.mean()), "max_batch_seen": int(sizes.max()),
                "samples": int(sizes.sum())}
