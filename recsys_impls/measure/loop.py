"""The one timed loop every measured path uses: the runner's train, inference and latency windows, and
every distributed worker.

Its rules, written once so that figures from the CLI, asv and the distributed engines agree:

* Warm-up steps run first and are never timed (tracing, autotuning, compilation, caches).
* The device is synchronised before the window opens and before it closes, so an asynchronous device
  is timed to completion, not to kernel launch. ``sync_each_step`` also synchronises after every step
  (latency, and per-step times on an accelerator, need it).
* Inputs rotate: step ``i`` uses ``inputs[(start + i) % len(inputs)]``; several distinct staged batches
  keep embedding rows from staying hot in cache.
* Every per-step time is kept. Step ``i``'s time runs from the end of step ``i-1`` (or the window's
  start) to the end of step ``i``, the last one including the closing synchronisation, so the per-step
  times add up to the window exactly (before the closing barrier).
* In a distributed run, ``barrier`` is called after the warm-up and again at the end, so every rank
  times the same window and the window's length is the slowest rank's.
* Context managers in ``window`` (host CPU accounting, the NVML energy sampler) are entered right
  before the clock starts and left right after it stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any

from recsys_impls.measure.stats import summarize_seconds


@dataclass
class LoopResult:
    """What one timed window measured."""

    step_seconds: list[float]
    seconds: float
    warmup_steps: int
    outputs: list[Any] | None = None
    windows: list[Any] = field(default_factory=list)

    @property
    def timed_steps(self) -> int:
        return len(self.step_seconds)

    def stats(self) -> dict[str, Any]:
        """Per-step time statistics in ms (n, median, min/max, bootstrap CI of the median)."""
        return summarize_seconds(self.step_seconds)

    def summary(self, samples_per_step: int) -> dict[str, Any]:
        """The record's figures for this window; throughput is timed samples over the whole window."""
        samples = samples_per_step * self.timed_steps
        return {
            "warmup_steps": self.warmup_steps,
            "timed_steps": self.timed_steps,
            "timed_samples": samples,
            "seconds": self.seconds,
            "step_ms": self.stats(),
            "step_ms_mean": 1e3 * self.seconds / max(self.timed_steps, 1),
            "samples_per_s": samples / self.seconds if self.seconds > 0 else None,
        }


def sync_each_step_on(device: str) -> bool:
    """Whether per-step times on ``device`` need a synchronisation after every step: on an accelerator a
    step returns at kernel launch; on the CPU it returns when it is done."""
    return not device.startswith("cpu")


def _progress(steps: int, enabled: bool, desc: str) -> Iterable[int]:
    if not enabled:
        return range(steps)
    from tqdm import tqdm

    return tqdm(range(steps), desc=desc, total=steps, leave=False, unit="step")


def timed_loop(
    step: Callable[[Any], Any],
    inputs: Sequence[Any],
    *,
    warmup: int = 0,
    steps: int | None = None,
    start: int | None = None,
    sync: Callable[[], None] | None = None,
    sync_each_step: bool = False,
    barrier: Callable[[], None] | None = None,
    window: Sequence[AbstractContextManager[Any]] = (),
    keep_outputs: bool = False,
    progress: bool = False,
    desc: str = "steps",
    clock: Callable[[], float] = time.perf_counter,
) -> LoopResult:
    """Run ``warmup`` untimed steps, then ``steps`` timed ones, and return every step's time.

    ``steps`` defaults to the inputs left after the warm-up (a schedule: warm-up on the first batches,
    time the rest); ``start`` is the index of the first timed input (default: right after the warm-up).
    The warm-up is clamped so a schedule keeps at least one timed step.
    """
    n = len(inputs)
    if n == 0:
        raise ValueError("timed_loop needs at least one input")
    if steps is None:
        warmup = min(max(warmup, 0), max(n - 1, 0))
        steps = n - warmup
    if steps < 0 or warmup < 0:
        raise ValueError(f"timed_loop: steps={steps} and warmup={warmup} must be >= 0")
    first = warmup if start is None else start
    sync = sync or (lambda: None)
    for i in range(warmup):
        step(inputs[i % n])
    sync()
    if barrier is not None:
        barrier()
    outputs: list[Any] | None = [] if keep_outputs else None
    times: list[float] = []
    with ExitStack() as stack:
        entered = [stack.enter_context(cm) for cm in window]
        t_start = prev = clock()
        for i in _progress(steps, progress, desc):
            out = step(inputs[(first + i) % n])
            if sync_each_step:
                sync()
            if outputs is not None:
                outputs.append(out)
            now = clock()
            times.append(now - prev)
            prev = now
        sync()
        now = clock()
        if times:
            times[-1] += now - prev
        if barrier is not None:
            barrier()
            now = clock()
        seconds = now - t_start
    return LoopResult(step_seconds=times, seconds=seconds, warmup_steps=warmup, outputs=outputs, windows=entered)


def loop_overhead_seconds(steps: int = 20000) -> float:
    """The loop's own cost per step (clock reads, bookkeeping), measured with a step that does nothing."""
    res = timed_loop(lambda _: None, [None], steps=steps)
    return res.seconds / steps
