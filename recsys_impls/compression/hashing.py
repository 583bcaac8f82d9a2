"""A fixed, platform-independent integer hash for the hashing trick (numpy, torch or TF tensors).

``bucket = fmix32(fold(id) ^ seed) % K`` where fmix32 is MurmurHash3's 32-bit finalizer and fold
xors the high 32 bits of the id into the low 32. Every product is split so no intermediate exceeds
2^49: the same code gives the same buckets with numpy int64, torch int64 and TensorFlow int64 (no
reliance on signed-overflow wrap-around, no Python ``hash()``, which is salted per process).

Framework code passes its own bitwise operators through ``BitOps``; numpy and torch can use the
default, which is plain Python operators.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

M32 = 0xFFFFFFFF
_C1 = 0x85EBCA6B
_C2 = 0xC2B2AE35
DEFAULT_SEED = 0x9E3779B9


@dataclass(frozen=True)
class BitOps:
    """Bitwise operations on int64 tensors (defaults: Python operators, fine for numpy and torch)."""

    band: Callable[[Any, int], Any] = lambda a, b: a & b
    bxor: Callable[[Any, Any], Any] = lambda a, b: a ^ b
    rshift: Callable[[Any, int], Any] = lambda a, n: a >> n
    lshift: Callable[[Any, int], Any] = lambda a, n: a << n


_PY_OPS = BitOps()


def _mul32(x: Any, c: int, ops: BitOps) -> Any:
    """(x * c) mod 2^32 for 0 <= x < 2^32 without any intermediate above 2^49."""
    lo = x * (c & 0xFFFF)
    hi = ops.band(x * (c >> 16), 0xFFFF)
    return ops.band(lo + ops.lshift(hi, 16), M32)


def hash32(ids: Any, seed: int = DEFAULT_SEED, ops: BitOps = _PY_OPS) -> Any:
    """32-bit hash of non-negative int64 ids, as int64 values in [0, 2^32)."""
    x = ops.bxor(ops.band(ids, M32), ops.band(ops.rshift(ids, 32), M32))
    h = ops.bxor(x, seed & M32)
    h = ops.bxor(h, ops.rshift(h, 16))
    h = _mul32(h, _C1, ops)
    h = ops.bxor(h, ops.rshift(h, 13))
    h = _mul32(h, _C2, ops)
    return ops.bxor(h, ops.rshift(h, 16))


def num_buckets(rows: int, fraction: float) -> int:
    """K = ceil(fraction * rows), at least 1."""
    return max(1, math.ceil(fraction * rows - 1e-9))


def hash_buckets(ids: np.ndarray, buckets: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Numpy oracle: bucket of each id, int64 in [0, buckets)."""
    h = hash32(np.asarray(ids, dtype=np.int64), seed)
    return (h % np.int64(buckets)).astype(np.int64)
