"""Vectorised LEB128 varints and delta coding for non-negative int64 arrays (numpy only)."""

from __future__ import annotations

import numpy as np

_MAX_BYTES = 10  # ceil(64 / 7)


def encode_varint(values: np.ndarray) -> bytes:
    """Unsigned LEB128: 7 bits per byte, high bit set on all but the last byte of a value."""
    v = np.asarray(values, dtype=np.int64)
    if v.size and v.min() < 0:
        raise ValueError("varint encodes non-negative integers only")
    u = v.astype(np.uint64)
    nbytes = np.ones(u.shape, dtype=np.int64)
    for k in range(1, _MAX_BYTES):
        nbytes += (u >> np.uint64(7 * k)) > 0
    width = int(nbytes.max()) if u.size else 1
    grid = np.empty((u.size, width), dtype=np.uint8)
    for k in range(width):
        part = ((u >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        grid[:, k] = part | np.where(nbytes > k + 1, 0x80, 0).astype(np.uint8)
    keep = np.arange(width)[None, :] < nbytes[:, None]
    return grid[keep].tobytes()


def decode_varint(data: bytes | np.ndarray, count: int) -> np.ndarray:
    """Inverse of ``encode_varint``; ``count`` values as int64."""
    b = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    last = (b & 0x80) == 0
    if int(last.sum()) != count:
        raise ValueError(f"varint stream holds {int(last.sum())} values, expected {count}")
    value_idx = np.concatenate([[0], np.cumsum(last[:-1])]) if b.size else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.flatnonzero(last)[:-1] + 1]) if b.size else np.zeros(0, np.int64)
    pos = np.arange(b.size) - starts[value_idx]
    out = np.zeros(count, dtype=np.uint64)
    for k in range(int(pos.max()) + 1 if b.size else 0):
        sel = pos == k
        out[value_idx[sel]] |= (b[sel] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    return out.astype(np.int64)


def delta_encode(sorted_values: np.ndarray) -> np.ndarray:
    """First value, then successive differences (non-negative for sorted input)."""
    v = np.asarray(sorted_values, dtype=np.int64)
    return np.diff(v, prepend=np.int64(0)) if v.size else v


def delta_decode(deltas: np.ndarray) -> np.ndarray:
    return np.cumsum(np.asarray(deltas, dtype=np.int64))
