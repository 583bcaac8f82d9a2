"""Data parallel PyTorch retrieval models (two-tower, NeuMF): the single-process model, its loss run through
DistributedDataParallel.

The models hold their parameters in a name -> Parameter dict (``param_model.ParamDictModel``), not in an
nn.Module, so ``_Replica`` gathers them into one for DDP: the plain tables each inside an
``nn.Embedding(sparse=True)`` shell (DDP expects a sparse gradient only from a parameter of an
Embedding/EmbeddingBag with sparse=True; the model still looks them up with ``F.embedding(sparse=True)``), a
compressed stage as the module it is (its fp32 stores are such Embeddings), the rest as dense parameters.
DDP's forward is the model's own loss, so its backward averages the gradients over the ranks: dense ones in
buckets, the tables' sparse ones one by one. Every rank starts from the same seeded parameters and applies
the same averaged gradients, so the replicas stay identical.

Why the average is the one-process gradient: each rank's loss is the mean over its B/N queries (two-tower:
against the global batch's items, ``TorchTwoTower.in_batch_items``), so the mean over the ranks of their
gradients is the gradient of the mean over all B queries, the one-process loss on the whole batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


class _Replica(nn.Module):
    """The model's parameters as one module whose forward is the model's loss (what DDP wraps)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self._model = [model]  # a list: not registered as a submodule
        self.tables = nn.ModuleList()
        for name, p in model.params.items():
            if model._is_table(name):
                shell = nn.Embedding(1, 1, sparse=True)
                shell.weight = p
                self.tables.append(shell)
        self.dense = nn.ParameterList([p for name, p in model.params.items() if not model._is_table(name)])
        if model.emb is not None:
            self.emb = model.emb

    def forward(self, staged: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._model[0]._loss(staged)


def data_parallel(model: Any) -> Any:
    """``model`` (a ParamDictModel) trained data parallel over the initialised process group."""
    device = model.device
    model.ddp = DDP(_Replica(model), device_ids=None if device.type == "cpu" else [device], broadcast_buffers=False)
    return model


def build(arch: str, cfg: Any, data: Any, scenario: Any, plan: Any) -> Any:
    """The data-parallel model of a retrieval scenario (the one-process builder, then DDP)."""
    from recsys_impls.models import retrieval as models

    t = scenario.train
    return data_parallel(models.build(arch, "torch", cfg, data, t.optimizer, t.learning_rate, t.seed,
                                      scenario.device, plan=plan))


class TorchComm:
    """What ``retrieval_runner.run_rank`` needs of the torch process group."""

    framework = "torch"

    def __init__(self) -> None:
        import torch.distributed as dist

        self.backend = dist.get_backend()

    build = staticmethod(build)

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def gather_strings(self, text: str) -> list[str]:
        import torch.distributed as dist

        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, text)
        return [str(s) for s in out]
