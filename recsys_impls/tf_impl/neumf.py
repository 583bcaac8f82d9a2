"""NeuMF in TensorFlow (contract and parameter names: recsys_impls/models/neumf.py); ``tf.gather`` lookups,
so the tables' gradients are ``IndexedSlices`` applied to the touched rows by ``optim``. The dense part
(``head``: GMF product, MLP, output layer) computes in the compute dtype and is jit-compiled under xla."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from recsys_impls.config import DeviceConfig
from recsys_impls.models.neumf import NeuMFConfig, initial_params, table_set
from recsys_impls.tf_impl.param_model import ParamDictModel, configure


class TFNeuMF(ParamDictModel):
    input_keys = ("users", "items", "labels")
    optional_keys = ("labels",)
    dense_parts = ("head",)

    def __init__(self, cfg: NeuMFConfig, num_users: int, num_items: int, optimizer: str, lr: float,
                 seed: int = 0, device: str | DeviceConfig = "cpu", plan: Any = None) -> None:
        self.cfg = cfg
        self._sig = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64),
                     tf.TensorSpec([None], tf.float32)]
        super().__init__(initial_params(cfg, num_users, num_items, seed), optimizer, lr, configure(device), self._sig,
                         tables=table_set(cfg, num_users, num_items) if plan is not None else None, plan=plan,
                         seed=seed)

    def _trace_inference(self) -> None:
        self._logits = tf.function(self.logits, input_signature=self._sig[:2])

    def logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        look = self.lookup
        return self.head(look("gmf.user", users), look("gmf.item", items), look("mlp.user", users),
                         look("mlp.item", items))

    def head(self, gmf_user: tf.Tensor, gmf_item: tf.Tensor, mlp_user: tf.Tensor, mlp_item: tf.Tensor) -> tf.Tensor:
        """Logits [B] (float32) from the four looked-up rows."""
        p = self.params
        x = tf.concat(self.cast(mlp_user, mlp_item), axis=1)
        for i in range(len(self.cfg.mlp)):
            w, b = self.cast(p[f"mlp.w{i}"], p[f"mlp.b{i}"])
            x = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w), b))
        (gmf,) = self.cast(gmf_user * gmf_item)
        w, b = self.cast(p["out.w"], p["out.b"])
        return tf.cast(tf.nn.bias_add(tf.matmul(tf.concat([gmf, x], axis=1), w), b)[:, 0], tf.float32)

    def _loss(self, users: tf.Tensor, items: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        z = self.logits(users, items)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=z))

    def infer(self, staged: tuple[tf.Tensor, ...]) -> tf.Tensor:
        return self._logits(staged[0], staged[1])
