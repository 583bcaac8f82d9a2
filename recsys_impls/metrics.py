"""Quality metrics for click prediction, numpy only, so both frameworks are scored by the same code.

Conventions (chosen so that no metric ever crashes a run and no undefined figure looks like a real one):

* ``labels`` are 0/1 (bool, int or float), ``probs`` are predicted click probabilities in [0, 1]
  (``auc`` accepts any finite scores). Empty input, mismatched shapes, non-binary labels or
  non-finite scores raise ``ValueError`` naming the problem.
* A metric that is undefined for the input is ``nan``; ``all_metrics`` then adds a companion key
  ``"<name>_reason"`` with one line saying why (the DESIGN's "null with a *_reason beside it").
  Undefined cases: AUC and NE with a single class in ``labels``; precision with no predicted positives
  (we do not follow scikit-learn's ``zero_division=0``, which would report a made-up 0); recall with no
  positive labels; F1 when there are no positives at all, predicted or true (2TP + FP + FN == 0).
* Logloss clips probabilities to ``[LOGLOSS_EPS, 1 - LOGLOSS_EPS]`` (1e-7, computed in float64) so a
  confidently wrong float32 prediction of exactly 0 or 1 costs log(1e7) ~ 16.1 nats instead of inf.
"""

from __future__ import annotations

import math

import numpy as np

LOGLOSS_EPS = 1e-7
METRIC_KEYS = ("auc", "logloss", "ne", "accuracy", "precision", "recall", "f1")


def _check(labels: np.ndarray, scores: np.ndarray, probabilities: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate and flatten to (bool labels, float64 scores)."""
    y = np.asarray(labels)
    p = np.asarray(scores)
    if y.shape != p.shape:
        raise ValueError(f"labels have shape {y.shape} but predictions have shape {p.shape}; they must match")
    if y.size == 0:
        raise ValueError("labels and predictions are empty; metrics need at least one sample")
    y = y.reshape(-1)
    p = p.reshape(-1).astype(np.float64)
    if y.dtype != np.bool_:
        yf = y.astype(np.float64)
        bad = ~((yf == 0) | (yf == 1))
        if bad.any():
            raise ValueError(f"labels must be 0 or 1; found {y[np.argmax(bad)]!r} at index {int(np.argmax(bad))}")
        y = yf == 1
    if not np.isfinite(p).all():
        i = int(np.argmax(~np.isfinite(p)))
        raise ValueError(f"predictions must be finite; found {p[i]} at index {i}")
    if probabilities and ((p < 0) | (p > 1)).any():
        i = int(np.argmax((p < 0) | (p > 1)))
        raise ValueError(f"predictions must be probabilities in [0, 1]; found {p[i]} at index {i}")
    return y, p


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(score_pos > score_neg) + 0.5 P(tie). O(n log n).

    Tied scores are grouped and each group counts half of its positive-negative pairs, which equals
    the average-rank formula but works on integer counts, so it stays exact for very large n.
    Returns nan when ``labels`` hold a single class (AUC is undefined there).
    """
    y, s = _check(labels, scores, probabilities=False)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    starts = np.flatnonzero(np.concatenate([[True], s_sorted[1:] != s_sorted[:-1]]))
    pos_in_group = np.add.reduceat(y_sorted.astype(np.int64), starts)
    neg_in_group = np.diff(np.append(starts, y.size)) - pos_in_group
    neg_below = np.cumsum(neg_in_group) - neg_in_group
    wins = float(np.dot(pos_in_group.astype(np.float64), neg_below)) + 0.5 * float(
        np.dot(pos_in_group.astype(np.float64), neg_in_group)
    )
    return wins / (float(n_pos) * float(n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = LOGLOSS_EPS) -> float:
    """Mean binary cross-entropy in nats, probabilities clipped to [eps, 1 - eps]."""
    y, p = _check(labels, probs, probabilities=True)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def normalized_entropy(labels: np.ndarray, probs: np.ndarray, eps: float = LOGLOSS_EPS) -> float:
    """Logloss divided by the entropy of the base click rate (He et al. 2014); < 1 beats the base rate.

    nan when ``labels`` hold a single class (the base-rate entropy is 0).
    """
    y, p = _check(labels, probs, probabilities=True)
    ctr = float(y.mean())
    if ctr in (0.0, 1.0):
        return math.nan
    base = -(ctr * math.log(ctr) + (1.0 - ctr) * math.log(1.0 - ctr))
    return logloss(y, p, eps) / base


def _confusion(labels: np.ndarray, probs: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) with "predicted positive" meaning prob >= threshold."""
    y, p = _check(labels, probs, probabilities=True)
    pred = p >= threshold
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    return tp, fp, fn, y.size - tp - fp - fn


def all_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float | str]:
    """Every quality metric the record reports, plus ``<name>_reason`` for each one that is nan.

    Keys: auc, logloss, ne, accuracy, precision, recall, f1 (floats); a prediction counts as a click
    when prob >= threshold.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold = {threshold}; must be in [0, 1]")
    y, p = _check(labels, probs, probabilities=True)
    tp, fp, fn, tn = _confusion(y, p, threshold)
    n = y.size
    single = "labels hold a single class" + (" (all 1)" if tp + fn == n else " (all 0)")
    out: dict[str, float | str] = {
        "auc": auc(y, p),
        "logloss": logloss(y, p),
        "ne": normalized_entropy(y, p),
        "accuracy": (tp + tn) / n,
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "recall": tp / (tp + fn) if tp + fn else math.nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else math.nan,
    }
    reasons = {
        "auc": f"{single}; AUC needs both clicks and non-clicks",
        "ne": f"{single}; the base-rate entropy is 0",
        "precision": f"no prediction reaches the threshold {threshold}, so precision is 0/0",
        "recall": "no positive labels, so recall is 0/0",
        "f1": "no positives, predicted or true, so F1 is 0/0",
    }
    for key, why in reasons.items():
        if isinstance(out[key], float) and math.isnan(out[key]):
            out[f"{key}_reason"] = why
    return out
