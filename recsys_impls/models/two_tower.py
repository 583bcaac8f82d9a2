"""Two-tower retrieval (framework-neutral part): config, parameter shapes, seeded initialisation, the numpy
reference forward pass and loss that both frameworks are tested against.

Each tower embeds its entity's own categorical features (one fused table per tower, feature offsets
applied by ``data.interactions.EntityFeatures``), mean-pools each feature over its masked slots,
concatenates the features and runs an MLP (ReLU between layers, none after the last); the output is
L2-normalised, so a dot product is a cosine. Training: in-batch sampled softmax, logits
``u_i . v_j / temperature - log q_j`` (logQ correction: ``q_j`` is item j's share of the training
interactions, the probability it appears as an in-batch negative), other rows holding the same item as
row i masked out, cross-entropy against the diagonal.

Parameters: ``user.table`` [rows, D], ``user.w{l}`` [in, out], ``user.b{l}`` [out]; the same for ``item``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_impls.errors import UsageError
from recsys_impls.models.init import seeded_params
from recsys_impls.models.retrieval_tables import TableSet

MASKED_LOGIT = -1e9  # a same-item entry off the diagonal: exp() is exactly 0 in float32
NORM_EPS = 1e-12


@dataclass(frozen=True)
class TwoTowerConfig:
    embedding_dim: int = 16
    tower_mlp: tuple[int, ...] = (128, 64)
    temperature: float = 0.05
    logq_correction: bool = True

    def validate(self) -> None:
        if not isinstance(self.embedding_dim, int) or not 1 <= self.embedding_dim <= 4096:
            raise UsageError(f"two-tower embedding_dim = {self.embedding_dim!r}; accepted: an integer 1 to 4096")
        if not self.tower_mlp or any(not isinstance(w, int) or not 1 <= w <= 65536 for w in self.tower_mlp):
            raise UsageError(f"two-tower tower_mlp = {self.tower_mlp!r}; accepted: 1 or more widths from 1 to 65536")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t) or not 1e-4 <= t <= 100:
            raise UsageError(f"two-tower temperature = {t!r}; accepted: a number from 0.0001 to 100")


TABLE_STD = 0.1  # the towers' tables start N(0, TABLE_STD)


@dataclass(frozen=True)
class TowerShape:
    """What a tower sees: its table rows, number of features and the slot -> feature map."""

    rows: int
    slot_feature: tuple[int, ...]

    @property
    def num_features(self) -> int:
        return max(self.slot_feature) + 1

    def pool_matrix(self) -> np.ndarray:
        """One-hot [slots, features]: sums each feature's slots in one matmul."""
        p = np.zeros((len(self.slot_feature), self.num_features), np.float32)
        p[np.arange(len(self.slot_feature)), list(self.slot_feature)] = 1.0
        return p


def param_shapes(cfg: TwoTowerConfig, user: TowerShape, item: TowerShape) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for name, t in (("user", user), ("item", item)):
        out[f"{name}.table"] = (t.rows, cfg.embedding_dim)
        width = t.num_features * cfg.embedding_dim
        for i, w in enumerate(cfg.tower_mlp):
            out[f"{name}.w{i}"] = (width, w)
            out[f"{name}.b{i}"] = (w,)
            width = w
    return out


def initial_params(cfg: TwoTowerConfig, user: TowerShape, item: TowerShape, seed: int) -> dict[str, np.ndarray]:
    """Tables N(0, TABLE_STD); weights Glorot-uniform; biases 0 (float32, from one seed)."""
    rng = np.random.default_rng([seed, 22])
    return seeded_params(param_shapes(cfg, user, item), rng, lambda name: name.endswith(".table"), TABLE_STD)


def table_set(cfg: TwoTowerConfig, user: TowerShape, item: TowerShape) -> TableSet:
    """The two towers' tables as the compression layouts see them (each tower's fused table is one table)."""
    return TableSet(("user.table", "item.table"), (user.rows, item.rows), cfg.embedding_dim, TABLE_STD)


