"""NeuMF in TensorFlow (contract and parameter names: recsys_impls/models/neumf.py); ``tf.gather`` lookups,
so the tables' gradients are ``IndexedSlices`` applied to the touched rows by ``optim``."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.models.neumf import NeuMFConfig, initial_params
from recsys_impls.tf_impl.optim import Optimizer
from recsys_impls.tf_impl.two_tower import tf_device

_KEYS = ("users", "items", "labels")


class TFNeuMF:
    framework = "tf"

    def __init__(self, cfg: NeuMFConfig, num_users: int, num_items: int, optimizer: str, lr: float,
                 seed: int = 0, device: str = "cpu") -> None:
        self.cfg = cfg
        self.device = tf_device(device)
        with tf.device(self.device):
            self.params = {k: tf.Variable(v, name=k.replace(".", "_"))
                           for k, v in initial_params(cfg, num_users, num_items, seed).items()}
            self._vars = list(self.params.values())
            self.optimizer = Optimizer(optimizer, lr, self._vars)
        sig = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.float32)]
        self._train = tf.function(self._train_step, input_signature=sig)
        self._loss_fn = tf.function(self._loss, input_signature=sig)
        self._logits = tf.function(self.logits, input_signature=sig[:2])

    def get_params(self) -> dict[str, np.ndarray]:
        return {k: v.numpy().copy() for k, v in self.params.items()}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        for k, v in self.params.items():
            v.assign(params[k])
        self.optimizer.reset()

    def stage(self, batch: dict[str, np.ndarray]) -> tuple[tf.Tensor, ...]:
        with tf.device(self.device):
            return tuple(tf.identity(tf.constant(batch[k])) for k in _KEYS if k in batch)

    def logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        p = self.params
        gmf = tf.gather(p["gmf.user"], users) * tf.gather(p["gmf.item"], items)
        x = tf.concat([tf.gather(p["mlp.user"], users), tf.gather(p["mlp.item"], items)], axis=1)
        for i in range(len(self.cfg.mlp)):
            x = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, p[f"mlp.w{i}"]), p[f"mlp.b{i}"]))
        return tf.nn.bias_add(tf.matmul(tf.concat([gmf, x], axis=1), p["out.w"]), p["out.b"])[:, 0]

    def _loss(self, users: tf.Tensor, items: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        z = self.logits(users, items)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=z))

    def _train_step(self, users: tf.Tensor, items: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = self._loss(users, items, labels)
        grads = tape.gradient(loss, self._vars)
        self.optimizer.apply(list(zip(grads, self._vars, strict=True)))
        return loss

    def train_step(self, staged: tuple[tf.Tensor, ...]) -> None:
        self._train(*staged)

    def loss(self, staged: tuple[tf.Tensor, ...]) -> float:
        return float(self._loss_fn(*staged))

    def infer(self, staged: tuple[tf.Tensor, ...]) -> tf.Tensor:
        return self._logits(staged[0], staged[1])

    def to_numpy(self, value: Any) -> np.ndarray:
        return value.numpy()

    def synchronize(self) -> None:
        if self.device != "/CPU:0":
            tf.test.experimental.sync_devices()
