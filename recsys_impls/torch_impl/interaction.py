"""DLRM's pairwise dot-product interaction: one batched matmul and one gather, no Python loops."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class DotInteraction(nn.Module):
    """[x, e_0..e_{F-1}] -> [x, dots of all pairs (i > j) in row-major tril order]."""

    def __init__(self, num_vectors: int) -> None:
        super().__init__()
        li, lj = np.tril_indices(num_vectors, -1)
        self.num_vectors = num_vectors
        self.register_buffer("pair_index", torch.from_numpy(li * num_vectors + lj).long(), persistent=False)

    def forward(self, x: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        t = torch.cat([x.unsqueeze(1), pooled.to(x.dtype)], dim=1)  # [B, F+1, D]
        z = torch.bmm(t, t.transpose(1, 2)).flatten(1)  # [B, (F+1)^2]
        return torch.cat([x, z.index_select(1, self.pair_index)], dim=1)
