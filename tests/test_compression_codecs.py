"""Data codecs: lossless round trips on random batches, lossy error bounds, bad names."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_impls.compression.codecs import STANDARD_CODECS, get_codec, measure_codec
from recsys_impls.compression.varint import decode_varint, delta_decode, delta_encode, encode_varint
from recsys_impls.data.batch import Batch
from recsys_impls.errors import UsageError


def _random_batch(rng: np.random.Generator, b: int, f: int, d: int, max_len: int, big_ids: bool) -> Batch:
    lengths = rng.integers(0, max_len + 1, size=(f, b)).astype(np.int32)
    hi = 2**62 if big_ids else 1000
    ids = rng.integers(0, hi, size=int(lengths.sum())).astype(np.int64)
    dense = rng.lognormal(size=(b, d)).astype(np.float32)
    labels = (rng.random(b) < 0.3).astype(np.float32)
    return Batch(dense=dense, ids=ids, lengths=lengths, labels=labels)


@pytest.mark.parametrize("codec", [c for c in STANDARD_CODECS if "dense-" not in c])
def test_lossless_round_trip_random_batches(codec: str) -> None:
    rng = np.random.default_rng(abs(hash(codec)) % 2**32)
    for trial in range(12):
        b = int(rng.integers(0, 70)) if trial else 0
        batch = _random_batch(rng, b, int(rng.integers(1, 6)), int(rng.integers(0, 5)), int(rng.integers(0, 4)),
                              big_ids=bool(trial % 2))
        c = get_codec(codec)
        out = c.decode(c.encode(batch))
        for name in ("dense", "ids", "lengths", "labels"):
            a, o = getattr(batch, name), getattr(out, name)
            assert a.dtype == o.dtype and a.shape == o.shape, name
            np.testing.assert_array_equal(a, o)


def test_non_binary_labels_and_negative_ids_stay_exact() -> None:
    batch = Batch(dense=np.zeros((3, 1), np.float32), ids=np.array([-5, 7, -5], np.int64),
                  lengths=np.ones((1, 3), np.int32), labels=np.array([0.2, 1.0, 0.0], np.float32))
    c = get_codec("dict+zstd")
    out = c.decode(c.encode(batch))
    np.testing.assert_array_equal(out.ids, batch.ids)
    np.testing.assert_array_equal(out.labels, batch.labels)


def test_lossy_dense_bounds_and_exact_rest() -> None:
    rng = np.random.default_rng(5)
    batch = _random_batch(rng, 300, 3, 6, 2, big_ids=False)
    for name in ("dict+zstd+dense-fp16", "dict+zstd+dense-int8", "raw+dense-int8"):
        c = get_codec(name)
        assert not c.lossless
        out = c.decode(c.encode(batch))
        np.testing.assert_array_equal(out.ids, batch.ids)
        np.testing.assert_array_equal(out.labels, batch.labels)
        err = np.abs(out.dense - batch.dense)
        if "int8" in name:
            step = (batch.dense.max(0) - batch.dense.min(0)) / 255
            assert (err <= step / 2 * (1 + 1e-5) + 1e-6).all()
        else:
            assert (err <= np.abs(batch.dense) * 2**-11 + 1e-7).all()


def test_measure_codec_reports_ratio() -> None:
    rng = np.random.default_rng(2)
    lengths = np.ones((4, 2000), np.int32)
    ids = (rng.zipf(1.3, size=8000) % 5000).astype(np.int64)
    batch = Batch(dense=rng.normal(size=(2000, 4)).astype(np.float32), ids=ids, lengths=lengths,
                  labels=(rng.random(2000) < 0.25).astype(np.float32))
    m = measure_codec("dict+zstd", batch, repeats=1)
    assert m["roundtrip_exact"] and m["lossless"]
    assert m["raw_bytes"] == batch.nbytes
    assert m["ratio"] == pytest.approx(batch.nbytes / m["encoded_bytes"])
    assert m["ratio"] > 1.5  # skewed int64 ids and 0/1 float labels are highly redundant
    assert m["encode_mb_per_s"] > 0 and m["decode_mb_per_s"] > 0


@pytest.mark.parametrize("name", ["zstd", "dict+gzip", "dict+zstd+lz4", "dict+dense-fp16+zstd", "raw+dense-fp8"])
def test_bad_codec_names(name: str) -> None:
    with pytest.raises(UsageError, match="codec"):
        get_codec(name)


def test_varint_and_delta() -> None:
    rng = np.random.default_rng(0)
    v = np.concatenate([[0, 127, 128, 2**63 - 1], rng.integers(0, 2**40, 500)]).astype(np.int64)
    np.testing.assert_array_equal(decode_varint(encode_varint(v), v.size), v)
    assert len(encode_varint(np.array([0, 127, 128]))) == 4
    s = np.sort(rng.integers(0, 10**9, 100))
    np.testing.assert_array_equal(delta_decode(delta_encode(s)), s)
    with pytest.raises(ValueError):
        encode_varint(np.array([-1]))


def test_lossy_quality_effect_uses_the_same_model() -> None:
    class _Model:  # a stand-in Recommender: predicts from the first dense feature
        def predict(self, batch: Batch) -> np.ndarray:
            return 1.0 / (1.0 + np.exp(-batch.dense[:, 0]))

    rng = np.random.default_rng(9)
    b = 4000
    dense = rng.normal(size=(b, 2)).astype(np.float32)
    labels = (rng.random(b) < 1.0 / (1.0 + np.exp(-3 * dense[:, 0]))).astype(np.float32)
    batch = Batch(dense=dense, ids=np.zeros(0, np.int64), lengths=np.zeros((0, b), np.int32), labels=labels)
    from recsys_impls.compression.codecs import lossy_quality_effect

    fp16 = lossy_quality_effect(_Model(), batch, "dict+zstd+dense-fp16")
    int8 = lossy_quality_effect(_Model(), batch, "dict+zstd+dense-int8")
    assert fp16["auc_original"] == int8["auc_original"] > 0.7
    assert abs(fp16["auc_delta"]) < 1e-3  # fp16 keeps 11 bits: ranking barely changes
    assert int8["auc_delta"] == pytest.approx(int8["auc"] - int8["auc_original"])
    assert int8["auc_delta"] < 0  # 256 levels create ties in the scores: the AUC drops a little
