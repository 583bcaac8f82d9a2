"""NeuMF in PyTorch (contract and parameter names: recsys_impls/models/neumf.py). The four embedding tables
get row-sparse gradients (``F.embedding(sparse=True)``) and the sparse optimizers of ``optim``; with a
compression plan they are the layout's stage (``ParamDictModel.lookup``). The dense part (``head``: the GMF
product, the MLP and the output layer) is what torch.compile takes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from recsys_impls.config import DeviceConfig
from recsys_impls.models.neumf import TABLES, NeuMFConfig, initial_params, table_set
from recsys_impls.torch_impl.param_model import ParamDictModel


class TorchNeuMF(ParamDictModel):
    dense_parts = ("head",)

    def __init__(self, cfg: NeuMFConfig, num_users: int, num_items: int, optimizer: str, lr: float,
                 seed: int = 0, device: str | DeviceConfig = "cpu", plan: Any = None) -> None:
        self.cfg = cfg
        super().__init__(initial_params(cfg, num_users, num_items, seed), TABLES.__contains__, optimizer, lr, device,
                         tables=table_set(cfg, num_users, num_items) if plan is not None else None, plan=plan,
                         seed=seed)

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        look = self.lookup
        return self.head(look("gmf.user", users), look("gmf.item", items), look("mlp.user", users),
                         look("mlp.item", items))

    def head(self, gmf_user: torch.Tensor, gmf_item: torch.Tensor, mlp_user: torch.Tensor,
             mlp_item: torch.Tensor) -> torch.Tensor:
        """Logits [B] (float32) from the four looked-up rows."""
        p = self.params
        x = torch.cat([mlp_user, mlp_item], dim=1)
        for i in range(len(self.cfg.mlp)):
            x = torch.relu(torch.addmm(p[f"mlp.b{i}"], x, p[f"mlp.w{i}"]))
        return torch.addmm(p["out.b"], torch.cat([gmf_user * gmf_item, x.to(gmf_user.dtype)], dim=1),
                           p["out.w"]).squeeze(1).float()

    def _loss(self, s: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(s["users"], s["items"]), s["labels"])

    @torch.no_grad()
    def infer(self, staged: dict[str, torch.Tensor]) -> torch.Tensor:
        with self.settings.math_mode(), self.settings.autocast():
            return self.logits(staged["users"], staged["items"])