def reference_tower(params: dict[str, np.ndarray], cfg: TwoTowerConfig, name: str, shape: TowerShape,
                    ids: np.ndarray, mask: np.ndarray, rows: Any = None) -> np.ndarray:
    """One tower's normalised output [B, out] in float64. ``rows(table, ids)`` reads a compressed model's
    embeddings (``retrieval_tables.lookup``); without it the plain ``{name}.table``."""
    table = f"{name}.table"
    emb = (rows(table, ids) if rows is not None else params[table].astype(np.float64)[ids]) * mask[..., None]
    p = shape.pool_matrix().astype(np.float64)
    pooled = np.einsum("bld,lf->bfd", emb, p) / np.maximum(mask.astype(np.float64) @ p, 1.0)[..., None]
    x = pooled.reshape(ids.shape[0], -1)
    layers = len(cfg.tower_mlp)
    for i in range(layers):
        x = x @ params[f"{name}.w{i}"].astype(np.float64) + params[f"{name}.b{i}"]
        if i < layers - 1:
            x = np.maximum(x, 0.0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), NORM_EPS)


def reference_loss(u: np.ndarray, v: np.ndarray, items: np.ndarray, log_q: np.ndarray,
                   cfg: TwoTowerConfig) -> float:
    """In-batch sampled softmax with logQ correction, from tower outputs [B, out]."""
    logits = (u @ v.T) / cfg.temperature
    if cfg.logq_correction:
        logits = logits - log_q[None, :]
    same = (items[:, None] == items[None, :]) & ~np.eye(items.size, dtype=bool)
    logits = np.where(same, MASKED_LOGIT, logits)
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return float(np.mean(lse - np.diag(logits)))


# --- registry entry ------------------------------------------------------------------------------

DEFAULT_TOWER_MLP = (128, 64)
# Axes a retrieval model does not take (yet), with the reason a scenario is skipped for.
RETRIEVAL_AXES = {
    "compression:prune": "MLP magnitude pruning is wired for the ranking models' MLP modules and their masked "
                         "fine-tune only; the retrieval models' MLPs are plain weight matrices (the embedding "
                         "layouts and storage precisions do apply)",
    "compression:mlp-int8": "int8 MLP layers are built for the ranking models' MLP modules only; the retrieval "
                            "models' MLPs are plain weight matrices (the embedding layouts and storage precisions "
                            "do apply)",
    "parallel:sharded": "the retrieval models run data parallel (ddp:N, mwms:N); their tables are not sharded "
                        "(TorchRec's and ParameterServerStrategy's engines drive the ranking models' tables)",
    "parallel:ps": "the retrieval models run data parallel (ddp:N, mwms:N); ParameterServerStrategy drives the "
                   "ranking models' tables only",
    "parallel:comm-hooks": "gradient-communication hooks are wired for the ranking models' DDP only; use ddp:N",
    "parallel:faults": "fault injection (--straggler) and adaptive shares (--balance adaptive) are wired for the "
                       "ranking models' engines only; retrieval models split every global batch evenly",
    "data:tsv": "a Criteo TSV holds no user/item pairs; give interactions as PATH.csv (user_id,item_id[,timestamp])",
}
RETRIEVAL_FIELDS = ("embedding_dim", "tower_mlp")


def from_model_config(config: Any) -> TwoTowerConfig:
    """The scenario's ModelConfig fields this model reads."""
    return TwoTowerConfig(embedding_dim=config.embedding_dim, tower_mlp=tuple(config.tower_mlp) or DEFAULT_TOWER_MLP,
                          temperature=config.temperature)


def id_towers(config: Any) -> tuple[TowerShape, TowerShape]:
    """Id-only towers over ``table_sizes[0]`` users and ``table_sizes[1]`` items (the runner sets them from the
    data; side features add rows and feature slots, see ``data.interactions.EntityFeatures``)."""
    sizes = tuple(config.table_sizes) + (1,)
    return TowerShape(sizes[0], (0,)), TowerShape(sizes[1], (0,))


def id_tower_forward(config: Any, batch: dict[str, np.ndarray], param: Any, rows: Any) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) tower outputs of a host batch, for id-only towers."""
    cfg = from_model_config(config)
    user, item = id_towers(config)
    params = {k: param(k) for k in param_shapes(cfg, user, item)}
    return (reference_tower(params, cfg, "user", user, batch["user_ids"], batch["user_mask"]),
            reference_tower(params, cfg, "item", item, batch["item_ids"], batch["item_mask"]))
