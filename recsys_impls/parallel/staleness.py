"""The staleness distribution of asynchronous updates (numpy only), as the record keeps it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def distribution(staleness: Sequence[int], workers: int) -> dict[str, Any]:
    """Counts per staleness value, and n / mean / median / p95 / max / share of stale updates.

    Staleness of an update = other updates applied between its read of the parameters and its write."""
    s = np.asarray(list(staleness), dtype=np.int64)
    if s.size == 0:
        return {"n": 0, "reason": "no update was recorded"}
    values, counts = np.unique(s, return_counts=True)
    return {
        "n": int(s.size), "workers": int(workers),
        "mean": float(s.mean()), "median": float(np.median(s)), "p95": float(np.percentile(s, 95)),
        "max": int(s.max()), "min": int(s.min()), "stale_fraction": float((s > 0).mean()),
        "histogram": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
        "definition": "updates applied by other closures between this closure's read of the version counter "
                      "(before its parameter reads) and its increment (just before its own update)",
    }
