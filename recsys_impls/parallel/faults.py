"""Faults to balance against, and the balancing mode: ``--straggler``, ``--hot-table``, ``--balance``.

Numpy-free and framework-free (parsed in the CLI, in config validation and in asv discovery).

* ``--straggler RANK:FACTOR`` makes one rank's compute FACTOR times slower: at the start of every training
  step that rank sleeps ``(FACTOR - 1) x`` its own measured compute time of the step before (``Straggler``;
  paid at the next step's start, not at this one's end, so a collective issued between steps, such as
  the balancer's gather of step times, does not wait on the sleep and cost the run a step of overlap). What
  counts as compute is the engine's: for PyTorch DDP the time from the step's start to the moment the
  last gradient bucket is handed to the all-reduce, plus the optimizer step (time blocked waiting for
  the other ranks is excluded, so the slowdown follows the rank's own work, whatever its share); for
  TensorFlow MultiWorkerMirrored two in-graph timestamps, before the step and when its gradients are
  ready, before the all-reduce; for TorchRec the whole step, which includes its collectives.
* ``--hot-table F:SHARE`` makes synthetic table F take SHARE of all lookups: its bags get a mean of
  ``SHARE x (others' total mean) / (1 - SHARE)`` ids (``hot_bag_mean``), every other table keeps its own.
* ``--balance static|adaptive[:K]``: static splits are the equal (data parallel) or planned (sharded)
  ones; adaptive re-chooses them from measured per-rank times every K steps (default 5).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from recsys_impls.errors import UsageError

MAX_FACTOR = 100.0
MAX_HOT_BAG = 512  # mean ids per sample of the hot table; more would blow up the data's memory
DEFAULT_BALANCE_EVERY = 5  # measured better than 10 under a 2x straggler on dlrm-ref (README, balancing)
MAX_BALANCE_EVERY = 10**6
BALANCE_MODES = ("static", "adaptive")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value


@dataclass(frozen=True)
class StragglerSpec:
    rank: int
    factor: float

    def to_dict(self) -> dict[str, object]:
        return {"rank": self.rank, "factor": self.factor,
                "mechanism": "before each step the rank sleeps (factor - 1) x its own measured compute time of "
                             "the step before"}


def _index_and_number(flag: str, spec: object, accepted: str,
                      in_range: Callable[[float], bool]) -> tuple[int, float] | None:
    """``none`` -> None, ``INDEX:NUMBER`` (INDEX an integer >= 0, NUMBER finite and ``in_range``) -> both;
    a one-line UsageError naming ``flag`` and what is accepted otherwise."""
    if not isinstance(spec, str):
        raise UsageError(f"{flag} {spec!r}: accepted: {accepted}")
    s = spec.strip().lower()
    if s == "none":
        return None
    index, sep, number = s.partition(":")
    v = _number(number)
    if not sep or not index.isdigit() or not math.isfinite(v) or not in_range(v):
        raise UsageError(f"{flag} {spec[:60]}: accepted: {accepted}")
    return int(index), v


def parse_straggler(spec: str) -> StragglerSpec | None:
    """``none`` or ``RANK:FACTOR`` (rank >= 0, 1 <= factor <= 100); a one-line UsageError otherwise."""
    accepted = f"none, or RANK:FACTOR with RANK an integer >= 0 and FACTOR a number from 1 to {MAX_FACTOR:g}, e.g. 1:2"
    parsed = _index_and_number("--straggler", spec, accepted, lambda f: 1.0 <= f <= MAX_FACTOR)
    return None if parsed is None else StragglerSpec(*parsed)


@dataclass(frozen=True)
class HotTableSpec:
    table: int
    share: float


def parse_hot_table(spec: str) -> HotTableSpec | None:
    """``none`` or ``F:SHARE`` (table index >= 0, 0 < SHARE < 1)."""
    accepted = "none, or F:SHARE with F a table index (from 0) and SHARE a number between 0 and 1, e.g. 2:0.5"
    parsed = _index_and_number("--hot-table", spec, accepted, lambda v: 0.0 < v < 1.0)
    return None if parsed is None else HotTableSpec(*parsed)


def hot_bag_mean(spec: HotTableSpec, num_tables: int, ids_per_feature: int) -> float:
    """Mean bag size of the hot table so that it takes ``spec.share`` of all lookups; one-line UsageError
    when the table does not exist, or the share needs bags under 1 id or over MAX_HOT_BAG ids."""
    if spec.table >= num_tables:
        raise UsageError(f"--hot-table {spec.table}:{spec.share:g}: table {spec.table} does not exist; accepted: "
                         f"a table index from 0 to {num_tables - 1}")
    if num_tables < 2:
        raise UsageError(f"--hot-table {spec.table}:{spec.share:g}: needs at least 2 tables (the model has 1)")
    others = (num_tables - 1) * ids_per_feature
    mean = spec.share * others / (1.0 - spec.share)
    if mean < 1.0 or mean > MAX_HOT_BAG:
        lo = 1.0 / (1.0 + others)
        hi = MAX_HOT_BAG / (MAX_HOT_BAG + others)
        raise UsageError(f"--hot-table {spec.table}:{spec.share:g}: needs a mean bag of {mean:.3g} ids; accepted: "
                         f"SHARE from {lo:.4g} (one id per sample) to {hi:.4g} ({MAX_HOT_BAG} ids) for "
                         f"{num_tables} tables of {ids_per_feature} ids per sample")
    return mean


@dataclass(frozen=True)
class BalanceSpec:
    mode: str = "static"
    every: int = DEFAULT_BALANCE_EVERY

    @property
    def adaptive(self) -> bool:
        return self.mode == "adaptive"


def parse_balance(spec: str) -> BalanceSpec:
    """``static`` or ``adaptive[:K]`` (re-choose every K steps)."""
    accepted = f"static, adaptive, or adaptive:K with K an integer from 1 to {MAX_BALANCE_EVERY} (default K " \
               f"{DEFAULT_BALANCE_EVERY})"
    if not isinstance(spec, str):
        raise UsageError(f"--balance {spec!r}: accepted: {accepted}")
    s = spec.strip().lower()
    mode, sep, every = s.partition(":")
    if mode == "static" and not sep:
        return BalanceSpec()
    if mode == "adaptive":
        if not sep:
            return BalanceSpec("adaptive")
        if every.isdigit() and 1 <= int(every) <= MAX_BALANCE_EVERY:
            return BalanceSpec("adaptive", int(every))
    raise UsageError(f"--balance {spec[:60]}: accepted: {accepted}")


class Straggler:
    """Owes ``(factor - 1) x`` the compute time it is told about after a step, and sleeps it off before the
    next one; counts what it slept.

    ``sleep`` is injectable so tests can check the arithmetic without waiting."""

    def __init__(self, factor: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.factor = float(factor)
        self.slept_s = 0.0
        self.steps = 0
        self.owed_s = 0.0
        self._sleep = sleep

    def before_step(self) -> None:
        """Sleep what the previous step owes (nothing before the first step)."""
        if self.owed_s > 0:
            self._sleep(self.owed_s)
            self.slept_s += self.owed_s
        self.owed_s = 0.0

    def after_step(self, compute_s: float) -> float:
        """Note this step's compute; returns the sleep it adds (paid by the next ``before_step``)."""
        extra = max(0.0, (self.factor - 1.0) * compute_s)
        self.owed_s = extra
        self.steps += 1
        return extra

    def report(self) -> dict[str, float]:
        return {"factor": self.factor, "slept_s": self.slept_s, "steps": self.steps}


