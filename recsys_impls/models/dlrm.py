"""DLRM (Naumov et al. 2019) with its two interactions: pairwise dots (``dlrm``) and concatenation
(``dlrm-cat``, the interaction the DLRM paper compares against)."""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys_impls.models import ranking as r
from recsys_impls.models.spec import ModelSpec, register_model

FIELDS = ("num_dense", "table_sizes", "embedding_dim", "bottom_mlp", "top_mlp", "ids_per_feature")


def dot_width(config: Any) -> int:
    """Bottom output plus the strictly-lower pairwise dots of [x, e_0 .. e_{F-1}]."""
    n = config.num_tables + 1
    return config.bottom_mlp[-1] + n * (n - 1) // 2


def cat_width(config: Any) -> int:
    return config.bottom_mlp[-1] + config.num_tables * config.embedding_dim


def _dense_shapes(config: Any, top_in: int) -> dict[str, tuple[int, ...]]:
    return {**r.mlp_param_shapes("bottom", config.num_dense, config.bottom_mlp),
            **r.mlp_param_shapes("top", top_in, config.top_mlp)}


def _dot_interaction(x: np.ndarray, vecs: list[np.ndarray]) -> np.ndarray:
    t = np.stack([x, *vecs], axis=1)
    z = np.einsum("bid,bjd->bij", t, t)
    li, lj = np.tril_indices(t.shape[1], -1)
    return np.concatenate([x, z[:, li, lj]], axis=1)


def _forward(interaction: Any) -> Any:
    def forward(config: Any, batch: Any, param: Any, rows: Any) -> np.ndarray:
        """Slow, obviously-correct float64 forward pass returning probabilities."""
        x = r.mlp_forward(batch.dense.astype(np.float64), param, "bottom", len(config.bottom_mlp), True)
        h = interaction(x, r.pooled(config, batch, rows))
        return r.sigmoid(r.mlp_forward(h, param, "top", len(config.top_mlp), False)[:, 0])
    return forward


def _spec(name: str, width: Any, interaction: Any, description: str, validate: Any, pair_flops: Any) -> ModelSpec:
    def shapes(config: Any) -> dict[str, tuple[int, ...]]:
        return {**r.table_shapes(config), **_dense_shapes(config, width(config))}

    def init(config: Any, seed: int) -> dict[str, np.ndarray]:
        return r.seeded_params(config, _dense_shapes(config, width(config)), seed)

    def init_dense(config: Any, seed: int) -> dict[str, np.ndarray]:
        return r.dense_params(config, _dense_shapes(config, width(config)), seed)

    def gemms(config: Any) -> list[tuple[int, int]]:
        return r.mlp_gemms(config.num_dense, config.bottom_mlp) + r.mlp_gemms(width(config), config.top_mlp)

    return register_model(ModelSpec(
        name=name, task="ranking", description=description, reference="Naumov et al. 2019 (arXiv:1906.00091)",
        config_fields=FIELDS, validate=validate, param_shapes=shapes, initial_params=init,
        initial_table_chunks=r.table_chunks, initial_dense=init_dense,
        forward=_forward(interaction),
        builders={"torch": f"recsys_impls.torch_impl.dlrm:build_{name.replace('-', '_')}",
                  "tf": f"recsys_impls.tf_impl.dlrm:build_{name.replace('-', '_')}"},
        top_in_dim=width, gemm_layers=gemms, extra_flops=pair_flops,
    ))


def _validate_dot(config: Any) -> None:
    r.check_bottom_is_embedding_dim(config, "the dot interaction pairs it with the embeddings")
    r.check_top_mlp(config)


def _dot_flops(config: Any) -> float:
    n = config.num_tables + 1
    return 2.0 * n * n * config.embedding_dim  # T T^T per sample


DLRM = _spec("dlrm", dot_width, _dot_interaction,
             "bottom MLP, pairwise dot products of [bottom output, pooled embeddings], top MLP",
             _validate_dot, _dot_flops)
DLRM_CAT = _spec("dlrm-cat", cat_width, lambda x, vecs: np.concatenate([x, *vecs], axis=1),
                 "bottom MLP, concatenation of [bottom output, pooled embeddings], top MLP",
                 r.check_top_mlp, lambda config: 0.0)
