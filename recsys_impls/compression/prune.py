"""Magnitude pruning masks at an exact sparsity, and sparse storage of the pruned weights.

Sparse storage picks, per matrix, the smaller of two honest formats (both hold only the kept values):
CSR (values float32, column indices int16 when the matrix has < 32768 columns, else int32, row
pointers int32) or bitmask (one bit per element, packed, plus the kept values). The serialized
arrays are what is counted as stored bytes.
"""

from __future__ import annotations

import numpy as np


def pruned_count(numel: int, sparsity: float) -> int:
    """How many elements a matrix of ``numel`` loses at ``sparsity`` (rounded to nearest)."""
    return int(round(sparsity * numel))


def magnitude_mask(weight: np.ndarray, sparsity: float) -> np.ndarray:
    """bool mask, True = kept; exactly ``pruned_count`` smallest-|w| entries are False (ties by index)."""
    w = np.asarray(weight)
    k = pruned_count(w.size, sparsity)
    order = np.argsort(np.abs(w).reshape(-1), kind="stable")
    mask = np.ones(w.size, dtype=bool)
    mask[order[:k]] = False
    return mask.reshape(w.shape)


def to_sparse_arrays(weight: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """Encode a (pruned) float32 matrix as the smaller of CSR and bitmask arrays, keys under ``prefix``."""
    w = np.asarray(weight, dtype=np.float32)
    rows, cols = w.shape
    nz = w != 0
    values = w[nz]
    idx_dtype = np.int16 if cols < 32768 else np.int32
    csr = {
        f"{prefix}.csr_values": values,
        f"{prefix}.csr_indices": np.nonzero(nz)[1].astype(idx_dtype),
        f"{prefix}.csr_indptr": np.concatenate([[0], np.cumsum(nz.sum(axis=1))]).astype(np.int32),
        f"{prefix}.shape": np.array([rows, cols], dtype=np.int32),
    }
    bitmask = {
        f"{prefix}.bm_values": values,
        f"{prefix}.bm_mask": np.packbits(nz.reshape(-1)),
        f"{prefix}.shape": np.array([rows, cols], dtype=np.int32),
    }
    nbytes = lambda d: sum(a.nbytes for a in d.values())  # noqa: E731
    return csr if nbytes(csr) <= nbytes(bitmask) else bitmask


def from_sparse_arrays(arrays: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """Inverse of ``to_sparse_arrays``: the dense float32 matrix."""
    rows, cols = (int(v) for v in arrays[f"{prefix}.shape"])
    out = np.zeros((rows, cols), np.float32)
    if f"{prefix}.csr_values" in arrays:
        indptr = arrays[f"{prefix}.csr_indptr"].astype(np.int64)
        r = np.repeat(np.arange(rows), np.diff(indptr))
        out[r, arrays[f"{prefix}.csr_indices"].astype(np.int64)] = arrays[f"{prefix}.csr_values"]
    else:
        mask = np.unpackbits(arrays[f"{prefix}.bm_mask"], count=rows * cols).astype(bool)
        flat = out.reshape(-1)
        flat[mask] = arrays[f"{prefix}.bm_values"]
    return out
