"""Batch layout invariants on real generator output: feature-major ids, slicing, splitting, joining."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_impls.data.batch import Batch
from recsys_impls.data.synthetic import generate, hidden_model

TABLES = (30, 200, 7)


@pytest.fixture(scope="module")
def batch() -> Batch:
    return generate(hidden_model(3, TABLES, 3, 1.05), seed=11, split="train", num=257)[0]


def _bags(b: Batch) -> list[list[list[int]]]:
    """[feature][sample] -> ids, decoded with the documented feature-major rule."""
    off = b.bag_offsets()
    f, n = b.lengths.shape
    return [[b.ids[off[i * n + s] : off[i * n + s + 1]].tolist() for s in range(n)] for i in range(f)]


def test_feature_major_offsets(batch: Batch) -> None:
    foff = batch.feature_offsets()
    assert foff[0] == 0 and foff[-1] == batch.ids.size
    np.testing.assert_array_equal(np.diff(foff), batch.lengths.sum(axis=1))
    boff = batch.bag_offsets()
    assert boff.size == batch.num_features * batch.batch_size + 1
    for f in range(batch.num_features):
        np.testing.assert_array_equal(batch.feature_ids(f), batch.ids[foff[f] : foff[f + 1]])
        assert batch.feature_ids(f).max() < TABLES[f]


def test_slice_keeps_bags(batch: Batch) -> None:
    part = batch.slice(100, 160)
    full, sub = _bags(batch), _bags(part)
    assert part.batch_size == 60
    for f in range(batch.num_features):
        assert sub[f] == full[f][100:160]
    np.testing.assert_array_equal(part.dense, batch.dense[100:160])
    np.testing.assert_array_equal(part.labels, batch.labels[100:160])


def test_split_then_concat_round_trips(batch: Batch) -> None:
    parts = batch.split(64)
    assert [p.batch_size for p in parts] == [64, 64, 64, 64]  # the last partial batch (1 sample) is dropped
    joined = Batch.concat(parts)
    head = batch.slice(0, 256)
    for name in ("dense", "ids", "lengths", "labels"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(head, name))


def test_bad_layout_is_rejected() -> None:
    with pytest.raises(ValueError, match="lengths sum"):
        Batch(dense=np.zeros((2, 1), np.float32), ids=np.zeros(3, np.int64),
              lengths=np.ones((1, 2), np.int32), labels=np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="labels"):
        Batch(dense=np.zeros((2, 1), np.float32), ids=np.zeros(2, np.int64),
              lengths=np.ones((1, 2), np.int32), labels=np.zeros(3, np.float32))


def test_split_computes_bag_offsets_once(batch: Batch, monkeypatch) -> None:
    """Splitting into k batches is one pass over the lengths, not k passes (linear, not quadratic)."""
    calls = []
    original = Batch.bag_offsets

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(Batch, "bag_offsets", counting)
    parts = batch.split(16)
    assert len(parts) == 16 and len(calls) == 1
