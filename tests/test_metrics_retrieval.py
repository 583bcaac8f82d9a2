"""Retrieval metrics against hand-computed cases, and scikit-learn where it defines the same figure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys_impls.metrics_retrieval import (
    hit_ratio_ndcg,
    popularity_quality,
    recall_ndcg,
    retrieval_quality,
    top_k,
)


def test_top_k_excludes_seen_and_orders_ties_by_id() -> None:
    users = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    items = np.array([[3, 0], [2, 1], [2, 5], [0, 4], [1, 1]], np.float32)  # scores u0: 3 2 2 0 1
    seen = (np.array([0, 1, 1]), np.array([0]))  # user 0 has seen item 0; user 1 nothing
    top = top_k(users, items, 3, seen)
    assert top.tolist() == [[1, 2, 4], [2, 3, 1]]


def test_recall_and_ndcg_by_hand() -> None:
    top = np.array([[4, 2, 7], [1, 0, 3], [5, 6, 8]])
    target = np.array([2, 3, 9])  # ranks 1, 2, absent
    m = recall_ndcg(top, target, ks=(1, 2, 3))
    assert m["recall@1"] == 0 and m["recall@2"] == pytest.approx(1 / 3) and m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 3)


def test_matches_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(40, 6)), rng.normal(size=(30, 6))
    target = rng.integers(0, 30, 40)
    ours = retrieval_quality(users, items, target, np.arange(40), None, ks=(5, 10))
    scores = users @ items.T
    truth = np.eye(30)[target]
    for k in (5, 10):
        assert ours[f"recall@{k}"] == pytest.approx(sk.top_k_accuracy_score(target, scores, k=k, labels=range(30)))
        assert ours[f"ndcg@{k}"] == pytest.approx(sk.ndcg_score(truth, scores, k=k), rel=1e-5)


def test_popularity_baseline() -> None:
    counts = np.array([5, 9, 1, 7])
    seen = (np.array([0, 1, 1]), np.array([1]))
    m = popularity_quality(counts, np.array([3, 0]), np.array([0, 1]), seen, ks=(1, 2))
    # user 0 has seen item 1: ranking 3, 0, 2 -> hit at rank 0; user 1: 1, 3, 0 -> item 0 at rank 2
    assert m["recall@1"] == 0.5 and m["recall@2"] == 0.5


def test_sampled_hit_ratio_ties_count_against() -> None:
    pos = np.array([0.9, 0.5, 0.1])
    neg = np.array([[0.1, 0.2, 0.3], [0.5, 0.1, 0.1], [0.2, 0.3, 0.4]])  # ranks 0, 1 (a tie), 3
    m = hit_ratio_ndcg(pos, neg, k=2)
    assert m["hr@2"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    with pytest.raises(ValueError, match="no evaluated users"):
        hit_ratio_ndcg(np.zeros(0), np.zeros((0, 3)))
