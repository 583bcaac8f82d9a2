"""Retrieval and collaborative-filtering models behind one small framework-neutral interface.

``RETRIEVAL_MODELS`` names each model's config class, its backends (``"module:Class"``, imported on
use) and what it publishes; ``build`` makes a backend's model for interactions data; ``training_batches``
draws the host batches a model trains on; ``quality`` scores a trained model on the held-out split.
Every backend model has ``stage``, ``train_step``, ``loss``, ``get_params``/``set_params``, ``to_numpy``
and ``synchronize``; two-tower adds ``encode`` and the serving calls (``stage_corpus``,
``stage_queries``, ``retrieve``), NeuMF ``infer`` (logits of staged (user, item) pairs).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_impls.data.interactions import Interactions, pair_keys, sample_unseen
from recsys_impls.errors import ScenarioUnsupported, UsageError
from recsys_impls.metrics_retrieval import hit_ratio_ndcg, popularity_quality, retrieval_quality
from recsys_impls.models.neumf import NeuMFConfig
from recsys_impls.models.two_tower import TowerShape, TwoTowerConfig

SAMPLED_NEGATIVES = 100  # leave-one-out evaluation of NeuMF, as in He et al. 2017
MAX_DISTINCT_EPOCHS = 8  # training batches drawn for at most this many epochs, then cycled


@dataclass(frozen=True)
class RetrievalModel:
    name: str
    config: type
    backends: dict[str, str]
    quality_metrics: tuple[str, ...]
    description: str


RETRIEVAL_MODELS: dict[str, RetrievalModel] = {
    "two-tower": RetrievalModel(
        "two-tower", TwoTowerConfig,
        {"torch": "recsys_impls.torch_impl.two_tower:TorchTwoTower", "tf": "recsys_impls.tf_impl.two_tower:TFTwoTower"},
        ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "recall@100", "ndcg@100"),
        "user and item towers, in-batch sampled softmax with logQ correction; brute-force top-K over the corpus"),
    "neumf": RetrievalModel(
        "neumf", NeuMFConfig,
        {"torch": "recsys_impls.torch_impl.neumf:TorchNeuMF", "tf": "recsys_impls.tf_impl.neumf:TFNeuMF"},
        ("hr@10", "ndcg@10"),
        "GMF + MLP over user and item embeddings, BCE with sampled negatives; leave-one-out, 100 negatives"),
}


def model_entry(name: str) -> RetrievalModel:
    if name not in RETRIEVAL_MODELS:
        raise UsageError(f"--model {name}: not a retrieval model; accepted: {', '.join(RETRIEVAL_MODELS)}")
    return RETRIEVAL_MODELS[name]


def config_from(model_config: Any) -> Any:
    """The model's own config (TwoTowerConfig or NeuMFConfig) from the scenario's ModelConfig."""
    from recsys_impls.models import neumf, two_tower

    module = {"two-tower": two_tower, "neumf": neumf}[model_entry(model_config.arch).name]
    return module.from_model_config(model_config)


def tower_shape(data: Interactions, side: str) -> TowerShape:
    f = data.user_features if side == "user" else data.item_features
    return TowerShape(f.rows, tuple(int(s) for s in f.slot_feature))


def build(name: str, framework: str, cfg: Any, data: Interactions, optimizer: str, lr: float, seed: int,
          device: Any = "cpu", plan: Any = None) -> Any:
    """The backend's model for ``data`` (initialised from the shared seeded parameters); ``device``: a
    ``--device`` value or the scenario's DeviceConfig (precision, compile mode, pinned staging); ``plan``: a
    compression plan whose layout its tables take (``models.retrieval_tables``)."""
    entry = model_entry(name)
    if framework not in entry.backends:
        raise ScenarioUnsupported(f"model {name}: no {framework} backend (has: {', '.join(entry.backends)})")
    cfg.validate()
    module, _, cls = entry.backends[framework].partition(":")
    impl_cls = getattr(importlib.import_module(module), cls)
    if name == "two-tower":
        return impl_cls(cfg, tower_shape(data, "user"), tower_shape(data, "item"), optimizer, lr, seed, device,
                        plan=plan)
    return impl_cls(cfg, data.num_users, data.num_items, optimizer, lr, seed, device, plan=plan)


def table_set(name: str, cfg: Any, data: Interactions) -> Any:
    """The model's tables as the compression layouts see them (``retrieval_tables.TableSet``)."""
    from recsys_impls.models import neumf, two_tower

    if name == "two-tower":
        return two_tower.table_set(cfg, tower_shape(data, "user"), tower_shape(data, "item"))
    return neumf.table_set(cfg, data.num_users, data.num_items)


def plain_initial(name: str, cfg: Any, data: Interactions, seed: int) -> dict[str, np.ndarray]:
    """The plain model's seeded start (what the baseline trains from)."""
    from recsys_impls.models import neumf, two_tower

    if name == "two-tower":
        return two_tower.initial_params(cfg, tower_shape(data, "user"), tower_shape(data, "item"), seed)
    return neumf.initial_params(cfg, data.num_users, data.num_items, seed)


def table_counts(name: str, data: Interactions) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(ids, mask) of every table's rows in the training interactions, per table (freq-prune's counts)."""
    if name == "two-tower":
        return [data.user_features.take(data.train_user), data.item_features.take(data.train_item)]
    return [(data.train_user, None), (data.train_item, None)] * 2


def two_tower_batch(data: Interactions, rows: np.ndarray, log_q: np.ndarray) -> dict[str, np.ndarray]:
    """Training interactions ``rows`` as the two-tower's host batch."""
    u, i = data.train_user[rows], data.train_item[rows]
    uid, umask = data.user_features.take(u)
    iid, imask = data.item_features.take(i)
    return {"user_ids": uid, "user_mask": umask, "item_ids": iid, "item_mask": imask, "items": i,
            "log_q": log_q[i]}


