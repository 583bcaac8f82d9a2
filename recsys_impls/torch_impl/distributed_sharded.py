"""Model-parallel PyTorch DLRM: tables in a TorchRec EmbeddingBagCollection sharded by
DistributedModelParallel (table-wise, row-wise, column-wise, or TorchRec's own planner for ``auto``);
the dense arch is the single-process TorchDLRM's (data parallel under DMP).

Parameters import from / export to the shared numpy dict (names per base.py), so the sharded model's
predictions can be checked against the unsharded TorchDLRM for the same weights. Table-wise placement
comes from our LPT planner (recsys_impls.parallel.planner) and is handed to TorchRec as an explicit
per-table plan. On CPU the stock sharder offers no row-wise sharding; ``CPUShardingSharder`` adds it.
Embedding tables train with TorchRec's fused optimizer (applied in backward: only the looked-up rows
change, no gradient is kept); a table whose shard width FBGEMM does not take (not a multiple of 4, e.g.
mixed-dim's narrow ones) gets TorchRec's dense kernel and trains with the dense arch's keyed PyTorch
optimizer.

Compression: a layout whose table groups are plain tables looked up by mapped ids and whose combine
commutes with sum pooling is sharded as one TorchRec table per table group, with the ids mapped on the
host before the KeyedJaggedTensor is built (one KJT feature per group), and the combine applied to the
pooled rows: ``hash`` (one table of ceil(FRACTION x rows) buckets), ``qr:add`` (quotient and remainder
tables looked up by id // C and id % C; pooled(q) + pooled(r) is the pooled sum of q + r rows) and
``mixed-dim`` (tables of the per-feature widths; the projection to D, a dense parameter replicated and
averaged like the MLPs, applies to the pooled row). Other layouts are refused
(compression.spec.sharding_refusal).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
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
from recsys_impls.parallel.shards import (
    assemble_block,
    block_pieces,
    combine_digests,
    param_digest,
    row_blocks,
    update_digest,
)
from recsys_impls.torch_impl.model import build_dense_arch

FINGERPRINT_BLOCK_BYTES = 64 << 20  # a split table travels to its hasher in row blocks of about this size


@dataclass(frozen=True)
class ShardedTable:
    """One TorchRec table: the neutral parameter it holds, the feature whose ids it reads, its shape, and
    the steps mapping that feature's raw ids to its rows (compression.layouts; () = the ids themselves)."""

    name: str
    feature: int
    rows: int
    dim: int
    steps: tuple[Any, ...]


