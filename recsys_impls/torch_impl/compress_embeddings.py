"""The compressed embedding stage of the PyTorch DLRM: one module for every layout of
``recsys_impls.compression.layouts``, readable from fp32 (training), fp16/bf16, or FBGEMM row-wise
int8/int4 storage (inference).

The layout object gives the parameter groups, the id -> row steps and the combine rule; this module
applies them with the torch primitives in ``STEP_OPS`` / ``COMBINE_OPS``. When every table has the same
groups (``layouts.fusable``), group j of all tables is fused row-wise into one store, so a whole batch
is looked up at once: pooled in one kernel for a single-group layout (``torch.nn.functional.embedding_bag``
for float stores, ``torch.ops.quantized.embedding_bag_byte_rowwise_offsets`` / ``embedding_bag_4bit_
rowwise_offsets`` for int8 / int4, the fused layout from ``recsys_impls.compression.quant``), else rows
gathered, combined and summed per bag. Otherwise (mixed-dim) each table has its own stores. Id maps run
inside ``forward`` so their cost is measured; staging only adds the per-id feature and bag indices.
A layout that needs torch-specific code (a fused kernel) adds it to ``ADAPTERS`` under its name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys_impls.compression import model_state as ms
from recsys_impls.compression.hashing import hash32
from recsys_impls.compression.layouts import Combine, fusable, plan_layout, table_groups
from recsys_impls.compression.spec import CompressionPlan
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
    """One fused table in some storage precision (a buffer: built from the stored arrays for inference;
    TrainableStore is the fp32 training form): pools bags or returns rows."""

    def __init__(self, kind: str, data: torch.Tensor, dim: int) -> None:
        super().__init__()
        self.kind, self.dim = kind, dim
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


class TrainableStore(Store, nn.Embedding):
    """The fp32 training store. Also an ``nn.Embedding`` with sparse=True for one reason: DDP expects a
    parameter's gradient to be sparse only when it belongs to an nn.Embedding / nn.EmbeddingBag with
    ``sparse`` set, and this store's rows are gathered with sparse=True (``pool`` / ``rows``)."""

    def __init__(self, data: torch.Tensor, dim: int) -> None:
        nn.Embedding.__init__(self, data.shape[0], data.shape[1], _weight=data, sparse=True)
        self.kind, self.dim = "fp32", dim


def _store_from_arrays(stored: dict[str, np.ndarray], names: Sequence[str], dim: int) -> Store:
    """Concatenate the stored per-feature tables ``names`` (same precision and width) into one Store."""
    kinds_arrays = [ms.stored_table(stored, n, dim) for n in names]
    kind = kinds_arrays[0][0]
    data = np.concatenate([a for _, a in kinds_arrays], axis=0)
    t = torch.from_numpy(np.ascontiguousarray(data))
    if kind == "bf16":
        t = t.view(torch.int16).view(torch.bfloat16)  # the stored uint16 are bf16's bits
    return Store(kind, t, dim)


class KeptIds(nn.Module):
    """freq-prune's "remap" step: position of each id among its table's sorted kept ids, else the fallback
    row (one binary search over all tables' kept ids, offset by table)."""

    def __init__(self, kept: list[np.ndarray], table_sizes: Sequence[int]) -> None:
        super().__init__()
        full = np.concatenate([[0], np.cumsum(table_sizes)]).astype(np.int64)
        glob = [k.astype(np.int64) + full[f] for f, k in enumerate(kept)]
        self.register_buffer("kept_global", torch.from_numpy(np.concatenate(glob) if glob else np.zeros(0, np.int64)))
        self.register_buffer("full_base", torch.from_numpy(full[:-1]))
        kcum = np.concatenate([[0], np.cumsum([k.size for k in kept])]).astype(np.int64)
        self.register_buffer("kcum", torch.from_numpy(kcum))

    def forward(self, ids: torch.Tensor, feat: torch.Tensor | None) -> torch.Tensor:
        f = feat if feat is not None else torch.zeros((), dtype=torch.int64, device=ids.device)
        gid = ids + self.full_base[f]
        n = self.kept_global.numel()
        pos = torch.searchsorted(self.kept_global, gid)
        hit = (pos < n) & (self.kept_global[pos.clamp(max=max(n - 1, 0))] == gid) if n else pos < 0
        lo = self.kcum[f]
        return torch.where(hit, pos - lo, self.kcum[f + 1] - lo)


# Index steps: (ids, argument, feature of each id or None) -> ids. An argument is a Python int, a per-table
# int64 tensor (indexed by feature) or, for "remap", a KeptIds module.
def _arg(a: Any, feat: torch.Tensor | None) -> Any:
    return a[feat] if isinstance(a, torch.Tensor) and feat is not None else a


