"""A model held as a name -> Parameter dict built from a framework-neutral spec's initial values.

The retrieval models share everything but their loss: tables (row-sparse gradients) get the sparse
optimizers of ``optim`` and the rest the dense ones; parameters move to and from numpy by name; a
training step is zero-grad, backward, step. A compressed model's tables are one embedding stage built
from the compression layout registry (the ranking models' ``CompressedEmbeddings``), read row by row.

GPU settings are the ranking models' (``settings.TorchSettings``): autocast around every forward
(``amp-bf16``, ``amp-fp16`` with GradScaler loss scaling), TF32 on or off, page-locked staging, and
torch.compile of each model's dense part (``dense_parts``); the lookups stay eager so the tables keep
row-sparse gradients. CUDA graphs replay the ranking models' inference step only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from recsys_impls.config import DeviceConfig
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.torch_impl.embeddings import to_device
from recsys_impls.torch_impl.optim import backward_and_step, make_optimizers
from recsys_impls.torch_impl.settings import TorchSettings, resolve


class ParamDictModel:
    """``tables`` and ``plan`` (a compression plan): the tables ``tables.names`` are the plan's layout, one
    ``CompressedEmbeddings`` stage (``self.emb``) that the model reads rows from with ``lookup``."""

    framework = "torch"
    dense_parts: tuple[str, ...] = ()  # methods that torch.compile takes (no lookups inside)

    def __init__(self, initial: dict[str, np.ndarray], is_table: Callable[[str], bool], optimizer: str, lr: float,
                 device: str | DeviceConfig = "cpu", tables: Any = None, plan: Any = None, seed: int = 0) -> None:
        self.settings: TorchSettings = resolve(device if isinstance(device, DeviceConfig) else DeviceConfig(device))
        if self.settings.compile == "cuda-graphs":
            raise ScenarioUnsupported("compile cuda-graphs: CUDA graphs replay the ranking models' inference step; "
                                      "the retrieval models take none, torch-compile, torch-compile-max-autotune")
        self.device = self.settings.device
        for name in self.dense_parts:
            setattr(self, name, self.settings.compiled(getattr(self, name)))
        self.tables, self.plan, self.emb = tables, plan, None
        if tables is not None:
            from recsys_impls.models import retrieval_tables as rt
            from recsys_impls.torch_impl.compress_embeddings import CompressedEmbeddings

            groups, initial = rt.split_params(tables, plan, rt.initial_params(tables, plan, initial, seed))
            self.emb = CompressedEmbeddings(tables, plan, groups).to(self.device)
            self._table_index = {n: f for f, n in enumerate(tables.names)}
        self.params = {k: torch.nn.Parameter(torch.tensor(v, device=self.device)) for k, v in initial.items()}
        self._is_table = is_table
        self._optimizer, self._lr = optimizer, lr
        self.ddp: Any = None  # DistributedDataParallel over the parameters (``distributed_retrieval``)
        self._reset_optimizers()

    def lookup(self, table: str, ids: torch.Tensor) -> torch.Tensor:
        """Rows [*ids.shape, D] of a plain table's ids (row-sparse gradients), or of its compressed stage."""
        if self.emb is None:
            return torch.nn.functional.embedding(ids, self.params[table], sparse=True)
        return self.emb.table_rows(self._table_index[table], ids)

    def use_stored(self, stored: dict[str, np.ndarray]) -> None:
        """Serve from the stored form (``retrieval_tables.stored_form``): the embedding stage is rebuilt
        from the stored arrays in their precision; training stops here."""
        from recsys_impls.torch_impl.compress_embeddings import CompressedEmbeddings

        self.emb = CompressedEmbeddings(self.tables, self.plan, {}, stored=stored).to(self.device)

    def _reset_optimizers(self) -> None:
        sparse = [p for k, p in self.params.items() if self._is_table(k)]
        dense = [p for k, p in self.params.items() if not self._is_table(k)]
        if self.emb is not None and self.emb.trainable:
            sparse += self.emb.sparse_parameters()
            dense += list(self.emb.dense)
        self.optimizers = make_optimizers(self._optimizer, self._lr, sparse, dense)
        self._scaler = torch.amp.GradScaler(self.device.type) if self.settings.uses_grad_scaler else None

    def _loss(self, staged: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def get_params(self) -> dict[str, np.ndarray]:
        out = {k: p.detach().cpu().numpy().copy() for k, p in self.params.items()}
        if self.emb is not None:
            out.update({self.tables.model_name(k): v for k, v in self.emb.export_named().items()})
        return out

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(torch.as_tensor(params[k]))
        if self.emb is not None:
            from recsys_impls.models import retrieval_tables as rt

            self.emb.load_named(rt.split_params(self.tables, self.plan, params)[0])
        self._reset_optimizers()

    def stage(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: to_device(np.asarray(v), self.device, self.settings.pinned_memory) for k, v in batch.items()}

    def train_step(self, staged: dict[str, torch.Tensor]) -> None:
        """Zero-grad, forward under autocast, backward, step (through the loss scaler with amp-fp16); data
        parallel, the loss goes through DDP's forward, so its backward averages the gradients over the ranks
        (sparse table rows as sparse tensors)."""
        with self.settings.math_mode():
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            with self.settings.autocast():
                loss = (self._loss if self.ddp is None else self.ddp)(staged)
            backward_and_step(loss, self.optimizers, self._scaler)

    @torch.no_grad()
    def loss(self, staged: dict[str, torch.Tensor]) -> float:
        with self.settings.math_mode(), self.settings.autocast():
            return float(self._loss(staged))

    def describe(self) -> dict[str, Any]:
        """The record's ``implementation``: device and math settings, compiled parts, optimizers."""
        return {**self.settings.describe(), "compiled": list(self.dense_parts) if self.settings.compile != "none"
                else [], "optimizers": [type(o).__name__ for o in self.optimizers],
                "embedding_gradient": "row-sparse (F.embedding sparse=True)" if self.emb is None
                else "the compressed stage's (CompressedEmbeddings)"}

    def to_numpy(self, value: Any) -> np.ndarray:
        return value.detach().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
