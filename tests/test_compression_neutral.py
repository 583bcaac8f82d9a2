"""Framework-neutral compression pieces: spec parsing, numpy quantizers, hashing, QR, pruning, freq maps."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_impls.compression import describe_methods, parse_compression
from recsys_impls.compression.freq import kept_ids, prune_table, remap
from recsys_impls.compression.hashing import hash_buckets, num_buckets
from recsys_impls.compression.mixed_dim import mixed_dims
from recsys_impls.compression.prune import from_sparse_arrays, magnitude_mask, pruned_count, to_sparse_arrays
from recsys_impls.compression.qr import qr_indices, qr_table_rows
from recsys_impls.compression.quant import (
    fuse_4bit_rowwise,
    fuse_byte_rowwise,
    half_precision,
    quantize_rowwise,
    unfuse,
)
from recsys_impls.errors import UsageError

# ---- spec --------------------------------------------------------------------------------------


def test_parse_single_methods() -> None:
    assert parse_compression("none").is_baseline
    assert parse_compression("int8").precision == "int8"
    assert parse_compression("INT4").precision == "int4"
    p = parse_compression("hash:0.1")
    assert (p.layout, p.hash_fraction) == ("hash", 0.1)
    p = parse_compression("qr:4")
    assert (p.layout, p.qr_collisions, p.qr_op) == ("qr", 4, "mult")
    assert parse_compression("qr:8:concat").qr_op == "concat"
    assert parse_compression("mixed-dim:0.3").md_alpha == 0.3
    assert parse_compression("freq-prune:3").freq_min_count == 3
    assert parse_compression("prune:0.8").prune_sparsity == 0.8
    assert parse_compression("mlp-int8").mlp_int8


def test_parse_combination() -> None:
    p = parse_compression("int8, prune:0.5")
    assert (p.precision, p.prune_sparsity) == ("int8", 0.5)
    assert p.methods == ("int8", "prune")
    p = parse_compression("qr:4:add,int4,mlp-int8")
    assert p.methods == ("qr", "int4", "mlp-int8")


@pytest.mark.parametrize(
    "spec, words",
    [
        ("int8,int4", ["int8", "int4", "conflict"]),
        ("hash:0.1,qr:4", ["hash:0.1", "qr:4", "conflict"]),
        ("prune:0.5,mlp-int8", ["prune:0.5", "mlp-int8"]),
        ("fp16,fp16", ["fp16", "conflict"]),
        ("none,int8", ["none"]),
        ("hash:0", ["hash:0", "fraction"]),
        ("hash:1.5", ["fraction"]),
        ("qr:1", ["collisions"]),
        ("qr:4:times", ["times", "mult"]),
        ("prune:1", ["sparsity"]),
        ("prune", ["prune:SPARSITY"]),
        ("int9", ["unknown", "int9", "accepted"]),
        ("", ["empty"]),
        ("int8,,fp16", ["empty item"]),
        ("int8:2", ["no parameter"]),
    ],
)
def test_parse_errors_are_one_line(spec: str, words: list[str]) -> None:
    with pytest.raises(UsageError) as exc:
        parse_compression(spec)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("--compression")
    for w in words:
        assert w in msg


def test_describe_methods_covers_parser() -> None:
    rows = describe_methods()
    names = {r["method"] for r in rows}
    assert {"none", "fp16", "bf16", "int8", "int4", "hash", "qr", "mixed-dim", "freq-prune", "prune",
            "mlp-int8"} <= names
    assert all(r["description"] and r["frameworks"] and str(r["spec"]).startswith(str(r["method"])) for r in rows)


# ---- quantization -----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("dim", [1, 7, 16])
def test_rowwise_dequant_error_within_half_step(bits: int, dim: int) -> None:
    rng = np.random.default_rng(bits * 100 + dim)
    t = (rng.normal(size=(500, dim)) * rng.uniform(1e-3, 10, size=(500, 1))).astype(np.float32)
    t[0] = 0.25  # a constant row
    q = quantize_rowwise(t, bits)
    assert q.q.max() <= (1 << bits) - 1
    step = q.scale.astype(np.float32)[:, None]
    err = np.abs(q.dequantize() - t)
    # half a step, plus float32 rounding of q*s+b (a few ulps of the row's magnitude)
    tol = step / 2 * (1 + 1e-5) + 4 * np.finfo(np.float32).eps * np.abs(t).max(axis=1, keepdims=True)
    assert (err <= tol).all()
    assert err[0].max() == 0.0
    # The step really is the row's range over the levels (no cheating with a tiny step and clipping).
    span = (t.max(axis=1) - t.min(axis=1)) / ((1 << bits) - 1)
    assert (q.scale.astype(np.float32) >= span * (1 - 1e-6)).all()
    # ... and no wider than the (fp16-rounded) bias-to-max range needs.
    cover = (t.max(axis=1) - q.bias.astype(np.float32)) / ((1 << bits) - 1)
    assert (q.scale.astype(np.float32) <= cover * (1 + 2**-9) + 1e-7).all()


@pytest.mark.parametrize("bits", [8, 4])
def test_fused_layout_round_trip(bits: int) -> None:
    rng = np.random.default_rng(3)
    t = rng.normal(size=(20, 9)).astype(np.float32)
    q = quantize_rowwise(t, bits)
    fused = fuse_byte_rowwise(q) if bits == 8 else fuse_4bit_rowwise(q)
    assert fused.shape == (20, 9 + 8) if bits == 8 else (20, 5 + 4)
    assert fused.nbytes == q.stored_nbytes()
    back = unfuse(fused, 9, bits)
    np.testing.assert_array_equal(back.dequantize(), q.dequantize())


def test_half_precision() -> None:
    x = np.array([[1.0, 1.0 + 2**-9, 3.14159, -2.5e-3]], np.float32)
    bf = half_precision(x, "bf16")
    assert bf.dtype == np.float32
    assert (bf.view(np.uint32) & 0xFFFF == 0).all()
    assert np.abs(bf - x).max() <= np.abs(x).max() * 2**-8
    assert half_precision(x, "fp16").dtype == np.float16


# ---- hashing and QR ----------------------------------------------------------------------------


def test_hash_in_range_deterministic_and_spread() -> None:
    ids = np.arange(0, 200_000, dtype=np.int64)
    k = num_buckets(200_000, 0.1)
    assert k == 20_000
    h = hash_buckets(ids, k)
    assert h.min() >= 0 and h.max() < k
    np.testing.assert_array_equal(h, hash_buckets(ids.copy(), k))
    counts = np.bincount(h, minlength=k)
    assert counts.min() >= 1 and counts.max() <= 40  # ~10 per bucket on average; no pile-up
    big = np.array([2**40 + 7, 2**62 + 12345], np.int64)
    assert (hash_buckets(big, 1000) < 1000).all()


def test_hash_known_values_pinned() -> None:
    # Pinned so a change of the hash (which would silently change every hashed model) fails loudly.
    got = hash_buckets(np.array([0, 1, 2, 12345, 2**40], np.int64), 1_000_003).tolist()
    assert got == _PINNED_HASH


# Computed independently with Python big integers: fmix32((lo ^ hi) ^ 0x9E3779B9) % 1000003.
_PINNED_HASH = [716468, 562235, 222283, 985244, 915729]


def test_qr_maps_in_range_and_bijective() -> None:
    n, c = 1001, 4
    q, r = qr_indices(np.arange(n), c)
    nq, nr = qr_table_rows(n, c)
    assert (nq, nr) == (251, 4)
    assert q.max() < nq and r.max() < nr and q.min() >= 0 and r.min() >= 0
    assert len(set(zip(q.tolist(), r.tolist(), strict=True))) == n


def test_mixed_dims() -> None:
    dims = mixed_dims((10, 1000, 100_000), 16, 0.25)
    assert dims[0] == 16 and dims[0] >= dims[1] >= dims[2] >= 1


# ---- pruning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.333])
def test_magnitude_mask_exact_sparsity(sparsity: float) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(37, 53)).astype(np.float32)
    w[0, :10] = 0.5  # ties
    m = magnitude_mask(w, sparsity)
    assert (~m).sum() == pruned_count(w.size, sparsity)
    assert np.abs(w[~m]).max() <= np.abs(w[m]).min()


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_sparse_storage_round_trip_and_shrinks(sparsity: float) -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(64, 100)).astype(np.float32)
    w = w * magnitude_mask(w, sparsity)
    arrays = to_sparse_arrays(w, "top.0.weight")
    np.testing.assert_array_equal(from_sparse_arrays(arrays, "top.0.weight"), w)
    stored = sum(a.nbytes for a in arrays.values())
    assert stored < w.nbytes * (1 - sparsity) + w.size / 8 + 64 * 4 + 16


def test_freq_prune_maps() -> None:
    counts = np.array([5, 0, 3, 1, 9])
    kept = kept_ids(counts, 3)
    np.testing.assert_array_equal(kept, [0, 2, 4])
    np.testing.assert_array_equal(remap(np.array([0, 1, 2, 3, 4, 2]), kept), [0, 3, 1, 3, 2, 1])
    table = np.arange(10, dtype=np.float32).reshape(5, 2)
    pruned = prune_table(table, kept)
    np.testing.assert_array_equal(pruned, [[0, 1], [4, 5], [8, 9], [4, 5]])
