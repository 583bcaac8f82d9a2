"""A model held as a name -> tf.Variable dict built from a framework-neutral spec's initial values.

The retrieval models share everything but their forward and loss: variables on the scenario's device,
the optimizer of ``optim`` over all of them (tables' ``IndexedSlices`` gradients touch only their rows),
parameters to and from numpy by name, and a training step and loss traced once with a fixed signature.
A compressed model's tables are one embedding stage built from the compression layout registry (the
ranking models' ``CompressedTables``), read row by row.

GPU settings are the ranking models' (``runtime.configure``): each model's dense part (``dense_parts``)
computes in the compute dtype (bf16/fp16 under AMP; the variables stay fp32), fp16 with dynamic loss
scaling, TF32 on or off, and ``xla`` jit-compiles the dense parts; lookups and updates stay outside XLA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.config import DeviceConfig
from recsys_impls.tf_impl import runtime
from recsys_impls.tf_impl.loss_scale import DynamicLossScale, apply_scaled, scaled_loss
from recsys_impls.tf_impl.optim import Optimizer


def replicas() -> tf.distribute.ReplicaContext | None:
    """The replica context of a data-parallel step (inside ``strategy.run`` over several workers), else None."""
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def tf_device(device: str) -> str:
    """TensorFlow's name for a --device value: cpu, cuda[:N] or GPU:N."""
    if device == "cpu":
        return "/CPU:0"
    return f"/GPU:{device.partition(':')[2] or 0}"


def configure(device: str | DeviceConfig) -> runtime.Runtime:
    """The TensorFlow runtime of a ``--device`` value or a scenario's DeviceConfig (``runtime.configure``)."""
    return runtime.configure(device if isinstance(device, DeviceConfig) else DeviceConfig(device))


class ParamDictModel:
    framework = "tf"
    input_keys: tuple[str, ...] = ()  # the staged tuple, in order
    optional_keys: tuple[str, ...] = ()  # keys a batch may lack (e.g. labels at inference)
    dense_parts: tuple[str, ...] = ()  # methods computed in the compute dtype and jit-compiled under xla

    def __init__(self, initial: dict[str, np.ndarray], optimizer: str, lr: float, setup: runtime.Runtime,
                 signature: list[tf.TensorSpec], tables: Any = None, plan: Any = None, seed: int = 0) -> None:
        self.runtime = setup
        self.device = setup.device
        self.compute_dtype = setup.compute_dtype
        for name in self.dense_parts if setup.xla else ():
            setattr(self, name, tf.function(getattr(self, name), jit_compile=True))
        self.tables, self.plan, self.emb = tables, plan, None
        with tf.device(self.device):
            if tables is not None:
                from recsys_impls.models import retrieval_tables as rt
                from recsys_impls.tf_impl.compress_embeddings import CompressedTables

                groups, initial = rt.split_params(tables, plan, rt.initial_params(tables, plan, initial, seed))
                self.emb = CompressedTables(tables, plan, groups)
                self._table_index = {n: f for f, n in enumerate(tables.names)}
            self.params = {k: tf.Variable(v, name=k.replace(".", "_")) for k, v in initial.items()}
            if self.emb is not None:  # the stage's variables by their model names (get/set_params, optimizer)
                self.params.update({tables.model_name(k): v for k, v in self.emb.variables_by_name().items()})
            self._vars = list(self.params.values())
            self.optimizer = Optimizer(optimizer, lr, self._vars)
            self.loss_scale = DynamicLossScale() if setup.loss_scaling else None
        self.signature = signature
        self._train = tf.function(self._train_step, input_signature=signature)
        self._loss_fn = tf.function(self._loss, input_signature=signature)
        self._trace_inference()

    def _trace_inference(self) -> None:
        """(Re)make the inference tf.functions (after ``use_stored`` they read the stored stage)."""

    def lookup(self, table: str, ids: tf.Tensor) -> tf.Tensor:
        """Rows [*ids.shape, D] of a plain table's ids (``tf.gather``), or of its compressed stage."""
        if self.emb is None:
            return tf.gather(self.params[table], ids)
        flat = self.emb.table_rows(self._table_index[table], tf.reshape(ids, [-1]))
        return tf.reshape(flat, tf.concat([tf.shape(ids), [self.tables.embedding_dim]], 0))

    def use_stored(self, stored: dict[str, np.ndarray]) -> None:
        """Serve from the stored form (``retrieval_tables.stored_form``): the embedding stage is rebuilt
        from the stored arrays in their precision (constants, dequantized in the graph); training stops here."""
        from recsys_impls.tf_impl.compress_embeddings import CompressedTables

        with tf.device(self.device):
            self.emb = CompressedTables(self.tables, self.plan, {}, stored=stored)
        self._trace_inference()

    def _loss(self, *inputs: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def get_params(self) -> dict[str, np.ndarray]:
        return {k: v.numpy().copy() for k, v in self.params.items()}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        for k, v in self.params.items():
            v.assign(params[k])
        self.optimizer.reset()

    def stage(self, batch: dict[str, np.ndarray]) -> tuple[tf.Tensor, ...]:
        with tf.device(self.device):
            return tuple(tf.identity(tf.constant(batch[k])) for k in self.input_keys
                         if k in batch or k not in self.optional_keys)

    def cast(self, *tensors: tf.Tensor) -> list[tf.Tensor]:
        """``tensors`` in the compute dtype (the dense parts' inputs and weights)."""
        return [tf.cast(t, self.compute_dtype) for t in tensors]

    def _train_step(self, *inputs: tf.Tensor) -> tf.Tensor:
        """Loss, gradients (scaled and unscaled with fp16), update. Run per replica by
        MultiWorkerMirroredStrategy (``distributed_retrieval``), the gradients are first averaged over the
        workers (dense all-reduced, IndexedSlices all-gathered)."""
        with tf.GradientTape() as tape:
            loss = self._loss(*inputs)
            scaled = scaled_loss(loss, self.loss_scale)
        grads = tape.gradient(scaled, self._vars)
        ctx = replicas()
        if ctx is not None:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
        apply_scaled(grads, self.loss_scale, lambda g: self.optimizer.apply(list(zip(g, self._vars, strict=True))))
        return loss

    def train_step(self, staged: tuple[tf.Tensor, ...]) -> None:
        self._train(*staged)

    def loss(self, staged: tuple[tf.Tensor, ...]) -> float:
        return float(self._loss_fn(*staged))

    def to_numpy(self, value: Any) -> np.ndarray:
        return value.numpy()

    def synchronize(self) -> None:
        if self.device != "/CPU:0":
            tf.test.experimental.sync_devices()

    def describe(self) -> dict[str, Any]:
        """The record's ``implementation``: the runtime's facts, jit-compiled parts, optimizer."""
        return {**self.runtime.facts, "device": self.device, "compiled": list(self.dense_parts) if self.runtime.xla
                else [], "optimizer": self.optimizer.kind, "steps": "tf.function, fixed input signatures",
                "train_traces": self._train.experimental_get_tracing_count()}
