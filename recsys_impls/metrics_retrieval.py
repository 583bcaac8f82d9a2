"""Quality of retrieval and collaborative-filtering models, numpy only (both frameworks scored by one code).

* Full-corpus retrieval: every evaluated user's items ranked by a dot product over the whole corpus
  (brute force), training items excluded, one held-out item per user: recall@K (the share of users whose
  held-out item is in the top K; with one relevant item it equals hit rate) and NDCG@K (1 / log2(rank + 2)
  inside the top K, the ideal DCG being 1).
* The popularity baseline ranks by training interactions on the same split, with the same exclusion.
* Sampled evaluation (NeuMF, He et al. 2017): the held-out item against ``n`` sampled unseen items;
  HR@K and NDCG@K from the held-out item's rank. Ties count against it (rank = items scoring >= it).
"""

from __future__ import annotations

import numpy as np

RETRIEVAL_KS = (10, 50, 100)


def top_k(user_vecs: np.ndarray, item_vecs: np.ndarray, k: int,
          exclude: tuple[np.ndarray, np.ndarray] | None = None, users: np.ndarray | None = None,
          chunk: int = 512) -> np.ndarray:
    """The ``k`` best items per row of ``user_vecs`` by dot product, best first, as int64 [U, k].

    ``exclude`` is CSR (indptr, items) over user ids, ``users[r]`` the id of row ``r`` (default r): those
    items never appear. Equal scores order by item id, so the result is deterministic.
    """
    u = np.asarray(user_vecs, np.float32)
    v = np.asarray(item_vecs, np.float32)
    n_items = v.shape[0]
    k = min(k, n_items)
    users = np.arange(u.shape[0]) if users is None else np.asarray(users)
    out = np.empty((u.shape[0], k), np.int64)
    for lo in range(0, u.shape[0], chunk):
        scores = u[lo : lo + chunk] @ v.T
        if exclude is not None:
            indptr, items = exclude
            uid = users[lo : lo + chunk]
            lens = indptr[uid + 1] - indptr[uid]
            rows = np.repeat(np.arange(uid.size), lens)
            starts = np.repeat(indptr[uid] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
            cols = items[starts + np.arange(rows.size)]
            scores[rows, cols] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n_items else np.tile(np.arange(n_items),
                                                                                         (scores.shape[0], 1))
        s = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -s), axis=1)
        out[lo : lo + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def ranks_in(top: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of ``target[r]`` in ``top[r]``, or -1 when absent."""
    hit = top == np.asarray(target)[:, None]
    return np.where(hit.any(axis=1), np.argmax(hit, axis=1), -1)


def recall_ndcg(top: np.ndarray, target: np.ndarray, ks: tuple[int, ...] = RETRIEVAL_KS) -> dict[str, float]:
    """recall@K and ndcg@K for one held-out item per user (``top`` at least max(ks) wide, or the corpus)."""
    if top.shape[0] == 0:
        raise ValueError("no evaluated users: retrieval metrics need at least one held-out item")
    r = ranks_in(top, target)
    out: dict[str, float] = {}
    for k in ks:
        inside = (r >= 0) & (r < k)
        out[f"recall@{k}"] = float(inside.mean())
        out[f"ndcg@{k}"] = float(np.where(inside, 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0).mean())
    return out


def retrieval_quality(user_vecs: np.ndarray, item_vecs: np.ndarray, target: np.ndarray, users: np.ndarray,
                      exclude: tuple[np.ndarray, np.ndarray] | None,
                      ks: tuple[int, ...] = RETRIEVAL_KS) -> dict[str, float]:
    """Brute-force retrieval over the whole corpus, scored by recall@K and NDCG@K."""
    return recall_ndcg(top_k(user_vecs, item_vecs, max(ks), exclude, users), target, ks)


def popularity_quality(item_counts: np.ndarray, target: np.ndarray, users: np.ndarray,
                       exclude: tuple[np.ndarray, np.ndarray] | None,
                       ks: tuple[int, ...] = RETRIEVAL_KS) -> dict[str, float]:
    """The most-interacted training items, the user's own excluded: the baseline a retrieval model must beat."""
    counts = np.asarray(item_counts, np.float32)[:, None]
    return retrieval_quality(np.ones((len(users), 1), np.float32), counts, target, users, exclude, ks)


def sampled_rank(pos_scores: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
    """0-based rank of each positive among its negatives (ties count against it)."""
    return (np.asarray(neg_scores) >= np.asarray(pos_scores)[:, None]).sum(axis=1)


def hit_ratio_ndcg(pos_scores: np.ndarray, neg_scores: np.ndarray, k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of leave-one-out evaluation with sampled negatives ([U] and [U, n])."""
    if np.asarray(pos_scores).size == 0:
        raise ValueError("no evaluated users: HR/NDCG need at least one held-out item")
    r = sampled_rank(pos_scores, neg_scores)
    inside = r < k
    return {f"hr@{k}": float(inside.mean()),
            f"ndcg@{k}": float(np.where(inside, 1.0 / np.log2(r + 2.0), 0.0).mean())}
