"""Model-parallel PyTorch DLRM: tables in a TorchRec EmbeddingBagCollection sharded by
DistributedModelParallel (table-wise, row-wise, column-wise, or TorchRec's own planner for ``auto``);
the dense arch is the single-process TorchDLRM's (data parallel under DMP).

Parameters import from / export to the shared numpy dict (names per base.py), so the sharded model's
predictions can be checked against the unsharded TorchDLRM for the same weights. Table-wise placement
comes from our LPT planner (recsys_impls.parallel.planner) and is handed to TorchRec as an explicit
per-table plan. On CPU the stock sharder offers no row-wise sharding; ``CPUShardingSharder`` adds it.
Embedding tables train with TorchRec's fused optimizer (applied in backward); the dense arch with a
keyed PyTorch optimizer.

Compression: a stage whose parameters are one plain table per feature looked up by mapped ids
(``hash``: ceil(FRACTION x rows) buckets) is sharded as TorchRec tables of those sizes, with the ids
mapped before the KeyedJaggedTensor is built; other layouts are refused (compression.spec.sharding_refusal).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.sharding_plan import column_wise, construct_module_sharding_plan, row_wise, table_wise
from torchrec.distributed.types import ShardingPlan, ShardingType
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from recsys_impls.config import Scenario
from recsys_impls.data.batch import Batch
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.init_params import initial_params
from recsys_impls.parallel import planner
from recsys_impls.torch_impl.model import build_dense_arch


class CPUShardingSharder(EmbeddingBagCollectionSharder):
    """The stock sharder, plus row-wise and table-row-wise on CPU (TorchRec lists them for CUDA only)."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        types = list(super().sharding_types(compute_device_type))
        for extra in (ShardingType.ROW_WISE.value, ShardingType.TABLE_ROW_WISE.value):
            if extra not in types:
                types.append(extra)
        return types


class TorchRecDLRMNet(nn.Module):
    """DLRM with a TorchRec EmbeddingBagCollection in front of our dense arch."""

    def __init__(self, ebc: EmbeddingBagCollection, dense_arch: nn.Module, num_tables: int, dim: int) -> None:
        super().__init__()
        self.keys = [f"f{f}" for f in range(num_tables)]
        self.ebc = ebc
        self.dense_arch = dense_arch
        self.num_tables = num_tables
        self.dim = dim

    def forward(self, dense: torch.Tensor, kjt: KeyedJaggedTensor) -> torch.Tensor:
        kt = self.ebc(kjt)
        # A sharded collection returns keys grouped by shard, not in table order: regroup by name.
        per_key = kt.to_dict()
        pooled = torch.stack([per_key[k] for k in self.keys], dim=1)
        return self.dense_arch(dense, pooled)


def _fused_params(scenario: Scenario) -> dict[str, Any]:
    from fbgemm_gpu.split_embedding_configs import EmbOptimType

    t = scenario.train
    if t.optimizer == "sgd":
        return {"optimizer": EmbOptimType.EXACT_SGD, "learning_rate": t.learning_rate}
    return {"optimizer": EmbOptimType.EXACT_ADAGRAD, "learning_rate": t.learning_rate, "eps": 1e-10}


