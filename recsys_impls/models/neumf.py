"""NeuMF (He et al. 2017), framework-neutral part: config, parameter shapes, seeded initialisation and the
numpy reference forward pass both frameworks are tested against.

GMF: the element-wise product of a user and an item embedding. MLP: the concatenation of another user and
item embedding through ReLU layers. The logit is a linear layer over both, concatenated; training is binary
cross-entropy over observed pairs and sampled unobserved ones (``negatives`` per positive).

Parameters: ``gmf.user`` [users, G], ``gmf.item`` [items, G], ``mlp.user`` [users, M], ``mlp.item``
[items, M], ``mlp.w{l}`` [in, out], ``mlp.b{l}`` [out], ``out.w`` [G + last, 1], ``out.b`` [1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_impls.errors import UsageError
from recsys_impls.models.init import seeded_params
from recsys_impls.models.retrieval_tables import TableSet

TABLES = ("gmf.user", "gmf.item", "mlp.user", "mlp.item")
TABLE_STD = 0.01


@dataclass(frozen=True)
class NeuMFConfig:
    gmf_dim: int = 16
    mlp_dim: int = 16
    mlp: tuple[int, ...] = (64, 32, 16)
    negatives: int = 4

    def validate(self) -> None:
        for name in ("gmf_dim", "mlp_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096:
                raise UsageError(f"neumf {name} = {v!r}; accepted: an integer 1 to 4096")
        if not self.mlp or any(isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 65536
                               for w in self.mlp):
            raise UsageError(f"neumf mlp = {self.mlp!r}; accepted: 1 or more widths from 1 to 65536")
        if isinstance(self.negatives, bool) or not isinstance(self.negatives, int) or not 1 <= self.negatives <= 1000:
            raise UsageError(f"neumf negatives = {self.negatives!r}; accepted: an integer 1 to 1000")


def param_shapes(cfg: NeuMFConfig, num_users: int, num_items: int) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {
        "gmf.user": (num_users, cfg.gmf_dim), "gmf.item": (num_items, cfg.gmf_dim),
        "mlp.user": (num_users, cfg.mlp_dim), "mlp.item": (num_items, cfg.mlp_dim),
    }
    width = 2 * cfg.mlp_dim
    for i, w in enumerate(cfg.mlp):
        out[f"mlp.w{i}"] = (width, w)
        out[f"mlp.b{i}"] = (w,)
        width = w
    out["out.w"] = (cfg.gmf_dim + width, 1)
    out["out.b"] = (1,)
    return out


def initial_params(cfg: NeuMFConfig, num_users: int, num_items: int, seed: int) -> dict[str, np.ndarray]:
    """Embeddings N(0, TABLE_STD) as in the paper; weights Glorot-uniform; biases 0."""
    rng = np.random.default_rng([seed, 23])
    return seeded_params(param_shapes(cfg, num_users, num_items), rng, TABLES.__contains__, TABLE_STD)


def table_set(cfg: NeuMFConfig, num_users: int, num_items: int) -> TableSet:
    """The four embedding tables as the compression layouts see them (one width: ``gmf_dim == mlp_dim``, as
    every scenario builds them from ``embedding_dim``)."""
    if cfg.gmf_dim != cfg.mlp_dim:
        raise ValueError(f"neumf compression needs gmf_dim == mlp_dim (got {cfg.gmf_dim}, {cfg.mlp_dim})")
    return TableSet(TABLES, (num_users, num_items, num_users, num_items), cfg.gmf_dim, TABLE_STD)


def reference_logits(params: dict[str, np.ndarray], cfg: NeuMFConfig, users: np.ndarray,
                     items: np.ndarray, rows: Any = None) -> np.ndarray:
    """Logits [B] in float64. ``rows(table, ids)`` reads a compressed model's embeddings
    (``retrieval_tables.lookup``); without it the plain tables."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    look = rows if rows is not None else (lambda name, ids: p[name][ids])
    gmf = look("gmf.user", users) * look("gmf.item", items)
    x = np.concatenate([look("mlp.user", users), look("mlp.item", items)], axis=1)
    for i in range(len(cfg.mlp)):
        x = np.maximum(x @ p[f"mlp.w{i}"] + p[f"mlp.b{i}"], 0.0)
    return (np.concatenate([gmf, x], axis=1) @ p["out.w"])[:, 0] + p["out.b"][0]


def reference_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy with logits (the numerically stable form)."""
    z = np.asarray(logits, np.float64)
    return float(np.mean(np.maximum(z, 0) - z * labels + np.log1p(np.exp(-np.abs(z)))))


# --- registry entry ------------------------------------------------------------------------------

DEFAULT_MLP = (64, 32, 16)


def from_model_config(config: Any) -> NeuMFConfig:
    """The scenario's ModelConfig fields this model reads (``embedding_dim`` sizes both GMF and MLP tables)."""
    return NeuMFConfig(gmf_dim=config.embedding_dim, mlp_dim=config.embedding_dim,
                       mlp=tuple(config.tower_mlp) or DEFAULT_MLP, negatives=config.negatives)


def sizes(config: Any) -> tuple[int, int]:
    """Users and items: ``table_sizes[0]`` and ``[1]`` (the runner sets them from the data)."""
    sizes = tuple(config.table_sizes) + (1,)
    return sizes[0], sizes[1]


def spec_forward(config: Any, batch: dict[str, np.ndarray], param: Any, rows: Any) -> np.ndarray:
    """The registry's reference forward: logits of a host batch's (users, items)."""
    cfg = from_model_config(config)
    params = {k: param(k) for k in param_shapes(cfg, *sizes(config))}
    return reference_logits(params, cfg, batch["users"], batch["items"])