def forbidden_pairs(data: Interactions) -> np.ndarray:
    """Sorted keys of every observed (user, item), training and held out: never drawn as a negative."""
    return np.unique(np.concatenate([pair_keys(data.train_user, data.train_item, data.num_items),
                                     pair_keys(data.test_user, data.test_item, data.num_items)]))


def training_batches(name: str, cfg: Any, data: Interactions, batch_size: int, steps: int,
                     seed: int) -> tuple[list[dict[str, np.ndarray]], float]:
    """Host batches for ``steps`` steps: shuffled epochs (NeuMF: each positive with ``negatives`` fresh
    sampled unseen items), at most MAX_DISTINCT_EPOCHS drawn (a longer run cycles them). Returns
    (batches, epochs the steps cover)."""
    rng = np.random.default_rng([seed, 31])
    n = data.num_train * (1 + cfg.negatives if name == "neumf" else 1)
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise UsageError(f"--batch-size {batch_size}: larger than the {n} training samples of one epoch")
    epochs = min(-(-steps // per_epoch), MAX_DISTINCT_EPOCHS)
    out: list[dict[str, np.ndarray]] = []
    log_q = data.item_log_q()
    forbidden = forbidden_pairs(data) if name == "neumf" else None
    for _ in range(epochs):
        if name == "two-tower":
            order = rng.permutation(data.num_train)
            out += [two_tower_batch(data, order[b * batch_size : (b + 1) * batch_size], log_q)
                    for b in range(per_epoch)]
            continue
        neg = sample_unseen(data.train_user, cfg.negatives, data.num_items, forbidden, rng)
        users = np.concatenate([data.train_user, np.repeat(data.train_user, cfg.negatives)])
        items = np.concatenate([data.train_item, neg.reshape(-1)])
        labels = np.concatenate([np.ones(data.num_train, np.float32), np.zeros(neg.size, np.float32)])
        order = rng.permutation(users.size)
        for b in range(per_epoch):
            r = order[b * batch_size : (b + 1) * batch_size]
            out.append({"users": users[r], "items": items[r], "labels": labels[r]})
    return out[:steps], steps / per_epoch


def neumf_eval_pairs(data: Interactions, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out candidates: per evaluated user the held-out item first, then SAMPLED_NEGATIVES unseen
    items (seeded). Returns (users [U, 101], items [U, 101])."""
    rng = np.random.default_rng([seed, 32])
    neg = sample_unseen(data.test_user, SAMPLED_NEGATIVES, data.num_items, forbidden_pairs(data), rng)
    items = np.concatenate([data.test_item[:, None], neg], axis=1)
    return np.repeat(data.test_user[:, None], items.shape[1], axis=1), items


def encode_all(impl: Any, data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Two-tower outputs of the evaluated users and of the whole item corpus."""
    uid, umask = data.user_features.take(data.test_user)
    users = impl.encode("user", uid, umask)
    items = impl.encode("item", data.item_features.ids, data.item_features.mask)
    return users, items


def quality(name: str, impl: Any, data: Interactions, seed: int, batch_size: int = 8192) -> dict[str, Any]:
    """The model's quality on the held-out split, beside the popularity baseline on the same split."""
    seen = data.seen()
    pop = popularity_quality(data.item_counts(), data.test_item, data.test_user, seen)
    out: dict[str, Any] = {"eval_users": int(data.test_user.size)}
    if name == "two-tower":
        users, items = encode_all(impl, data)
        out.update(retrieval_quality(users, items, data.test_item, data.test_user, seen))
        out["popularity"] = pop
        out["recall@10_vs_popularity"] = out["recall@10"] / pop["recall@10"] if pop["recall@10"] else None
        out["retrieval"] = "brute-force dot product over all items, the user's training items excluded"
        return out
    users, items = neumf_eval_pairs(data, seed)
    flat_u, flat_i = users.reshape(-1), items.reshape(-1)
    scores = np.concatenate([impl.to_numpy(impl.infer(impl.stage({"users": flat_u[s : s + batch_size],
                                                                   "items": flat_i[s : s + batch_size]})))
                             for s in range(0, flat_u.size, batch_size)]).reshape(users.shape)
    out.update(hit_ratio_ndcg(scores[:, 0], scores[:, 1:], 10))
    # the popularity baseline under the same protocol: rank the 101 candidates by training count
    counts = data.item_counts().astype(np.float64)[items]
    out["popularity"] = hit_ratio_ndcg(counts[:, 0], counts[:, 1:], 10)
    out["protocol"] = f"leave-one-out, the held-out item among {SAMPLED_NEGATIVES} sampled unseen items"
    return out


def serving_fixture(framework: str, items: int, dim: int = 64, query_batch: int = 256, batches: int = 4,
                    seed: int = 0) -> tuple[Any, list[Any]]:
    """A two-tower backend serving a corpus of ``items`` random unit vectors, and staged query batches: the
    cost of brute-force top-k does not depend on what the towers learned, only on the corpus and batch."""
    rng = np.random.default_rng([seed, 33])

    def unit(n: int) -> np.ndarray:
        v = rng.normal(size=(n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    tiny = TowerShape(2, (0,))
    module, _, cls = model_entry("two-tower").backends[framework].partition(":")
    impl = getattr(importlib.import_module(module), cls)(TwoTowerConfig(tower_mlp=(dim,)), tiny, tiny, "sgd", 0.1,
                                                          seed)
    impl.stage_corpus(unit(items))
    return impl, [impl.stage_queries(unit(query_batch)) for _ in range(batches)]
