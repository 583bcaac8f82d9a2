"""Data parallel PyTorch DLRM: the single-process TorchDLRM, its module wrapped in DistributedDataParallel.

Each rank builds the same seeded model, so replicas start identical; DDP averages gradients (dense
ones in buckets, the embedding tables' sparse ones one by one), so they stay identical. Communication
hooks (fp16, bf16, PowerSGD) compress the dense buckets only: gloo cannot add fp16 sparse tensors and
PowerSGD has no sparse path, so sparse buckets fall through to the default all-reduce.

Uneven shares (``--balance adaptive``) and stragglers: each rank's mean loss is scaled by
``world x b_r / B`` (``parallel.balance.loss_weight``), so DDP's mean of the ranks' gradients is the
mean over the whole global batch, exactly as one process would take it. With ``timed=True`` every
bucket goes through a hook that notes when it was handed to the all-reduce: the rank's own compute of a
step is its start to the last bucket's hand-over, plus the optimizer step, without the time it waited
for the others (what the straggler sleep and the balancer use).

Compressed models (``--compression``): ``DDPCompressedTorchDLRM`` is the single-process
CompressedTorchDLRM over this class, so each rank builds the same compressed embedding stage (no fp32
table first) and DDP averages the gradients of its stored groups: the fp32 stores' rows sparsely (hash,
QR, mixed-dim and TT-Rec cores are all gathered with sparse=True), projections densely. The
post-training steps (fp16/bf16/int8/int4 tables, freq-prune, MLP pruning and int8) then compress the
same float32 master weights on every rank; freq-prune's id counts are summed over the ranks first, so
they are the global batches' counts, as one process would have them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from recsys_impls.config import Scenario
from recsys_impls.data.batch import Batch
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.torch_impl.compress_model import CompressedTorchDLRM
from recsys_impls.torch_impl.model import StagedBatch, TorchDLRM
from recsys_impls.torch_impl.optim import backward_and_step


def _allreduce_mean(bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    t = bucket.buffer()
    t.div_(dist.get_world_size())
    return dist.all_reduce(t, async_op=True).get_future().then(lambda f: f.value()[0])


def _dense_only(hook: Any, state: Any) -> Any:
    """Apply ``hook`` to dense buckets; sparse buckets (embedding gradients) get the plain mean all-reduce."""

    # No annotations here: DDP compares them with the real classes, and under ``from __future__ import
    # annotations`` they are strings, which register_comm_hook rejects ("bucket annotation should be
    # dist.GradBucket").
    def dispatch(st, bucket):  # noqa: ANN001, ANN202
        if bucket.buffer().is_sparse:
            return _allreduce_mean(bucket)
        return hook(st, bucket)

    return dispatch, state


def _plain_mean(state, bucket):  # noqa: ANN001, ANN202 - see _dense_only on annotations
    return _allreduce_mean(bucket)


def _timed(hook: Any, state: Any, owner: DDPTorchDLRM) -> tuple[Any, Any]:
    """Wrap a hook so the model knows when the last bucket of a step was handed over."""

    def dispatch(st, bucket):  # noqa: ANN001, ANN202
        owner.last_ready = time.perf_counter()
        return hook(st, bucket)

    return dispatch, state


def comm_hook(name: str, device: str) -> tuple[Any, Any] | None:
    """(hook, state) for a hook name, or None for DDP's default all-reduce."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    if name == "none":
        return None
    if name == "fp16":
        return _dense_only(default_hooks.fp16_compress_hook, None)
    if name == "bf16":
        if not device.startswith("cuda"):
            raise ScenarioUnsupported("ddp bf16 compression hook needs NCCL (GPU); gloo on CPU has no bf16 path")
        return _dense_only(default_hooks.bf16_compress_hook, None)
    if name == "powersgd":
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=2,
                                            start_powerSGD_iter=2, use_error_feedback=True, warm_start=True)
        return _dense_only(powerSGD_hook.powerSGD_hook, state)
    raise ScenarioUnsupported(f"ddp hook {name!r}: accepted none, fp16, bf16, powersgd")


