"""A model held as a name -> Parameter dict built from a framework-neutral spec's initial values.

The retrieval models share everything but their loss: tables (row-sparse gradients) get the sparse
optimizers of ``optim`` and the rest the dense ones; parameters move to and from numpy by name; a
training step is zero-grad, backward, step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from recsys_impls.torch_impl.optim import make_optimizers


class ParamDictModel:
    framework = "torch"

    def __init__(self, initial: dict[str, np.ndarray], is_table: Callable[[str], bool], optimizer: str, lr: float,
                 device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.params = {k: torch.nn.Parameter(torch.tensor(v, device=self.device)) for k, v in initial.items()}
        self._is_table = is_table
        self._optimizer, self._lr = optimizer, lr
        self._reset_optimizers()

    def _reset_optimizers(self) -> None:
        sparse = [p for k, p in self.params.items() if self._is_table(k)]
        dense = [p for k, p in self.params.items() if not self._is_table(k)]
        self.optimizers = make_optimizers(self._optimizer, self._lr, sparse, dense)

    def _loss(self, staged: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def get_params(self) -> dict[str, np.ndarray]:
        return {k: p.detach().cpu().numpy().copy() for k, p in self.params.items()}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(torch.as_tensor(params[k]))
        self._reset_optimizers()

    def stage(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v).to(self.device) for k, v in batch.items()}

    def train_step(self, staged: dict[str, torch.Tensor]) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self._loss(staged).backward()
        for opt in self.optimizers:
            opt.step()

    @torch.no_grad()
    def loss(self, staged: dict[str, torch.Tensor]) -> float:
        return float(self._loss(staged))

    def to_numpy(self, value: Any) -> np.ndarray:
        return value.detach().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
