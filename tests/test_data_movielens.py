"""MovieLens-100k from the recbole wheel: shapes, split, determinism, missing-package behaviour."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from recsys_impls.config import DataConfig, Scenario, TrainConfig
from recsys_impls.data import movielens
from recsys_impls.data.loader import load_dataset
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.metrics import auc

needs_recbole = pytest.mark.skipif(
    importlib.util.find_spec("recbole") is None, reason=movielens.INSTALL_HINT
)


@pytest.fixture(scope="module")
def ml():
    try:
        movielens.locate()
    except ScenarioUnsupported as exc:
        pytest.skip(str(exc))
    return load_dataset(Scenario(data=DataConfig(source="movielens")).validate(), num_train=100000, num_eval=50000)


@needs_recbole
def test_shapes_and_tables(ml) -> None:
    assert ml.name == "movielens" and ml.num_dense == 4
    assert ml.table_sizes == (944, 1683, 8, 3, 22, 20, 9)  # 943 users, 1682 films, + reserved row 0
    assert ml.eval.batch_size == 20000 and ml.train.batch_size == 80000  # at most 20% held out
    for batch in (ml.train, ml.eval):
        assert batch.dense.shape == (batch.batch_size, 4) and np.isfinite(batch.dense).all()
        assert batch.lengths.shape == (7, batch.batch_size)
        for f, rows in enumerate(ml.table_sizes):
            ids = batch.feature_ids(f)
            assert ids.min() >= 0 and ids.max() < rows
        genres = batch.lengths[movielens.TABLES.index("genres")]
        assert genres.min() >= 1 and genres.max() <= 6 and genres.mean() > 1.5
        others = np.delete(batch.lengths, movielens.TABLES.index("genres"), axis=0)
        assert (others == 1).all()
    assert 0.5 < ml.info["ctr"] < 0.6  # rating >= 4 is about 55% of MovieLens-100k


@needs_recbole
def test_split_is_disjoint(ml) -> None:
    """(user, film) pairs are unique in MovieLens-100k, so they identify ratings."""
    def pairs(batch):
        return set(zip(batch.feature_ids(0).tolist(), batch.feature_ids(1).tolist(), strict=True))

    tr, ev = pairs(ml.train), pairs(ml.eval)
    assert len(tr) == ml.train.batch_size and len(ev) == ml.eval.batch_size
    assert not tr & ev


@needs_recbole
def test_small_request_and_seed(ml) -> None:
    a = movielens.load_movielens(seed=1, num_train=3000, num_eval=1000)
    b = movielens.load_movielens(seed=1, num_train=3000, num_eval=1000)
    c = movielens.load_movielens(seed=2, num_train=3000, num_eval=1000)
    assert a.train.batch_size == 3000 and a.eval.batch_size == 1000
    np.testing.assert_array_equal(a.train.ids, b.train.ids)
    np.testing.assert_array_equal(a.eval.labels, b.eval.labels)
    assert not np.array_equal(a.train.ids, c.train.ids)
    assert a.table_sizes == ml.table_sizes  # sizes come from the data, not the request


@needs_recbole
def test_learnable_from_user_and_film(ml) -> None:
    """Smoothed per-user and per-film click log-odds from train rank eval ratings well above chance."""
    tr, ev = ml.train, ml.eval
    base = float(tr.labels.mean())
    score = np.zeros(ev.batch_size)
    for f in (0, 1):
        n = ml.table_sizes[f]
        clicks = np.bincount(tr.feature_ids(f), weights=tr.labels, minlength=n)
        seen = np.bincount(tr.feature_ids(f), minlength=n)
        rate = (clicks + 10 * base) / (seen + 10)
        score += np.log(rate / (1 - rate))[ev.feature_ids(f)]
    assert auc(ev.labels, score) > 0.7


@needs_recbole
def test_seed_comes_from_scenario() -> None:
    s = Scenario(train=TrainConfig(seed=5), data=DataConfig(source="movielens")).validate()
    ds = load_dataset(s, 100, 100)
    np.testing.assert_array_equal(ds.train.ids, movielens.load_movielens(5, 100, 100).train.ids)


def test_missing_package_is_scenario_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(movielens.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ScenarioUnsupported, match="pip install --no-deps recbole==1.2.1"):
        load_dataset(Scenario(data=DataConfig(source="movielens")).validate(), 10, 10)