STEP_OPS: dict[str, Callable[[torch.Tensor, Any, torch.Tensor | None], torch.Tensor]] = {
    "floordiv": lambda x, a, feat: x // _arg(a, feat),
    "mod": lambda x, a, feat: x % _arg(a, feat),
    "hash": lambda x, a, feat: hash32(x, a),
    "remap": lambda x, a, feat: a(x, feat),
}


def _tt_contract(rows: list[torch.Tensor], args: tuple[Any, ...], dense: list[torch.Tensor]) -> torch.Tensor:
    """Row of every id contracted from one row of each core: two batched matmuls."""
    (d1, d2, d3), r = args
    ab = torch.bmm(rows[0].view(-1, d1, r), rows[1].view(-1, r, d2 * r)).view(-1, d1 * d2, r)
    return torch.bmm(ab, rows[2].view(-1, r, d3)).view(-1, d1 * d2 * d3)


# Combine rules: (rows of the table groups, combine args, dense groups) -> one row per id (or per bag,
# for the linear ones, which are applied after pooling).
COMBINE_OPS: dict[str, Callable[[list[torch.Tensor], tuple[Any, ...], list[torch.Tensor]], torch.Tensor]] = {
    "identity": lambda rows, args, dense: rows[0],
    "mul": lambda rows, args, dense: rows[0] * rows[1],
    "add": lambda rows, args, dense: rows[0] + rows[1],
    "concat": lambda rows, args, dense: torch.cat(rows, dim=1),
    "project": lambda rows, args, dense: rows[0] @ dense[0],
    "tt": _tt_contract,
}

# Layout name -> torch-specific choices for it: "describe" (kind -> the kernel's description) and
# "unique_ids" (inference combines each distinct id once and pools the results with embedding_bag: for a
# combine that costs far more than a row read, such as TT-Rec's two tiny matmuls per id).
ADAPTERS: dict[str, dict[str, Any]] = {
    "tt": {"describe": lambda kind: f"TT-Rec: one row of each of 3 cores gathered (torch.nn.functional."
                                    f"embedding, {kind}), contracted by two torch.bmm"
                                    " (inference: once per distinct id, pooled by embedding_bag)",
           "unique_ids": True},
}


def _steps_args(steps: list[tuple[tuple[str, Any], ...]]) -> list[tuple[str, Any]]:
    """One table group's steps with arguments as Python ints where all tables agree, else tensors [F]."""
    out: list[tuple[str, Any]] = []
    for k, (op, _) in enumerate(steps[0]):
        args = [s[k][1] for s in steps]
        same = all(a == args[0] for a in args)
        out.append((op, args[0] if same or op in ("hash", "remap") else torch.tensor(args, dtype=torch.int64)))
    return out


