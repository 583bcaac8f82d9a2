"""Row-wise int8 / int4 quantization of embedding tables (numpy oracle, FBGEMM-compatible layout).

Each row r is stored as integers q in [0, 2^bits - 1] with a per-row scale s and bias b, and read back
as ``q * s + b``. The quantizer guarantees |x - (q*s + b)| <= s/2 for every element (half a step):

* int8: scale and bias in float32, b = row min, s = (max - min) / 255 (FBGEMM "byte rowwise").
* int4: scale and bias in float16 (FBGEMM "4bit rowwise"). b is rounded *down* to float16 and s *up*,
  so that [b, b + 15 s] still covers the row and rounding to the nearest level stays within s/2.

The fused layouts (``fuse_*``) are exactly what ``torch.ops.quantized.embedding_bag_byte_rowwise_offsets``
and ``embedding_bag_4bit_rowwise_offsets`` read: the row's bytes followed by scale and bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RowwiseQuantized:
    """A quantized table: q uint8 [N, D] (one level per byte, unpacked), scale and bias [N]."""

    q: np.ndarray
    scale: np.ndarray
    bias: np.ndarray
    bits: int

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.q.shape[0]), int(self.q.shape[1]))

    def dequantize(self) -> np.ndarray:
        """float32 [N, D]."""
        s = self.scale.astype(np.float32)[:, None]
        b = self.bias.astype(np.float32)[:, None]
        return (self.q.astype(np.float32) * s + b).astype(np.float32)

    def stored_nbytes(self) -> int:
        """Bytes of the stored form: packed integers plus per-row scale and bias."""
        n, d = self.shape
        row = d if self.bits == 8 else (d + 1) // 2
        return n * row + int(self.scale.nbytes + self.bias.nbytes)


def _round_down_f16(x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float16)
    too_big = h.astype(np.float32) > x
    h[too_big] = np.nextafter(h[too_big], np.float16(-np.inf))
    return h


def _round_up_f16(x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float16)
    too_small = h.astype(np.float32) < x
    h[too_small] = np.nextafter(h[too_small], np.float16(np.inf))
    return h


def quantize_rowwise(table: np.ndarray, bits: int) -> RowwiseQuantized:
    """Quantize a float [N, D] table row by row to ``bits`` (8 or 4)."""
    if bits not in (8, 4):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    x = np.asarray(table, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"table must be 2-D, got shape {x.shape}")
    levels = (1 << bits) - 1
    lo = x.min(axis=1) if x.shape[1] else np.zeros(x.shape[0], np.float32)
    hi = x.max(axis=1) if x.shape[1] else np.zeros(x.shape[0], np.float32)
    if bits == 8:
        bias = lo.astype(np.float32)
        scale = ((hi - bias) / np.float32(levels)).astype(np.float32)
    else:
        bias = _round_down_f16(lo)
        span = (hi - bias.astype(np.float32)) / np.float32(levels)
        scale = _round_up_f16(span.astype(np.float32))
    s32 = scale.astype(np.float32)
    safe = np.where(s32 > 0, s32, np.float32(1.0))
    q = np.rint((x - bias.astype(np.float32)[:, None]) / safe[:, None])
    q = np.clip(q, 0, levels).astype(np.uint8)
    return RowwiseQuantized(q=q, scale=scale, bias=bias, bits=bits)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """[N, D] levels 0..15 -> [N, ceil(D/2)] bytes, element 2j in the low nibble (FBGEMM order)."""
    n, d = q.shape
    if d % 2:
        q = np.concatenate([q, np.zeros((n, 1), np.uint8)], axis=1)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, dim: int) -> np.ndarray:
    out = np.empty((packed.shape[0], packed.shape[1] * 2), np.uint8)
    out[:, 0::2] = packed & 0x0F
    out[:, 1::2] = packed >> 4
    return out[:, :dim]


def fuse_byte_rowwise(qt: RowwiseQuantized) -> np.ndarray:
    """uint8 [N, D + 8]: D bytes, then float32 scale, then float32 bias (FBGEMM byte-rowwise)."""
    assert qt.bits == 8
    tail = np.stack([qt.scale.astype(np.float32), qt.bias.astype(np.float32)], axis=1).view(np.uint8)
    return np.ascontiguousarray(np.concatenate([qt.q, tail], axis=1))


def fuse_4bit_rowwise(qt: RowwiseQuantized) -> np.ndarray:
    """uint8 [N, ceil(D/2) + 4]: packed nibbles, then float16 scale, then float16 bias (FBGEMM 4bit)."""
    assert qt.bits == 4
    tail = np.stack([qt.scale.astype(np.float16), qt.bias.astype(np.float16)], axis=1).view(np.uint8)
    return np.ascontiguousarray(np.concatenate([pack_int4(qt.q), tail], axis=1))


def unfuse(fused: np.ndarray, dim: int, bits: int) -> RowwiseQuantized:
    """Inverse of the ``fuse_*`` functions."""
    if bits == 8:
        q = fused[:, :dim].copy()
        tail = np.ascontiguousarray(fused[:, dim:]).view(np.float32)
    else:
        nb = (dim + 1) // 2
        q = unpack_int4(fused[:, :nb], dim)
        tail = np.ascontiguousarray(fused[:, nb:]).view(np.float16)
    return RowwiseQuantized(q=q, scale=tail[:, 0].copy(), bias=tail[:, 1].copy(), bits=bits)


def half_precision(table: np.ndarray, kind: str) -> np.ndarray:
    """A table rounded to fp16 or bf16 (bf16 returned as float32 holding bf16-rounded values)."""
    x = np.asarray(table, dtype=np.float32)
    if kind == "fp16":
        return x.astype(np.float16)
    if kind == "bf16":
        bits = x.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        return (rounded << 16).astype(np.uint32).view(np.float32)
    raise ValueError(f"kind must be fp16 or bf16, got {kind!r}")
