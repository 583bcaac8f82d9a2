"""Implicit-feedback interactions (user, item, timestamp) for retrieval and collaborative-filtering models.

Three sources, one shape (``Interactions``):

* ``synthetic_interactions``: users and items in latent clusters, Zipf item popularity; a user picks an
  item of its own cluster with probability ``in_cluster`` (by popularity within the cluster), otherwise
  any item by popularity. The generator's own probabilities are a dot product, so the Bayes-optimal
  ranking (``oracle_vectors``) is scored by the same brute-force retrieval as a model: the achievable
  recall.
* ``movielens_interactions``: the 100k ratings of MovieLens-100k as implicit feedback, with user features
  (id, age bucket, gender, occupation) and item features (id, genres, release decade).
* ``csv_interactions``: a user file with the header ``user_id,item_id[,timestamp]``; ids are any strings.

Split (all sources): repeated (user, item) pairs keep their latest occurrence; per user with at least two
items, the latest interaction by timestamp (file order without timestamps, later lines win ties) is held
out for evaluation, the rest are training interactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys_impls.errors import DataFormatError, UsageError, clip


@dataclass
class EntityFeatures:
    """Categorical features of users or of items, as fixed-width bags per entity.

    ``ids[e, s]`` is a row of the tower's fused table (feature offsets applied); ``mask[e, s]`` is 1 for a
    real id and 0 for padding; ``slot_feature[s]`` says which feature slot ``s`` belongs to. A model pools
    each feature as the mean of its masked rows.
    """

    names: tuple[str, ...]
    table_sizes: tuple[int, ...]
    ids: np.ndarray  # int64 [n, L]
    mask: np.ndarray  # float32 [n, L]
    slot_feature: np.ndarray  # int64 [L]

    @property
    def rows(self) -> int:
        return int(sum(self.table_sizes))

    @property
    def num_features(self) -> int:
        return len(self.names)

    def take(self, entities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, mask) of ``entities``."""
        return self.ids[entities], self.mask[entities]


def entity_features(columns: dict[str, np.ndarray], table_sizes: dict[str, int]) -> EntityFeatures:
    """Build ``EntityFeatures`` from per-feature id columns: ``[n]`` (one id) or ``[n, w]`` padded with -1."""
    names = tuple(columns)
    offsets = np.concatenate([[0], np.cumsum([table_sizes[n] for n in names])[:-1]]).astype(np.int64)
    ids, masks, slots = [], [], []
    for f, name in enumerate(names):
        col = np.asarray(columns[name], dtype=np.int64)
        col = col[:, None] if col.ndim == 1 else col
        if col.size and col.max() >= table_sizes[name]:
            raise ValueError(f"feature {name}: id {int(col.max())} outside its table of {table_sizes[name]} rows")
        present = col >= 0
        ids.append(np.where(present, col, 0) + offsets[f])
        masks.append(present.astype(np.float32))
        slots.append(np.full(col.shape[1], f, dtype=np.int64))
    return EntityFeatures(names=names, table_sizes=tuple(int(table_sizes[n]) for n in names),
                          ids=np.concatenate(ids, axis=1), mask=np.concatenate(masks, axis=1),
                          slot_feature=np.concatenate(slots))


def id_features(n: int, name: str) -> EntityFeatures:
    """The entity's own id as its only feature."""
    return entity_features({name: np.arange(n)}, {name: n})


