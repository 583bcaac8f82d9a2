"""TFDLRM under MultiWorkerMirroredStrategy: the single-process model, its step run per replica with
gradients averaged across workers by the strategy's collectives.

Uneven shares and stragglers (``timed=True``): the loss is scaled by a local weight variable
(``world x share / batch``, so the all-reduce's mean is the global batch's mean gradient), and the step
graph takes two ``tf.timestamp`` readings, one before anything else and one when the gradients are
ready, before the all-reduce may start (control dependencies): the difference is the worker's own
compute, without its wait for the others.

Compressed models (``--compression``): ``MWMSCompressedTFDLRM`` is the single-process CompressedTFDLRM
over this class, so each worker builds the same compressed embedding stage and its variables' gradients
(IndexedSlices for the gathered stores, dense for projections) are averaged like the plain model's. The
post-training steps then compress the same float32 master weights on every worker; freq-prune's id
counts are summed over the workers first (the global batches' counts, as one process has them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.config import Scenario
from recsys_impls.tf_impl.compress_model import CompressedTFDLRM
from recsys_impls.tf_impl.model import TFDLRM, Staged


def load_data(scenario: Scenario) -> tuple[Scenario, Any]:
    from recsys_impls.parallel.shards import prepare_data

    return prepare_data(scenario)


class Collectives:
    """Host-side collectives over the strategy's workers: the result gathers, the fingerprints, the barrier."""

    def __init__(self, strategy: tf.distribute.Strategy, device: str) -> None:
        self.strategy, self.device = strategy, device
        self.sum = tf.function(self._sum)

    def _sum(self, x: tf.Tensor) -> Any:
        def fn(t: tf.Tensor) -> tf.Tensor:
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(t))

        return self.strategy.run(fn, args=(x,))

    def gather_numpy(self, array: np.ndarray) -> np.ndarray:
        """Concatenate every worker's rows in worker order (a collective; equal shapes on every worker).

        Each worker places its rows in its own slot of a zero array and the slots are summed."""
        world = self.strategy.num_replicas_in_sync
        index = self.strategy.cluster_resolver.task_id if self.strategy.cluster_resolver else 0
        slots = np.zeros((world, *array.shape), dtype=np.float32)
        slots[index] = array
        with tf.device(self.device):
            out = self.sum(tf.constant(slots))
        summed = np.asarray(self.strategy.experimental_local_results(out)[0])
        return summed.reshape(world * array.shape[0], *array.shape[1:]).astype(array.dtype)

    def gather_strings(self, text: str) -> list[str]:
        """Every worker's string, via a byte all-gather (fixed width hex digests)."""
        codes = np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int32)[None, :]
        rows = self.gather_numpy(codes)
        return [bytes(r.astype(np.uint8)).decode() for r in rows]

    def barrier(self) -> None:
        self.gather_numpy(np.zeros((1,), np.float32))


