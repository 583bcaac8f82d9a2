"""Latency percentiles of per-call times (the calls themselves are timed by ``measure.loop``)."""

from __future__ import annotations

from collections.abc import Sequence
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
