"""Sharding planner (numpy only): place embedding tables on ranks, balancing bytes and lookups.

The cost of a table for balancing is a blend of its share of all embedding bytes (memory) and its
share of all lookups per batch (work and all-to-all traffic). Lookups come from the pooling factor x
batch size, or from measured id counts when given. Table-wise placement is greedy LPT bin packing
(largest cost first onto the least-loaded rank); row-wise and column-wise split every table evenly.
Row-wise per-rank lookups use measured id frequencies when given: with Zipf ids, contiguous row blocks
put the hot rows on the first rank, which the plan then shows as lookup imbalance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_impls.errors import UsageError

PLAN_TYPES = ("table-wise", "row-wise", "column-wise", "auto")


@dataclass(frozen=True)
class TableLoad:
    """One table's size and expected traffic."""

    rows: int
    dim: int
    bytes: int
    lookups: float  # ids looked up per global batch


def table_loads(table_sizes: tuple[int, ...] | list[int], dim: int, batch_size: int, pooling: float = 1.0,
                bytes_per_value: int = 4, ids_per_sample: list[float] | np.ndarray | None = None) -> list[TableLoad]:
    """Per-table bytes and lookups per batch; ``ids_per_sample`` (measured mean ids per sample per table)
    overrides the nominal pooling factor."""
    if ids_per_sample is not None and len(ids_per_sample) != len(table_sizes):
        raise UsageError(f"planner: ids_per_sample has {len(ids_per_sample)} entries for {len(table_sizes)} tables")
    out = []
    for f, rows in enumerate(table_sizes):
        per = float(ids_per_sample[f]) if ids_per_sample is not None else float(pooling)
        out.append(TableLoad(int(rows), int(dim), int(rows) * int(dim) * bytes_per_value, per * batch_size))
    return out


def _imbalance(values: np.ndarray) -> float:
    mean = float(values.mean())
    return float(values.max() / mean) if mean > 0 else 1.0


def _costs(tables: list[TableLoad], bytes_weight: float) -> np.ndarray:
    b = np.array([t.bytes for t in tables], dtype=np.float64)
    lk = np.array([t.lookups for t in tables], dtype=np.float64)
    bn = b / b.sum() if b.sum() > 0 else b
    ln = lk / lk.sum() if lk.sum() > 0 else lk
    return bytes_weight * bn + (1.0 - bytes_weight) * ln


def table_wise(tables: list[TableLoad], world: int, bytes_weight: float = 0.5) -> list[int]:
    """LPT bin packing: rank of each table. Deterministic (ties broken by table index, then rank)."""
    return lpt(_costs(tables, bytes_weight), world)


def lpt(costs: np.ndarray | list[float], world: int) -> list[int]:
    """Largest cost first onto the least-loaded rank: the rank of each item."""
    costs = np.asarray(costs, dtype=np.float64)
    order = sorted(range(costs.size), key=lambda i: (-costs[i], i))
    load = np.zeros(world)
    ranks = [0] * costs.size
    for i in order:
        r = int(np.argmin(load))
        ranks[i] = r
        load[r] += costs[i]
    return ranks


