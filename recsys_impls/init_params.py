"""Seeded, framework-neutral initial parameters, so both frameworks start from the same weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys_impls.config import ModelConfig


def mlp_shapes(in_dim: int, widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """(out, in) of each linear layer of an MLP."""
    shapes = []
    for w in widths:
        shapes.append((w, in_dim))
        in_dim = w
    return shapes


def initial_params(config: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """DLRM reference initialisation: embeddings U(-1/sqrt(n), 1/sqrt(n)); linear weights
    N(0, sqrt(2/(in+out))), biases N(0, sqrt(1/out)). Float32, PyTorch [out, in] layout."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for f, rows in enumerate(config.table_sizes):
        bound = np.sqrt(1.0 / rows)
        params[f"emb.{f}"] = rng.uniform(-bound, bound, size=(rows, config.embedding_dim)).astype(np.float32)
    layers = [("bottom", mlp_shapes(config.num_dense, config.bottom_mlp)),
              ("top", mlp_shapes(config.interaction_dim, config.top_mlp))]
    for name, shapes in layers:
        for k, (out_dim, in_dim) in enumerate(shapes):
            std_w = np.sqrt(2.0 / (in_dim + out_dim))
            params[f"{name}.{k}.weight"] = rng.normal(0.0, std_w, size=(out_dim, in_dim)).astype(np.float32)
            params[f"{name}.{k}.bias"] = rng.normal(0.0, np.sqrt(1.0 / out_dim), size=out_dim).astype(np.float32)
    return params


def mlp_param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of both MLPs' parameters (every compression variant shares them)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, in_dim, widths in (("bottom", config.num_dense, config.bottom_mlp),
                                 ("top", config.interaction_dim, config.top_mlp)):
        for k, (o, i) in enumerate(mlp_shapes(in_dim, widths)):
            shapes[f"{name}.{k}.weight"] = (o, i)
            shapes[f"{name}.{k}.bias"] = (o,)
    return shapes


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes ``get_params`` must return for this config (used by tests)."""
    shapes: dict[str, tuple[int, ...]] = {f"emb.{f}": (rows, config.embedding_dim)
                                          for f, rows in enumerate(config.table_sizes)}
    shapes.update(mlp_param_shapes(config))
    return shapes


def check_params(params: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]) -> None:
    """``set_params`` input check shared by every implementation: one line naming what is off."""
    from recsys_impls.errors import UsageError

    missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
    if missing or extra:
        raise UsageError(f"set_params: missing {missing[:5]}, unexpected {extra[:5]}; names must match get_params")
    for name, shape in expected.items():
        if tuple(np.shape(params[name])) != shape:
            raise UsageError(f"set_params: {name} has shape {np.shape(params[name])}, expected {shape}")


def dlrm_forward(config: ModelConfig, batch, weight: Callable[[str], np.ndarray],  # noqa: ANN001
                 bias: Callable[[str], np.ndarray], rows: Callable[[int, np.ndarray], np.ndarray]) -> np.ndarray:
    """Slow, obviously-correct float64 DLRM forward pass returning probabilities.

    ``weight``/``bias`` give a layer's parameters by name, ``rows(f, ids)`` the table rows of feature f,
    so plain and compressed stored forms share one oracle.
    """
    x = batch.dense.astype(np.float64)
    for k in range(len(config.bottom_mlp)):
        x = np.maximum(x @ weight(f"bottom.{k}.weight").T + bias(f"bottom.{k}.bias"), 0.0)
    vecs = [x]
    offsets = batch.feature_offsets()
    for f in range(config.num_tables):
        ids = batch.ids[offsets[f] : offsets[f + 1]]
        seg = np.repeat(np.arange(batch.batch_size), batch.lengths[f])
        pooled = np.zeros((batch.batch_size, config.embedding_dim))
        np.add.at(pooled, seg, rows(f, ids))
        vecs.append(pooled)
    t = np.stack(vecs, axis=1)
    z = np.einsum("bid,bjd->bij", t, t)
    li, lj = np.tril_indices(config.num_tables + 1, -1)
    h = np.concatenate([x, z[:, li, lj]], axis=1)
    n_top = len(config.top_mlp)
    for k in range(n_top):
        h = h @ weight(f"top.{k}.weight").T + bias(f"top.{k}.bias")
        if k < n_top - 1:
            h = np.maximum(h, 0.0)
    return (1.0 / (1.0 + np.exp(-h[:, 0]))).astype(np.float32)


def reference_forward(params: dict[str, np.ndarray], config: ModelConfig, batch) -> np.ndarray:  # noqa: ANN001
    """The parity oracle for plain (uncompressed) parameters."""
    return dlrm_forward(config, batch, params.__getitem__, params.__getitem__,
                        lambda f, ids: params[f"emb.{f}"][ids])
