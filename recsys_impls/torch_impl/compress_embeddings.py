"""Compressed embedding stages for the PyTorch DLRM: hash, QR, mixed-dim, freq-prune layouts,
each readable from fp32 (training), fp16/bf16, or FBGEMM row-wise int8/int4 storage (inference).

Tables of one layout group are fused row-wise into one store, so a whole batch pools in one kernel:
``torch.nn.functional.embedding_bag`` for float stores, ``torch.ops.quantized.embedding_bag_byte_
rowwise_offsets`` / ``embedding_bag_4bit_rowwise_offsets`` for int8 / int4 (the fused layout comes from
``recsys_impls.compression.quant``). Id maps (hash, quotient/remainder, freq-prune remap) run inside
``forward`` so their cost is measured; staging only adds the per-id feature and bag indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys_impls.compression import model_state as ms
from recsys_impls.compression.hashing import hash32
from recsys_impls.compression.hashing import num_buckets as hash_num_buckets
from recsys_impls.compression.mixed_dim import mixed_dims
from recsys_impls.compression.qr import qr_dims
from recsys_impls.compression.spec import CompressionPlan
from recsys_impls.compression.tt import CORES, core_shapes, dim_factors, row_factors
from recsys_impls.config import ModelConfig
from recsys_impls.data.batch import Batch
from recsys_impls.torch_impl.embeddings import EmbeddingBags, to_device

_QOPS = {"int8": "embedding_bag_byte_rowwise_offsets", "int4": "embedding_bag_4bit_rowwise_offsets"}


@dataclass
class CompressedInput:
    ids: torch.Tensor  # int64 [nnz], raw feature ids
    feature: torch.Tensor  # int64 [nnz], feature of every id
    bag: torch.Tensor  # int64 [nnz], bag (feature * B + sample) of every id
    offsets: torch.Tensor  # int64 [F * B + 1]
    feature_offsets: list[int]  # F + 1 host ints
    batch_size: int


class Store(nn.Module):
    """One fused table in some storage precision: pools bags or returns rows."""

    def __init__(self, kind: str, data: torch.Tensor, dim: int, trainable: bool = False) -> None:
        super().__init__()
        self.kind, self.dim = kind, dim
        if trainable:
            self.weight = nn.Parameter(data)
        else:
            self.register_buffer("weight", data)

    def pool(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        if self.kind in _QOPS:
            op = getattr(torch.ops.quantized, _QOPS[self.kind])
            out = op(self.weight, ids, offsets, False, 0, False, None, None, True)
            return out[:, : self.dim] if out.shape[1] != self.dim else out  # odd int4 widths: drop the pad
        if self.kind == "fp32":
            return F.embedding_bag(ids, self.weight, offsets, mode="sum", sparse=True, include_last_offset=True)
        # fp16 / bf16 storage: widen the looked-up rows and accumulate in fp32.
        bag = torch.repeat_interleave(torch.arange(offsets.numel() - 1, device=ids.device), offsets.diff())
        rows = F.embedding(ids, self.weight).float()
        return torch.zeros(offsets.numel() - 1, self.dim, device=ids.device).index_add_(0, bag, rows)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        if self.kind in _QOPS:
            return self.pool(ids, torch.arange(ids.numel() + 1, dtype=torch.int64, device=ids.device))
        return F.embedding(ids, self.weight, sparse=self.kind == "fp32").float()


def _store_from_arrays(stored: dict[str, np.ndarray], names: Sequence[str], dim: int) -> Store:
    """Concatenate the stored per-feature tables ``names`` (same precision and width) into one Store."""
    kinds_arrays = [ms.stored_table(stored, n, dim) for n in names]
    kind = kinds_arrays[0][0]
    data = np.concatenate([a for _, a in kinds_arrays], axis=0)
    t = torch.from_numpy(np.ascontiguousarray(data))
    if kind == "bf16":
        t = t.view(torch.int16).view(torch.bfloat16)  # the stored uint16 are bf16's bits
    return Store(kind, t, dim)


class CompressedEmbeddings(EmbeddingBags):
    """Embeddings of a compression plan, either trainable (fp32) or built from the stored arrays."""

    def __init__(self, config: ModelConfig, plan: CompressionPlan, params: dict[str, np.ndarray],
                 stored: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(config.table_sizes, config.embedding_dim)
        self.config, self.plan = config, plan
        self.trainable = stored is None
        self.kernel = f"compressed embeddings ({plan.spec}; {'fp32 training' if self.trainable else plan.precision})"
        f_range = range(config.num_tables)
        src = params if stored is None else stored

        def rows_of(name: str) -> int:
            return int(params[name].shape[0]) if stored is None else int(ms.stored_table(stored, name, 1)[1].shape[0])

        self.projs = nn.ParameterList()
        if plan.layout == "qr":
            dq, dr = qr_dims(self.dim, plan.qr_op)
            self.q = self._make([f"emb.{f}.q" for f in f_range], dq, params, stored)
            self.r = self._make([f"emb.{f}.r" for f in f_range], dr, params, stored)
            self._set_base("qbase", [rows_of(f"emb.{f}.q") for f in f_range])
            self._set_base("rbase", [rows_of(f"emb.{f}.r") for f in f_range])
        elif plan.layout == "tt":
            # Core k of every table fused into one store (same row width for all tables).
            widths = core_shapes(1, self.dim, plan.tt_rank)
            self.cores = nn.ModuleList(self._make([f"emb.{f}.tt{k}" for f in f_range], widths[k][1], params, stored)
                                       for k in range(CORES))
            for k in range(CORES):
                self._set_base(f"ttbase{k}", [rows_of(f"emb.{f}.tt{k}") for f in f_range])
            factors = [row_factors(n) for n in config.table_sizes]
            self.register_buffer("tt_n2", torch.tensor([n[1] for n in factors], dtype=torch.int64))
            self.register_buffer("tt_n3", torch.tensor([n[2] for n in factors], dtype=torch.int64))
        elif plan.layout == "mixed-dim":
            self.dims = mixed_dims(config.table_sizes, self.dim, plan.md_alpha)
            self.tables = nn.ModuleList(self._make([f"emb.{f}"], self.dims[f], params, stored) for f in f_range)
            self.proj_index: list[int] = []
            for f in f_range:
                p = src.get(f"emb.{f}.proj")
                self.proj_index.append(len(self.projs) if p is not None else -1)
                if p is not None:
                    self.projs.append(nn.Parameter(torch.from_numpy(np.array(p, np.float32)),
                                                   requires_grad=self.trainable))
        else:
            self.table = self._make([f"emb.{f}" for f in f_range], self.dim, params, stored)
            self._set_base("base", [rows_of(f"emb.{f}") for f in f_range])
            if plan.layout == "hash":
                k = [hash_num_buckets(n, plan.hash_fraction) for n in config.table_sizes]
                self.register_buffer("buckets", torch.tensor(k, dtype=torch.int64))
            if plan.layout == "freq-prune" and stored is not None:
                full = np.concatenate([[0], np.cumsum(config.table_sizes)])
                kept = [stored[f"emb.{f}.kept"].astype(np.int64) for f in f_range]
                self.register_buffer("kept_global", torch.from_numpy(
                    np.concatenate([k + full[f] for f, k in enumerate(kept)]) if kept else np.zeros(0, np.int64)))
                self.register_buffer("full_base", torch.from_numpy(full[:-1].astype(np.int64)))
                kcum = np.concatenate([[0], np.cumsum([k.size for k in kept])])
                self.register_buffer("kcum", torch.from_numpy(kcum.astype(np.int64)))

    def _set_base(self, name: str, rows: list[int]) -> None:
        self.register_buffer(name, torch.from_numpy(np.concatenate([[0], np.cumsum(rows)])[:-1].astype(np.int64)))

    def _make(self, names: list[str], dim: int, params: dict[str, np.ndarray],
              stored: dict[str, np.ndarray] | None) -> Store:
        if stored is not None:
            return _store_from_arrays(stored, names, dim)
        data = np.concatenate([np.asarray(params[n], np.float32) for n in names], axis=0)
        return Store("fp32", torch.from_numpy(data), dim, trainable=True)

    # --- EmbeddingBags ------------------------------------------------------------------------
    def stage(self, batch: Batch, device: torch.device, pin: bool) -> CompressedInput:
        if batch.num_features != self.num_tables:
            raise ValueError(f"batch has {batch.num_features} categorical features, model has {self.num_tables}")
        f, b = batch.lengths.shape
        per_bag = batch.lengths.reshape(-1).astype(np.int64)
        bag = np.repeat(np.arange(f * b, dtype=np.int64), per_bag)
        return CompressedInput(
            ids=to_device(batch.ids.astype(np.int64, copy=False), device, pin),
            feature=to_device(bag // max(b, 1), device, pin),
            bag=to_device(bag, device, pin),
            offsets=to_device(batch.bag_offsets(), device, pin),
            feature_offsets=[int(x) for x in batch.feature_offsets()],
            batch_size=b,
        )

    def global_rows(self, s: CompressedInput) -> torch.Tensor:
        """Row of every id in the fused table (plain, hash, freq-prune layouts)."""
        ids, feat = s.ids, s.feature
        if self.plan.layout == "hash":
            local = hash32(ids) % self.buckets[feat]
        elif self.plan.layout == "freq-prune" and not self.trainable:
            gid = ids + self.full_base[feat]
            n = self.kept_global.numel()
            pos = torch.searchsorted(self.kept_global, gid)
            hit = (pos < n) & (self.kept_global[pos.clamp(max=max(n - 1, 0))] == gid) if n else pos < 0
            return torch.where(hit, pos + feat, self.kcum[feat + 1] + feat)
        else:
            local = ids
        return local + self.base[feat]

    def _tt_vectors(self, s: CompressedInput) -> torch.Tensor:
        """Row of every id contracted from one row of each core: two batched matmuls."""
        r, (d1, d2, d3) = self.plan.tt_rank, dim_factors(self.dim)
        n2, n3 = self.tt_n2[s.feature], self.tt_n3[s.feature]
        idx = (s.ids // (n2 * n3), (s.ids // n3) % n2, s.ids % n3)
        g = [self.cores[k].rows(idx[k] + getattr(self, f"ttbase{k}")[s.feature]) for k in range(CORES)]
        ab = torch.bmm(g[0].view(-1, d1, r), g[1].view(-1, r, d2 * r)).view(-1, d1 * d2, r)
        return torch.bmm(ab, g[2].view(-1, r, d3)).view(-1, self.dim)

    def forward(self, s: CompressedInput) -> torch.Tensor:
        b, nf = s.batch_size, self.num_tables
        if self.plan.layout == "tt":
            v = self._tt_vectors(s)
            pooled = torch.zeros(nf * b, self.dim, dtype=v.dtype, device=v.device).index_add_(0, s.bag, v)
            return pooled.view(nf, b, self.dim).transpose(0, 1)
        if self.plan.layout == "qr":
            c = self.plan.qr_collisions
            eq = self.q.rows(s.ids // c + self.qbase[s.feature])
            er = self.r.rows(s.ids % c + self.rbase[s.feature])
            comb = eq * er if self.plan.qr_op == "mult" else eq + er if self.plan.qr_op == "add" else torch.cat(
                [eq, er], dim=1)
            pooled = torch.zeros(nf * b, self.dim, dtype=comb.dtype, device=comb.device).index_add_(0, s.bag, comb)
            return pooled.view(nf, b, self.dim).transpose(0, 1)
        if self.plan.layout == "mixed-dim":
            outs = []
            for f in range(nf):
                lo, hi = s.feature_offsets[f], s.feature_offsets[f + 1]
                off = s.offsets[f * b : (f + 1) * b + 1] - lo
                v = self.tables[f].pool(s.ids[lo:hi], off)
                k = self.proj_index[f]
                outs.append(v @ self.projs[k] if k >= 0 else v)
            return torch.stack(outs, dim=1)
        pooled = self.table.pool(self.global_rows(s), s.offsets)
        return pooled.view(nf, b, self.dim).transpose(0, 1)

    # --- parameters (training form) -------------------------------------------------------------
    def export_named(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        f_range = range(self.num_tables)
        if self.plan.layout in ("qr", "tt"):
            groups = [(self.cores[k], getattr(self, f"ttbase{k}"), f"tt{k}") for k in range(CORES)] \
                if self.plan.layout == "tt" else [(self.q, self.qbase, "q"), (self.r, self.rbase, "r")]
            for store, base, suffix in groups:
                w = store.weight.detach().float().cpu().numpy()
                ends = [*base.tolist()[1:], w.shape[0]]
                for f in f_range:
                    out[f"emb.{f}.{suffix}"] = w[int(base[f]) : ends[f]].copy()
        elif self.plan.layout == "mixed-dim":
            for f in f_range:
                out[f"emb.{f}"] = self.tables[f].weight.detach().float().cpu().numpy().copy()
                if self.proj_index[f] >= 0:
                    out[f"emb.{f}.proj"] = self.projs[self.proj_index[f]].detach().cpu().numpy().copy()
        else:
            w = self.table.weight.detach().float().cpu().numpy()
            ends = [*self.base.tolist()[1:], w.shape[0]]
            for f in f_range:
                out[f"emb.{f}"] = w[int(self.base[f]) : ends[f]].copy()
        return out

    def load_named(self, params: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            if self.plan.layout in ("qr", "tt"):
                groups = [(self.cores[k], f"tt{k}") for k in range(CORES)] if self.plan.layout == "tt" \
                    else [(self.q, "q"), (self.r, "r")]
                for store, suffix in groups:
                    full = np.concatenate([params[f"emb.{f}.{suffix}"] for f in range(self.num_tables)])
                    store.weight.copy_(torch.from_numpy(np.asarray(full, np.float32)))
            elif self.plan.layout == "mixed-dim":
                for f in range(self.num_tables):
                    self.tables[f].weight.copy_(torch.from_numpy(np.asarray(params[f"emb.{f}"], np.float32)))
                    if self.proj_index[f] >= 0:
                        self.projs[self.proj_index[f]].copy_(torch.from_numpy(
                            np.asarray(params[f"emb.{f}.proj"], np.float32)))
            else:
                full = np.concatenate([params[f"emb.{f}"] for f in range(self.num_tables)])
                self.table.weight.copy_(torch.from_numpy(np.asarray(full, np.float32)))

    def export_tables(self) -> list[np.ndarray]:
        named = self.export_named()
        return [named[f"emb.{f}"] for f in range(self.num_tables) if f"emb.{f}" in named]

    def load_tables(self, tables: Sequence[np.ndarray]) -> None:
        self.load_named({f"emb.{f}": t for f, t in enumerate(tables)})

    def sparse_parameters(self) -> list[nn.Parameter]:
        if not self.trainable:
            return []
        if self.plan.layout == "qr":
            return [self.q.weight, self.r.weight]
        if self.plan.layout == "tt":
            return [c.weight for c in self.cores]
        if self.plan.layout == "mixed-dim":
            return [t.weight for t in self.tables]
        return [self.table.weight]

    def describe(self) -> dict[str, Any]:
        if self.plan.layout == "tt":
            return {"embedding_kernel": f"TT-Rec: one row of each of {CORES} cores gathered (torch.nn.functional."
                                        f"embedding, {self.cores[0].kind}), contracted by two torch.bmm"}
        store = {"qr": "q", "mixed-dim": None}.get(self.plan.layout, "table")
        kind = getattr(self, store).kind if store else self.tables[0].kind
        op = _QOPS.get(kind, "torch.nn.functional.embedding_bag")
        return {"embedding_kernel": f"{op} ({kind} storage, layout {self.plan.layout})"}
