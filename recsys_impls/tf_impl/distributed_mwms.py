"""TFDLRM under MultiWorkerMirroredStrategy: the single-process model, its step run per replica with
gradients averaged across workers by the strategy's collectives."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.config import Scenario
from recsys_impls.tf_impl.model import TFDLRM, Staged


def load_data(scenario: Scenario) -> tuple[Scenario, Any]:
    from recsys_impls.parallel.shards import prepare_data

    return prepare_data(scenario)


class MWMSTFDLRM(TFDLRM):
    """TFDLRM whose training step all-reduces gradients (mean) across MultiWorkerMirroredStrategy workers."""

    def __init__(self, scenario: Scenario, strategy: tf.distribute.Strategy) -> None:
        self.strategy = strategy
        super().__init__(replace(scenario, parallel="none"))
        cfg = self.model_config
        spec = (
            tf.TensorSpec([None, cfg.num_dense], tf.float32), tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([cfg.num_tables, None], tf.int32), tf.TensorSpec([None], tf.float32),
        )
        self._dist_train = tf.function(self._distributed_step, input_signature=spec)
        self._gather = tf.function(self._all_gather_rows)

    def apply_gradients(self, grads: list, variables: list[tf.Variable]) -> None:
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and self.strategy.num_replicas_in_sync > 1:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
        super().apply_gradients(grads, variables)

    def _distributed_step(self, dense: tf.Tensor, ids: tf.Tensor, lengths: tf.Tensor, labels: tf.Tensor) -> Any:
        return self.strategy.run(self._train_graph, args=(dense, ids, lengths, labels))

    def train_step(self, staged: Staged) -> Any:
        return self._dist_train(*staged)

    def _all_gather_rows(self, x: tf.Tensor) -> Any:
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
        with tf.device(self.runtime.device):
            out = self._gather(tf.constant(slots))
        summed = np.asarray(self.strategy.experimental_local_results(out)[0])
        return summed.reshape(world * array.shape[0], *array.shape[1:]).astype(array.dtype)

    def gather_strings(self, text: str, world: int) -> list[str]:
        """Every worker's string, via a byte all-gather (fixed width hex digests)."""
        codes = np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int32)[None, :]
        rows = self.gather_numpy(codes)
        return [bytes(r.astype(np.uint8)).decode() for r in rows]

    def barrier(self) -> None:
        self.gather_numpy(np.zeros((1,), np.float32))

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
