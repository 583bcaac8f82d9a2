"""The one timed loop: warm-up excluded, sync at the window edges, rotation, per-step times, barriers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recsys_impls.measure.loop import loop_overhead_seconds, sync_each_step_on, timed_loop
from recsys_impls.measure.stats import MIN_SAMPLES_FOR_CI, bootstrap_median_ci, summarize_seconds


class FakeClock:
    """Each read advances by the next of ``steps`` (or 1.0): deterministic times for the loop."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def _recording_loop(n_inputs: int, **kw):
    calls: list[tuple[str, object]] = []
    clock = FakeClock()

    def step(x):
        calls.append(("step", x))
        clock.now += 1.0 + x  # input x costs 1 + x seconds
        return x * 10

    def sync():
        calls.append(("sync", None))
        clock.now += 0.5

    res = timed_loop(step, list(range(n_inputs)), sync=sync, clock=clock, **kw)
    return res, calls


def test_schedule_excludes_warmup_and_times_the_rest():
    res, calls = _recording_loop(5, warmup=2)
    assert res.warmup_steps == 2
    assert [x for k, x in calls if k == "step"] == [0, 1, 2, 3, 4]
    # timed steps 2, 3, 4 cost 3, 4, 5 s; the closing sync (0.5 s) lands in the last step
    assert res.step_seconds == [3.0, 4.0, 5.5]
    assert res.seconds == pytest.approx(sum(res.step_seconds))
    # sync before the window opens (after warm-up) and before it closes
    assert calls.index(("sync", None)) == 2 and calls[-1] == ("sync", None)


def test_warmup_is_clamped_to_leave_one_timed_step():
    res, _ = _recording_loop(3, warmup=10)
    assert res.warmup_steps == 2 and res.timed_steps == 1


def test_rotation_from_start_and_outputs_in_order():
    res, calls = _recording_loop(3, warmup=1, start=0, steps=7, keep_outputs=True)
    steps = [x for k, x in calls if k == "step"]
    assert steps == [0] + [0, 1, 2, 0, 1, 2, 0]
    assert res.outputs == [0, 10, 20, 0, 10, 20, 0]
    assert res.timed_steps == 7


def test_sync_each_step_is_inside_each_step_time():
    res, calls = _recording_loop(2, warmup=0, sync_each_step=True)
    assert res.step_seconds == [1.5, 2.5 + 0.5]
    assert [k for k, _ in calls] == ["sync", "step", "sync", "step", "sync", "sync"]


def test_barrier_after_warmup_and_at_the_end():
    order: list[str] = []
    timed_loop(lambda x: order.append("step"), [0, 1, 2], warmup=1, sync=lambda: order.append("sync"),
               barrier=lambda: order.append("barrier"))
    assert order == ["step", "sync", "barrier", "step", "step", "sync", "barrier"]


def test_window_context_managers_wrap_only_the_timed_steps():
    order: list[str] = []

    class Window:
        def __enter__(self):
            order.append("enter")
            return "w"

        def __exit__(self, *exc):
            order.append("exit")

    res = timed_loop(lambda x: order.append(f"step{x}"), [0, 1, 2], warmup=1, window=[Window()])
    assert order == ["step0", "enter", "step1", "step2", "exit"]
    assert res.windows == ["w"]


def test_summary_throughput_and_stats():
    res, _ = _recording_loop(12, warmup=2)
    summary = res.summary(samples_per_step=100)
    assert summary["timed_steps"] == 10 and summary["timed_samples"] == 1000
    assert summary["samples_per_s"] == pytest.approx(1000 / res.seconds)
    st = summary["step_ms"]
    assert st["n"] == 10 and st["unit"] == "ms"
    assert st["min"] == 3000.0 and st["max"] == 12500.0
    assert st["ci_low"] <= st["median"] <= st["ci_high"]


def test_errors():
    with pytest.raises(ValueError):
        timed_loop(lambda x: None, [])
    with pytest.raises(ValueError):
        timed_loop(lambda x: None, [1], steps=-1)


def test_overhead_is_measured_and_small_in_absolute_terms():
    per_step = loop_overhead_seconds(2000)
    assert 0 < per_step < 1e-3  # a clock read and an append, not a step's worth of work


def test_stats_small_samples_have_no_interval():
    st = summarize_seconds([0.001] * (MIN_SAMPLES_FOR_CI - 1))
    assert st["n"] == MIN_SAMPLES_FOR_CI - 1 and st["ci_low"] is None and st["ci_high"] is None
    assert "fewer than" in st["ci_reason"]
    empty = summarize_seconds([])
    assert empty["n"] == 0 and empty["median"] is None


def test_stats_reject_bad_samples():
    with pytest.raises(ValueError):
        summarize_seconds([0.1, float("nan")])
    with pytest.raises(ValueError):
        summarize_seconds([-1.0])


def test_bootstrap_interval_covers_the_median_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = rng.lognormal(0, 0.3, 20)
    large = rng.lognormal(0, 0.3, 2000)
    lo_s, hi_s = bootstrap_median_ci(small)
    lo_l, hi_l = bootstrap_median_ci(large)
    assert lo_s <= np.median(small) <= hi_s
    assert lo_l <= np.median(large) <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s)
    # reproducible: seeded
    assert bootstrap_median_ci(small) == (lo_s, hi_s)


def test_bootstrap_coverage_is_near_its_level():
    """Over many samples of a known distribution, the 99% interval holds the true median most times."""
    rng = np.random.default_rng(7)
    true_median = 1.0  # lognormal(0, s) has median exp(0) = 1
    hits = sum(lo <= true_median <= hi for lo, hi in
               (bootstrap_median_ci(rng.lognormal(0, 0.4, 60), resamples=400) for _ in range(200)))
    assert hits >= 180  # 99% nominal; percentile bootstrap of a median undercovers a little at n=60


def test_stats_large_run_is_chunked():
    st = summarize_seconds(np.full(30000, 0.002))
    assert st["n"] == 30000 and st["median"] == pytest.approx(2.0)


def test_clock_reads_per_step_are_one():
    clock = FakeClock()
    counter = itertools.count()
    timed_loop(lambda x: next(counter), [0], steps=100, clock=clock)
    assert clock.reads == 1 + 100 + 1  # window start, one per step, window end


def test_per_step_sync_only_off_the_cpu():
    assert not sync_each_step_on("cpu")
    assert sync_each_step_on("cuda") and sync_each_step_on("cuda:1")
