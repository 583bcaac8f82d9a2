"""Clocks and latency statistics.

``time.perf_counter`` is monotonic and the highest-resolution wall clock Python offers; every timed
window in the suite goes through it so that figures from the CLI and from asv agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

PERCENTILES = (50, 95, 99)


def latency_percentiles(samples_s: Sequence[float]) -> dict[str, Any]:
    """Per-call latencies in seconds -> {"p50", "p95", "p99", "mean"} in milliseconds, plus "n".

    Percentiles use linear interpolation between order statistics (numpy's default), so p99 of
    fewer than 100 samples is an interpolated value, not an observed one: "n" is kept beside it so a
    reader can judge. With no samples every figure is None (never a zero).
    """
    values = np.asarray(list(samples_s), dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"latency samples must be a flat sequence of seconds, got shape {values.shape}")
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "n": 0}
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("latency samples must be finite, non-negative seconds")
    ms = values * 1e3
    p50, p95, p99 = (float(v) for v in np.percentile(ms, PERCENTILES))
    return {"p50": p50, "p95": p95, "p99": p99, "mean": float(ms.mean()), "n": int(values.size)}


class Stopwatch:
    """A perf_counter stopwatch that accumulates time over start/stop pairs and records laps.

    Use as ``with Stopwatch() as sw: ...`` then ``sw.elapsed_s``; or ``sw.start()`` / ``sw.stop()``
    repeatedly (each stop appends a lap). Reading ``elapsed_s`` while running includes the open lap.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started: float | None = None
        self._total = 0.0
        self.laps: list[float] = []

    @property
    def running(self) -> bool:
        return self._started is not None

    def start(self) -> Stopwatch:
        if self._started is not None:
            raise RuntimeError("Stopwatch.start() called while already running")
        self._started = self._clock()
        return self

    def stop(self) -> float:
        """Stop and return the lap just finished, in seconds."""
        if self._started is None:
            raise RuntimeError("Stopwatch.stop() called while not running")
        lap = self._clock() - self._started
        self._started = None
        self._total += lap
        self.laps.append(lap)
        return lap

    def reset(self) -> None:
        self._started = None
        self._total = 0.0
        self.laps.clear()

    @property
    def elapsed_s(self) -> float:
        if self._started is None:
            return self._total
        return self._total + (self._clock() - self._started)

    def __enter__(self) -> Stopwatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def measure_latencies(
    fn: Callable[[Any], Any],
    inputs: Iterable[Any],
    sync: Callable[[], None] | None = None,
    warmup: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Call ``fn(x)`` for each input and return one latency (s) per call after ``warmup`` calls.

    ``sync`` (e.g. ``recommender.synchronize``) is called inside each timed call, before the clock is
    read, so an asynchronous device is measured to completion rather than to kernel launch.
    """
    out: list[float] = []
    for i, x in enumerate(inputs):
        t0 = clock()
        fn(x)
        if sync is not None:
            sync()
        dt = clock() - t0
        if i >= warmup:
            out.append(dt)
    return out
