"""Seeded, framework-neutral initial parameters, so both frameworks start from the same weights.

Thin entry points over the model registry (recsys_impls/models): each architecture's ``ModelSpec`` owns
its parameter names, shapes, initialisation and numpy reference forward pass.
"""

from __future__ import annotations

import numpy as np

from recsys_impls.config import ModelConfig
from recsys_impls.models.ranking import mlp_shapes  # noqa: F401 - re-exported for existing callers


def initial_params(config: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """The architecture's seeded starting point (float32, PyTorch [out, in] layout)."""
    return config.spec.initial_params(config, seed)


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes ``get_params`` must return for this config."""
    return config.spec.param_shapes(config)


def mlp_param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the dense architecture's parameters (every embedding stage shares them)."""
    return {k: v for k, v in param_shapes(config).items() if not k.startswith("emb.")}


def check_params(params: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]) -> None:
    """``set_params`` input check shared by every implementation: one line naming what is off."""
    from recsys_impls.errors import UsageError

    missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
    if missing or extra:
        raise UsageError(f"set_params: missing {missing[:5]}, unexpected {extra[:5]}; names must match get_params")
    for name, shape in expected.items():
        if tuple(np.shape(params[name])) != shape:
            raise UsageError(f"set_params: {name} has shape {np.shape(params[name])}, expected {shape}")


def reference_forward(params: dict[str, np.ndarray], config: ModelConfig, batch) -> np.ndarray:  # noqa: ANN001
    """The parity oracle for plain (uncompressed) parameters."""
    return config.spec.reference_forward(params, config, batch)
