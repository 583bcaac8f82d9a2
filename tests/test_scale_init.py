"""Streamed initialisation and size reports that never hold a second copy of the tables."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from recsys_impls.models import ranking


def _whole_table_draws(config, dense_shapes, seed):
    """The initialisation as it was written before chunking: each table drawn whole, then the dense part."""
    rng = np.random.default_rng(seed)
    out = {}
    for f, rows in enumerate(config.table_sizes):
        bound = np.sqrt(1.0 / rows)
        out[f"emb.{f}"] = rng.uniform(-bound, bound, size=(rows, config.embedding_dim)).astype(np.float32)
    for name, shape in dense_shapes.items():
        std = np.sqrt(2.0 / (shape[0] + shape[1])) if len(shape) == 2 else np.sqrt(1.0 / shape[0])
        out[name] = rng.normal(0.0, std, size=shape).astype(np.float32)
    return out


CFG = SimpleNamespace(table_sizes=(300, 7, 1, 1000), embedding_dim=8)
DENSE = {"bottom.0.weight": (4, 3), "bottom.0.bias": (4,)}


@pytest.mark.parametrize("seed", [0, 5])
def test_chunked_tables_and_skipped_dense_draws_equal_whole_draws(seed: int) -> None:
    expected = _whole_table_draws(CFG, DENSE, seed)
    got = ranking.seeded_params(CFG, DENSE, seed)
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    rows: dict[int, list[np.ndarray]] = {}
    for f, start, chunk in ranking.table_chunks(CFG, seed, chunk_values=40):  # 5 rows a chunk
        assert start == sum(len(c) for c in rows.get(f, [])) and chunk.dtype == np.float32
        rows.setdefault(f, []).append(chunk)
    for f in range(len(CFG.table_sizes)):
        np.testing.assert_array_equal(np.concatenate(rows[f]), expected[f"emb.{f}"])
    dense = ranking.dense_params(CFG, DENSE, seed)
    for name in DENSE:
        np.testing.assert_array_equal(dense[name], expected[name])
