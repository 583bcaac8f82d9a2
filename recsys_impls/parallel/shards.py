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


def param_digest(value: np.ndarray) -> Any:
    """A running sha256 of one parameter's exact fp32 bytes (row-major), to be extended block by block."""
    h = hashlib.sha256()
    update_digest(h, value)
    return h


def update_digest(h: Any, block: np.ndarray) -> None:
    """Extend ``h`` by the fp32 bytes of ``block``: hashing the row blocks of a table in order gives the
    digest of the whole table."""
    h.update(np.ascontiguousarray(block, dtype=np.float32).reshape(-1).view(np.uint8))


def combine_digests(digests: dict[str, str]) -> str:
    """The model's fingerprint from its parameters' hex digests (name and digest, in name order)."""
    h = hashlib.sha256()
    for name in sorted(digests):
        h.update(name.encode())
        h.update(bytes.fromhex(digests[name]))
    return h.hexdigest()


def fingerprint(params: dict[str, np.ndarray]) -> str:
    """A hash of every parameter's name and exact bytes: equal fingerprints mean bit-identical parameters.

    It hashes each parameter on its own first (``param_digest``), so a model whose tables are split over
    ranks gets the same value from per-table digests streamed where the shards are, without any rank
    holding the whole model (``ShardedDLRM.fingerprint``).
    """
    return combine_digests({name: param_digest(value).hexdigest() for name, value in params.items()})


def row_blocks(rows: int, dim: int, block_bytes: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of about ``block_bytes`` of fp32 each: the unit a split table is streamed in,
    so no rank holds more than one block of a table it does not own."""
    step = max(1, block_bytes // max(1, 4 * dim))
    return [(a, min(a + step, rows)) for a in range(0, rows, step)]


def block_pieces(shards: list[tuple[int, int, Any]], start: int, stop: int) -> list[tuple[int, int, Any]]:
    """The parts of one table's shards ((row offset, column offset, rows)) inside rows [start, stop), as
    (row offset, column offset, slice); slices of a tensor or an array, whichever the shards are."""
    out = []
    for r0, c0, t in shards:
        lo, hi = max(start, r0), min(stop, r0 + t.shape[0])
        if lo < hi:
            out.append((lo, c0, t[lo - r0:hi - r0]))
    return out


def assemble_block(pieces: list[tuple[int, int, np.ndarray]], start: int, stop: int, dim: int) -> np.ndarray:
    """Rows [start, stop) of a table from the pieces every rank sent (``block_pieces``)."""
    block = np.zeros((stop - start, dim), np.float32)
    for r0, c0, arr in pieces:
        block[r0 - start:r0 - start + arr.shape[0], c0:c0 + arr.shape[1]] = arr
    return block
