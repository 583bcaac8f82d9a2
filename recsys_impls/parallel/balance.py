"""Uneven data-parallel shares from measured step times (numpy only), and the record's summary of them.

Each rank's busy time per step is modelled as ``a_r + b_r x n_r`` (a part that does not shrink with its share
n_r, and a per-sample part), fitted to its measured (share, seconds) over the last windows (older ones down-
weighted); the next shares equalise the predicted times (``choose_shares_affine``; until a rank has two
distinct shares measured, a = 0, i.e. shares proportional to speed, ``choose_shares``), rounded to whole
samples by largest remainder so they add up to the global batch exactly, each at least ``min_share`` samples. The global
batch stays constant; the gradient weighting that keeps the update exact lives in the engines
(each rank's mean loss is scaled by ``world x b_r / B``, so the all-reduce's mean is the global batch's
mean, ``recsys_impls.torch_impl.distributed_ddp``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def equal_shares(global_batch: int, world: int) -> list[int]:
    """The static split (``global_batch`` divisible by ``world``, which the launcher checks)."""
    return [global_batch // world] * world


def choose_shares(seconds: Sequence[float], shares: Sequence[int], global_batch: int,
                  min_share: int = 1) -> list[int]:
    """Shares proportional to measured speed (samples per second), summing to ``global_batch``."""
    t = np.asarray(seconds, dtype=np.float64)
    b = np.asarray(shares, dtype=np.float64)
    world = t.size
    if world != b.size or world == 0:
        raise ValueError(f"choose_shares: {t.size} times for {b.size} shares")
    if min_share * world > global_batch:
        raise ValueError(f"choose_shares: min_share {min_share} x {world} ranks exceeds the batch {global_batch}")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        return [int(x) for x in shares]  # nothing measured: keep the split
    speed = b / t
    ideal = min_share + (global_batch - min_share * world) * speed / speed.sum()
    out = np.floor(ideal).astype(np.int64)
    rest = int(global_batch - out.sum())
    order = sorted(range(world), key=lambda r: (-(ideal[r] - out[r]), r))  # deterministic on every rank
    for r in order[:rest]:
        out[r] += 1
    return [int(x) for x in out]


FORGET = 0.8  # weight of a window's point per window of age in the cost fit


def fit_costs(points: Sequence[tuple[int, float]], forget: float = 1.0) -> tuple[float, float] | None:
    """(fixed seconds a, seconds per sample b) of ``t = a + b x n`` fitted to one rank's (share, seconds)
    points (oldest first), the point k windows old weighted ``forget ** k``; None when they do not pin down
    a line with a >= 0 and b > 0 (then the caller assumes a = 0)."""
    n = np.asarray([p[0] for p in points], dtype=np.float64)
    t = np.asarray([p[1] for p in points], dtype=np.float64)
    if n.size < 2 or np.unique(n).size < 2 or not np.all(np.isfinite(t)):
        return None
    weight = forget ** np.arange(n.size - 1, -1, -1, dtype=np.float64)
    b, a = np.polyfit(n, t, 1, w=np.sqrt(weight))
    if b <= 0 or a < 0:
        return None
    return float(a), float(b)


def choose_shares_affine(history: Sequence[tuple[Sequence[int], Sequence[float]]], global_batch: int,
                         min_share: int = 1, forget: float = 1.0) -> list[int]:
    """Shares that equalise predicted busy time ``a_r + b_r x n_r`` across ranks, from each rank's
    measured (share, seconds) over past windows (``history``: (shares, seconds) per window, oldest first).

    A rank's per-step time has a part that does not shrink with its share (kernel launches, the
    optimizer over whole dense layers, the straggler's factor on them too); a proportional split over-
    corrects when that part is large. Ranks whose line cannot be fitted yet are taken as a = 0.

    Once the shares settle, recent windows sit close together in share and pin the line's slope
    poorly; older windows (the equal first split among them) keep it pinned, down-weighted by
    ``forget`` per window of age so that a change in load still takes over within a few windows."""
    shares, seconds = history[-1]
    world = len(shares)
    ab = []
    for r in range(world):
        fit = fit_costs([(h[0][r], h[1][r]) for h in history], forget)
        if fit is None:
            t = float(seconds[r])
            if not np.isfinite(t) or t <= 0:
                return [int(x) for x in shares]
            fit = (0.0, t / shares[r])
        ab.append(fit)
    a = np.array([x[0] for x in ab])
    b = np.array([x[1] for x in ab])
    free = np.ones(world, dtype=bool)
    n = np.zeros(world)
    for _ in range(world):  # ranks that would fall under min_share are pinned there and the rest re-solved
        rest = global_batch - min_share * (~free).sum()
        target = (rest + (a[free] / b[free]).sum()) / (1.0 / b[free]).sum()
        n[free] = (target - a[free]) / b[free]
        low = free & (n < min_share)
        if not low.any():
            break
        n[low] = min_share
        free &= ~low
    ideal = np.maximum(n, min_share)
    ideal *= global_batch / ideal.sum()
    out = np.floor(ideal).astype(np.int64)
    order = sorted(range(world), key=lambda r: (-(ideal[r] - out[r]), r))
    for r in order[: int(global_batch - out.sum())]:
        out[r] += 1
    return [int(x) for x in out]


def offsets(shares: Sequence[int]) -> list[int]:
    """Start of each rank's contiguous slice of the global batch."""
    return [0, *np.cumsum(shares).tolist()][: len(shares)]