class MWMSTFDLRM(TFDLRM):
    """TFDLRM whose training step all-reduces gradients (mean) across MultiWorkerMirroredStrategy workers."""

    def __init__(self, scenario: Scenario, embedding_layout: str = "", *, strategy: tf.distribute.Strategy,
                 timed: bool = False, straggler_factor: float | None = None) -> None:
        self.strategy = strategy
        self.timed = timed or straggler_factor is not None
        self._ready: Any = None
        super().__init__(replace(scenario, parallel="none", straggler="none", balance="static"), embedding_layout)
        self._weight = tf.Variable(1.0, trainable=False, name="share_weight")  # local to this worker
        self.busy_s: list[float] = []
        self.straggler = None
        if straggler_factor is not None:
            from recsys_impls.parallel.faults import Straggler

            self.straggler = Straggler(straggler_factor)
        cfg = self.model_config
        spec = (
            tf.TensorSpec([None, cfg.num_dense], tf.float32), tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([cfg.num_tables, None], tf.int32), tf.TensorSpec([None], tf.float32),
        )
        self._dist_train = tf.function(self._distributed_step, input_signature=spec)
        self.collectives = Collectives(strategy, self.runtime.device)

    @property
    def loss_weight(self) -> float:
        return float(self._weight.numpy())

    @loss_weight.setter
    def loss_weight(self, value: float) -> None:
        self._weight.assign(value)

    def compute_loss(self, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:  # type: ignore[override]
        loss = TFDLRM.compute_loss(labels, logits)
        return loss * self._weight if self.timed else loss

    def apply_gradients(self, grads: list, variables: list[tf.Variable]) -> None:
        if self.timed:
            ready = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads if g is not None]
            with tf.control_dependencies(ready):
                self._ready = tf.timestamp()
            with tf.control_dependencies([self._ready]):
                grads = [None if g is None else
                         tf.IndexedSlices(tf.identity(g.values), g.indices, g.dense_shape)
                         if isinstance(g, tf.IndexedSlices) else tf.identity(g) for g in grads]
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and self.strategy.num_replicas_in_sync > 1:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
        super().apply_gradients(grads, variables)

    def _distributed_step(self, dense: tf.Tensor, ids: tf.Tensor, lengths: tf.Tensor, labels: tf.Tensor) -> Any:
        fn = self._timed_graph if self.timed else self._train_graph
        return self.strategy.run(fn, args=(dense, ids, lengths, labels))

    def _timed_graph(self, dense: tf.Tensor, ids: tf.Tensor, lengths: tf.Tensor, labels: tf.Tensor) -> Any:
        start = tf.timestamp()
        with tf.control_dependencies([start]):
            loss = self._train_graph(tf.identity(dense), tf.identity(ids), tf.identity(lengths), labels)
        return loss, self._ready - start

    def train_step(self, staged: Staged) -> Any:
        if not self.timed:
            return self._dist_train(*staged)
        if self.straggler is not None:
            self.straggler.before_step()
        out = self._dist_train(*staged)
        loss, compute = self.strategy.experimental_local_results(out)[0]
        compute = float(compute)  # waits for the step; the optimizer's apply after the all-reduce is not counted
        slept = self.straggler.after_step(compute) if self.straggler is not None else 0.0
        self.busy_s.append(compute + slept)
        return loss

    def gather_numpy(self, array: np.ndarray) -> np.ndarray:
        return self.collectives.gather_numpy(array)

    def gather_strings(self, text: str, world: int) -> list[str]:
        return self.collectives.gather_strings(text)

    def barrier(self) -> None:
        self.collectives.barrier()

    def comm_sizes(self, staged: Staged) -> dict[str, float]:
        """Measured gradient sizes of one step: dense bytes; IndexedSlices values+indices per sample."""
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.compute_loss(staged[3], self.forward(*staged[:3]))
        grads = tape.gradient(loss, variables)
        dense = sparse = 0
        for g in grads:
            if isinstance(g, tf.IndexedSlices):
                sparse += int(tf.size(g.values)) * 4 + int(tf.size(g.indices)) * 8
            elif g is not None:
                dense += int(tf.size(g)) * 4
        b = int(staged[0].shape[0])
        return {"dense_grad_bytes": float(dense), "sparse_grad_bytes_per_sample": sparse / b,
                "embeddings_replicated": True}


class MWMSCompressedTFDLRM(CompressedTFDLRM, MWMSTFDLRM):
    """The compressed model (CompressedTFDLRM) trained under MultiWorkerMirroredStrategy (MWMSTFDLRM's step)."""

    def id_counts(self) -> dict[int, np.ndarray]:
        """Every worker's id counts summed (a collective: all workers finalize at evaluation)."""
        if not self.embeddings.layout.needs_id_counts:
            return super().id_counts()
        with tf.device(self.runtime.device):
            out = self.collectives.sum(tf.constant(self._counts.numpy()))
        return self._split_counts(np.asarray(self.strategy.experimental_local_results(out)[0]))


def build(scenario: Scenario, **kwargs: Any) -> MWMSTFDLRM:
    """The data-parallel model of ``scenario``: compressed when its ``compression`` asks for it."""
    cls = MWMSCompressedTFDLRM if scenario.compression not in ("", "none") else MWMSTFDLRM
    return cls(scenario, **kwargs)
