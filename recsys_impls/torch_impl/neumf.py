"""NeuMF in PyTorch (contract and parameter names: recsys_impls/models/neumf.py). The four embedding tables
get row-sparse gradients (``F.embedding(sparse=True)``) and the sparse optimizers of ``optim``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recsys_impls.models.neumf import NeuMFConfig, initial_params
from recsys_impls.torch_impl.optim import make_optimizers

_TABLES = ("gmf.user", "gmf.item", "mlp.user", "mlp.item")


class TorchNeuMF:
    framework = "torch"

    def __init__(self, cfg: NeuMFConfig, num_users: int, num_items: int, optimizer: str, lr: float,
                 seed: int = 0, device: str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.params = {k: torch.nn.Parameter(torch.tensor(v, device=self.device))
                       for k, v in initial_params(cfg, num_users, num_items, seed).items()}
        self._optimizer, self._lr = optimizer, lr
        self._reset_optimizers()

    def _reset_optimizers(self) -> None:
        sparse = [self.params[k] for k in _TABLES]
        dense = [p for k, p in self.params.items() if k not in _TABLES]
        self.optimizers = make_optimizers(self._optimizer, self._lr, sparse, dense)

    def get_params(self) -> dict[str, np.ndarray]:
        return {k: p.detach().cpu().numpy().copy() for k, p in self.params.items()}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(torch.as_tensor(params[k]))
        self._reset_optimizers()

    def stage(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v).to(self.device) for k, v in batch.items()}

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

    def train_step(self, staged: dict[str, torch.Tensor]) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self._loss(staged).backward()
        for opt in self.optimizers:
            opt.step()

    @torch.no_grad()
    def loss(self, staged: dict[str, torch.Tensor]) -> float:
        return float(self._loss(staged))

    @torch.no_grad()
    def infer(self, staged: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.logits(staged["users"], staged["items"])

    def to_numpy(self, value: Any) -> np.ndarray:
        return value.detach().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
