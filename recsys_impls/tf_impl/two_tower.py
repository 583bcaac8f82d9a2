"""Two-tower retrieval in TensorFlow (contract and parameter names: recsys_impls/models/two_tower.py).

Lookups are ``tf.gather`` (gradients as ``IndexedSlices``, applied to the touched rows by ``optim``), or
with a compression plan the layout's stage (``ParamDictModel.lookup``);
train and encode are ``tf.function``s with fixed signatures, traced once. The dense part (``tower_mlp``)
computes in the compute dtype and is jit-compiled under xla. Serving: the encoded corpus is one [items, out]
tensor in the compute dtype; a query batch is one matmul and ``tf.math.top_k``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.config import DeviceConfig
from recsys_impls.models.two_tower import (
    MASKED_LOGIT,
    NORM_EPS,
    TowerShape,
    TwoTowerConfig,
    initial_params,
    table_set,
)
from recsys_impls.tf_impl.param_model import ParamDictModel, configure, replicas


class TFTwoTower(ParamDictModel):
    input_keys = ("user_ids", "user_mask", "item_ids", "item_mask", "items", "log_q")
    dense_parts = ("tower_mlp",)

    def __init__(self, cfg: TwoTowerConfig, user: TowerShape, item: TowerShape, optimizer: str, lr: float,
                 seed: int = 0, device: str | DeviceConfig = "cpu", plan: Any = None) -> None:
        self.cfg, self.shapes = cfg, {"user": user, "item": item}
        self._spec = [tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, None], tf.float32)]
        rt = configure(device)
        with tf.device(rt.device):
            self.pool = {n: tf.constant(s.pool_matrix()) for n, s in self.shapes.items()}
        super().__init__(initial_params(cfg, user, item, seed), optimizer, lr, rt,
                         [*self._spec, *self._spec, tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.float32)],
                         tables=table_set(cfg, user, item) if plan is not None else None, plan=plan, seed=seed)
        self.corpus: tf.Tensor | None = None
        self._retrieve = tf.function(
            lambda q, corpus, k: tf.math.top_k(tf.matmul(q, corpus, transpose_b=True), k=k, sorted=True).indices,
            input_signature=[tf.TensorSpec([None, None], self.compute_dtype)] * 2 + [tf.TensorSpec([], tf.int32)])

    def _trace_inference(self) -> None:
        self._encode = {n: tf.function(lambda ids, mask, n=n: self.tower(n, ids, mask), input_signature=self._spec)
                        for n in self.shapes}

    def tower(self, name: str, ids: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        emb = self.lookup(f"{name}.table", ids) * mask[..., None]
        p = self.pool[name]
        pooled = tf.einsum("bld,lf->bfd", emb, p) / tf.maximum(tf.matmul(mask, p), 1.0)[..., None]
        return self.tower_mlp(name, tf.reshape(pooled, [tf.shape(ids)[0], -1]))

    def tower_mlp(self, name: str, x: tf.Tensor) -> tf.Tensor:
        """The tower's MLP on its pooled features (compute dtype), then L2 normalisation in fp32."""
        layers = len(self.cfg.tower_mlp)
        (x,) = self.cast(x)
        for i in range(layers):
            w, b = self.cast(self.params[f"{name}.w{i}"], self.params[f"{name}.b{i}"])
            x = tf.nn.bias_add(tf.matmul(x, w), b)
            if i < layers - 1:
                x = tf.nn.relu(x)
        x = tf.cast(x, tf.float32)
        return x / tf.maximum(tf.norm(x, axis=1, keepdims=True), NORM_EPS)

    def _loss(self, user_ids, user_mask, item_ids, item_mask, items, log_q) -> tf.Tensor:  # noqa: ANN001
        u = self.tower("user", user_ids, user_mask)
        v = self.tower("item", item_ids, item_mask)
        v, log_q, every, first = self.in_batch_items(v, log_q, items)
        u_c, v_c = self.cast(u, v)
        logits = tf.cast(tf.matmul(u_c, v_c, transpose_b=True), tf.float32) / self.cfg.temperature
        if self.cfg.logq_correction:
            logits = logits - log_q[None, :]
        n = tf.shape(items)[0]
        own = tf.range(n) + first  # each query's positive among the batch's items
        same = tf.logical_and(tf.equal(items[:, None], every[None, :]),
                              tf.logical_not(tf.cast(tf.one_hot(own, tf.shape(every)[0]), tf.bool)))
        logits = tf.where(same, tf.constant(MASKED_LOGIT, tf.float32), logits)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=own, logits=logits)
        return tf.reduce_mean(ce)

    @staticmethod
    def in_batch_items(v: tf.Tensor, log_q: tf.Tensor, items: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """The batch's negatives: (item vectors, their log q, item ids, the first local row's column). One
        process: its own batch. Per replica of a data-parallel step: every worker's items, gathered with the
        replica context's all_gather (which has a gradient: each worker's share of it flows back to the
        worker that computed the vectors), so each query sees the global batch's negatives exactly as one
        process on the whole batch does."""
        ctx = replicas()
        if ctx is None:
            return v, log_q, items, tf.constant(0, tf.int32)
        first = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * tf.shape(items)[0]
        # identity: the step's inputs have no device, and a collective places its result on its input's
        # ("destinations can not be empty"); a copy made inside the replica has the replica's
        log_q, items = tf.identity(log_q), tf.identity(items)
        return ctx.all_gather(v, axis=0), ctx.all_gather(log_q, axis=0), ctx.all_gather(items, axis=0), first

    def encode(self, name: str, ids: np.ndarray, mask: np.ndarray, chunk: int = 8192) -> np.ndarray:
        with tf.device(self.device):
            outs = [self._encode[name](tf.constant(ids[i : i + chunk]), tf.constant(mask[i : i + chunk])).numpy()
                    for i in range(0, ids.shape[0], chunk)]
        return np.concatenate(outs) if outs else np.zeros((0, self.cfg.tower_mlp[-1]), np.float32)

    def _serving_tensor(self, vecs: np.ndarray) -> tf.Tensor:
        with tf.device(self.device):
            return tf.identity(tf.cast(tf.constant(np.ascontiguousarray(vecs, np.float32)), self.compute_dtype))

    def stage_corpus(self, item_vecs: np.ndarray) -> None:
        self.corpus = self._serving_tensor(item_vecs)

    def stage_queries(self, user_vecs: np.ndarray) -> tf.Tensor:
        return self._serving_tensor(user_vecs)

    def retrieve(self, queries: tf.Tensor, k: int) -> tf.Tensor:
        assert self.corpus is not None, "stage_corpus first"
        return self._retrieve(queries, self.corpus, tf.constant(k, tf.int32))
