"""Synthetic Criteo-like click data with labels drawn from a fixed hidden model, so it is learnable.

Why a hidden model: random labels make every model score AUC 0.5, which hides broken training. Here the
click probability is a known function of the features, so a trained model should approach the AUC the
hidden model itself scores on the eval split (``Dataset.info["reference_auc"]``), and never beat it
by more than noise.

Features per sample:

* ``num_dense`` dense features: Criteo-like counts ``floor(lognormal)`` (many zeros, long tail), then
  ``log1p``, which is what a DLRM pipeline feeds the bottom MLP.
* one categorical feature per table, ids Zipf-distributed over ranks 1..n with exponent ``s``
  (``P(rank r) ~ r^-s``; one exponent for all tables, or one per table), ranks mapped to ids by a fixed
  permutation so hot ids are spread over the table. With a mean bag size of k for a table (``ids_per_feature``
  or per-table ``bag_sizes``): exactly one id when k == 1, else a bag of 1..2k-1 ids (``uniform``, mean k)
  or of exactly k ids (``fixed``), each drawn independently. A hot table (``hot = (f, m)``, from ``--hot-table``)
  gets bags of ``floor(m)`` or ``ceil(m)`` ids with mean exactly m, so it takes its share of all lookups.

Hidden model (its own fixed seed ``HIDDEN_SEED``, independent of the sample seed, so every seed and
both splits see the same world): ``logit = a * z + b`` with
``z = dense part + id part + interaction part``, each part standardised on a pilot sample and weighted
by ``SHARES`` of the variance: a linear function of the standardised dense features; per-id weights
sum-pooled over each bag (tables weighted by a random importance); and ``NUM_PAIRS`` pairwise
dot products of sum-pooled hidden ``PAIR_DIM``-dim id vectors (the DLRM interaction form). ``a`` and ``b``
are set by bisection on the pilot sample so the expected click rate is ``TARGET_CTR`` and the expected
AUC of the true probabilities is ``TARGET_AUC``; per-id effects shrink with the id's popularity rank
(``(1 + rank / TAIL_RANK)^-0.5``) so that most of the signal sits on ids a model sees often enough to
learn, as in real click logs.

Generation is vectorised in chunks of ``CHUNK`` samples, each from its own seeded stream
(``seed``, split, chunk index): the same (seed, split, size) always gives the same samples. A streaming run
draws each training batch on demand (``SyntheticStream``): batch ``i`` comes from its own stream
(``seed``, "stream", ``i``), so every framework sees the same batches at the same steps and nothing is held
per step. Tables above ``LARGE_TABLE_ROWS`` keep no per-row state (production tables of tens of millions
of rows): the same Zipf law through its continuous inverse CDF, an affine rank -> id bijection, and per-id
weights and vectors hashed from the id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from recsys_impls.data.batch import Batch

HIDDEN_SEED = 20190531
CHUNK = 65536
TARGET_CTR = 0.25
TARGET_AUC = 0.80
SHARES = {"dense": 0.25, "ids": 0.5, "pairs": 0.25}
NUM_PAIRS = 8
PAIR_DIM = 4
TAIL_RANK = 200.0
PILOT = 32768
_SPLIT_CODE = {"train": 1, "eval": 2, "pilot": 3, "stream": 4}


@dataclass(frozen=True)
class _Table:
    cdf: np.ndarray  # float64 [n], cumulative Zipf probability of ranks 1..n
    rank_to_id: np.ndarray  # int64 [n]
    weight: np.ndarray  # float64 [n] per-id hidden weight, indexed by id
    vectors: np.ndarray | None  # float64 [n, PAIR_DIM] by id, only for tables in a pair

    def draw(self, u: np.ndarray) -> np.ndarray:
        """Ids for uniform draws ``u`` (inverse CDF over the ranks, then the permutation). The draws are searched
        in sorted order (same result, far fewer cache misses on a large CDF)."""
        order = np.argsort(u, kind="stable")
        rank = np.empty(u.size, dtype=np.int64)
        rank[order] = np.searchsorted(self.cdf, u[order], side="right")
        return self.rank_to_id[np.minimum(rank, self.cdf.size - 1)]

    def weight_of(self, ids: np.ndarray) -> np.ndarray:
        return self.weight[ids]

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        return self.vectors[ids]

    @property
    def has_vectors(self) -> bool:
        return self.vectors is not None

    def scaled(self, factor: float) -> _Table:
        return _Table(self.cdf, self.rank_to_id, self.weight * factor, self.vectors)


# Tables above this many rows keep no per-row state (a production table of 40M rows would otherwise need
# about 2 GB of generator state): ranks come from the continuous Zipf inverse CDF, the rank -> id map is an
# affine bijection mod n, and per-id hidden weights and vectors are hashed from the id.
LARGE_TABLE_ROWS = 1 << 20
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): a well-mixed hash of each value."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
    return x ^ (x >> np.uint64(31))


def _hashed_normal(key: int, ids: np.ndarray, lane: int) -> np.ndarray:
    """A standard normal per id, a pure function of (key, id, lane): Box-Muller on two hashed uniforms."""
    base = ids.astype(np.uint64) * np.uint64(2 * (PAIR_DIM + 1)) + np.uint64(2 * lane)
    k = np.uint64(key)
    u1 = ((_mix64(base ^ k) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    u2 = (_mix64((base + np.uint64(1)) ^ k) >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@dataclass(frozen=True)
class _HashedTable:
    """A large table's hidden state in O(1) memory (see LARGE_TABLE_ROWS)."""

    n: int
    s: float
    a: int  # rank-1 -> id multiplier, coprime with n
    b: int
    a_inv: int
    key: int
    want_vectors: bool
    factor: float = 1.0

    @staticmethod
    def build(rng: np.random.Generator, n: int, s: float, want_vectors: bool) -> _HashedTable:
        a = int(rng.integers(n // 3, n)) | 1
        while np.gcd(a, n) != 1:
            a += 2
        return _HashedTable(n, s, a, int(rng.integers(0, n)), pow(a, -1, n), int(rng.integers(1, 2**63)),
                            want_vectors)

    def draw(self, u: np.ndarray) -> np.ndarray:
        top = float(self.n + 1)
        if abs(self.s - 1.0) < 1e-9:
            x = np.exp(u * np.log(top))
        else:
            e = 1.0 - self.s
            x = (1.0 + u * (top**e - 1.0)) ** (1.0 / e)
        rank0 = np.clip(np.floor(x).astype(np.int64) - 1, 0, self.n - 1)
        return (rank0 * self.a + self.b) % self.n

    def _shrink(self, ids: np.ndarray) -> np.ndarray:
        rank = ((ids - self.b) % self.n) * self.a_inv % self.n + 1
        return (1.0 + rank / TAIL_RANK) ** -0.5

    def weight_of(self, ids: np.ndarray) -> np.ndarray:
        return _hashed_normal(self.key, ids, 0) * self._shrink(ids) * self.factor

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        lanes = [_hashed_normal(self.key, ids, 1 + d) for d in range(PAIR_DIM)]
        return np.stack(lanes, axis=1) * (self._shrink(ids) / np.sqrt(PAIR_DIM))[:, None]

    @property
    def has_vectors(self) -> bool:
        return self.want_vectors

    def scaled(self, factor: float) -> _HashedTable:
        from dataclasses import replace

        return replace(self, factor=self.factor * factor)


@dataclass(frozen=True)
class HiddenModel:
    """The fixed world the labels come from; built once per data shape."""

    num_dense: int
    table_sizes: tuple[int, ...]
    ids_per_feature: int
    zipf_exponent: float
    tables: tuple[_Table | _HashedTable, ...]
    bag_sizes: tuple[int, ...]  # mean ids per sample of each table
    exponents: tuple[float, ...]  # Zipf exponent of each table
    bag_distribution: str  # "uniform" (1..2k-1) or "fixed" (exactly k)
    dense_mu: np.ndarray
    dense_sigma: np.ndarray
    dense_mean: np.ndarray  # of log1p(counts), from the pilot
    dense_std: np.ndarray
    dense_weight: np.ndarray
    pairs: tuple[tuple[int, int], ...]
    part_scale: dict[str, float]
    part_mean: dict[str, float]
    scale: float  # a
    bias: float  # b
    hot: tuple[int, float] | None = None  # (table, mean bag size) of a hot table

    def params(self) -> dict[str, object]:
        """Generator facts for the record."""
        return {
            "hidden_seed": HIDDEN_SEED, "zipf_exponent": self.zipf_exponent,
            "ids_per_feature": self.ids_per_feature, "bag_sizes": list(self.bag_sizes),
            "zipf_exponents": list(self.exponents), "bag_distribution": self.bag_distribution,
            "target_ctr": TARGET_CTR, "target_auc": TARGET_AUC,
            "shares": dict(SHARES), "pairs": [list(p) for p in self.pairs], "pair_dim": PAIR_DIM,
            "tail_rank": TAIL_RANK, "logit_scale": round(self.scale, 6), "logit_bias": round(self.bias, 6),
            "hot_table": None if self.hot is None else {"table": self.hot[0], "mean_bag": self.hot[1]},
        }


def _zipf_table(rng: np.random.Generator, n: int, s: float, want_vectors: bool) -> _Table | _HashedTable:
    if n > LARGE_TABLE_ROWS:
        return _HashedTable.build(rng, n, s, want_vectors)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    pmf = ranks ** (-s)
    cdf = np.cumsum(pmf)
    cdf /= cdf[-1]
    rank_to_id = rng.permutation(n).astype(np.int64)
    shrink = (1.0 + ranks / TAIL_RANK) ** -0.5
    weight = np.empty(n)
    weight[rank_to_id] = rng.standard_normal(n) * shrink
    vectors = None
    if want_vectors:
        vectors = np.empty((n, PAIR_DIM))
        vectors[rank_to_id] = rng.standard_normal((n, PAIR_DIM)) * shrink[:, None] / np.sqrt(PAIR_DIM)
    return _Table(cdf=cdf, rank_to_id=rank_to_id, weight=weight, vectors=vectors)


def _sample_features(
    hm_tables: tuple[_Table | _HashedTable, ...], mu: np.ndarray, sigma: np.ndarray, ks: tuple[int, ...], fixed: bool,
    rng: np.random.Generator, n: int, hot: tuple[int, float] | None = None,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """dense float32 [n, D] (log1p of counts), per-feature id arrays, lengths int32 [F, n]."""
    counts = np.floor(np.exp(mu + sigma * rng.standard_normal((n, mu.size))))
    dense = np.log1p(counts).astype(np.float32)
    lengths = np.ones((len(hm_tables), n), dtype=np.int32)
    ids = []
    for f, t in enumerate(hm_tables):
        k = ks[f]
        if hot is not None and f == hot[0]:
            base = int(np.floor(hot[1]))
            lengths[f] = base + (rng.random(n) < hot[1] - base)
        elif k > 1 and fixed:
            lengths[f] = k
        elif k > 1:
            lengths[f] = rng.integers(1, 2 * k, size=n, dtype=np.int32)
        ids.append(t.draw(rng.random(int(lengths[f].sum()))))
    return dense, ids, lengths


def _parts(hm: HiddenModel | _Partial, dense: np.ndarray, ids: list[np.ndarray], lengths: np.ndarray) -> dict:
    """Unscaled dense, id and pair parts of the hidden score, each float64 [n]."""
    n = dense.shape[0]
    dense_part = ((dense - hm.dense_mean) / hm.dense_std) @ hm.dense_weight
    id_part = np.zeros(n)
    pooled_vec: dict[int, np.ndarray] = {}
    for f, t in enumerate(hm.tables):
        if ids[f].size == n and (lengths[f] == 1).all():  # one id per sample: pooling is a gather
            id_part += t.weight_of(ids[f])
            if t.has_vectors:
                pooled_vec[f] = t.vectors_of(ids[f])
        else:
            seg = np.repeat(np.arange(n), lengths[f])
            id_part += np.bincount(seg, weights=t.weight_of(ids[f]), minlength=n)
            if t.has_vectors:
                v = t.vectors_of(ids[f])
                pooled_vec[f] = np.stack([np.bincount(seg, weights=v[:, d], minlength=n) for d in range(PAIR_DIM)], 1)
    pair_part = np.zeros(n)
    for a, b in hm.pairs:
        pair_part += np.einsum("nd,nd->n", pooled_vec[a], pooled_vec[b])
    return {"dense": dense_part, "ids": id_part, "pairs": pair_part}


@dataclass(frozen=True)
class _Partial:
    """The hidden model before its part scales and logit calibration are known."""

    tables: tuple[_Table | _HashedTable, ...]
    dense_mean: np.ndarray
    dense_std: np.ndarray
    dense_weight: np.ndarray
    pairs: tuple[tuple[int, int], ...]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _bias_for_ctr(z: np.ndarray, a: float) -> float:
    """Bias b with mean(sigmoid(a z + b)) == TARGET_CTR: Newton steps kept inside a bisection bracket."""
    lo, hi = -40.0, 40.0
    b = float(np.log(TARGET_CTR / (1.0 - TARGET_CTR)))
    for _ in range(100):
        p = _sigmoid(a * z + b)
        gap = float(p.mean()) - TARGET_CTR
        if abs(gap) < 1e-12:
            break
        lo, hi = (b, hi) if gap < 0 else (lo, b)
        step = b - gap / max(float((p * (1.0 - p)).mean()), 1e-300)
        b = step if lo < step < hi else 0.5 * (lo + hi)
    return b


def _expected_auc(z_sorted: np.ndarray, a: float, b: float) -> float:
    """AUC of p = sigmoid(a z + b) against labels ~ Bernoulli(p), in expectation (z sorted ascending)."""
    p = _sigmoid(a * z_sorted + b)
    neg_below = np.cumsum(1.0 - p) - (1.0 - p)
    return float(np.dot(p, neg_below) / (p.sum() * (1.0 - p).sum()))


def _calibrate(z: np.ndarray) -> tuple[float, float]:
    """Scale a and bias b so the pilot's expected CTR and AUC hit their targets."""
    z_sorted = np.sort(z)
    lo, hi = 1e-3, 50.0
    for _ in range(32):
        a = 0.5 * (lo + hi)
        lo, hi = (a, hi) if _expected_auc(z_sorted, a, _bias_for_ctr(z, a)) < TARGET_AUC else (lo, a)
    a = 0.5 * (lo + hi)
    return a, _bias_for_ctr(z, a)


@lru_cache(maxsize=8)
def hidden_model(
    num_dense: int, table_sizes: tuple[int, ...], ids_per_feature: int, zipf_exponent: float,
    bag_sizes: tuple[int, ...] = (), exponents: tuple[float, ...] = (), bag_distribution: str = "uniform",
    hot: tuple[int, float] | None = None,
) -> HiddenModel:
    """Build (and cache) the fixed hidden model for a data shape; independent of any sample seed.

    ``bag_sizes`` / ``exponents``: per-table mean bag sizes and Zipf exponents (empty: ``ids_per_feature``
    and ``zipf_exponent`` for every table)."""
    ks = tuple(int(k) for k in bag_sizes) or (int(ids_per_feature),) * len(table_sizes)
    exps = tuple(float(e) for e in exponents) or (float(zipf_exponent),) * len(table_sizes)
    fixed = bag_distribution == "fixed"
    root = np.random.SeedSequence(HIDDEN_SEED)
    rng = np.random.default_rng(root.spawn(1)[0])
    nf = len(table_sizes)
    all_pairs = [(a, b) for a in range(nf) for b in range(a + 1, nf)]
    pick = rng.choice(len(all_pairs), size=min(NUM_PAIRS, len(all_pairs)), replace=False) if all_pairs else []
    pairs = tuple(sorted(all_pairs[i] for i in pick))
    in_pair = {f for p in pairs for f in p}
    table_rngs = [np.random.default_rng([HIDDEN_SEED, 7, f, n]) for f, n in enumerate(table_sizes)]
    tables = tuple(_zipf_table(table_rngs[f], n, exps[f], f in in_pair) for f, n in enumerate(table_sizes))
    importance = rng.uniform(0.5, 1.5, size=nf)
    tables = tuple(t.scaled(float(importance[f])) for f, t in enumerate(tables))
    mu = rng.uniform(-0.5, 2.5, size=num_dense)
    sigma = rng.uniform(0.5, 1.5, size=num_dense)
    dense_weight = rng.standard_normal(num_dense)
    pilot_rng = np.random.default_rng([HIDDEN_SEED, _SPLIT_CODE["pilot"]])
    dense, ids, lengths = _sample_features(tables, mu, sigma, ks, fixed, pilot_rng, PILOT, hot)
    d64 = dense.astype(np.float64)
    std = d64.std(axis=0)
    partial = _Partial(tables, d64.mean(axis=0), np.where(std > 0, std, 1.0), dense_weight, pairs)
    parts = _parts(partial, dense, ids, lengths)
    part_scale = {}
    for name, share in SHARES.items():
        sd = float(parts[name].std())
        part_scale[name] = float(np.sqrt(share) / sd) if sd > 0 else 0.0
    part_mean = {k: float(parts[k].mean()) for k in SHARES}
    z = _score(part_scale, part_mean, parts)
    a, b = _calibrate(np.asarray(z))
    return HiddenModel(
        num_dense=num_dense, table_sizes=table_sizes, ids_per_feature=ids_per_feature,
        zipf_exponent=zipf_exponent, tables=tables, bag_sizes=ks, exponents=exps, bag_distribution=bag_distribution,
        dense_mu=mu, dense_sigma=sigma,
        dense_mean=partial.dense_mean, dense_std=partial.dense_std, dense_weight=dense_weight, pairs=pairs,
        part_scale=part_scale, part_mean=part_mean, scale=a, bias=b, hot=hot,
    )


def _score(scale: dict[str, float], mean: dict[str, float], parts: dict[str, np.ndarray]) -> np.ndarray:
    """Hidden score z: each part centred and scaled to its share of the variance (pilot statistics)."""
    return sum(scale[k] * (parts[k] - mean[k]) for k in SHARES)


def click_probability(hm: HiddenModel, batch: Batch) -> np.ndarray:
    """The hidden model's true click probability for each sample of a Batch: float64 [B]."""
    off = batch.feature_offsets()
    ids = [batch.ids[off[f] : off[f + 1]] for f in range(batch.num_features)]
    parts = _parts(hm, batch.dense, ids, batch.lengths)
    return _sigmoid(hm.scale * _score(hm.part_scale, hm.part_mean, parts) + hm.bias)


def _chunk(hm: HiddenModel, rng: np.random.Generator, n: int
           ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """n samples from one seeded stream: dense, per-feature ids, lengths, labels, true probabilities."""
    dense, ids, lengths = _sample_features(hm.tables, hm.dense_mu, hm.dense_sigma, hm.bag_sizes,
                                           hm.bag_distribution == "fixed", rng, n, hm.hot)
    p = _sigmoid(hm.scale * _score(hm.part_scale, hm.part_mean, _parts(hm, dense, ids, lengths)) + hm.bias)
    labels = (rng.random(n) < p).astype(np.float32)
    return dense, ids, lengths, labels, p


def generate(hm: HiddenModel, seed: int, split: str, num: int) -> tuple[Batch, np.ndarray]:
    """``num`` samples of one split as a Batch, plus their true click probabilities (float64 [num])."""
    if num <= 0:
        raise ValueError(f"num = {num}; must be positive")
    dense_parts, id_parts, length_parts, label_parts, probs = [], [], [], [], []
    for c, start in enumerate(range(0, num, CHUNK)):
        n = min(CHUNK, num - start)
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], c])
        dense, ids, lengths, labels, p = _chunk(hm, rng, n)
        label_parts.append(labels)
        dense_parts.append(dense)
        id_parts.append(ids)
        length_parts.append(lengths)
        probs.append(p)
    nf = len(hm.tables)
    batch = Batch(  # feature-major: all chunks of feature 0, then feature 1, ...
        dense=np.concatenate(dense_parts),
        ids=np.concatenate([chunk[f] for f in range(nf) for chunk in id_parts]),
        lengths=np.concatenate(length_parts, axis=1),
        labels=np.concatenate(label_parts),
    )
    return batch, np.concatenate(probs)


@dataclass(frozen=True)
class SyntheticStream:
    """Training batches drawn on demand: ``batch(i)`` is a pure function of (hidden model, seed, i, size).

    Holds no per-step state, so a run's memory does not depend on its number of steps."""

    hm: HiddenModel
    seed: int
    batch_size: int
    distinct: int | None = None  # unbounded: every step index gives a new batch

    def batch(self, index: int) -> Batch:
        rng = np.random.default_rng([self.seed, _SPLIT_CODE["stream"], int(index)])
        dense, ids, lengths, labels, _ = _chunk(self.hm, rng, self.batch_size)
        return Batch(dense=dense, ids=np.concatenate(ids), lengths=lengths, labels=labels)

    def describe(self) -> dict[str, object]:
        return {"kind": "synthetic, generated per batch", "batch_size": self.batch_size,
                "seeded_by": "(seed, 'stream', step index)"}


def load_synthetic(
    num_dense: int, table_sizes: tuple[int, ...], ids_per_feature: int, zipf_exponent: float,
    seed: int, num_train: int, num_eval: int, bag_sizes: tuple[int, ...] = (), exponents: tuple[float, ...] = (),
    bag_distribution: str = "uniform", stream_batch_size: int | None = None, hot: tuple[int, float] | None = None,
):
    """Train and eval splits from the same hidden model; returns a Dataset with the reference AUC.

    With ``stream_batch_size`` the training split is not generated up front: ``Dataset.stream`` draws each
    batch on demand and ``Dataset.train`` is its first batch (for the data facts)."""
    from recsys_impls.data.dataset import Dataset
    from recsys_impls.metrics import all_metrics

    t0 = time.perf_counter()
    hm = hidden_model(int(num_dense), tuple(int(n) for n in table_sizes), int(ids_per_feature), float(zipf_exponent),
                      tuple(int(k) for k in bag_sizes), tuple(float(e) for e in exponents), bag_distribution, hot)
    t1 = time.perf_counter()
    stream = SyntheticStream(hm, seed, stream_batch_size) if stream_batch_size else None
    train = stream.batch(0) if stream else generate(hm, seed, "train", num_train)[0]
    evaluation, eval_probs = generate(hm, seed, "eval", num_eval)
    t2 = time.perf_counter()
    ref = all_metrics(evaluation.labels, eval_probs)
    info = {
        "reference_auc": ref["auc"],
        "reference_logloss": ref["logloss"],
        "reference_ne": ref["ne"],
        "ctr": float(train.labels.mean()),
        "eval_ctr": float(evaluation.labels.mean()),
        "generator": {**hm.params(), "seed": seed},
        "generate_seconds": round(t2 - t1, 3),
        "hidden_model_seconds": round(t1 - t0, 3),
    }
    if stream:
        info["train_source"] = stream.describe()
    return Dataset(
        name="synthetic", train=train, eval=evaluation, num_dense=int(num_dense),
        table_sizes=tuple(int(n) for n in table_sizes), info=info, stream=stream,
    )
