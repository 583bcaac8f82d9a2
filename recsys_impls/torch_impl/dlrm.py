"""PyTorch builders of the DLRM dense architectures (specs: recsys_impls/models/dlrm.py)."""

from __future__ import annotations

from recsys_impls.config import ModelConfig
from recsys_impls.torch_impl.interaction import CatInteraction, DotInteraction
from recsys_impls.torch_impl.model import DenseArch, ranking_arch


def build_dlrm(config: ModelConfig, compression: str = "none") -> DenseArch:
    return ranking_arch(config, DotInteraction(config.num_tables + 1), compression)


def build_dlrm_cat(config: ModelConfig, compression: str = "none") -> DenseArch:
    return ranking_arch(config, CatInteraction(), compression)
