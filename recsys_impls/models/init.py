"""Seeded initial parameters for the retrieval models: tables normal, weights Glorot-uniform, biases 0."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def seeded_params(shapes: dict[str, tuple[int, ...]], rng: np.random.Generator, is_table: Callable[[str], bool],
                  table_std: float) -> dict[str, np.ndarray]:
    """float32 arrays in the order of ``shapes``, drawn from ``rng`` one after another."""
    out = {}
    for name, shape in shapes.items():
        if is_table(name):
            out[name] = rng.normal(0.0, table_std, shape)
        elif len(shape) == 2:
            lim = np.sqrt(6.0 / (shape[0] + shape[1]))
            out[name] = rng.uniform(-lim, lim, shape)
        else:
            out[name] = np.zeros(shape)
    return {k: v.astype(np.float32) for k, v in out.items()}
