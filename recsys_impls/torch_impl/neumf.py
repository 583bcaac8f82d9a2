"""NeuMF in PyTorch (contract and parameter names: recsys_impls/models/neumf.py). The four embedding tables
get row-sparse gradients (``F.embedding(sparse=True)``) and the sparse optimizers of ``optim``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys_impls.models.neumf import NeuMFConfig, initial_params
from recsys_impls.torch_impl.param_model import ParamDictModel

_TABLES = ("gmf.user", "gmf.item", "mlp.user", "mlp.item")


class TorchNeuMF(ParamDictModel):
    def __init__(self, cfg: NeuMFConfig, num_users: int, num_items: int, optimizer: str, lr: float,
                 seed: int = 0, device: str = "cpu") -> None:
        self.cfg = cfg
        super().__init__(initial_params(cfg, num_users, num_items, seed), _TABLES.__contains__, optimizer, lr, device)

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p = self.params
        gmf = F.embedding(users, p["gmf.user"], sparse=True) * F.embedding(items, p["gmf.item"], sparse=True)
        x = torch.cat([F.embedding(users, p["mlp.user"], sparse=True),
                       F.embedding(items, p["mlp.item"], sparse=True)], dim=1)
        for i in range(len(self.cfg.mlp)):
            x = torch.relu(torch.addmm(p[f"mlp.b{i}"], x, p[f"mlp.w{i}"]))
        return torch.addmm(p["out.b"], torch.cat([gmf, x], dim=1), p["out.w"]).squeeze(1)

    def _loss(self, s: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(s["users"], s["items"]), s["labels"])

    @torch.no_grad()
    def infer(self, staged: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.logits(staged["users"], staged["items"])