class CPUShardingSharder(EmbeddingBagCollectionSharder):
    """The stock sharder, plus row-wise and table-row-wise on CPU (TorchRec lists them for CUDA only)."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        types = list(super().sharding_types(compute_device_type))
        for extra in (ShardingType.ROW_WISE.value, ShardingType.TABLE_ROW_WISE.value):
            if extra not in types:
                types.append(extra)
        return types


class TorchRecDLRMNet(nn.Module):
    """DLRM with a TorchRec EmbeddingBagCollection in front of our dense arch. ``features[f]`` lists the
    KJT keys of feature f's table groups and ``combines[f]`` how their pooled rows become one D-wide row
    ("identity", "add", or "project" by the dense parameter ``proj[str(f)]``)."""

    def __init__(self, ebc: EmbeddingBagCollection, dense_arch: nn.Module, features: list[list[str]],
                 combines: list[str], projections: dict[int, np.ndarray]) -> None:
        super().__init__()
        self.features, self.combines = features, combines
        self.ebc = ebc
        self.dense_arch = dense_arch
        self.proj = nn.ParameterDict({str(f): nn.Parameter(torch.from_numpy(np.asarray(w, np.float32)))
                                      for f, w in projections.items()})

    def forward(self, dense: torch.Tensor, kjt: KeyedJaggedTensor) -> torch.Tensor:
        kt = self.ebc(kjt)
        # A sharded collection returns keys grouped by shard, not in table order: regroup by name.
        per_key = kt.to_dict()
        rows = []
        for f, (keys, op) in enumerate(zip(self.features, self.combines, strict=True)):
            if op == "identity":
                rows.append(per_key[keys[0]])
            elif op == "add":  # sum pooling commutes with the row-wise sum of the groups
                rows.append(per_key[keys[0]] + per_key[keys[1]])
            else:  # "project": linear, so the pooled row is projected
                rows.append(per_key[keys[0]] @ self.proj[str(f)])
        return self.dense_arch(dense, torch.stack(rows, dim=1))


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
        self.plan, self.tables, combines = self._id_mapping(scenario)
        self.rank, self.world = rank, world
        self.device = torch.device(scenario.device.device)
        self.keys = [f"f{k}" for k in range(len(self.tables))]
        ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=f"t{k}", embedding_dim=t.dim, num_embeddings=t.rows,
                                       feature_names=[self.keys[k]]) for k, t in enumerate(self.tables)],
            device=torch.device("meta"),
        )
        dense_arch = build_dense_arch(scenario.model)  # the tables are TorchRec's: no local embedding stage
        features = [[self.keys[k] for k, t in enumerate(self.tables) if t.feature == f]
                    for f in range(self.cfg.num_tables)]
        self.proj_shapes = {f: shape for f, shape in combines.items() if shape is not None}
        net = TorchRecDLRMNet(ebc, dense_arch, features,
                              [("project" if combines.get(f) else "add" if len(features[f]) == 2 else "identity")
                               for f in range(self.cfg.num_tables)],
                              {f: np.zeros(shape, np.float32) for f, shape in self.proj_shapes.items()})
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

    def _id_mapping(self, scenario: Scenario) -> tuple[Any, list[ShardedTable], dict[int, tuple[int, int] | None]]:
        """(compression plan or None, the TorchRec tables, feature -> its projection's shape where it has
        one). Plain: one table per feature, named ``emb.{f}``. A compressed stage: one table per table group
        of its layout (the one-process model's parameter names, rows and widths), looked up by the group's
        mapped ids; planning, shards and sizes are those tables'."""
        cfg = self.cfg
        if scenario.compression in ("", "none"):
            return None, [ShardedTable(f"emb.{f}", f, n, cfg.embedding_dim, ())
                          for f, n in enumerate(cfg.table_sizes)], {}
        from recsys_impls.compression.layouts import plan_layout
        from recsys_impls.compression.spec import parse_compression, sharding_refusal

        why = sharding_refusal(scenario.compression, "torch")
        if why:
            raise ScenarioUnsupported(f"sharded + compression {scenario.compression}: {why}")
        plan = parse_compression(scenario.compression)
        layout = plan_layout(plan)
        tables, combines = [], {}
        for f in range(cfg.num_tables):
            groups = layout.groups(cfg, plan, f)
            op = layout.combine(cfg, plan, f).op
            assert op in ("identity", "add", "project"), f"{plan.spec}: combine {op} does not commute with pooling"
            steps = layout.index(cfg, plan, f, stored=False)
            tables += [ShardedTable(g.name(f), f, g.shape[0], g.shape[1], s)
                       for g, s in zip([g for g in groups if g.table], steps, strict=True)]
            dense = [g for g in groups if not g.table]
            combines[f] = dense[0].shape if op == "project" else None
        return plan, tables, combines

    def mapped(self, batch: Batch) -> Batch:
        """``batch`` as the TorchRec tables read it: one feature per table, the ids of its source feature
        mapped to the table's rows (a compressed stage); a plain stage's batch as it is."""
        if self.plan is None:
            return batch
        from recsys_impls.compression.layouts import apply_index

        off = batch.feature_offsets()
        ids = [apply_index(batch.ids[off[t.feature]:off[t.feature + 1]], t.steps) for t in self.tables]
        return replace(batch, ids=np.concatenate(ids).astype(np.int64) if ids else batch.ids,
                       lengths=np.ascontiguousarray(batch.lengths[[t.feature for t in self.tables]]))

    # --- planning ------------------------------------------------------------------------------
    def _our_plan(self, sharding: str, sample: Batch | None, table_ranks: list[int] | None = None) -> dict[str, Any]:
        """Our plan, from measured id frequencies when a sample of the training data is given."""
        t = self.scenario.train
        rows = [tb.rows for tb in self.tables]
        per_sample, counts = ((None, None) if sample is None else planner.measured_ids(self.mapped(sample), rows))
        loads = [planner.table_loads([tb.rows], tb.dim, t.batch_size, self.cfg.ids_per_feature,
                                     ids_per_sample=None if per_sample is None else per_sample[k:k + 1])[0]
                 for k, tb in enumerate(self.tables)]
        return planner.plan(loads, self.world, "table-wise" if sharding == "auto" else sharding, id_counts=counts,
                            assignment=table_ranks if sharding == "table-wise" else None)

    def _module_plan(self, ebc: EmbeddingBagCollection, sharding: str) -> ShardingPlan | None:
        if sharding == "auto":
            return self._torchrec_planner_plan(ebc)
        kernels = self.compute_kernels(sharding)
        if sharding == "table-wise":
            gens = {f"t{f}": table_wise(rank=r, compute_kernel=kernels[f])
                    for f, r in enumerate(self.our_plan["assignment"])}
        elif sharding == "row-wise":
            gens = {f"t{k}": row_wise(compute_kernel=kernels[k]) for k in range(len(self.tables))}
        else:
            bad = sorted({t.dim for t in self.tables if t.dim % self.world})
            if bad:
                raise ScenarioUnsupported(
                    f"column-wise over {self.world} ranks needs every table width ({', '.join(map(str, bad))}) "
                    "divisible by the world size")
            gens = {f"t{k}": column_wise(ranks=list(range(self.world)), compute_kernel=kernels[k])
                    for k in range(len(self.tables))}
        mp = construct_module_sharding_plan(ebc, gens, sharder=self.sharder, local_size=self.world,
                                            world_size=self.world, device_type=self.device.type)
        return ShardingPlan({"ebc": mp})

    def compute_kernels(self, sharding: str) -> list[str]:
        """TorchRec's kernel for each table of an explicit plan: FUSED (the looked-up rows updated in
        backward by the fused optimizer) where FBGEMM takes the shard's width (a multiple of 4), else
        DENSE, which keeps a table-sized gradient and updates every row with the dense optimizer. Left to
        choose, TorchRec gives DENSE to every table without an in-backward optimizer."""
        parts = self.world if sharding == "column-wise" else 1
        return [EmbeddingComputeKernel.FUSED.value if (t.dim // parts) % 4 == 0 else EmbeddingComputeKernel.DENSE.value
                for t in self.tables]

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
        batch = self.mapped(batch)  # a compressed stage: the ids are mapped before the KJT is built
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
        """The replicated parameters by neutral name: the MLPs and any mixed-dim projections."""
        out = self.net.dense_arch.neutral_params()
        out.update({f"emb.{f}.proj": p for f, p in self.net.proj.items()})
        return out

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
                full = params[self.tables[table].name]
                t.copy_(torch.from_numpy(np.ascontiguousarray(full[r0:r0 + rows, c0:c0 + cols])))
            for name, t in self._dense().items():
                t.copy_(torch.from_numpy(np.asarray(params[name], dtype=np.float32)))

    def get_params(self) -> dict[str, np.ndarray]:
        """Full parameters on every rank (a collective: all ranks must call it). Gathered table by table, so
        the pickled shards in flight are one table's, not every table's beside the result."""
        params = self._gathered(None)
        assert params is not None
        return params

    def gather_params(self, dst: int = 0) -> dict[str, np.ndarray] | None:
        """Full parameters on rank ``dst`` only, None on the others (a collective): what a dump needs,
        without every rank holding a copy of every table."""
        return self._gathered(dst)

    def _gathered(self, dst: int | None) -> dict[str, np.ndarray] | None:
        """The full parameters on ``dst`` (None: on every rank), table by table."""
        local = self._local_shards()
        here = dst is None or dst == self.rank
        out: dict[str, np.ndarray] = {}
        for k, tb in enumerate(self.tables):
            mine = [(off, t.detach().cpu().numpy()) for table, off, t in local if table == k]  # pickling copies
            parts: list[Any] | None = [None] * self.world if here else None
            if dst is None:
                dist.all_gather_object(parts, mine)
            else:
                dist.gather_object(mine, parts, dst=dst)
            if parts is not None:
                out[tb.name] = assemble_block([(r0, c0, a) for p in parts for (r0, c0), a in p], 0, tb.rows,
                                              tb.dim)
            del parts
        if not here:
            return None
        for name, t in self._dense().items():
            out[name] = t.detach().cpu().numpy().copy()
        return out

    def fingerprint(self, block_bytes: int = FINGERPRINT_BLOCK_BYTES) -> str:
        """``shards.fingerprint`` of the full parameters (a collective), with no rank gathering them: each
        table is hashed by one rank, where it lies whole, or streamed to its first holder in row blocks of
        about ``block_bytes``; the table digests are shared and each rank adds its own dense replica's. So the
        ranks' values agree exactly when their dense replicas are identical, and each equals the fingerprint
        of the full parameter dict (``get_params``)."""
        digests = self._table_digests(block_bytes)
        digests.update({name: param_digest(t.detach().cpu().numpy()).hexdigest()
                        for name, t in self._dense().items()})
        return combine_digests(digests)

    def _shard_layout(self) -> list[list[tuple[int, int, int, int, int]]]:
        """Per table, (rank, row offset, column offset, rows, columns) of its shards on every rank (a collective)."""
        mine = [(table, r0, c0, *t.shape) for table, (r0, c0), t in self._local_shards()]
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, mine)
        out: list[list[tuple[int, int, int, int, int]]] = [[] for _ in self.tables]
        for rank, part in enumerate(parts):
            for table, r0, c0, rows, cols in part:
                out[table].append((rank, r0, c0, rows, cols))
        return out

    def _table_digests(self, block_bytes: int) -> dict[str, str]:
        """Every table's sha256 of its rows in order (a collective), hashed where it lies whole or streamed
        to one rank block by block (``shards.row_blocks``)."""
        layout = self._shard_layout()
        local = self._local_shards()
        mine: dict[str, str] = {}
        for k, tb in enumerate(self.tables):
            whole = [s[0] for s in layout[k] if s[1:] == (0, 0, tb.rows, tb.dim)]
            hasher = whole[0] if whole else min((s[0] for s in layout[k]), default=0)
            shards = [(r0, c0, t) for table, (r0, c0), t in local if table == k]
            h = hashlib.sha256() if self.rank == hasher else None
            for a, b in row_blocks(tb.rows, tb.dim, block_bytes):
                if whole and h is None:
                    continue  # another rank holds the table whole and hashes it: nothing travels
                pieces = [(r0, c0, t.detach().cpu().numpy()) for r0, c0, t in block_pieces(shards, a, b)]
                if whole:  # the rows as they lie (a view), unless the rank holds the table in pieces
                    one = len(pieces) == 1 and pieces[0][1] == 0 and pieces[0][2].shape[1] == tb.dim
                    update_digest(h, pieces[0][2] if one else assemble_block(pieces, a, b, tb.dim))
                    continue
                got: list[Any] | None = [None] * self.world if h is not None else None
                dist.gather_object(pieces, got, dst=hasher)
                if h is not None and got is not None:
                    update_digest(h, assemble_block([p for part in got for p in part], a, b, tb.dim))
            if h is not None:
                mine[tb.name] = h.hexdigest()
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, mine)
        return {name: digest for part in parts for name, digest in part.items()}

    def storage_bytes(self) -> dict[str, int]:
        """Plain: the fp32 tables and MLPs. A compressed stage: the serialized bytes of its stored form, as
        the one-process and data parallel runs of the same plan record them (they depend on shapes only)."""
        if self.plan is not None:
            from recsys_impls.compression import model_state as ms

            shapes = ms.param_shapes(self.scenario.model, self.plan)
            zeros = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
            return ms.split_bytes(ms.finalize(self.scenario.model, self.plan, zeros))
        emb = sum(t.rows * t.dim * 4 for t in self.tables)
        dense = sum(p.numel() * p.element_size() for p in self.net.dense_arch.parameters())
        return {"model": emb + dense, "embedding": emb}

    # --- re-planning ---------------------------------------------------------------------------
    def probe_table_seconds(self, batches: list[Batch], repeats: int = 3) -> dict[int, float]:
        """Measured work of every table this rank holds whole (table-wise), per global batch: the lookup
        (sum-pooled embedding_bag), its backward and the optimizer's update of the looked-up rows (a sparse
        gradient, as the fused kernel that trains the table has no table-sized one), timed on the table
        itself with the real ids of ``batches`` (median over batches and repeats). The rows the probe
        updates are saved first and put back after it, so training is untouched and no copy of the table
        is made."""
        out: dict[int, float] = {}
        for table, (r0, c0), t in self._local_shards():
            if r0 or c0 or t.shape[0] != self.tables[table].rows:
                continue  # a part of a table: not a table-wise placement
            bags = [self._probe_bag(b, table) for b in map(self.mapped, batches)]
            touched = torch.unique(torch.cat([ids for ids, _ in bags])).to(t.device)
            with torch.no_grad():
                saved = t[touched].clone()
                out[table] = self._timed_updates(t.detach().requires_grad_(True), bags, repeats)
                t[touched] = saved
        return out

    @staticmethod
    def _probe_bag(batch: Batch, table: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, bag offsets) of one table in a (mapped) batch."""
        ids = torch.from_numpy(np.ascontiguousarray(batch.feature_ids(table), dtype=np.int64))
        lengths = torch.from_numpy(np.ascontiguousarray(batch.lengths[table], dtype=np.int64))
        return ids, torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)[:-1]])

    def _timed_updates(self, weight: torch.Tensor, bags: list[tuple[torch.Tensor, torch.Tensor]],
                       repeats: int) -> float:
        """Median seconds of lookup + backward + optimizer step on ``weight`` (updated in place)."""
        import time

        lr = self.scenario.train.learning_rate
        opt = (torch.optim.SGD([weight], lr=lr) if self.scenario.train.optimizer == "sgd"
               else torch.optim.Adagrad([weight], lr=lr, eps=1e-10))
        times = []
        with torch.enable_grad():
            for ids, offsets in bags:
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    opt.zero_grad()
                    F.embedding_bag(ids, weight, offsets, mode="sum", sparse=True).sum().backward()
                    opt.step()
                    times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def export_state(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Full parameters and the optimizer's per-parameter state (numpy, every rank): a collective. The
        tables' state (the fused optimizer's, sharded like the tables) is gathered whole."""
        params = self.get_params()
        state: dict[str, np.ndarray] = {}
        tables: dict[str, tuple[tuple[int, ...], list[tuple[list[int], np.ndarray]]]] = {}
        for name, p in self.opt.params.items():
            for key, value in self.opt.state.get(p, {}).items():
                if isinstance(value, ShardedTensor):
                    tables[f"{name}|{key}"] = (tuple(value.size()), [
                        (list(sh.metadata.shard_offsets), sh.tensor.detach().cpu().numpy())
                        for sh in value.local_shards()])
                elif not isinstance(value, torch.Tensor):
                    continue
                elif ".embedding_bags." not in name:
                    state[f"{name}|{key}"] = value.detach().cpu().numpy().copy()
                elif p.numel():  # a whole table's state on its owner (other ranks hold an empty placeholder)
                    tables[f"{name}|{key}"] = (tuple(value.shape), [([0] * value.dim(), value.detach().cpu().numpy())])
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, tables)
        for part in parts:
            for key, (shape, pieces) in part.items():
                full = state.setdefault(key, np.zeros(shape, pieces[0][1].dtype if pieces else np.float32))
                for off, arr in pieces:
                    full[tuple(slice(o, o + n) for o, n in zip(off, arr.shape, strict=True))] = arr
        return params, state

    def import_state(self, params: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> None:
        """Load what ``export_state`` gave (into whatever placement this model has)."""
        self.set_params(params)
        with torch.no_grad():
            for name, p in self.opt.params.items():
                for key, value in self.opt.state.get(p, {}).items():
                    saved = state.get(f"{name}|{key}")
                    if not isinstance(value, torch.Tensor) or saved is None or saved.shape != tuple(value.size()):
                        continue
                    if isinstance(value, ShardedTensor):
                        for sh in value.local_shards():
                            off = sh.metadata.shard_offsets
                            part = saved[tuple(slice(o, o + n) for o, n in zip(off, sh.tensor.shape, strict=True))]
                            sh.tensor.copy_(torch.from_numpy(np.ascontiguousarray(part)))
                    else:
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
        if self.sharding != "auto":
            report["compute_kernels"] = self.compute_kernels(self.sharding)
        report["placement_source"] = ("TorchRec EmbeddingShardingPlanner" if self.sharding == "auto"
                                      else f"recsys planner ({self.sharding})")
        measured = np.array([b for b, _ in placed], dtype=np.float64)
        report["measured_bytes_per_rank"] = [int(b) for b in measured]
        report["measured_bytes_imbalance"] = float(measured.max() / measured.mean()) if measured.mean() else 1.0
        report["shards_per_rank"] = [[{"table": t, "offsets": o, "shape": s} for t, o, s in m] for _, m in placed]
        if self.plan is not None:
            shapes = ", ".join(f"{t.name} [{t.rows}, {t.dim}]" for t in self.tables)
            report["id_mapping"] = (f"{self.plan.spec}: TorchRec tables {shapes}; ids mapped on the host before the "
                                    "KeyedJaggedTensor is built (outside the timed step)")
        return report

    def comm_sizes(self, staged: tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]) -> dict[str, float]:
        """Measured sizes of one step's communicated tensors: dense grads, pooled vectors, ids."""
        dense, kjt, _ = staged
        b = dense.shape[0]
        dense_bytes = sum(p.numel() * p.element_size() for p in self.net.dense_arch.parameters())
        pooled = sum(t.dim for t in self.tables) * 4  # fp32 pooled vector per table per sample
        ids = (kjt.values().numel() * kjt.values().element_size() + kjt.lengths().numel() * 4) / b
        return {"dense_grad_bytes": float(dense_bytes), "pooled_bytes_per_sample": float(pooled),
                "id_bytes_per_sample": float(ids), "embeddings_replicated": False}