@dataclass
class Interactions:
    """Training interactions and one held-out item per evaluated user (see the module docstring)."""

    name: str
    num_users: int
    num_items: int
    train_user: np.ndarray  # int64 [N]
    train_item: np.ndarray  # int64 [N]
    test_user: np.ndarray  # int64 [U_eval], distinct users
    test_item: np.ndarray  # int64 [U_eval]
    user_features: EntityFeatures
    item_features: EntityFeatures
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_train(self) -> int:
        return int(self.train_user.size)

    def item_counts(self) -> np.ndarray:
        """Training interactions per item."""
        return np.bincount(self.train_item, minlength=self.num_items)

    def item_log_q(self) -> np.ndarray:
        """log of each item's share of the training interactions (the in-batch sampling probability)."""
        counts = self.item_counts().astype(np.float64)
        return np.log(np.maximum(counts, 0.5) / max(counts.sum(), 1.0)).astype(np.float32)

    def seen(self) -> tuple[np.ndarray, np.ndarray]:
        """Each user's training items as CSR (indptr [num_users + 1], items)."""
        order = np.argsort(self.train_user, kind="stable")
        counts = np.bincount(self.train_user, minlength=self.num_users)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), self.train_item[order]


def split_latest(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray | None, num_users: int,
                 num_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Deduplicate (user, item) keeping the latest, hold out each user's latest interaction.

    Returns (train_user, train_item, test_user, test_item, duplicates removed). Ties in time go to the
    later row. Users with a single item are kept for training and not evaluated.
    """
    n = user.size
    t = np.arange(n, dtype=np.float64) if timestamp is None else np.asarray(timestamp, dtype=np.float64)
    order = np.lexsort((np.arange(n), t, user))  # by user, then time, then row
    u, i = user[order], item[order]
    key = u * np.int64(num_items) + i
    # latest occurrence of each (user, item): the last one in time order
    _, last_rev = np.unique(key[::-1], return_index=True)
    keep = np.sort(n - 1 - last_rev)
    dups = n - keep.size
    u, i = u[keep], i[keep]
    last_of_user = np.flatnonzero(np.r_[u[1:] != u[:-1], True])
    per_user = np.diff(np.r_[-1, last_of_user])
    held = last_of_user[per_user >= 2]
    train = np.ones(u.size, dtype=bool)
    train[held] = False
    return u[train], i[train], u[held], i[held], dups


# --- synthetic -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticInteractionsConfig:
    """Shape of the planted structure."""

    num_users: int = 2000
    num_items: int = 5000
    clusters: int = 16
    per_user: int = 40  # mean interactions per user (before removing repeats)
    in_cluster: float = 0.8
    zipf_exponent: float = 0.8


def _popularity(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf weights 1/rank^s, ranks scattered over the items."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return weights[rng.permutation(n)]


def synthetic_interactions(cfg: SyntheticInteractionsConfig, seed: int) -> Interactions:
    """Clustered users and items with Zipf popularity (vectorised; 60k interactions in well under a second)."""
    rng = np.random.default_rng([seed, 12])
    nu, ni, c = cfg.num_users, cfg.num_items, cfg.clusters
    pop = _popularity(ni, cfg.zipf_exponent, rng)
    item_cluster = rng.integers(0, c, ni)
    user_cluster = rng.integers(0, c, nu)
    counts = np.maximum(rng.poisson(cfg.per_user, nu), 3)
    user = np.repeat(np.arange(nu, dtype=np.int64), counts)
    n = user.size
    # in-cluster draw: items sorted by cluster, cumulative popularity, one searchsorted for every draw
    by_cluster = np.argsort(item_cluster, kind="stable")
    cum = np.cumsum(pop[by_cluster])
    cluster_total = np.bincount(item_cluster, weights=pop, minlength=c)
    cluster_start = np.concatenate([[0.0], np.cumsum(cluster_total)[:-1]])
    uc = user_cluster[user]
    target = cluster_start[uc] + rng.random(n) * cluster_total[uc]
    inside = by_cluster[np.minimum(np.searchsorted(cum, target, side="right"), ni - 1)]
    anywhere = np.minimum(np.searchsorted(np.cumsum(pop), rng.random(n) * pop.sum(), side="right"), ni - 1)
    item = np.where(rng.random(n) < cfg.in_cluster, inside, anywhere).astype(np.int64)
    ts = rng.random(n)
    tu, ti, eu, ei, dups = split_latest(user, item, ts, nu, ni)
    info = {"generator": {"num_users": nu, "num_items": ni, "clusters": c, "per_user": cfg.per_user,
                          "in_cluster": cfg.in_cluster, "zipf_exponent": cfg.zipf_exponent, "seed": seed},
            "repeats_removed": dups}
    data = Interactions("synthetic", nu, ni, tu, ti, eu, ei, id_features(nu, "user"), id_features(ni, "item"), info)
    data.info["_oracle"] = _oracle_vectors(cfg, pop, user_cluster, item_cluster)
    return data


def _oracle_vectors(cfg: SyntheticInteractionsConfig, pop: np.ndarray, user_cluster: np.ndarray,
                    item_cluster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The generator's P(item | user) as user x item dot products: [cluster one-hot * p / Z_c, (1 - p) / Z]
    . [cluster one-hot * pop, pop]."""
    c = cfg.clusters
    z_c = np.bincount(item_cluster, weights=pop, minlength=c)
    u = np.zeros((user_cluster.size, c + 1))
    u[np.arange(user_cluster.size), user_cluster] = cfg.in_cluster / np.maximum(z_c[user_cluster], 1e-300)
    u[:, c] = (1.0 - cfg.in_cluster) / pop.sum()
    v = np.zeros((pop.size, c + 1))
    v[np.arange(pop.size), item_cluster] = pop
    v[:, c] = pop
    return u.astype(np.float32), v.astype(np.float32)


def oracle_vectors(data: Interactions) -> tuple[np.ndarray, np.ndarray] | None:
    """(user, item) vectors whose dot products rank items as the generator draws them; None for real data."""
    return data.info.get("_oracle")


# --- MovieLens-100k ------------------------------------------------------------------------------


def movielens_interactions() -> Interactions:
    """MovieLens-100k ratings as implicit interactions, with user and item side features."""
    from recsys_impls.data import movielens as ml

    directory = ml.locate()
    _, irows = ml._read_table(directory / "ml-100k.inter")
    uh, urows = ml._read_table(directory / "ml-100k.user")
    th, trows = ml._read_table(directory / "ml-100k.item")
    inter = np.array([[int(r[0]), int(r[1]), float(r[3])] for r in irows], dtype=np.float64)
    user_keys = np.array(sorted({int(u) for u in ml._column(uh, urows, "user_id")} | set(inter[:, 0].astype(int))))
    item_keys = np.array(sorted({int(i) for i in ml._column(th, trows, "item_id")} | set(inter[:, 1].astype(int))))
    user = np.searchsorted(user_keys, inter[:, 0].astype(np.int64))
    item = np.searchsorted(item_keys, inter[:, 1].astype(np.int64))
    nu, ni = user_keys.size, item_keys.size
    # user side: row 0 of each table is "unknown"
    u_rows = np.searchsorted(user_keys, np.array([int(u) for u in ml._column(uh, urows, "user_id")]))
    ages = np.array([int(a) if a else 0 for a in ml._column(uh, urows, "age")])
    gender_v, occ_v = ml._vocab(ml._column(uh, urows, "gender")), ml._vocab(ml._column(uh, urows, "occupation"))
    age_b = np.zeros(nu, np.int64)
    gender = np.zeros(nu, np.int64)
    occ = np.zeros(nu, np.int64)
    age_b[u_rows] = np.where(ages > 0, np.searchsorted(ml.AGE_EDGES, ages, side="right") + 1, 0)
    gender[u_rows] = [gender_v.get(g, 0) for g in ml._column(uh, urows, "gender")]
    occ[u_rows] = [occ_v.get(o, 0) for o in ml._column(uh, urows, "occupation")]
    users = entity_features(
        {"user": np.arange(nu), "age_bucket": age_b, "gender": gender, "occupation": occ},
        {"user": nu, "age_bucket": len(ml.AGE_EDGES) + 2, "gender": len(gender_v) + 1, "occupation": len(occ_v) + 1})
    # item side: genres multi-hot (padded), release decade
    i_rows = np.searchsorted(item_keys, np.array([int(i) for i in ml._column(th, trows, "item_id")]))
    genre_lists = [g.split() for g in ml._column(th, trows, "class")]
    genre_v = ml._vocab([g for gs in genre_lists for g in gs])
    width = max((len(g) for g in genre_lists), default=1) or 1
    genres = np.full((ni, width), -1, np.int64)
    genres[:, 0] = 0  # no genre known: the reserved row
    for r, gs in zip(i_rows, genre_lists, strict=True):
        if gs:
            genres[r, : len(gs)] = [genre_v[g] for g in gs]
    years = np.array([int(y) if y.isdigit() else 0 for y in ml._column(th, trows, "release_year")])
    decades = np.where(years > 0, years // 10 * 10, 0)
    decade_v = {int(d): k + 1 for k, d in enumerate(sorted(set(decades[decades > 0].tolist())))}
    decade = np.zeros(ni, np.int64)
    decade[i_rows] = [decade_v.get(int(d), 0) for d in decades]
    items = entity_features({"item": np.arange(ni), "genres": genres, "release_decade": decade},
                            {"item": ni, "genres": len(genre_v) + 1, "release_decade": len(decade_v) + 1})
    tu, ti, eu, ei, dups = split_latest(user, item, inter[:, 2], nu, ni)
    info = {"source": str(directory), "interactions": int(inter.shape[0]), "repeats_removed": dups,
            "split": "per user, the latest rating by timestamp held out"}
    return Interactions("movielens", nu, ni, tu, ti, eu, ei, users, items, info)


# --- user CSV ------------------------------------------------------------------------------------

CSV_HEADERS = ("user_id,item_id", "user_id,item_id,timestamp")
CSV_EXPECTED = "expected user_id,item_id[,timestamp] (ids any text without commas, timestamp a number)"


def csv_interactions(path: str, skip_bad_lines: bool = False) -> Interactions:
    """Read ``PATH.csv``: header ``user_id,item_id[,timestamp]``, then one interaction per line.

    A bad line stops with ``FILE:LINE: what is wrong`` (UsageError, exit 2) unless ``skip_bad_lines``,
    which counts it in ``info["bad_lines"]``. Blank lines are ignored.
    """
    where = clip(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"--data {where}: cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(f"{where}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); {CSV_EXPECTED}") from None
    lines = np.array(text.replace("\r\n", "\n").split("\n"), dtype=str)
    header = lines[0].strip().replace(" ", "") if lines.size else ""
    if header not in CSV_HEADERS:
        raise DataFormatError(f"{where}:1: header {clip(lines[0] if lines.size else '', 80)!r}; expected "
                              f"{' or '.join(CSV_HEADERS)}")
    width = header.count(",") + 1
    lineno = np.arange(2, lines.size + 1)
    body = lines[1:]
    blank = np.char.str_len(np.char.strip(body)) == 0
    body, lineno = body[~blank], lineno[~blank]
    commas = np.char.count(body, ",")
    user, _, rest = (np.char.strip(a) for a in np.char.partition(body, ",").T)
    item, _, ts_text = (np.char.strip(a) for a in np.char.partition(rest, ",").T)
    why = np.full(body.size, "", dtype=object)
    why[commas != width - 1] = f"{width} comma-separated fields expected"
    why[(why == "") & (np.char.str_len(user) == 0)] = "empty user_id"
    why[(why == "") & (np.char.str_len(item) == 0)] = "empty item_id"
    ts = None
    if width == 3:
        ts = np.full(body.size, np.nan)
        ok = why == ""
        ts[ok] = _parse_numbers(ts_text[ok])
        why[(why == "") & ~np.isfinite(ts)] = "timestamp is not a finite number"
    bad = why != ""
    if bad.any() and not skip_bad_lines:
        k = int(np.argmax(bad))
        raise DataFormatError(f"{where}:{int(lineno[k])}: {why[k]}: {clip(str(body[k]), 80)!r}; {CSV_EXPECTED} "
                              "(--skip-bad-lines counts and skips such lines)")
    good = ~bad
    user_keys, user = np.unique(user[good], return_inverse=True)
    item_keys, item = np.unique(item[good], return_inverse=True)
    if user.size == 0:
        raise DataFormatError(f"{where}: no interactions after the header; {CSV_EXPECTED}")
    nu, ni = user_keys.size, item_keys.size
    tu, ti, eu, ei, dups = split_latest(user.astype(np.int64), item.astype(np.int64),
                                        None if ts is None else ts[good], nu, ni)
    if eu.size == 0:
        raise DataFormatError(f"{where}: no user has two different items, so nothing can be held out for "
                              "evaluation; each evaluated user needs at least two")
    info = {"source": where, "interactions": int(good.sum()), "bad_lines": int(bad.sum()), "repeats_removed": dups,
            "split": "per user, the latest interaction held out" + (" by timestamp" if ts is not None
                                                                     else " (file order: no timestamp column)"),
            "user_keys_sample": user_keys[:3].tolist(), "item_keys_sample": item_keys[:3].tolist()}
    return Interactions(f"csv:{Path(path).name}", nu, ni, tu, ti, eu, ei, id_features(nu, "user"),
                        id_features(ni, "item"), info)


def _parse_numbers(text: np.ndarray) -> np.ndarray:
    """Float parse of a string array; unparsable entries become nan (vectorised when all parse)."""
    try:
        return text.astype(np.float64)
    except ValueError:
        out = np.full(text.size, np.nan)
        for k, s in enumerate(text.tolist()):
            try:
                out[k] = float(s)
            except ValueError:
                pass
        return out


def pair_keys(user: np.ndarray, item: np.ndarray, num_items: int) -> np.ndarray:
    """One int64 per (user, item) pair, for membership tests with ``np.searchsorted``."""
    return np.asarray(user, np.int64) * np.int64(num_items) + np.asarray(item, np.int64)


def sample_unseen(users: np.ndarray, per_user: int, num_items: int, forbidden: np.ndarray,
                  rng: np.random.Generator, rounds: int = 50) -> np.ndarray:
    """``per_user`` uniform items for each of ``users`` that are not in ``forbidden`` (sorted pair keys).

    Redraws only the collisions, a few rounds (vectorised); a user who has seen nearly every item may keep
    a collision after ``rounds`` (never the case for the data here, where users see a small share).
    """
    out = rng.integers(0, num_items, size=(users.size, per_user))
    uu = np.repeat(np.asarray(users, np.int64)[:, None], per_user, axis=1)
    for _ in range(rounds):
        keys = pair_keys(uu, out, num_items)
        pos = np.minimum(np.searchsorted(forbidden, keys), max(forbidden.size - 1, 0))
        hit = forbidden[pos] == keys if forbidden.size else np.zeros(keys.shape, bool)
        if not hit.any():
            break
        out[hit] = rng.integers(0, num_items, size=int(hit.sum()))
    return out


def load_interactions(source: str, seed: int, skip_bad_lines: bool = False,
                      synthetic: SyntheticInteractionsConfig | None = None) -> Interactions:
    """``--data`` for retrieval models: synthetic, movielens, or a ``.csv`` of interactions."""
    if source == "synthetic":
        return synthetic_interactions(synthetic or SyntheticInteractionsConfig(), seed)
    if source == "movielens":
        return movielens_interactions()
    if source.lower().endswith(".csv"):
        return csv_interactions(source, skip_bad_lines)
    raise UsageError(f"--data {clip(source)}: retrieval models read synthetic, movielens or an interactions file "
                     f"PATH.csv ({CSV_EXPECTED}); Criteo TSV files hold no user/item pairs")
