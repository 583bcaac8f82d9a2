"""TT-Rec: embedding tables as tensor-train cores (Yin et al. 2021, "TT-Rec: Tensor Train Compression
for Deep Learning Recommendation Model Embeddings").

A table of N rows and D columns is viewed as an (n_1 n_2 n_3) x (d_1 d_2 d_3) matrix with
n_1 n_2 n_3 >= N and d_1 d_2 d_3 = D, and stored as three cores G_k of shape [r_{k-1}, n_k, d_k, r_k]
(r_0 = r_3 = 1, r_1 = r_2 = RANK). Row i, written in mixed radix as (i_1, i_2, i_3), is the contraction
G_1[:, i_1] G_2[:, i_2] G_3[:, i_3] flattened to D values. Each core is kept as a small table whose row
i_k is G_k[:, i_k] flattened ([n_k, r_{k-1} d_k r_k]), so a lookup gathers one row of each core, and the
cores train, quantize and store like any other table.
"""

from __future__ import annotations

import math

import numpy as np

CORES = 3


def row_factors(rows: int) -> tuple[int, int, int]:
    """(n_1, n_2, n_3): near-equal factors whose product covers ``rows``."""
    n = max(1, math.ceil(rows ** (1 / CORES) - 1e-9))
    n3 = max(1, math.ceil(rows / (n * n)))
    return n, n, n3


def dim_factors(dim: int) -> tuple[int, int, int]:
    """(d_1, d_2, d_3) with product ``dim``, as balanced as the divisors allow (smallest largest factor,
    then largest smallest)."""
    best = (1, 1, dim)
    for d1 in range(1, dim + 1):
        if dim % d1:
            continue
        for d2 in range(d1, dim // d1 + 1):
            if (dim // d1) % d2:
                continue
            d3 = dim // d1 // d2
            if d3 >= d2 and (d3, -d1) < (best[2], -best[0]):
                best = (d1, d2, d3)
    return best


def ranks(rank: int) -> tuple[int, int, int, int]:
    return 1, rank, rank, 1


def core_shapes(rows: int, dim: int, rank: int) -> list[tuple[int, int]]:
    """[n_k, r_{k-1} * d_k * r_k] of each core as a table."""
    ns, ds, rs = row_factors(rows), dim_factors(dim), ranks(rank)
    return [(ns[k], rs[k] * ds[k] * rs[k + 1]) for k in range(CORES)]


def tt_indices(ids: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i_1, i_2, i_3) of each id: i = (i_1 n_2 + i_2) n_3 + i_3."""
    _, n2, n3 = row_factors(rows)
    ids = np.asarray(ids, np.int64)
    return ids // (n2 * n3), (ids // n3) % n2, ids % n3


def tt_contract(rows: list[np.ndarray], dims: tuple[int, int, int], rank: int) -> np.ndarray:
    """One gathered row of each core per id -> the D-wide rows (float64): G1[i1] G2[i2] G3[i3]."""
    (d1, d2, d3), r = dims, rank
    g1 = rows[0].astype(np.float64).reshape(-1, d1, r)
    g2 = rows[1].astype(np.float64).reshape(-1, r, d2 * r)
    g3 = rows[2].astype(np.float64).reshape(-1, r, d3)
    ab = (g1 @ g2).reshape(-1, d1 * d2, r)
    return (ab @ g3).reshape(-1, d1 * d2 * d3)


def tt_rows(cores: list[np.ndarray], ids: np.ndarray, rows: int, dim: int, rank: int) -> np.ndarray:
    """The D-wide rows of ``ids`` from the three core tables (float64)."""
    idx = tt_indices(ids, rows)
    return tt_contract([cores[k][idx[k]] for k in range(CORES)], dim_factors(dim), rank)


def core_std(rows: int, rank: int) -> float:
    """Std of the Gaussian core entries whose product has the variance of the plain table's
    U(-1/sqrt(N), 1/sqrt(N)) entries: each entry of a row is a sum of r_1 r_2 products of three core
    entries, so std^6 * r^2 = 1 / (3 N)."""
    return (1.0 / (3.0 * rows * rank * rank)) ** (1.0 / 6.0)


def init_cores(rng: np.random.Generator, rows: int, dim: int, rank: int) -> list[np.ndarray]:
    """Gaussian cores (``core_std``), drawn core by core."""
    std = core_std(rows, rank)
    return [rng.normal(0.0, std, size=shape).astype(np.float32) for shape in core_shapes(rows, dim, rank)]


def contraction_flops(dim: int, rank: int) -> int:
    """Multiply-adds x 2 of one row's reconstruction (two small matmuls)."""
    d1, d2, d3 = dim_factors(dim)
    return 2 * d1 * rank * d2 * rank + 2 * d1 * d2 * rank * d3