def check_supported(framework: str, mode: str, sharding: str, straggler: str, balance: str) -> None:
    """Raise ScenarioUnsupported (with the reason) for fault / balance pairs an engine cannot run."""
    from recsys_impls.errors import ScenarioUnsupported

    tf_ps = framework == "tf" and mode in ("sharded", "ps")
    if tf_ps and parse_straggler(straggler) is not None:
        raise ScenarioUnsupported(
            "--straggler with TensorFlow ParameterServerStrategy: the workers are tf.distribute servers that run "
            "the coordinator's closures; there is no per-step hook on them to slow one down")
    if not parse_balance(balance).adaptive:
        return
    if tf_ps:
        raise ScenarioUnsupported(
            "--balance adaptive with TensorFlow ParameterServerStrategy: not wired; the coordinator already hands "
            "each closure to whichever worker is free, so work follows load without a re-plan")
    if mode == "sharded" and sharding != "table-wise":
        raise ScenarioUnsupported(
            f"--balance adaptive with sharded:{sharding}: the re-plan moves whole tables (table-wise only); "
            "row-wise and column-wise split every table evenly by construction")


def slowed(step: Callable[[object], object], straggler: Straggler,
           sync: Callable[[], None] | None = None) -> Callable[[object], object]:
    """``step`` with the straggler's sleep of (factor - 1) x the previous step's whole time before it (for engines
    whose step cannot be split into own compute and waiting: it includes the step's collectives)."""

    def run(x: object) -> object:
        straggler.before_step()
        t0 = time.perf_counter()
        out = step(x)
        if sync is not None:
            sync()
        straggler.after_step(time.perf_counter() - t0)
        return out

    return run
