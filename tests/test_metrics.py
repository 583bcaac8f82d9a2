"""Metrics against scikit-learn on random inputs (with ties) and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys_impls import metrics

sk = pytest.importorskip("sklearn.metrics")


def _random_case(seed: int, n: int, levels: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ~30% clicks; probs continuous, or rounded onto `levels` values to force ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float32)
    p = np.clip(rng.beta(2, 4, n) + 0.2 * y, 0.0, 1.0)
    if levels is not None:
        p = np.round(p * (levels - 1)) / (levels - 1)
    return y, p.astype(np.float32)


@pytest.mark.parametrize("levels", [None, 100, 5, 2])  # none, some, heavy, extreme ties
@pytest.mark.parametrize("seed", range(4))
def test_against_sklearn(seed: int, levels: int | None) -> None:
    y, p = _random_case(seed, 2000 + 137 * seed, levels)
    got = metrics.all_metrics(y, p)
    pred = (p >= 0.5).astype(int)
    assert got["auc"] == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    pc = np.clip(p.astype(np.float64), metrics.LOGLOSS_EPS, 1 - metrics.LOGLOSS_EPS)
    assert got["logloss"] == pytest.approx(sk.log_loss(y.astype(int), pc, labels=[0, 1]), rel=1e-9)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    if pred.sum():
        assert got["precision"] == pytest.approx(sk.precision_score(y, pred))
    assert got["recall"] == pytest.approx(sk.recall_score(y, pred))
    assert got["f1"] == pytest.approx(sk.f1_score(y, pred))
    ctr = float(y.mean(dtype=np.float64))
    base = -(ctr * np.log(ctr) + (1 - ctr) * np.log(1 - ctr))
    assert got["ne"] == pytest.approx(got["logloss"] / base, rel=1e-12)
    assert "auc_reason" not in got and "ne_reason" not in got


def test_auc_all_scores_tied_is_half() -> None:
    y = np.array([0, 1, 0, 1, 1])
    assert metrics.auc(y, np.full(5, 0.3)) == 0.5


def test_auc_perfect_and_reversed() -> None:
    y = np.array([0, 0, 1, 1])
    assert metrics.auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert metrics.auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0


def test_auc_accepts_unbounded_scores_and_bool_labels() -> None:
    y = np.array([True, False, True, False])
    s = np.array([3.0, -2.0, 0.5, 0.5])
    assert metrics.auc(y, s) == pytest.approx(sk.roc_auc_score(y, s))


def test_auc_large_n_heavy_ties_is_exact() -> None:
    """Integer tie counting keeps precision where a float rank sum over 1e6 samples would round."""
    rng = np.random.default_rng(7)
    y = rng.random(1_000_000) < 0.25
    p = rng.integers(0, 3, y.size) / 2.0
    assert metrics.auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)


@pytest.mark.parametrize("value", [0, 1])
def test_single_class_is_nan_with_reason(value: int) -> None:
    y = np.full(10, value)
    p = np.linspace(0.05, 0.95, 10)
    out = metrics.all_metrics(y, p)
    assert math.isnan(out["auc"]) and "single class" in out["auc_reason"]
    assert math.isnan(out["ne"]) and "ne_reason" in out
    assert math.isfinite(out["logloss"])
    assert math.isfinite(out["accuracy"])
    if value == 0:
        assert math.isnan(out["recall"]) and "recall_reason" in out
    else:
        assert out["recall"] == pytest.approx(sk.recall_score(y, p >= 0.5))


def test_no_predicted_positives_precision_nan_with_reason() -> None:
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4])
    out = metrics.all_metrics(y, p)
    assert math.isnan(out["precision"]) and "threshold" in out["precision_reason"]
    assert out["recall"] == 0.0
    assert out["f1"] == 0.0  # defined: 2TP / (2TP + FP + FN) = 0 / 2
    assert "f1_reason" not in out


def test_no_positives_anywhere_f1_nan() -> None:
    out = metrics.all_metrics(np.zeros(3), np.array([0.1, 0.2, 0.3]))
    assert math.isnan(out["f1"]) and "f1_reason" in out
    assert out["accuracy"] == 1.0


def test_threshold_changes_confusion() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([0.2, 0.3, 0.7, 0.6])
    assert metrics.all_metrics(y, p, threshold=0.25)["recall"] == 1.0
    assert metrics.all_metrics(y, p, threshold=0.65)["precision"] == 1.0
    with pytest.raises(ValueError, match="threshold"):
        metrics.all_metrics(y, p, threshold=1.5)


def test_logloss_clipping_keeps_it_finite() -> None:
    y = np.array([1, 0])
    p = np.array([0.0, 1.0], dtype=np.float32)
    assert metrics.logloss(y, p) == pytest.approx(-np.log(metrics.LOGLOSS_EPS), rel=1e-6)


def test_keys() -> None:
    y, p = _random_case(0, 100, None)
    out = metrics.all_metrics(y, p)
    assert set(metrics.METRIC_KEYS) <= set(out)
    assert all(isinstance(out[k], float) for k in metrics.METRIC_KEYS)


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        (np.array([]), np.array([]), "empty"),
        (np.array([0, 1]), np.array([0.5]), "shape"),
        (np.array([0, 2]), np.array([0.5, 0.5]), "0 or 1"),
        (np.array([0, 1]), np.array([0.5, np.nan]), "finite"),
        (np.array([0, 1]), np.array([0.5, 1.5]), r"\[0, 1\]"),
    ],
)
def test_bad_input_raises_value_error(y: np.ndarray, p: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metrics.all_metrics(y, p)