class CompressedEmbeddings(EmbeddingBags):
    """Embeddings of a compression plan's layout, either trainable (fp32) or built from the stored arrays."""

    def __init__(self, config: ModelConfig, plan: CompressionPlan, params: dict[str, np.ndarray],
                 stored: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(config.table_sizes, config.embedding_dim)
        self.config, self.plan = config, plan
        self.layout = plan_layout(plan)
        self.trainable = stored is None
        self.kernel = f"compressed embeddings ({plan.spec}; {'fp32 training' if self.trainable else plan.precision})"
        nf = config.num_tables
        self.groups = table_groups(config, plan)
        self.combines: list[Combine] = [self.layout.combine(config, plan, f) for f in range(nf)]
        steps = [self.layout.index(config, plan, f, stored is not None) for f in range(nf)]
        # Fused lookups take per-table integer arguments as tensors; a hash seed must be one for all tables.
        self.fused = fusable(config, plan) and all(
            len({s[j][k][1] for s in steps}) == 1
            for j, group_steps in enumerate(steps[0]) for k, (op, _) in enumerate(group_steps) if op == "hash")
        src = params if stored is None else stored
        self.stored = stored
        self.stores = nn.ModuleList()
        self.steps: list[list[list[tuple[str, Any]]]] = []  # [table or 0 when fused][group] -> steps
        self._arg_tensors = 0
        tables = [[g for g in groups if g.table] for groups in self.groups]
        if self.fused:
            for j, g in enumerate(tables[0]):
                names = [tables[f][j].name(f) for f in range(nf)]
                self.stores.append(self._make(names, g.shape[1], params, stored))
                self._set_base(f"base{j}", [self._rows(src, n, stored) for n in names])
            self.steps.append([self._register(_steps_args([s[j] for s in steps]), [s[j] for s in steps],
                                              list(range(nf))) for j in range(len(tables[0]))])
        else:
            for f in range(nf):
                self.stores.append(nn.ModuleList(self._make([g.name(f)], g.shape[1], params, stored)
                                                 for g in tables[f]))
                self.steps.append([self._register(list(s), [s], [f]) for s in steps[f]])
        del self.stored
        self.register_buffer("table_ids", torch.arange(nf, dtype=torch.int64))  # table f's feature, for table_rows
        self.unique_ids = self.fused and not self.trainable and ADAPTERS.get(self.layout.name, {}).get("unique_ids")
        if self.unique_ids:
            self._set_base("full_base", list(config.table_sizes))
        self.dense = nn.ParameterList()
        self.dense_index: list[list[int]] = []
        for f, groups in enumerate(self.groups):
            self.dense_index.append([])
            for g in groups:
                if not g.table:
                    self.dense_index[f].append(len(self.dense))
                    self.dense.append(nn.Parameter(torch.from_numpy(np.array(src[g.name(f)], np.float32)),
                                                   requires_grad=self.trainable))

    def _register(self, steps: list[tuple[str, Any]], per_table: list[tuple[tuple[str, Any], ...]],
                  tables: list[int]) -> list[tuple[str, Any]]:
        """Per-table argument tensors become buffers (so they follow .to(device)); a remap step gets a KeptIds
        over the kept ids its ``tables`` name (``per_table``: their raw steps)."""
        out = []
        for k, (op, a) in enumerate(steps):
            if op == "remap":
                assert self.stored is not None
                a = KeptIds([self.stored[raw[k][1]] for raw in per_table],
                            [self.config.table_sizes[f] for f in tables])
                self.add_module(f"kept{self._arg_tensors}", a)
                self._arg_tensors += 1
            elif isinstance(a, torch.Tensor):
                name = f"steparg{self._arg_tensors}"
                self._arg_tensors += 1
                self.register_buffer(name, a)
                a = name
            out.append((op, a))
        return out

    @staticmethod
    def _rows(src: dict[str, np.ndarray], name: str, stored: dict[str, np.ndarray] | None) -> int:
        return int(src[name].shape[0]) if stored is None else int(ms.stored_table(stored, name, 1)[1].shape[0])

    def _set_base(self, name: str, rows: list[int]) -> None:
        self.register_buffer(name, torch.from_numpy(np.concatenate([[0], np.cumsum(rows)])[:-1].astype(np.int64)))

    def _make(self, names: list[str], dim: int, params: dict[str, np.ndarray],
              stored: dict[str, np.ndarray] | None) -> Store:
        if stored is not None:
            return _store_from_arrays(stored, names, dim)
        data = np.concatenate([np.asarray(params[n], np.float32) for n in names], axis=0)
        return TrainableStore(torch.from_numpy(data), dim)

    def _table_stores(self) -> list[Store]:
        return list(self.stores) if self.fused else [st for per in self.stores for st in per]  # type: ignore[union-attr]

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

    def _index(self, steps: list[tuple[str, Any]], ids: torch.Tensor, feat: torch.Tensor | None) -> torch.Tensor:
        x = ids
        for op, a in steps:
            x = STEP_OPS[op](x, getattr(self, a) if isinstance(a, str) else a, feat)
        return x

    def group_rows(self, j: int, s: CompressedInput) -> torch.Tensor:
        """Row of every id in fused store j (all tables' group j concatenated)."""
        return self._index(self.steps[0][j], s.ids, s.feature) + getattr(self, f"base{j}")[s.feature]

    def global_rows(self, s: CompressedInput) -> torch.Tensor:
        """Row of every id in the first fused store (plain, hash, freq-prune: the one table)."""
        return self.group_rows(0, s)

    def forward(self, s: CompressedInput) -> torch.Tensor:
        b, nf = s.batch_size, self.num_tables
        if self.fused:
            c = self.combines[0]
            if c.op == "identity":
                pooled = self.stores[0].pool(self.global_rows(s), s.offsets)
            elif self.unique_ids:
                pooled = self._pool_unique(s, c)
            else:
                rows = [st.rows(self.group_rows(j, s)) for j, st in enumerate(self.stores)]
                v = COMBINE_OPS[c.op](rows, c.args, [])
                pooled = torch.zeros(nf * b, self.dim, dtype=v.dtype, device=v.device).index_add_(0, s.bag, v)
            return pooled.view(nf, b, self.dim).transpose(0, 1)
        outs = []
        for f in range(nf):
            lo, hi = s.feature_offsets[f], s.feature_offsets[f + 1]
            ids, c = s.ids[lo:hi], self.combines[f]
            stores = self.stores[f]
            dense = [self.dense[i] for i in self.dense_index[f]]
            idx = [self._index(st, ids, None) for st in self.steps[f]]
            if c.linear:
                v = stores[0].pool(idx[0], s.offsets[f * b : (f + 1) * b + 1] - lo)
                outs.append(COMBINE_OPS[c.op]([v], c.args, dense))
            else:
                v = COMBINE_OPS[c.op]([st.rows(i) for st, i in zip(stores, idx, strict=True)], c.args, dense)
                outs.append(torch.zeros(b, self.dim, dtype=v.dtype, device=v.device).index_add_(
                    0, s.bag[lo:hi] - f * b, v))
        return torch.stack(outs, dim=1)

    def table_rows(self, f: int, ids: torch.Tensor) -> torch.Tensor:
        """Rows [*ids.shape, D] of table f's raw ``ids``, not pooled: for models that pool the rows themselves
        (the retrieval towers mask and average their slots) or use them one by one (NeuMF)."""
        flat, c = ids.reshape(-1), self.combines[f]
        if self.fused:
            feat = self.table_ids[f]
            rows = [st.rows(self._index(self.steps[0][j], flat, feat) + getattr(self, f"base{j}")[f])
                    for j, st in enumerate(self.stores)]
            dense: list[torch.Tensor] = []
        else:
            rows = [st.rows(self._index(steps, flat, None)) for st, steps in zip(self.stores[f], self.steps[f],
                                                                                   strict=True)]
            dense = [self.dense[i] for i in self.dense_index[f]]
        return COMBINE_OPS[c.op](rows, c.args, dense).reshape(*ids.shape, self.dim)

    def _pool_unique(self, s: CompressedInput, c: Combine) -> torch.Tensor:
        """Combine each distinct (table, id) once, then sum the bags over those rows in one embedding_bag."""
        gid = s.ids + self.full_base[s.feature]
        uniq, inverse = torch.unique(gid, return_inverse=True)
        feat = torch.empty_like(uniq).scatter_(0, inverse, s.feature)
        ids = uniq - self.full_base[feat]
        rows = [st.rows(self._index(self.steps[0][j], ids, feat) + getattr(self, f"base{j}")[feat])
                for j, st in enumerate(self.stores)]
        v = COMBINE_OPS[c.op](rows, c.args, [])
        return F.embedding_bag(inverse, v, s.offsets, mode="sum", include_last_offset=True)

    # --- parameters (training form) -------------------------------------------------------------
    def _named_stores(self) -> list[tuple[Store, list[str], torch.Tensor | None]]:
        """(store, parameter names in it, row base of each name or None for a one-table store)."""
        nf = self.num_tables
        tables = [[g for g in groups if g.table] for groups in self.groups]
        if self.fused:
            return [(st, [tables[f][j].name(f) for f in range(nf)], getattr(self, f"base{j}"))
                    for j, st in enumerate(self.stores)]
        return [(st, [g.name(f)], None) for f in range(nf) for st, g in zip(self.stores[f], tables[f], strict=True)]

    def _dense_names(self) -> list[tuple[int, str]]:
        return [(self.dense_index[f][k], g.name(f)) for f, groups in enumerate(self.groups)
                for k, g in enumerate([g for g in groups if not g.table])]

    def export_named(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for store, names, base in self._named_stores():
            w = store.weight.detach().float().cpu().numpy()
            if base is None:
                out[names[0]] = w.copy()
                continue
            ends = [*base.tolist()[1:], w.shape[0]]
            for f, n in enumerate(names):
                out[n] = w[int(base[f]) : ends[f]].copy()
        for i, name in self._dense_names():
            out[name] = self.dense[i].detach().cpu().numpy().copy()
        return dict(sorted(out.items(), key=lambda kv: self._order[kv[0]]))

    @property
    def _order(self) -> dict[str, int]:
        names = [g.name(f) for f, groups in enumerate(self.groups) for g in groups]
        return {n: k for k, n in enumerate(names)}

    def load_named(self, params: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for store, names, _ in self._named_stores():
                full = np.concatenate([params[n] for n in names])
                store.weight.copy_(torch.from_numpy(np.asarray(full, np.float32)))
            for i, name in self._dense_names():
                self.dense[i].copy_(torch.from_numpy(np.asarray(params[name], np.float32)))

    def export_tables(self) -> list[np.ndarray]:
        named = self.export_named()
        return [named[f"emb.{f}"] for f in range(self.num_tables) if f"emb.{f}" in named]

    def load_tables(self, tables: Sequence[np.ndarray]) -> None:
        self.load_named({f"emb.{f}": t for f, t in enumerate(tables)})

    def sparse_parameters(self) -> list[nn.Parameter]:
        if not self.trainable:
            return []
        return [st.weight for st in self._table_stores()]

    def describe(self) -> dict[str, Any]:
        kind = self._table_stores()[0].kind
        adapter = ADAPTERS.get(self.layout.name, {})
        if "describe" in adapter:
            return {"embedding_kernel": adapter["describe"](kind)}
        op = _QOPS.get(kind, "torch.nn.functional.embedding_bag")
        return {"embedding_kernel": f"{op} ({kind} storage, layout {self.plan.layout})"}