class ShardedDLRM:
    """The Recommender-shaped object the distributed worker drives (stage, train_step, infer, params)."""

    framework = "torch"

    def __init__(self, scenario: Scenario, sharding: str, rank: int, world: int, sample: Batch | None = None,
                 table_ranks: list[int] | None = None) -> None:
        """``table_ranks`` (table-wise): place the tables there instead of where our planner would (a re-plan)."""
        if scenario.device.precision != "fp32":
            raise ScenarioUnsupported("sharded: only fp32 precision is wired for the TorchRec model")
        self.scenario = scenario
        self.cfg = scenario.model
        self.plan, self.id_steps = self._id_mapping(scenario)
        self.rank, self.world = rank, world
        self.device = torch.device(scenario.device.device)
        cfg = self.cfg
        self.keys = [f"f{f}" for f in range(cfg.num_tables)]
        ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=f"t{f}", embedding_dim=cfg.embedding_dim, num_embeddings=n,
                                       feature_names=[self.keys[f]]) for f, n in enumerate(cfg.table_sizes)],
            device=torch.device("meta"),
        )
        dense_arch = build_dense_arch(scenario.model)  # the tables are TorchRec's: no local embedding stage
        net = TorchRecDLRMNet(ebc, dense_arch, cfg.num_tables, cfg.embedding_dim)
        self.sharder = CPUShardingSharder(fused_params=_fused_params(scenario))
        self.sharding = sharding
        self.our_plan = self._our_plan(sharding, sample, table_ranks)
        module_plan = self._module_plan(ebc, sharding)
        self.dmp = DistributedModelParallel(module=net, device=self.device, plan=module_plan,
                                            sharders=[self.sharder])
        self.net: TorchRecDLRMNet = self.dmp.module
        lr = scenario.train.learning_rate
        if scenario.train.optimizer == "sgd":
            def make(params: Any) -> torch.optim.Optimizer:
                return torch.optim.SGD(params, lr=lr)
        else:
            def make(params: Any) -> torch.optim.Optimizer:
                return torch.optim.Adagrad(params, lr=lr, eps=1e-10, initial_accumulator_value=0.0)
        dense_params = dict(in_backward_optimizer_filter(self.dmp.named_parameters()))
        self.opt = CombinedOptimizer([self.dmp.fused_optimizer, KeyedOptimizerWrapper(dense_params, make)])
        self._load_initial(scenario.train.seed)

    def _id_mapping(self, scenario: Scenario) -> tuple[Any, list[Any] | None]:
        """(compression plan, per-table id steps) of a hashed stage, whose tables are TorchRec tables of
        the bucket counts looked up by the hashed ids; (None, None) for plain tables. ``self.cfg`` becomes
        the model with those table sizes, so planning, shards and sizes are the hashed tables'."""
        if scenario.compression in ("", "none"):
            return None, None
        from recsys_impls.compression.layouts import plan_layout
        from recsys_impls.compression.spec import parse_compression, sharding_refusal

        why = sharding_refusal(scenario.compression, "torch")
        if why:
            raise ScenarioUnsupported(f"sharded + compression {scenario.compression}: {why}")
        plan = parse_compression(scenario.compression)
        layout = plan_layout(plan)
        groups = [layout.groups(self.cfg, plan, f) for f in range(self.cfg.num_tables)]
        assert all(len(g) == 1 and g[0].table for g in groups), "a shardable layout has one table group"
        self.cfg = replace(self.cfg, table_sizes=tuple(g[0].shape[0] for g in groups))
        return plan, [g[0].index for g in groups]

    def mapped(self, batch: Batch) -> Batch:
        """``batch`` with every feature's ids mapped to its table's rows (the hashed stage), else as it is."""
        if self.id_steps is None:
            return batch
        from recsys_impls.compression.layouts import apply_index

        off = batch.feature_offsets()
        ids = np.concatenate([apply_index(batch.ids[off[f]:off[f + 1]], steps)
                              for f, steps in enumerate(self.id_steps)]) if batch.ids.size else batch.ids
        return replace(batch, ids=ids.astype(np.int64))

    # --- planning ------------------------------------------------------------------------------
    def _our_plan(self, sharding: str, sample: Batch | None, table_ranks: list[int] | None = None) -> dict[str, Any]:
        """Our plan, from measured id frequencies when a sample of the training data is given."""
        t = self.scenario.train
        per_sample, counts = ((None, None) if sample is None
                              else planner.measured_ids(self.mapped(sample), self.cfg.table_sizes))
        loads = planner.table_loads(self.cfg.table_sizes, self.cfg.embedding_dim, t.batch_size,
                                    self.cfg.ids_per_feature, ids_per_sample=per_sample)
        return planner.plan(loads, self.world, "table-wise" if sharding == "auto" else sharding, id_counts=counts,
                            assignment=table_ranks if sharding == "table-wise" else None)

    def _module_plan(self, ebc: EmbeddingBagCollection, sharding: str) -> ShardingPlan | None:
        if sharding == "auto":
            return self._torchrec_planner_plan(ebc)
        if sharding == "table-wise":
            gens = {f"t{f}": table_wise(rank=r) for f, r in enumerate(self.our_plan["assignment"])}
        elif sharding == "row-wise":
            gens = {f"t{f}": row_wise() for f in range(self.cfg.num_tables)}
        else:
            if self.cfg.embedding_dim % self.world:
                raise ScenarioUnsupported(
                    f"column-wise over {self.world} ranks needs embedding_dim ({self.cfg.embedding_dim}) divisible "
                    "by the world size")
            gens = {f"t{f}": column_wise(ranks=list(range(self.world))) for f in range(self.cfg.num_tables)}
        mp = construct_module_sharding_plan(ebc, gens, sharder=self.sharder, local_size=self.world,
                                            world_size=self.world, device_type=self.device.type)
        return ShardingPlan({"ebc": mp})

    def _torchrec_planner_plan(self, ebc: EmbeddingBagCollection) -> ShardingPlan:
        from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology

        topo = Topology(world_size=self.world, compute_device=self.device.type,
                        local_world_size=self.world)
        net_for_plan = nn.Module()
        net_for_plan.ebc = ebc
        return EmbeddingShardingPlanner(topology=topo).collective_plan(net_for_plan, [self.sharder],
                                                                       dist.GroupMember.WORLD)

    # --- Recommender-like surface --------------------------------------------------------------
    def stage(self, batch: Batch) -> tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]:
        batch = self.mapped(batch)  # a hashed stage: the ids are hashed before the KJT is built
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=self.keys, values=torch.from_numpy(np.ascontiguousarray(batch.ids, dtype=np.int64)),
            lengths=torch.from_numpy(np.ascontiguousarray(batch.lengths.reshape(-1), dtype=np.int32)),
        )
        return (torch.from_numpy(batch.dense.astype(np.float32)).to(self.device), kjt.to(self.device),
                torch.from_numpy(batch.labels.astype(np.float32)).to(self.device))

    def train_step(self, staged: tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]) -> None:
        dense, kjt, labels = staged
        self.opt.zero_grad()
        F.binary_cross_entropy_with_logits(self.dmp(dense, kjt), labels).backward()
        self.opt.step()

    def infer(self, staged: tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return torch.sigmoid(self.dmp(staged[0], staged[1]))

    def loss(self, staged: tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]) -> float:
        with torch.no_grad():
            return float(F.binary_cross_entropy_with_logits(self.dmp(staged[0], staged[1]), staged[2]))

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def to_numpy(self, output: torch.Tensor) -> np.ndarray:
        return output.detach().float().cpu().numpy().reshape(-1)

    # --- parameters ----------------------------------------------------------------------------
    def _dense(self) -> dict[str, torch.Tensor]:
        return self.net.dense_arch.neutral_params()

    def _local_shards(self) -> list[tuple[int, list[int], torch.Tensor]]:
        """(table, [row offset, col offset], local tensor view) for every shard this rank holds."""
        out = []
        for key, value in self.dmp.state_dict().items():
            if ".embedding_bags." not in key or not hasattr(value, "local_shards"):
                continue
            table = int(key.split(".embedding_bags.t")[1].split(".")[0])
            for shard in value.local_shards():
                out.append((table, list(shard.metadata.shard_offsets), shard.tensor))
        return out

    def _load_initial(self, seed: int) -> None:
        """The seeded start, streamed: each chunk of the seeded tables (the spec's ``initial_table_chunks``)
        is copied into the part of it this rank's shards hold, so no rank holds a full copy of the tables."""
        spec = self.cfg.spec
        if self.plan is not None:  # the compressed stage's own seeded start (its tables are small)
            from recsys_impls.compression import model_state as ms

            self.set_params(ms.initial_params(self.scenario.model, self.plan, seed))
            return
        if spec.initial_table_chunks is None or spec.initial_dense is None:
            self.set_params(initial_params(self.cfg, seed))
            return
        shards: dict[int, list[tuple[int, int, torch.Tensor]]] = {}
        for table, (r0, c0), t in self._local_shards():
            shards.setdefault(table, []).append((r0, c0, t))
        with torch.no_grad():
            for f, start, values in spec.initial_table_chunks(self.cfg, seed):
                for r0, c0, t in shards.get(f, ()):
                    lo, hi = max(start, r0), min(start + len(values), r0 + t.shape[0])
                    if lo < hi:
                        part = np.ascontiguousarray(values[lo - start:hi - start, c0:c0 + t.shape[1]])
                        t[lo - r0:hi - r0].copy_(torch.from_numpy(part))
            dense = spec.initial_dense(self.cfg, seed)
            for name, t in self._dense().items():
                t.copy_(torch.from_numpy(np.asarray(dense[name], dtype=np.float32)))

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        """Copy the full numpy tables into this rank's shards and the dense weights into the replica."""
        with torch.no_grad():
            for table, (r0, c0), t in self._local_shards():
                rows, cols = t.shape
                t.copy_(torch.from_numpy(np.ascontiguousarray(params[f"emb.{table}"][r0:r0 + rows, c0:c0 + cols])))
            for name, t in self._dense().items():
                t.copy_(torch.from_numpy(np.asarray(params[name], dtype=np.float32)))

    def get_params(self) -> dict[str, np.ndarray]:
        """Full parameters on every rank (a collective: all ranks must call it). Gathered table by table, so
        the pickled shards in flight are one table's, not every table's beside the result."""
        local = self._local_shards()
        out: dict[str, np.ndarray] = {}
        for f, n in enumerate(self.cfg.table_sizes):
            mine = [(off, t.detach().cpu().numpy()) for table, off, t in local if table == f]  # pickling copies
            parts: list[Any] = [None] * self.world
            dist.all_gather_object(parts, mine)
            full = np.zeros((n, self.cfg.embedding_dim), np.float32)
            for rank_parts in parts:
                for (r0, c0), arr in rank_parts:
                    full[r0:r0 + arr.shape[0], c0:c0 + arr.shape[1]] = arr
            out[f"emb.{f}"] = full
            del parts
        for name, t in self._dense().items():
            out[name] = t.detach().cpu().numpy().copy()
        return out

    def storage_bytes(self) -> dict[str, int]:
        emb = sum(n * self.cfg.embedding_dim * 4 for n in self.cfg.table_sizes)
        dense = sum(p.numel() * p.element_size() for p in self.net.dense_arch.parameters())
        return {"model": emb + dense, "embedding": emb}

    # --- re-planning ---------------------------------------------------------------------------
    def probe_table_seconds(self, batches: list[Batch], repeats: int = 3) -> dict[int, float]:
        """Measured work of every table this rank holds whole (table-wise), per global batch: the lookup
        (sum-pooled embedding_bag), its backward and the optimizer's update of the table, timed on a copy
        of the table with the real ids of ``batches`` (median over batches and repeats). The copy keeps
        the training untouched."""
        import time

        out: dict[int, float] = {}
        lr = self.scenario.train.learning_rate
        for table, (r0, c0), t in self._local_shards():
            if r0 or c0 or t.shape[0] != self.cfg.table_sizes[table]:
                continue  # a part of a table: not a table-wise placement
            weight = t.detach().clone().requires_grad_(True)
            opt = (torch.optim.SGD([weight], lr=lr) if self.scenario.train.optimizer == "sgd"
                   else torch.optim.Adagrad([weight], lr=lr, eps=1e-10))
            times = []
            for b in map(self.mapped, batches):
                ids = torch.from_numpy(np.ascontiguousarray(b.feature_ids(table), dtype=np.int64))
                lengths = torch.from_numpy(np.ascontiguousarray(b.lengths[table], dtype=np.int64))
                offsets = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)[:-1]])
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    opt.zero_grad()
                    F.embedding_bag(ids, weight, offsets, mode="sum").sum().backward()
                    opt.step()
                    times.append(time.perf_counter() - t0)
            out[table] = float(np.median(times))
        return out

    def export_state(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Full parameters and the optimizer's per-parameter state (numpy, every rank): a collective."""
        params = self.get_params()
        mine: dict[str, np.ndarray] = {}
        for name, p in self.opt.params.items():
            if ".embedding_bags." in name and p.numel() == 0:
                continue  # a placeholder for a table another rank holds: its state is the owner's
            state = self.opt.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    mine[f"{name}|{key}"] = value.detach().cpu().numpy().copy()
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, {k: v for k, v in mine.items() if ".embedding_bags." in k})
        state = {k: v for k, v in mine.items() if ".embedding_bags." not in k}
        for p in parts:
            state.update(p)
        return params, state

    def import_state(self, params: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> None:
        """Load what ``export_state`` gave (into whatever placement this model has)."""
        self.set_params(params)
        with torch.no_grad():
            for name, p in self.opt.params.items():
                for key, value in self.opt.state.get(p, {}).items():
                    saved = state.get(f"{name}|{key}")
                    fits = isinstance(value, torch.Tensor) and saved is not None and saved.shape == tuple(value.shape)
                    if fits:
                        value.copy_(torch.from_numpy(saved))

    # --- figures for the record ----------------------------------------------------------------
    def local_bytes(self) -> int:
        return int(sum(t.numel() * t.element_size() for _, _, t in self._local_shards()))

    def plan_report(self) -> dict[str, Any]:
        """Our planner's expected per-rank load next to what TorchRec actually placed (measured shard bytes)."""
        placed: list[Any] = [None] * self.world
        mine = [(table, off, list(t.shape)) for table, off, t in self._local_shards()]
        dist.all_gather_object(placed, (self.local_bytes(), mine))
        report = dict(self.our_plan)
        report["executed_by"] = "torchrec DistributedModelParallel"
        report["placement_source"] = ("TorchRec EmbeddingShardingPlanner" if self.sharding == "auto"
                                      else f"recsys planner ({self.sharding})")
        measured = np.array([b for b, _ in placed], dtype=np.float64)
        report["measured_bytes_per_rank"] = [int(b) for b in measured]
        report["measured_bytes_imbalance"] = float(measured.max() / measured.mean()) if measured.mean() else 1.0
        report["shards_per_rank"] = [[{"table": t, "offsets": o, "shape": s} for t, o, s in m] for _, m in placed]
        if self.plan is not None:
            report["id_mapping"] = (f"{self.plan.spec}: tables of {list(self.cfg.table_sizes)} rows; ids mapped on the "
                                    "host before the KeyedJaggedTensor is built (outside the timed step)")
        return report

    def comm_sizes(self, staged: tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]) -> dict[str, float]:
        """Measured sizes of one step's communicated tensors: dense grads, pooled vectors, ids."""
        dense, kjt, _ = staged
        b = dense.shape[0]
        dense_bytes = sum(p.numel() * p.element_size() for p in self.net.dense_arch.parameters())
        pooled = self.cfg.num_tables * self.cfg.embedding_dim * 4  # fp32 pooled vector per table per sample
        ids = (kjt.values().numel() * kjt.values().element_size() + kjt.lengths().numel() * 4) / b
        return {"dense_grad_bytes": float(dense_bytes), "pooled_bytes_per_sample": float(pooled),
                "id_bytes_per_sample": float(ids), "embeddings_replicated": False}
