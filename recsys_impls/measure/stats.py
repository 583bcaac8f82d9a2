"""Summaries of repeated time measurements: sample count, median, spread and a confidence interval.

Every time figure the suite publishes carries its sample count and an interval, so that a reader (and
the report) can tell a measured difference from noise. The interval is a percentile bootstrap of the
median: distribution-free, robust to the long right tail that timings on a shared machine have, and
honest about small samples. Below ``MIN_SAMPLES_FOR_CI`` samples no interval is given at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CI_LEVEL = 0.99
MIN_SAMPLES_FOR_CI = 5
BOOTSTRAP_RESAMPLES = 2000
_CHUNK_ELEMENTS = 4_000_000  # resamples are drawn in chunks so a 20k-step run needs ~32 MB, not ~320 MB


def bootstrap_median_ci(values: np.ndarray, level: float = CI_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``values`` (seeded, so a record is reproducible)."""
    n = values.size
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_ELEMENTS // n)
    medians = []
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        idx = rng.integers(0, n, size=(k, n))
        medians.append(np.median(values[idx], axis=1))
        done += k
    meds = np.concatenate(medians)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(meds, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize_seconds(samples_s: Sequence[float] | np.ndarray, unit: str = "ms") -> dict[str, Any]:
    """Per-call seconds -> the record's time statistics, in ``unit`` ("ms" or "s").

    ``n`` is always present; with no samples every figure is None (never a zero). With fewer than
    ``MIN_SAMPLES_FOR_CI`` samples the interval is None and ``ci_reason`` says so.
    """
    scale = {"ms": 1e3, "s": 1.0}[unit]
    values = np.asarray(samples_s, dtype=np.float64).reshape(-1)
    if values.size and (not np.all(np.isfinite(values)) or np.any(values < 0)):
        raise ValueError("time samples must be finite, non-negative seconds")
    out: dict[str, Any] = {"unit": unit, "n": int(values.size), "ci_level": CI_LEVEL,
                           "ci_method": f"percentile bootstrap of the median, {BOOTSTRAP_RESAMPLES} resamples"}
    if values.size == 0:
        out.update(median=None, mean=None, min=None, max=None, ci_low=None, ci_high=None,
                   ci_reason="no samples")
        return out
    v = values * scale
    out.update(median=float(np.median(v)), mean=float(v.mean()), min=float(v.min()), max=float(v.max()))
    if values.size < MIN_SAMPLES_FOR_CI:
        out.update(ci_low=None, ci_high=None,
                   ci_reason=f"{values.size} sample(s): fewer than {MIN_SAMPLES_FOR_CI}, no interval")
    else:
        out["ci_low"], out["ci_high"] = bootstrap_median_ci(v)
    return out
