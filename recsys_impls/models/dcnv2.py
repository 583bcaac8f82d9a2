"""DLRM-DCNv2 (Wang et al. 2021; MLPerf Training v3+ recommendation): bottom MLP, the bottom output
concatenated with the pooled embeddings as x_0, a stack of low-rank cross layers
x_{l+1} = x_0 * (U_l (V_l^T x_l) + b_l) + x_l, then the top MLP.

Parameters per cross layer l: ``cross.{l}.v.weight`` [rank, d] (V_l^T), ``cross.{l}.u.weight`` [d, rank]
(U_l) and ``cross.{l}.u.bias`` [d] (b_l), with d = bottom_mlp[-1] + num_tables * embedding_dim.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys_impls.models import ranking as r
from recsys_impls.models.dlrm import FIELDS, cat_width
from recsys_impls.models.spec import ModelSpec, register_model


def _dense_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    d, rank = cat_width(config), config.cross_rank
    shapes = dict(r.mlp_param_shapes("bottom", config.num_dense, config.bottom_mlp))
    for layer in range(config.cross_layers):
        shapes[f"cross.{layer}.v.weight"] = (rank, d)
        shapes[f"cross.{layer}.u.weight"] = (d, rank)
        shapes[f"cross.{layer}.u.bias"] = (d,)
    shapes.update(r.mlp_param_shapes("top", d, config.top_mlp))
    return shapes


def _initial_params(config: Any, seed: int) -> dict[str, np.ndarray]:
    """The seeded DLRM initialisation, with every cross layer starting as the identity (U_l = 0, b_l = 0;
    V_l keeps its Xavier draw, so U_l gets a gradient at the first step). A layer multiplies x_0 into
    x_l, raising the polynomial degree by one; with random U_l (TorchRec's Xavier) three layers over the
    suite's log-normal dense features started at logits in the hundreds (tiny preset: NE 1.82 after 60
    steps)."""
    params = r.seeded_params(config, _dense_shapes(config), seed)
    return _identity_cross(config, params)


def _identity_cross(config: Any, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for layer in range(config.cross_layers):
        params[f"cross.{layer}.u.weight"][:] = 0.0
        params[f"cross.{layer}.u.bias"][:] = 0.0
    return params


def _initial_dense(config: Any, seed: int) -> dict[str, np.ndarray]:
    return _identity_cross(config, r.dense_params(config, _dense_shapes(config), seed))


def _validate(config: Any) -> None:
    from recsys_impls.config import MAX_COUNT, MAX_LAYERS, _int_in

    _int_in("model", "cross_layers", config.cross_layers, 1, MAX_LAYERS)
    _int_in("model", "cross_rank", config.cross_rank, 1, MAX_COUNT)
    r.check_top_mlp(config)


def _forward(config: Any, batch: Any, param: Any, rows: Any) -> np.ndarray:
    x = r.mlp_forward(batch.dense.astype(np.float64), param, "bottom", len(config.bottom_mlp), True)
    x0 = np.concatenate([x, *r.pooled(config, batch, rows)], axis=1)
    xl = x0
    for layer in range(config.cross_layers):
        low = xl @ param(f"cross.{layer}.v.weight").T
        xl = x0 * (low @ param(f"cross.{layer}.u.weight").T + param(f"cross.{layer}.u.bias")) + xl
    return r.sigmoid(r.mlp_forward(xl, param, "top", len(config.top_mlp), False)[:, 0])


def _gemms(config: Any) -> list[tuple[int, int]]:
    d, rank = cat_width(config), config.cross_rank
    cross = [pair for _ in range(config.cross_layers) for pair in ((d, rank), (rank, d))]
    return r.mlp_gemms(config.num_dense, config.bottom_mlp) + cross + r.mlp_gemms(d, config.top_mlp)


DCNV2 = register_model(ModelSpec(
    name="dcnv2", task="ranking",
    description="bottom MLP, [bottom output, pooled embeddings] through low-rank cross layers "
                "(cross_layers, cross_rank), top MLP",
    reference="Wang et al. 2021 (DCN-V2, arXiv:2008.13535); MLPerf Training DLRM-DCNv2",
    config_fields=(*FIELDS, "cross_layers", "cross_rank"), validate=_validate,
    param_shapes=lambda config: {**r.table_shapes(config), **_dense_shapes(config)},
    initial_params=_initial_params, initial_table_chunks=r.table_chunks, initial_dense=_initial_dense,
    forward=_forward,
    builders={"torch": "recsys_impls.torch_impl.dcnv2:build", "tf": "recsys_impls.tf_impl.dcnv2:build"},
    top_in_dim=cat_width, gemm_layers=_gemms,
    # Adagrad moves every parameter by about lr per step whatever its gradient's scale; through x_0 * (U V^T x_l)
    # the suite's default 0.05 made the cross layers diverge (tiny preset, 60 steps: AUC 0.53, NE 1.33;
    # with 0.005: AUC 0.703, NE 0.917, beside dlrm's 0.691 at 0.05).
    train_defaults={"learning_rate": 0.005},
    extra_flops=lambda config: 3.0 * config.cross_layers * cat_width(config),  # bias add, x_0 product, residual
))
