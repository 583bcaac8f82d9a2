"""Numpy-only helpers every distributed worker uses: data loading, per-rank slices, parameter fingerprints."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import numpy as np

from recsys_impls.config import Scenario
from recsys_impls.data.batch import Batch
from recsys_impls.errors import UsageError


def prepare_data(scenario: Scenario) -> tuple[Scenario, Any]:
    """Every rank loads the same deterministic data (the scenario seed) through the one data path."""
    from recsys_impls.data.loader import prepare

    prepared, data = prepare(replace(scenario, parallel="none", straggler="none", balance="static"))
    # The faults and the balancing mode are the engines' business: hand them back (validated at build time).
    return replace(prepared, straggler=scenario.straggler, balance=scenario.balance), data


def local_batches(train: Batch, global_batch: int, rank: int, world: int) -> list[Batch]:
    """Split the train split into global batches and keep this rank's contiguous 1/world of each."""
    if global_batch % world:
        raise UsageError(f"--batch-size {global_batch}: must be divisible by the world size {world}")
    local = global_batch // world
    return [g.slice(rank * local, (rank + 1) * local) for g in train.split(global_batch)]


def local_rows(batch: dict[str, np.ndarray], global_batch: int, rank: int, world: int) -> dict[str, np.ndarray]:
    """This rank's contiguous 1/world of a global host batch of named arrays (the retrieval models'), as
    ``local_batches`` slices the ranking models' batches."""
    if global_batch % world:
        raise UsageError(f"--batch-size {global_batch}: must be divisible by the world size {world}")
    local = global_batch // world
    return {k: v[rank * local : (rank + 1) * local] for k, v in batch.items()}


def eval_slice(eval_batch: Batch, rank: int, world: int) -> Batch:
    per = eval_batch.batch_size // world
    return eval_batch.slice(rank * per, (rank + 1) * per)


def fingerprint(params: dict[str, np.ndarray]) -> str:
    """A hash of every parameter's exact bytes: equal fingerprints mean bit-identical replicas."""
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(np.ascontiguousarray(params[name], dtype=np.float32).tobytes())
    return h.hexdigest()
