"""NeuMF in TensorFlow (contract and parameter names: recsys_impls/models/neumf.py); ``tf.gather`` lookups,
so the tables' gradients are ``IndexedSlices`` applied to the touched rows by ``optim``."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from recsys_impls.models.neumf import NeuMFConfig, initial_params, table_set
from recsys_impls.tf_impl.param_model import ParamDictModel


class TFNeuMF(ParamDictModel):
    input_keys = ("users", "items", "labels")
    optional_keys = ("labels",)

    def __init__(self, cfg: NeuMFConfig, num_users: int, num_items: int, optimizer: str, lr: float,
                 seed: int = 0, device: str = "cpu", plan: Any = None) -> None:
        self.cfg = cfg
        self._sig = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64),
                     tf.TensorSpec([None], tf.float32)]
        super().__init__(initial_params(cfg, num_users, num_items, seed), optimizer, lr, device, self._sig,
                         tables=table_set(cfg, num_users, num_items) if plan is not None else None, plan=plan,
                         seed=seed)

    def _trace_inference(self) -> None:
        self._logits = tf.function(self.logits, input_signature=self._sig[:2])

    def logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        p, look = self.params, self.lookup
        gmf = look("gmf.user", users) * look("gmf.item", items)
        x = tf.concat([look("mlp.user", users), look("mlp.item", items)], axis=1)
        for i in range(len(self.cfg.mlp)):
            x = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, p[f"mlp.w{i}"]), p[f"mlp.b{i}"]))
        return tf.nn.bias_add(tf.matmul(tf.concat([gmf, x], axis=1), p["out.w"]), p["out.b"])[:, 0]

    def _loss(self, users: tf.Tensor, items: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        z = self.logits(users, items)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=z))

    def infer(self, staged: tuple[tf.Tensor, ...]) -> tf.Tensor:
        return self._logits(staged[0], staged[1])
