"""Parts shared by the ranking architectures (numpy only): MLP shapes, seeded initialisation, pooling.

A ranking model is an embedding stage (the scenario's: plain, quantized, hashed, QR, TT, sharded, ...)
feeding a dense architecture (the model's: bottom MLP, a feature interaction, top MLP). The embedding
stage's parameters are ``emb.*`` and belong to the compression method; everything else is the dense
architecture's and is named and shaped by its spec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


# Values drawn per chunk of a table's initial rows: 32 MiB of float64 temporaries whatever the table's size.
TABLE_CHUNK_VALUES = 1 << 22


def table_chunks(config, seed: int, chunk_values: int = TABLE_CHUNK_VALUES  # noqa: ANN001
                 ) -> Iterator[tuple[int, int, np.ndarray]]:
    """The tables' initial values as (table, first row, float32 [n, D]) chunks, tables in order.

    One seeded stream, tables U(-1/sqrt(n), 1/sqrt(n)): a uniform draw takes one 64-bit output of the
    generator, so drawing a table in row chunks gives exactly the values of drawing it whole, without a
    float64 copy of it. Frameworks fill their tables from this so no full numpy copy of the tables exists.
    """
    rng = np.random.default_rng(seed)
    dim = config.embedding_dim
    step = max(1, chunk_values // max(1, dim))
    for f, rows in enumerate(config.table_sizes):
        bound = np.sqrt(1.0 / rows)
        for start in range(0, rows, step):
            n = min(step, rows - start)
            yield f, start, rng.uniform(-bound, bound, size=(n, dim)).astype(np.float32)


def dense_params(config, dense_shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Each dense parameter in the spec's order, drawn after the tables in the same seeded stream: 2-D
    weights N(0, sqrt(2/(in+out))), 1-D biases N(0, sqrt(1/out)). The generator skips the tables' draws
    (one output each) instead of making them."""
    rng = np.random.default_rng(seed)
    rng.bit_generator.advance(sum(int(n) for n in config.table_sizes) * config.embedding_dim)
    params: dict[str, np.ndarray] = {}
    for name, shape in dense_shapes.items():
        std = np.sqrt(2.0 / (shape[0] + shape[1])) if len(shape) == 2 else np.sqrt(1.0 / shape[0])
        params[name] = rng.normal(0.0, std, size=shape).astype(np.float32)
    return params


def seeded_params(config, dense_shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:  # noqa: ANN001
    """DLRM reference initialisation, in one seeded stream: the tables (``table_chunks``), then the dense
    parameters (``dense_params``). Float32, PyTorch [out, in] layout."""
    params: dict[str, np.ndarray] = {f"emb.{f}": np.empty((rows, config.embedding_dim), np.float32)
                                     for f, rows in enumerate(config.table_sizes)}
    for f, start, chunk in table_chunks(config, seed):
        params[f"emb.{f}"][start:start + len(chunk)] = chunk
    params.update(dense_params(config, dense_shapes, seed))
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
