"""Latency statistics and the stopwatch, with scripted clocks (no timing thresholds)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_impls.measure.fake_nvml import FakeClock
from recsys_impls.measure.timing import Stopwatch, latency_percentiles, measure_latencies


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


def test_stopwatch_laps_and_total() -> None:
    sw = Stopwatch(clock=FakeClock([10.0, 12.5, 20.0, 21.0, 30.0]))
    with sw:
        pass
    assert sw.elapsed_s == pytest.approx(2.5)
    sw.start()
    assert sw.running
    assert sw.stop() == pytest.approx(1.0)
    assert sw.laps == pytest.approx([2.5, 1.0]) and sw.elapsed_s == pytest.approx(3.5)
    with pytest.raises(RuntimeError):
        sw.stop()
    sw.reset()
    assert sw.elapsed_s == 0.0 and sw.laps == []


def test_stopwatch_double_start() -> None:
    sw = Stopwatch().start()
    with pytest.raises(RuntimeError):
        sw.start()


def test_measure_latencies_excludes_warmup_and_syncs() -> None:
    synced = []
    clock = FakeClock([0.0, 1.0, 1.0, 3.0, 3.0, 6.0])
    out = measure_latencies(lambda x: x, [1, 2, 3], sync=lambda: synced.append(1), warmup=1, clock=clock)
    assert out == pytest.approx([2.0, 3.0])
    assert len(synced) == 3
