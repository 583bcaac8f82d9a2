"""Quotient-remainder index maps (Shi et al. 2020, "Compositional Embeddings").

Id i of a table with N rows becomes the pair (i // C, i % C); the quotient table has ceil(N / C)
rows and the remainder table C rows. The map is a bijection on [0, N), so distinct ids always get
distinct (quotient, remainder) pairs and, with generic weights, distinct vectors.
"""

from __future__ import annotations

import math

import numpy as np


def qr_table_rows(rows: int, collisions: int) -> tuple[int, int]:
    """(quotient rows, remainder rows) for a table of ``rows`` ids."""
    return max(1, math.ceil(rows / collisions)), max(1, min(collisions, rows))


def qr_indices(ids: np.ndarray, collisions: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    return ids // collisions, ids % collisions


def qr_dims(dim: int, op: str) -> tuple[int, int]:
    """Widths of the quotient and remainder tables: D each, or a D - D//2 / D//2 split for concat."""
    if op == "concat":
        return dim - dim // 2, dim // 2
    return dim, dim


def qr_combine(eq: np.ndarray, er: np.ndarray, op: str) -> np.ndarray:
    if op == "mult":
        return eq * er
    if op == "add":
        return eq + er
    if op == "concat":
        return np.concatenate([eq, er], axis=-1)
    raise ValueError(f"unknown QR operation {op!r}")
