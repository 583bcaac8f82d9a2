"""Embedding stages of the PyTorch DLRM: pooled lookups for all categorical features.

An ``EmbeddingBags`` module owns every table. It has two halves so that input conversion stays out of
timed windows: ``stage`` turns a numpy Batch's ids into tensors on the device (run once, ahead of
time), and ``forward`` pools the staged ids into [B, F, D] (the timed part).

A compression method that changes how ids map to rows (hash, QR, TT, mixed-dim, freq-prune, ...) is a
layout object in recsys_impls/compression/layouts.py; ``compress_embeddings.CompressedEmbeddings`` builds
every layout. To add another kind of stage (sharded, a new kernel ...):

1. subclass ``EmbeddingBags`` in its own module under torch_impl/;
2. at its import, call ``register_embeddings("name", builder)``, ``builder(model_config, compression)``
   returning the module;
3. add ``LAZY_MODULES["name"] = "recsys_impls.torch_impl.your_module"`` below, so the registration
   happens on first use. A Scenario with ``compression="name"`` or ``"name:args"`` then uses it.

Parameters listed by ``sparse_parameters()`` get the sparse optimizer; all others the dense one.
``export_tables`` returns float32 per-table arrays (dequantized or decompressed if need be), so the
parity and quality checks work for every variant. ``state_dict()`` is what ``storage_bytes`` counts:
keep compressed weights as buffers/parameters in their stored dtype.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys_impls.config import ModelConfig
from recsys_impls.data.batch import Batch
from recsys_impls.errors import ScenarioUnsupported


@dataclass
class SparseInput:
    """Staged ids for one batch: flat ids and bag offsets (``B * F + 1`` entries, last == nnz)."""

    ids: torch.Tensor  # int64 [nnz]
    offsets: torch.Tensor  # int64 [B * F + 1] (include_last_offset layout; bag order is the module's)
    batch_size: int


def to_device(array: np.ndarray, device: torch.device, pin: bool) -> torch.Tensor:
    """numpy -> tensor on ``device``; with ``pin`` the host copy is page-locked and the copy is async."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cpu":
        return t
    if pin:
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def sample_major(batch: Batch, table_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids shifted by their table's base row, reordered so bags go (sample 0: features 0..F-1,
    sample 1: ...); returns (ids [nnz], offsets [B * F + 1]). Vectorised: one gather, no loops."""
    f, b = batch.lengths.shape
    counts = batch.lengths.sum(axis=1, dtype=np.int64)
    shifted = batch.ids.astype(np.int64, copy=False) + np.repeat(np.asarray(table_base, np.int64), counts)
    old_start = batch.bag_offsets()[:-1].reshape(f, b).T.reshape(-1)  # feature-major start, sample-major order
    lengths = batch.lengths.T.reshape(-1).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    gather = np.arange(offsets[-1], dtype=np.int64) + np.repeat(old_start - offsets[:-1], lengths)
    return shifted[gather], offsets


class EmbeddingBags(nn.Module, ABC):
    """All categorical features of a DLRM: staged ids -> sum-pooled vectors [B, F, D]."""

    kernel: str = ""  # what does the pooling, for the record

    def __init__(self, table_sizes: Sequence[int], dim: int) -> None:
        super().__init__()
        self.table_sizes = tuple(int(n) for n in table_sizes)
        self.dim = int(dim)

    @property
    def num_tables(self) -> int:
        return len(self.table_sizes)

    @abstractmethod
    def stage(self, batch: Batch, device: torch.device, pin: bool) -> Any:
        """Turn the Batch's ids into device tensors in whatever layout ``forward`` wants."""

    @abstractmethod
    def forward(self, sparse: Any) -> torch.Tensor:
        """Pooled embeddings [B, F, D]."""

    @abstractmethod
    def export_tables(self) -> list[np.ndarray]:
        """Each table as a float32 numpy array [rows_f, D] (a copy)."""

    @abstractmethod
    def load_tables(self, tables: Sequence[np.ndarray]) -> None:
        """Overwrite the tables from float32 arrays [rows_f, D]."""

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Parameters whose gradients are sparse (trained by the sparse optimizer)."""
        return []

    def describe(self) -> dict[str, Any]:
        return {"embedding_kernel": self.kernel}


class FusedEmbeddingBags(EmbeddingBags):
    """Plain fp32 tables concatenated into one ``nn.EmbeddingBag`` (mode sum, sparse gradients).

    Why fused: one embedding_bag kernel and one sparse gradient for all F features instead of F of
    each. Staging shifts every id by its table's base row and reorders the bags sample-major
    ((sample, feature) order), so the kernel's output [B * F, D] is already [B, F, D]: no transpose
    copy in the timed step.
    """

    kernel = "torch.nn.EmbeddingBag (all tables fused, mode=sum, sparse gradients)"

    def __init__(self, table_sizes: Sequence[int], dim: int) -> None:
        super().__init__(table_sizes, dim)
        base = np.concatenate([[0], np.cumsum(self.table_sizes, dtype=np.int64)])
        self.table_base = base  # numpy: used on the host during staging and export
        # skip_init: the model loads the seeded tables at once, so torch's own random fill would be wasted work
        self.bag = torch.nn.utils.skip_init(nn.EmbeddingBag, int(base[-1]), self.dim, mode="sum", sparse=True,
                                            include_last_offset=True)

    def stage(self, batch: Batch, device: torch.device, pin: bool) -> SparseInput:
        if batch.num_features != self.num_tables:
            raise ValueError(f"batch has {batch.num_features} categorical features, model has {self.num_tables}")
        ids, offsets = sample_major(batch, self.table_base[:-1])
        return SparseInput(ids=to_device(ids, device, pin), offsets=to_device(offsets, device, pin),
                           batch_size=batch.batch_size)

    def forward(self, sparse: SparseInput) -> torch.Tensor:
        pooled = F.embedding_bag(
            sparse.ids, self.bag.weight, sparse.offsets, mode="sum", sparse=True, include_last_offset=True
        )
        return pooled.view(sparse.batch_size, self.num_tables, self.dim)

    def export_tables(self) -> list[np.ndarray]:
        w = self.bag.weight.detach().float().cpu().numpy()
        return [w[self.table_base[f] : self.table_base[f + 1]].copy() for f in range(self.num_tables)]

    def load_tables(self, tables: Sequence[np.ndarray]) -> None:
        for f, t in enumerate(tables):  # table by table: no concatenated copy
            self.fill_rows(f, 0, t)

    def fill_rows(self, table: int, first_row: int, values: np.ndarray) -> None:
        """Overwrite rows ``first_row ..`` of one table in place (chunked initialisation uses this)."""
        start = int(self.table_base[table]) + first_row
        with torch.no_grad():
            self.bag.weight[start:start + len(values)].copy_(torch.from_numpy(np.asarray(values, np.float32)))

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [self.bag.weight]


EmbeddingBuilder = Callable[[ModelConfig, str], EmbeddingBags]

_BUILDERS: dict[str, EmbeddingBuilder] = {
    "none": lambda config, compression: FusedEmbeddingBags(config.table_sizes, config.embedding_dim),
}


# Variants that live in their own module: kind -> module, imported (and so registered) on first use.
LAZY_MODULES: dict[str, str] = {}


def register_embeddings(name: str, builder: EmbeddingBuilder) -> None:
    """Make ``compression=name`` (or ``name:args``) build its tables with ``builder(config, compression)``."""
    _BUILDERS[name] = builder


def compression_kind(compression: str) -> str:
    """The registry key of a compression string: the part before the first ':'."""
    return compression.split(":", 1)[0]


def build_embeddings(config: ModelConfig, compression: str) -> EmbeddingBags:
    """The embedding module for a scenario's compression setting."""
    kind = compression_kind(compression)
    if kind not in _BUILDERS and kind in LAZY_MODULES:
        importlib.import_module(LAZY_MODULES[kind])
    if kind not in _BUILDERS:
        known = ", ".join(sorted(_BUILDERS))
        raise ScenarioUnsupported(
            f"compression {compression!r}: the PyTorch DLRM has no such embedding variant (available: {known})"
        )
    return _BUILDERS[kind](config, compression)
