"""NeuMF in PyTorch (contract and parameter names: recsys_impls/models/neumf.py). The four embedding tables
get row-sparse gradients (``F.embedding(sparse=True)``) and the sparse optimizers of ``optim``; with a
compression plan they are the layout's stage (``ParamDictModel.lookup``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from recsys_impls.models.neumf import TABLES, NeuMFConfig, initial_params, table_set
from recsys_impls.torch_impl.param_model import ParamDictModel


class TorchNeuMF(ParamDictModel):
    def __init__(self, cfg: NeuMFConfig, num_users: int, num_items: int, optimizer: str, lr: float,
                 seed: int = 0, device: str = "cpu", plan: Any = None) -> None:
        self.cfg = cfg
        super().__init__(initial_params(cfg, num_users, num_items, seed), TABLES.__contains__, optimizer, lr, device,
                         tables=table_set(cfg, num_users, num_items) if plan is not None else None, plan=plan,
                         seed=seed)

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p, look = self.params, self.lookup
        gmf = look("gmf.user", users) * look("gmf.item", items)
        x = torch.cat([look("mlp.user", users), look("mlp.item", items)], dim=1)
        for i in range(len(self.cfg.mlp)):
            x = torch.relu(torch.addmm(p[f"mlp.b{i}"], x, p[f"mlp.w{i}"]))
        return torch.addmm(p["out.b"], torch.cat([gmf, x], dim=1), p["out.w"]).squeeze(1)

    def _loss(self, s: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(s["users"], s["items"]), s["labels"])

    @torch.no_grad()
    def infer(self, staged: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.logits(staged["users"], staged["items"])
