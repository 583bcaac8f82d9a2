"""TensorFlow DLRM-DCNv2 dense architecture (spec: recsys_impls/models/dcnv2.py): the concatenated
features through low-rank cross layers x_{l+1} = x_0 * (U_l (V_l^T x_l) + b_l) + x_l, between the MLPs."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.tf_impl.model import DenseArch, ranking_arch


class LowRankCross(tf.Module):
    """Cross layers as plain variables; kernels stored [in, out] (the spec's [out, in] transposed)."""

    description = "concatenation, then low-rank cross layers (two matmuls per layer)"

    def __init__(self, params: dict[str, np.ndarray], layers: int) -> None:
        super().__init__(name="cross")
        self.layers = layers
        self.v = [tf.Variable(np.asarray(params[f"cross.{k}.v.weight"], np.float32).T, name=f"cross_{k}_v")
                  for k in range(layers)]
        self.u = [tf.Variable(np.asarray(params[f"cross.{k}.u.weight"], np.float32).T, name=f"cross_{k}_u")
                  for k in range(layers)]
        self.b = [tf.Variable(np.asarray(params[f"cross.{k}.u.bias"], np.float32), name=f"cross_{k}_b")
                  for k in range(layers)]

    @property
    def trainable_variables(self) -> list[tf.Variable]:  # fixed order (tf.Module sorts by attribute name)
        return [w for k in range(self.layers) for w in (self.v[k], self.u[k], self.b[k])]

    def __call__(self, x: tf.Tensor, pooled: tf.Tensor) -> tf.Tensor:
        x0 = tf.concat([x, tf.reshape(pooled, [-1, pooled.shape[1] * pooled.shape[2]])], axis=1)
        xl = x0
        dtype = x.dtype
        for v, u, b in zip(self.v, self.u, self.b, strict=True):
            up = tf.nn.bias_add(tf.matmul(tf.matmul(xl, tf.cast(v, dtype)), tf.cast(u, dtype)), tf.cast(b, dtype))
            xl = x0 * up + xl
        return xl

    def get_params(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for k in range(self.layers):
            out[f"cross.{k}.v.weight"] = np.ascontiguousarray(self.v[k].numpy().T)
            out[f"cross.{k}.u.weight"] = np.ascontiguousarray(self.u[k].numpy().T)
            out[f"cross.{k}.u.bias"] = self.b[k].numpy()
        return out

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        for k in range(self.layers):
            self.v[k].assign(np.asarray(params[f"cross.{k}.v.weight"], np.float32).T)
            self.u[k].assign(np.asarray(params[f"cross.{k}.u.weight"], np.float32).T)
            self.b[k].assign(np.asarray(params[f"cross.{k}.u.bias"], np.float32))

    def kernels(self) -> dict[str, tf.Variable]:
        return {**{f"cross.{k}.v.weight": self.v[k] for k in range(self.layers)},
                **{f"cross.{k}.u.weight": self.u[k] for k in range(self.layers)}}


def build(config: Any, params: dict[str, np.ndarray], compute_dtype: tf.DType = tf.float32) -> DenseArch:
    return ranking_arch(config, params, LowRankCross(params, config.cross_layers))
