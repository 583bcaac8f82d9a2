"""Canary: a fixed numpy workload whose slowdown is set from outside, to measure the gate's recall.

``RECSYS_CANARY_SLOWDOWN=1.3`` makes every call take 1.3 times as long: after the work, the call sleeps
(factor - 1) times the time the work itself just took, so the delay is a known multiple whatever the
machine's speed. Unset or 1: no delay (the canary is then one more A/A benchmark). numpy only.
"""

import os
import time

import numpy as np

ENV = "RECSYS_CANARY_SLOWDOWN"
MAX_SLOWDOWN = 100.0


def slowdown() -> float:
    """The factor from the environment; a bad value is an error (a typo must not pass as 'no slowdown')."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return 1.0
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: give a number >= 1 (e.g. 1.3 = 30% slower)") from None
    if not 1.0 <= factor <= MAX_SLOWDOWN:
        raise ValueError(f"{ENV}={text!r}: give a number from 1 to {MAX_SLOWDOWN:g} (e.g. 1.3 = 30% slower)")
    return factor


def extra_delay(work_seconds: float, factor: float) -> float:
    """Seconds to wait after work that took ``work_seconds`` so the call takes ``factor`` times as long."""
    return max(0.0, (factor - 1.0) * work_seconds)


class Canary:
    """A few ms of sorting per call: single-threaded numpy (no BLAS pool to fight over on a shared host)."""

    timeout = 120
    rounds = 1  # timing discipline as in bench_core.TrainStep: 10 samples of 0.1 s each
    repeat = 10
    number = 0
    sample_time = 0.1
    warmup_time = 0.5

    def setup(self):
        self.x = np.random.default_rng(0).standard_normal(200_000).astype(np.float32)
        self.factor = slowdown()

    def _work(self):
        return np.sort(self.x)

    def time_canary(self):
        start = time.perf_counter()
        self._work()
        wait = extra_delay(time.perf_counter() - start, self.factor)
        if wait:
            time.sleep(wait)