class DDPTorchDLRM(TorchDLRM):
    """TorchDLRM whose forward and backward go through DistributedDataParallel."""

    def __init__(self, scenario: Scenario, hook: str = "none", timed: bool = False,
                 straggler_factor: float | None = None) -> None:
        super().__init__(replace(scenario, parallel="none", straggler="none", balance="static"))
        self.hook = hook
        self.loss_weight = 1.0
        self.last_ready: float | None = None
        self.busy_s: list[float] = []  # per step: own compute (+ straggler sleep), when timed
        self.straggler = None
        if straggler_factor is not None:
            from recsys_impls.parallel.faults import Straggler

            self.straggler = Straggler(straggler_factor)
            timed = True
        self.timed = timed
        # One large bucket: PowerSGD on gloo needs every dense gradient in a single bucket.
        self.ddp = DDP(self.net, device_ids=None if self.device.type == "cpu" else [self.device],
                       bucket_cap_mb=1024 if hook == "powersgd" else 25, broadcast_buffers=False)
        registered = comm_hook(hook, str(self.device))
        if timed:
            registered = _timed(*(registered or (_plain_mean, None)), self)
        if registered is not None:
            fn, state = registered
            self.ddp.register_comm_hook(state, fn)

    def _logits(self, staged: StagedBatch) -> torch.Tensor:
        with self.settings.autocast():
            return self.ddp(staged.dense, staged.sparse).float()

    def train_step(self, staged: StagedBatch) -> None:
        """TorchDLRM's step with the share weight on the loss and, when timed, the rank's own compute noted."""
        import torch.nn.functional as F

        if self.straggler is not None:
            self.straggler.before_step()
        t0 = time.perf_counter()
        self.last_ready = None
        with self.settings.math_mode():
            for p in self._params:
                p.grad = None
            loss = F.binary_cross_entropy_with_logits(self._logits(staged), staged.labels)
            if self.loss_weight != 1.0:
                loss = loss * self.loss_weight
            t_bwd = backward_and_step(loss, self._opts, self._scaler)
        if not self.timed:
            return
        self.synchronize()
        t1 = time.perf_counter()
        ready = self.last_ready if self.last_ready is not None else t_bwd
        compute = (ready - t0) + (t1 - t_bwd)
        slept = self.straggler.after_step(compute) if self.straggler is not None else 0.0
        self.busy_s.append(compute + slept)

    def slice_staged(self, staged: StagedBatch, start: int, stop: int) -> StagedBatch | None:
        """Samples [start, stop) of an already staged batch as views (no re-staging), for the fused tables'
        sample-major layout; None for other embedding layouts (the caller stages the Batch slice)."""
        from recsys_impls.torch_impl.embeddings import SparseInput

        sp = staged.sparse
        if not isinstance(sp, SparseInput):
            return None
        f = sp.offsets.numel() // max(staged.batch_size, 1)
        off = sp.offsets[start * f: stop * f + 1]
        first = int(off[0])
        return StagedBatch(dense=staged.dense[start:stop], labels=staged.labels[start:stop], batch_size=stop - start,
                           sparse=SparseInput(ids=sp.ids[first:int(off[-1])], offsets=off - first,
                                              batch_size=stop - start))

    def infer(self, staged: StagedBatch) -> torch.Tensor:
        # Inference needs no gradient sync: use the local replica directly.
        with self.settings.math_mode(), torch.no_grad(), self.settings.autocast():
            return torch.sigmoid(self.net(staged.dense, staged.sparse).float())

    def loss(self, staged: StagedBatch) -> float:
        import torch.nn.functional as F

        with torch.no_grad(), self.settings.autocast():
            return float(F.binary_cross_entropy_with_logits(self.net(staged.dense, staged.sparse).float(),
                                                            staged.labels))

    def comm_sizes(self, batch: Batch) -> dict[str, float]:
        """Per-step gradient sizes, from the parameters and one local batch (no extra backward pass: a
        backward outside DDP's forward would fire its reducer hooks and corrupt the next step).

        Dense: every non-table parameter. Sparse: one coalesced row (its width in floats + an int64
        index) per distinct row the batch touches in each table, which is what DDP all-gathers."""
        sparse_ids = {id(p) for p in self.net.embeddings.sparse_parameters()}
        dense = sum(p.numel() * p.element_size() for p in self.net.parameters() if id(p) not in sparse_ids)
        sparse = sum(rows * (width * 4 + 8) for rows, width in self._touched_rows(batch))
        return {"dense_grad_bytes": float(dense), "sparse_grad_bytes_per_sample": sparse / batch.batch_size,
                "embeddings_replicated": True}

    def _touched_rows(self, batch: Batch) -> list[tuple[int, int]]:
        """(distinct rows touched, row width) per table of the embedding stage for ``batch``."""
        d = self.model_config.embedding_dim
        return [(np.unique(batch.feature_ids(f)).size, d) for f in range(batch.num_features)]


class DDPCompressedTorchDLRM(CompressedTorchDLRM, DDPTorchDLRM):
    """The compressed model (CompressedTorchDLRM) trained data parallel (DDPTorchDLRM's step and DDP wrap)."""

    def id_counts(self) -> dict[int, np.ndarray]:
        """The id counts of every rank's slices summed (a collective: every rank finalizes at the same
        points, i.e. at evaluation), so freq-prune keeps the rows one process would keep."""
        if self.net.embeddings.layout.needs_id_counts:
            total = self._counts.clone()
            dist.all_reduce(total)
            return self._split_counts(total)
        return super().id_counts()

    def _touched_rows(self, batch: Batch) -> list[tuple[int, int]]:
        """Rows of every table group (training form), after the layout's id steps."""
        from recsys_impls.compression.layouts import apply_index

        emb = self.net.embeddings
        out = []
        for f in range(batch.num_features):
            ids = batch.feature_ids(f)
            tables = [g for g in emb.groups[f] if g.table]
            for g in tables:
                out.append((np.unique(apply_index(ids, g.index)).size, g.shape[1]))
        return out


def build(scenario: Scenario, **kwargs: Any) -> DDPTorchDLRM:
    """The data-parallel model of ``scenario``: compressed when its ``compression`` asks for it."""
    cls = DDPCompressedTorchDLRM if scenario.compression not in ("", "none") else DDPTorchDLRM
    return cls(scenario, **kwargs)
