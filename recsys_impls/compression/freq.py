"""Frequency-based pruning of embedding rows: ids seen fewer than MIN_COUNT times share one row.

Stored form per table: the sorted kept ids (int32, or int64 for tables with >= 2^31 rows), their
rows, and one fallback row (the mean of the dropped rows). Lookup: binary search of the id among the
kept ids; a miss reads the fallback row (index K). No dense id -> row map is stored.
"""

from __future__ import annotations

import numpy as np


def kept_ids(counts: np.ndarray, min_count: int) -> np.ndarray:
    """Sorted ids whose training count reaches ``min_count``."""
    ids = np.flatnonzero(np.asarray(counts) >= min_count)
    return ids.astype(np.int32 if counts.shape[0] < 2**31 else np.int64)


def remap(ids: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Row index of each id in the pruned table: position among ``kept`` or len(kept) (the fallback)."""
    ids = np.asarray(ids, dtype=np.int64)
    k = kept.shape[0]
    if k == 0:
        return np.zeros_like(ids)
    pos = np.searchsorted(kept.astype(np.int64), ids)
    hit = (pos < k) & (kept.astype(np.int64)[np.minimum(pos, k - 1)] == ids)
    return np.where(hit, pos, k)


def prune_table(table: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """[K + 1, D]: the kept rows, then the fallback row (mean of the dropped rows, or zeros)."""
    mask = np.zeros(table.shape[0], dtype=bool)
    mask[kept.astype(np.int64)] = True
    dropped = table[~mask]
    fallback = dropped.mean(axis=0) if dropped.shape[0] else np.zeros(table.shape[1], table.dtype)
    return np.concatenate([table[mask], fallback[None, :].astype(table.dtype)], axis=0)
