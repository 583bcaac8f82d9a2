"""Synthetic data: layout, determinism, Zipf ids, calibration and learnability of the hidden model."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_impls.config import DataConfig, ModelConfig, Scenario, TrainConfig
from recsys_impls.data.loader import load_dataset
from recsys_impls.data.synthetic import click_probability, hidden_model
from recsys_impls.errors import UsageError
from recsys_impls.metrics import auc

TABLES = (50, 1000, 5000, 20, 300, 2000)


def _scenario(k: int = 1, seed: int = 0, zipf: float = 1.05, tables: tuple[int, ...] = TABLES) -> Scenario:
    model = ModelConfig(num_dense=4, table_sizes=tables, embedding_dim=8, bottom_mlp=(8,), top_mlp=(8, 1),
                        ids_per_feature=k)
    return Scenario(model=model, train=TrainConfig(seed=seed), data=DataConfig(zipf_exponent=zipf)).validate()


@pytest.fixture(scope="module", params=[1, 3], ids=["one-hot", "multi-hot"])
def data(request: pytest.FixtureRequest):
    return load_dataset(_scenario(k=request.param), num_train=20000, num_eval=5000), request.param


def test_layout(data) -> None:
    ds, k = data
    for batch, n in ((ds.train, 20000), (ds.eval, 5000)):
        assert batch.batch_size == n
        assert batch.dense.dtype == np.float32 and batch.dense.shape == (n, 4)
        assert batch.ids.dtype == np.int64 and batch.lengths.dtype == np.int32
        assert batch.labels.dtype == np.float32 and set(np.unique(batch.labels)) <= {0.0, 1.0}
        assert np.isfinite(batch.dense).all() and (batch.dense >= 0).all()
        assert batch.lengths.shape == (len(TABLES), n)
        if k == 1:
            assert (batch.lengths == 1).all()
        else:
            assert batch.lengths.min() == 1 and batch.lengths.max() == 2 * k - 1
            assert abs(batch.lengths.mean() - k) < 0.05
        for f, rows in enumerate(TABLES):
            ids = batch.feature_ids(f)
            assert ids.min() >= 0 and ids.max() < rows
    assert ds.num_dense == 4 and ds.table_sizes == TABLES


def test_ctr_and_reference_auc_are_criteo_like(data) -> None:
    ds, _ = data
    assert 0.22 < ds.info["ctr"] < 0.28
    assert 0.22 < ds.info["eval_ctr"] < 0.28
    assert 0.75 < ds.info["reference_auc"] < 0.85
    assert ds.info["generator"]["zipf_exponent"] == 1.05


def test_reference_auc_is_the_hidden_models_own(data) -> None:
    ds, k = data
    hm = hidden_model(4, TABLES, k, 1.05)
    assert ds.info["reference_auc"] == pytest.approx(auc(ds.eval.labels, click_probability(hm, ds.eval)), abs=1e-12)


def _target_encoding_auc(ds) -> float:
    """A trivial model from pooled ids only: per-id smoothed click log-odds learned on train, summed."""
    tr, ev = ds.train, ds.eval
    base = float(tr.labels.mean())
    score = np.zeros(ev.batch_size)
    for f, n in enumerate(ds.table_sizes):
        seg = np.repeat(np.arange(tr.batch_size), tr.lengths[f])
        clicks = np.bincount(tr.feature_ids(f), weights=tr.labels[seg], minlength=n)
        seen = np.bincount(tr.feature_ids(f), minlength=n)
        rate = (clicks + 20 * base) / (seen + 20)
        weight = np.log(rate / (1 - rate)) - np.log(base / (1 - base))  # unseen ids add nothing
        eseg = np.repeat(np.arange(ev.batch_size), ev.lengths[f])
        score += np.bincount(eseg, weights=weight[ev.feature_ids(f)], minlength=ev.batch_size)
    return auc(ev.labels, score)


def test_learnable_from_pooled_ids(data) -> None:
    ds, _ = data
    learned = _target_encoding_auc(ds)
    assert learned > 0.62  # clearly above chance from ids alone ...
    assert learned < ds.info["reference_auc"]  # ... and below what the true probabilities score


def test_deterministic_from_seed() -> None:
    a = load_dataset(_scenario(seed=3), 3000, 1000)
    b = load_dataset(_scenario(seed=3), 3000, 1000)
    c = load_dataset(_scenario(seed=4), 3000, 1000)
    for x, y in ((a.train, b.train), (a.eval, b.eval)):
        for name in ("dense", "ids", "lengths", "labels"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
    assert not np.array_equal(a.train.dense, c.train.dense)
    assert not np.array_equal(a.train.ids, c.train.ids)
    assert a.info["generator"]["logit_scale"] == c.info["generator"]["logit_scale"]  # same hidden model


def test_eval_split_is_different_samples() -> None:
    ds = load_dataset(_scenario(), 2000, 2000)
    assert not np.array_equal(ds.train.dense, ds.eval.dense)


def _top_share_and_slope(ids: np.ndarray, rows: int) -> tuple[float, float, np.ndarray]:
    counts = np.bincount(ids, minlength=rows)
    order = np.argsort(-counts, kind="stable")
    top = counts[order[:30]].astype(float)
    slope = np.polyfit(np.log(np.arange(1, 31)), np.log(top), 1)[0]
    return counts.max() / ids.size, slope, order[:10]


def test_zipf_ids_are_permuted_and_follow_exponent() -> None:
    for s in (0.8, 1.2):
        ds = load_dataset(_scenario(zipf=s, tables=(1000,)), 40000, 10)
        _, slope, hottest = _top_share_and_slope(ds.train.ids, 1000)
        assert slope == pytest.approx(-s, abs=0.2)
        assert set(hottest.tolist()) != set(range(10))  # hot ids are spread over the table
    flat = load_dataset(_scenario(zipf=0.8, tables=(1000,)), 40000, 10).train.ids
    steep = load_dataset(_scenario(zipf=1.2, tables=(1000,)), 40000, 10).train.ids
    assert _top_share_and_slope(steep, 1000)[0] > _top_share_and_slope(flat, 1000)[0]


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_bad_counts_are_usage_errors(bad) -> None:
    with pytest.raises(UsageError, match="num_train"):
        load_dataset(_scenario(), bad, 10)