def loss_weight(shares: Sequence[int], rank: int) -> float:
    """Factor on rank ``rank``'s mean loss so that the all-reduce's mean gradient is the global batch's mean."""
    return len(shares) * shares[rank] / float(sum(shares))


def imbalance(values: Sequence[float]) -> float | None:
    """max / mean (1.0 is perfect balance); None when nothing was measured."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0 or v.mean() <= 0:
        return None
    return float(v.max() / v.mean())


def summarize(history: list[dict[str, Any]], mode: str, every: int) -> dict[str, Any]:
    """The record's ``parallel.balance`` section from the per-window history every rank agreed on.

    Each history entry: ``step`` (first step of the window), ``shares``, ``busy_s`` (each rank's mean
    busy seconds per step over the window just measured, None for the first), ``replan_s``.
    """
    measured = [h for h in history if h.get("busy_s")]
    first = measured[0]["busy_s"] if measured else None
    last = measured[-1]["busy_s"] if measured else None
    return {
        "mode": mode, "every_steps": every if mode == "adaptive" else None,
        "windows": len(history),
        "shares_history": [{"step": h["step"], "shares": h["shares"]} for h in history],
        "final_shares": history[-1]["shares"] if history else None,
        "busy_ms_per_step": [{"step": h["step"], "per_rank": [1e3 * x for x in h["busy_s"]]} for h in measured],
        "imbalance_first_window": imbalance(first) if first else None,
        "imbalance_last_window": imbalance(last) if last else None,
        "replan_s_total": float(sum(h.get("replan_s", 0.0) for h in history)),
        "bytes_moved": 0,
        "bytes_moved_note": "data parallel: every rank holds the whole global batch's data; a new share is a new "
                            "slice of it, no parameters move",
        "busy_definition": "per rank: its own compute time per step (start of the step to the last gradient "
                           "bucket handed to the all-reduce, plus the optimizer step) plus any straggler sleep",
    }


class AdaptiveSplit:
    """Drives one rank's data-parallel steps with shares re-chosen every ``every`` steps.

    The timed loop calls ``step(i)`` with the global batch index. Every ``every`` calls (warm-up steps
    included, the same count on every rank) the ranks exchange their median busy seconds per step over
    the window (``gather``: a collective returning every rank's value), pick new shares (``choose_shares``), set this
    rank's loss weight and stage its slices of the next ``every`` global batches; that work is timed as
    the re-plan cost and lies inside the timed window. ``every=None`` keeps the first (equal) split.

    With ``slice_staged(staged, start, stop)`` (an engine that can cut a staged batch into views, or
    return None), every global batch is staged once before the first step, untimed as the static
    split's batches are, and a new share is only a new view of it.
    """

    def __init__(self, global_batches: Sequence[Any], rank: int, world: int, every: int | None,
                 stage: Any, train_step: Any, set_weight: Any, busy: Any, gather: Any, min_share: int = 1,
                 slice_staged: Any = None) -> None:
        self.batches = global_batches
        self.rank, self.world, self.every = rank, world, every
        self._stage, self._train, self._set_weight = stage, train_step, set_weight
        self._busy, self._gather = busy, gather
        self.global_batch = int(global_batches[0].batch_size)
        self.min_share = min_share
        self.shares = equal_shares(self.global_batch, world)
        self.history: list[dict[str, Any]] = []
        self.calls = 0
        self._mark = 0
        self._staged: dict[int, Any] = {}
        self._points: list[tuple[list[int], list[float]]] = []
        self._slice = slice_staged
        self._global = [stage(b) for b in global_batches] if slice_staged is not None else None
        self.fit_windows = 16  # (share, busy) windows a rank's cost line is fitted to, weighted by age

    def _local_staged(self, index: int) -> Any:
        if self._global is not None:
            start = offsets(self.shares)[self.rank]
            view = self._slice(self._global[index % len(self.batches)], start, start + self.shares[self.rank])
            if view is not None:
                return view
        return self._stage(self.local(index))

    def local(self, index: int) -> Any:
        """This rank's slice of global batch ``index`` under the current shares (a Batch)."""
        start = offsets(self.shares)[self.rank]
        return self.batches[index % len(self.batches)].slice(start, start + self.shares[self.rank])

    def _replan(self, index: int) -> None:
        import time

        t0 = time.perf_counter()
        measured = self._busy()[self._mark:]
        mine = float(np.median(measured)) if measured else float("nan")  # robust to a preempted step
        every = self._gather(mine)
        if self.history and all(np.isfinite(every)):
            self._points.append((list(self.shares), list(every)))
            self.shares = choose_shares_affine(self._points[-self.fit_windows:], self.global_batch, self.min_share,
                                               FORGET)
        self._mark = len(self._busy())
        self._set_weight(loss_weight(self.shares, self.rank))
        span = self.every or len(self.batches)
        self._staged = {(index + k) % len(self.batches): self._local_staged(index + k) for k in range(span)}
        self.history.append({"step": self.calls, "shares": list(self.shares),
                             "busy_s": list(every) if self.history else None,
                             "replan_s": time.perf_counter() - t0})

    def step(self, index: int) -> Any:
        if self.calls == 0 or (self.every and self.calls % self.every == 0):
            self._replan(index)
        self.calls += 1
        return self._train(self._staged[index % len(self.batches)])

    def local_staged_last(self) -> Any:
        """A staged slice of the last global batch under the final shares (for the final loss)."""
        return self._local_staged(len(self.batches) - 1)
