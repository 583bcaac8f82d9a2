"""Interactions for retrieval models: the latest-item split, the CSV reader's errors, the planted structure."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_impls.data.interactions import (
    SyntheticInteractionsConfig,
    csv_interactions,
    load_interactions,
    oracle_vectors,
    pair_keys,
    sample_unseen,
    split_latest,
    synthetic_interactions,
)
from recsys_impls.errors import UsageError
from recsys_impls.metrics_retrieval import popularity_quality, retrieval_quality


def test_split_holds_out_latest_and_drops_repeats() -> None:
    # user 0: items 5 (t=1), 6 (t=3), 5 again (t=2) -> (5 latest at t=2) train, 6 held out
    # user 1: a single item -> training only; user 2: tie at t=4 goes to the later row (item 8)
    user = np.array([0, 0, 0, 1, 2, 2])
    item = np.array([5, 6, 5, 7, 9, 8])
    ts = np.array([1.0, 3.0, 2.0, 1.0, 4.0, 4.0])
    tu, ti, eu, ei, dups = split_latest(user, item, ts, 3, 10)
    assert dups == 1
    assert sorted(zip(tu.tolist(), ti.tolist(), strict=True)) == [(0, 5), (1, 7), (2, 9)]
    assert dict(zip(eu.tolist(), ei.tolist(), strict=True)) == {0: 6, 2: 8}


def write(tmp_path, text: str) -> str:
    path = tmp_path / "inter.csv"
    path.write_text(text)
    return str(path)


def test_csv_string_ids_and_timestamps(tmp_path) -> None:
    path = write(tmp_path, "user_id,item_id,timestamp\nalice,film:1,10\nalice,film 2,20\n\nbob,film:1,5\nbob,x,1\n")
    d = csv_interactions(path)
    assert (d.num_users, d.num_items) == (2, 3)
    held = {int(u): int(i) for u, i in zip(d.test_user, d.test_item, strict=True)}
    # sorted keys: users alice=0, bob=1; items "film 2"=0, "film:1"=1, "x"=2
    assert held == {0: 0, 1: 1}
    assert d.info["bad_lines"] == 0


def test_csv_without_timestamp_uses_file_order(tmp_path) -> None:
    d = csv_interactions(write(tmp_path, "user_id,item_id\nu,a\nu,b\nu,c\n"))
    assert d.test_item.tolist() == [2] and sorted(d.train_item.tolist()) == [0, 1]


@pytest.mark.parametrize("body, line, what", [
    ("u,a,1\nu,b\n", 3, "3 comma-separated fields expected"),
    ("u,a,1\n,b,2\n", 3, "empty user_id"),
    ("u,a,1\nu,b,soon\n", 3, "timestamp is not a finite number"),
    ("u,a,1\nu,b,inf\n", 3, "timestamp is not a finite number"),
])
def test_csv_bad_line_names_file_and_line(tmp_path, body: str, line: int, what: str) -> None:
    path = write(tmp_path, "user_id,item_id,timestamp\n" + body)
    with pytest.raises(UsageError) as err:
        csv_interactions(path)
    assert str(err.value).startswith(f"{path}:{line}: {what}")
    assert err.value.exit_code == 2


def test_csv_skip_bad_lines_counts_them(tmp_path) -> None:
    path = write(tmp_path, "user_id,item_id,timestamp\nu,a,1\nu,b,x\nu,c,3\nv,a\n")
    d = csv_interactions(path, skip_bad_lines=True)
    assert d.info["bad_lines"] == 2 and d.info["interactions"] == 2


def test_csv_header_and_routing(tmp_path) -> None:
    with pytest.raises(UsageError, match=r":1: header"):
        csv_interactions(write(tmp_path, "user,item\nu,a\n"))
    with pytest.raises(UsageError, match="PATH.csv"):
        load_interactions(str(tmp_path / "day_0.tsv"), 0)


SMALL = SyntheticInteractionsConfig(num_users=300, num_items=400, clusters=8, per_user=20)


def test_synthetic_is_seeded_and_structured() -> None:
    a, b = synthetic_interactions(SMALL, 1), synthetic_interactions(SMALL, 1)
    np.testing.assert_array_equal(a.train_item, b.train_item)
    assert not np.array_equal(a.train_item, synthetic_interactions(SMALL, 2).train_item)
    assert a.test_user.size == SMALL.num_users  # everyone has >= 3 draws, so >= 2 distinct items almost surely
    seen = a.seen()
    ou, ov = oracle_vectors(a)
    oracle = retrieval_quality(ou[a.test_user], ov, a.test_item, a.test_user, seen)
    pop = popularity_quality(a.item_counts(), a.test_item, a.test_user, seen)
    # the planted clusters are worth far more than popularity (the figure the record states as achievable)
    assert oracle["recall@10"] > 1.8 * pop["recall@10"]


def test_sample_unseen_avoids_forbidden_pairs() -> None:
    rng = np.random.default_rng(0)
    users = np.arange(50)
    forbidden = np.unique(pair_keys(np.repeat(users, 15), rng.integers(0, 20, 750), 20))
    neg = sample_unseen(users, 5, 20, forbidden, rng)
    keys = pair_keys(np.repeat(users, 5), neg.reshape(-1), 20)
    assert neg.shape == (50, 5) and not np.isin(keys, forbidden).any()


def test_movielens_latest_rating_held_out() -> None:
    pytest.importorskip("recbole")
    d = load_interactions("movielens", 0)
    assert (d.num_users, d.num_items, d.test_user.size) == (943, 1682, 943)
    assert d.num_train + d.test_user.size == 100_000
    assert d.user_features.names == ("user", "age_bucket", "gender", "occupation")
    assert d.item_features.names[1] == "genres" and d.item_features.mask.sum(axis=1).max() > 3
