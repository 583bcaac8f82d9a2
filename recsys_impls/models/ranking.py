"""Parts shared by the ranking architectures (numpy only): MLP shapes, seeded initialisation, pooling.

A ranking model is an embedding stage (the scenario's: plain, quantized, hashed, QR, TT, sharded, ...)
feeding a dense architecture (the model's: bottom MLP, a feature interaction, top MLP). The embedding
stage's parameters are ``emb.*`` and belong to the compression method; everything else is the dense
architecture's and is named and shaped by its spec.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys_impls.errors import UsageError


def mlp_shapes(in_dim: int, widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """(out, in) of each linear layer of an MLP."""
    shapes = []
    for w in widths:
        shapes.append((w, in_dim))
        in_dim = w
    return shapes


def mlp_param_shapes(prefix: str, in_dim: int, widths: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for k, (o, i) in enumerate(mlp_shapes(in_dim, widths)):
        out[f"{prefix}.{k}.weight"] = (o, i)
        out[f"{prefix}.{k}.bias"] = (o,)
    return out


def table_shapes(config) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
    return {f"emb.{f}": (rows, config.embedding_dim) for f, rows in enumerate(config.table_sizes)}


def seeded_params(config, dense_shapes: dict[str, tuple[int, ...]], seed: int,  # noqa: ANN001
                  tables: bool = True) -> dict[str, np.ndarray]:
    """DLRM reference initialisation, in one seeded stream: tables U(-1/sqrt(n), 1/sqrt(n)), then each dense
    parameter in the spec's order: 2-D weights N(0, sqrt(2/(in+out))), 1-D biases N(0, sqrt(1/out)).
    Float32, PyTorch [out, in] layout. ``tables=False`` skips the tables' draws without making them (the
    stream advances by one 64-bit draw per uniform double), so the dense values stay the same and a
    compressed embedding stage never allocates a plain table it would throw away."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for f, rows in enumerate(config.table_sizes):
        if not tables:
            rng.bit_generator.advance(rows * config.embedding_dim)
            continue
        bound = np.sqrt(1.0 / rows)
        params[f"emb.{f}"] = rng.uniform(-bound, bound, size=(rows, config.embedding_dim)).astype(np.float32)
    for name, shape in dense_shapes.items():
        if len(shape) == 2:
            std = np.sqrt(2.0 / (shape[0] + shape[1]))
        else:
            std = np.sqrt(1.0 / shape[0])
        params[name] = rng.normal(0.0, std, size=shape).astype(np.float32)
    return params


def mlp_forward(x: np.ndarray, param: Callable[[str], np.ndarray], prefix: str, layers: int,
                relu_last: bool) -> np.ndarray:
    for k in range(layers):
        x = x @ param(f"{prefix}.{k}.weight").T + param(f"{prefix}.{k}.bias")
        if relu_last or k < layers - 1:
            x = np.maximum(x, 0.0)
    return x


def pooled(config, batch, rows: Callable[[int, np.ndarray], np.ndarray]) -> list[np.ndarray]:  # noqa: ANN001
    """Sum-pooled [B, D] float64 vector of each categorical feature."""
    out = []
    offsets = batch.feature_offsets()
    for f in range(config.num_tables):
        ids = batch.ids[offsets[f] : offsets[f + 1]]
        seg = np.repeat(np.arange(batch.batch_size), batch.lengths[f])
        acc = np.zeros((batch.batch_size, config.embedding_dim))
        np.add.at(acc, seg, rows(f, ids))
        out.append(acc)
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def check_top_mlp(config) -> None:  # noqa: ANN001
    if config.top_mlp[-1] != 1:
        raise UsageError(f"config: top_mlp ends in {config.top_mlp[-1]}; its last width must be 1 (the logit)")


def check_bottom_is_embedding_dim(config, why: str) -> None:  # noqa: ANN001
    if config.bottom_mlp[-1] != config.embedding_dim:
        raise UsageError(
            f"config: bottom_mlp ends in {config.bottom_mlp[-1]} but embedding_dim is {config.embedding_dim}; "
            f"the bottom MLP's last width must equal embedding_dim ({why})"
        )


def mlp_gemms(in_dim: int, widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """(in, out) of each linear layer (the work model's convention)."""
    return [(i, o) for o, i in mlp_shapes(in_dim, widths)]
