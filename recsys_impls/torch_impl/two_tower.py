"""Two-tower retrieval in PyTorch (contract and parameter names: recsys_impls/models/two_tower.py).

Each tower's table is looked up with ``F.embedding(sparse=True)`` so the table gets row-sparse gradients
and the sparse optimizers of ``optim`` (the MLPs use the dense ones); with a compression plan the tables
are the layout's stage (``ParamDictModel.lookup``). The dense part (``tower_mlp``: each tower's MLP and
normalisation) is what torch.compile takes. Serving: the item corpus is encoded once and kept as one
[items, out] tensor in the compute dtype (bf16/fp16 under AMP); a query batch is one matmul and ``torch.topk``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recsys_impls.config import DeviceConfig
from recsys_impls.models.two_tower import (
    MASKED_LOGIT,
    NORM_EPS,
    TowerShape,
    TwoTowerConfig,
    initial_params,
    table_set,
)
from recsys_impls.torch_impl.embeddings import to_device
from recsys_impls.torch_impl.param_model import ParamDictModel


class TorchTwoTower(ParamDictModel):
    """Two towers as plain parameters: ``x @ w + b`` with the [in, out] weights of the neutral spec."""

    dense_parts = ("tower_mlp",)

    def __init__(self, cfg: TwoTowerConfig, user: TowerShape, item: TowerShape, optimizer: str, lr: float,
                 seed: int = 0, device: str | DeviceConfig = "cpu", plan: Any = None) -> None:
        self.cfg, self.shapes = cfg, {"user": user, "item": item}
        super().__init__(initial_params(cfg, user, item, seed), lambda k: k.endswith(".table"), optimizer, lr, device,
                         tables=table_set(cfg, user, item) if plan is not None else None, plan=plan, seed=seed)
        self.pool = {n: torch.tensor(s.pool_matrix(), device=self.device) for n, s in self.shapes.items()}
        self.corpus: torch.Tensor | None = None

    def tower(self, name: str, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        emb = self.lookup(f"{name}.table", ids) * mask.unsqueeze(-1)
        p = self.pool[name]
        pooled = torch.einsum("bld,lf->bfd", emb, p) / torch.clamp(mask @ p, min=1.0).unsqueeze(-1)
        return self.tower_mlp(name, pooled.reshape(ids.shape[0], -1))

    def tower_mlp(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The tower's MLP on its pooled features, then L2 normalisation in fp32."""
        layers = len(self.cfg.tower_mlp)
        for i in range(layers):
            x = torch.addmm(self.params[f"{name}.b{i}"], x, self.params[f"{name}.w{i}"])
            if i < layers - 1:
                x = torch.relu(x)
        x = x.float()
        return x / torch.clamp(torch.linalg.vector_norm(x, dim=1, keepdim=True), min=NORM_EPS)

    def in_batch_items(self, v: torch.Tensor, log_q: torch.Tensor,
                       items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """The batch's negatives: (item vectors, their log q, item ids, the first local row's column). One
        process: its own batch. Data parallel (``self.ddp``): every rank's items, gathered with a
        differentiable all-gather, so each query sees the global batch's negatives exactly as one process
        on the whole batch does (its backward sums every rank's gradient into the items' own rank)."""
        if self.ddp is None:
            return v, log_q, items, 0
        import torch.distributed as dist
        import torch.distributed.nn.functional as dnf

        world, rank = dist.get_world_size(), dist.get_rank()
        lq = [torch.empty_like(log_q) for _ in range(world)]
        ids = [torch.empty_like(items) for _ in range(world)]
        dist.all_gather(lq, log_q)
        dist.all_gather(ids, items)
        return torch.cat(dnf.all_gather(v)), torch.cat(lq), torch.cat(ids), rank * items.numel()

    def _loss(self, s: dict[str, torch.Tensor]) -> torch.Tensor:
        u = self.tower("user", s["user_ids"], s["user_mask"])
        v = self.tower("item", s["item_ids"], s["item_mask"])
        v, log_q, every, first = self.in_batch_items(v, s["log_q"], s["items"])
        logits = u @ v.T / self.cfg.temperature
        if self.cfg.logq_correction:
            logits = logits - log_q.unsqueeze(0)
        items = s["items"]
        rows = torch.arange(items.numel(), device=items.device)
        same = items.unsqueeze(1) == every.unsqueeze(0)
        same[rows, rows + first] = False  # the positive itself
        logits = logits.masked_fill(same, MASKED_LOGIT)
        return F.cross_entropy(logits, rows + first)

    @torch.no_grad()
    def encode(self, name: str, ids: np.ndarray, mask: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Tower outputs of many entities, as numpy [n, out] (float32)."""
        with self.settings.math_mode(), self.settings.autocast():
            outs = [self.tower(name, torch.as_tensor(ids[i : i + chunk], device=self.device),
                               torch.as_tensor(mask[i : i + chunk], device=self.device)).cpu().numpy()
                    for i in range(0, ids.shape[0], chunk)]
        return np.concatenate(outs) if outs else np.zeros((0, self.cfg.tower_mlp[-1]), np.float32)

    # serving: brute-force top-k over a staged corpus, in the compute dtype
    def _serving_tensor(self, vecs: np.ndarray) -> torch.Tensor:
        t = to_device(np.ascontiguousarray(vecs, np.float32), self.device, self.settings.pinned_memory)
        return t.to(self.settings.autocast_dtype or torch.float32)

    def stage_corpus(self, item_vecs: np.ndarray) -> None:
        self.corpus = self._serving_tensor(item_vecs)

    def stage_queries(self, user_vecs: np.ndarray) -> torch.Tensor:
        return self._serving_tensor(user_vecs)

    @torch.no_grad()
    def retrieve(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        assert self.corpus is not None, "stage_corpus first"
        with self.settings.math_mode():
            return torch.topk(queries @ self.corpus.T, k, dim=1, sorted=True).indices