def row_block_lookups(rows: int, world: int, id_counts: np.ndarray | None, lookups: float) -> np.ndarray:
    """Lookups landing on each rank's contiguous row block (TorchRec's row-wise layout)."""
    block = -(-rows // world)
    if id_counts is None:
        sizes = np.array([max(0, min(block, rows - r * block)) for r in range(world)], dtype=np.float64)
        return lookups * sizes / rows
    counts = np.asarray(id_counts, dtype=np.float64)
    per = np.array([counts[r * block : (r + 1) * block].sum() for r in range(world)])
    total = per.sum()
    return lookups * per / total if total > 0 else per


def plan(tables: list[TableLoad], world: int, sharding: str, bytes_weight: float = 0.5,
         id_counts: list[np.ndarray] | None = None, assignment: list[int] | None = None) -> dict[str, Any]:
    """A placement plus per-rank bytes and lookups and their imbalance (max / mean).

    ``id_counts[f]`` (optional) is how often each row of table f was looked up in measured data;
    ``assignment`` (table-wise only) places the tables as given instead of by LPT (a re-plan).
    ``auto`` picks whichever of the three layouts has the lowest maximum blended cost.
    """
    if sharding not in PLAN_TYPES:
        raise UsageError(f"planner: sharding {sharding!r}; accepted: {', '.join(PLAN_TYPES)}")
    if world < 1:
        raise UsageError(f"planner: world size {world}; must be >= 1")
    if sharding == "auto":
        options = [plan(tables, world, s, bytes_weight, id_counts) for s in ("table-wise", "row-wise", "column-wise")]
        best = min(options, key=lambda p: (p["max_cost"], p["sharding"] != "table-wise"))
        best = dict(best)
        best["chosen_by"] = "auto: lowest maximum blended cost of table-wise, row-wise, column-wise"
        best["alternatives"] = {p["sharding"]: p["imbalance"] for p in options}
        return best
    given = assignment
    nbytes = np.zeros(world)
    lookups = np.zeros(world)
    assignment = []
    if sharding == "table-wise":
        ranks = list(given) if given is not None else table_wise(tables, world, bytes_weight)
        for t, r in zip(tables, ranks, strict=True):
            nbytes[r] += t.bytes
            lookups[r] += t.lookups
        assignment = ranks
    elif sharding == "row-wise":
        for f, t in enumerate(tables):
            block = -(-t.rows // world)
            for r in range(world):
                nbytes[r] += max(0, min(block, t.rows - r * block)) * t.bytes / t.rows
            lookups += row_block_lookups(t.rows, world, None if id_counts is None else id_counts[f], t.lookups)
            assignment.append(list(range(world)))
    else:  # column-wise: each rank holds a slice of every table's columns and serves all its lookups
        for t in tables:
            cols = np.array_split(np.arange(t.dim), world)
            for r, c in enumerate(cols):
                nbytes[r] += t.bytes * len(c) / t.dim
                lookups[r] += t.lookups * (len(c) > 0)
            assignment.append([r for r, c in enumerate(cols) if len(c)])
    tb = sum(t.bytes for t in tables) or 1
    tl = sum(t.lookups for t in tables) or 1.0
    cost = bytes_weight * nbytes / tb + (1 - bytes_weight) * lookups / tl
    return {
        "sharding": sharding,
        "world_size": world,
        "bytes_weight": bytes_weight,
        "assignment": assignment,
        "per_rank": [{"rank": r, "bytes": int(nbytes[r]), "lookups_per_batch": float(lookups[r]),
                      "cost": float(cost[r])} for r in range(world)],
        "imbalance": {"bytes": _imbalance(nbytes), "lookups": _imbalance(lookups), "cost": _imbalance(cost)},
        "max_cost": float(cost.max()),
        "lookups_from": "measured id counts" if id_counts is not None else "pooling factor x batch size",
    }


def measured_ids(batch: Any, table_sizes: tuple[int, ...] | list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Mean ids per sample for each table and per-row id counts, from a Batch of real or synthetic data."""
    per_sample = batch.lengths.sum(axis=1) / max(batch.batch_size, 1)
    counts = [np.bincount(batch.feature_ids(f), minlength=n)[:n] for f, n in enumerate(table_sizes)]
    return per_sample.astype(np.float64), counts


def replan_by_time(seconds: list[float], table_bytes: list[int], world: int,
                   current: list[int]) -> dict[str, Any]:
    """Table-wise re-plan from each table's measured work time (LPT on seconds): the new rank of each
    table, per-rank seconds before and after with their imbalance, and the tables (and bytes) that move."""
    t = np.asarray(seconds, dtype=np.float64)
    new = lpt(t, world)
    before, after = np.zeros(world), np.zeros(world)
    for f, (old, r) in enumerate(zip(current, new, strict=True)):
        before[old] += t[f]
        after[r] += t[f]
    if _imbalance(after) >= _imbalance(before):  # never worse than the plan it replaces
        new, after = list(current), before.copy()
    moved = [f for f, (old, r) in enumerate(zip(current, new, strict=True)) if old != r]
    return {
        "assignment": new, "previous_assignment": list(current), "moved_tables": moved,
        "table_bytes_moved": int(sum(table_bytes[f] for f in moved)),
        "table_seconds": [float(x) for x in t],
        "predicted_seconds_per_rank": {"before": before.tolist(), "after": after.tolist()},
        "predicted_imbalance": {"before": _imbalance(before), "after": _imbalance(after)},
    }
