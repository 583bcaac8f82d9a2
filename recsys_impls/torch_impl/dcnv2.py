"""PyTorch DLRM-DCNv2 dense architecture (spec: recsys_impls/models/dcnv2.py): the concatenated features
through low-rank cross layers x_{l+1} = x_0 * (U_l (V_l^T x_l) + b_l) + x_l, between the MLPs."""

from __future__ import annotations

import torch
from torch import nn

from recsys_impls.config import ModelConfig
from recsys_impls.models.dlrm import cat_width
from recsys_impls.torch_impl.model import DenseArch, ranking_arch


class LowRankCross(nn.Module):
    """[x, e_0..e_{F-1}] -> x_0 = their concatenation -> ``layers`` low-rank cross layers."""

    description = "concatenation, then low-rank cross layers (two nn.Linear per layer)"

    def __init__(self, width: int, layers: int, rank: int) -> None:
        super().__init__()
        self.v = nn.ModuleList(nn.Linear(width, rank, bias=False) for _ in range(layers))
        self.u = nn.ModuleList(nn.Linear(rank, width) for _ in range(layers))

    def forward(self, x: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        x0 = torch.cat([x, pooled.to(x.dtype).flatten(1)], dim=1)
        xl = x0
        for v, u in zip(self.v, self.u, strict=True):
            xl = torch.addcmul(xl, x0, u(v(xl)))
        return xl

    def neutral_params(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for layer, (v, u) in enumerate(zip(self.v, self.u, strict=True)):
            out[f"cross.{layer}.v.weight"] = v.weight
            out[f"cross.{layer}.u.weight"] = u.weight
            out[f"cross.{layer}.u.bias"] = u.bias
        return out


def build(config: ModelConfig, compression: str = "none") -> DenseArch:
    return ranking_arch(config, LowRankCross(cat_width(config), config.cross_layers, config.cross_rank), compression)
