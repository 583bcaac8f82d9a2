"""Latency percentiles (no timing thresholds)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_impls.measure.timing import latency_percentiles


def test_percentiles_in_milliseconds() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    out = latency_percentiles(samples)
    assert out["n"] == 100
    assert out["p50"] == pytest.approx(50.5)
    assert out["p95"] == pytest.approx(95.05)
    assert out["p99"] == pytest.approx(99.01)
    assert out["mean"] == pytest.approx(50.5)


def test_percentiles_order_free_and_single_sample() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(0.01, size=257)
    assert latency_percentiles(x) == latency_percentiles(rng.permutation(x))
    one = latency_percentiles([0.002])
    assert one["p50"] == one["p99"] == pytest.approx(2.0) and one["n"] == 1


def test_empty_gives_none_not_zero() -> None:
    assert latency_percentiles([]) == {"p50": None, "p95": None, "p99": None, "mean": None, "n": 0}


@pytest.mark.parametrize("bad", [[-0.1], [float("nan")], [[0.1, 0.2]]])
def test_bad_samples_rejected(bad: list) -> None:
    with pytest.raises(ValueError):
        latency_percentiles(bad)
