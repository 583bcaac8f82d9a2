"""TensorFlow builders of the DLRM dense architectures (specs: recsys_impls/models/dlrm.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.tf_impl.model import DenseArch, ranking_arch


class DotInteraction(tf.Module):
    """[x, e_0..e_{F-1}] -> [x, dots of all pairs (i > j) in row-major tril order]."""

    description = "batched matmul T T^T, pairs picked by a one-hot matmul"

    def __init__(self, num_vectors: int, dtype: tf.DType) -> None:
        super().__init__(name="dot_interaction")
        n = num_vectors
        li, lj = np.tril_indices(n, -1)
        # The pairs as a one-hot [n*n, pairs] matrix: picking them is then one small matmul forward and
        # one backward (exact: each output is 1 * z), where a gather on axis 1 costs a gather forward and
        # transposes plus a segment sum backward.
        select = np.zeros((n * n, li.size), np.float32)
        select[li * n + lj, np.arange(li.size)] = 1.0
        self._select = tf.constant(select, dtype=dtype)
        self.n = n

    def __call__(self, x: tf.Tensor, pooled: tf.Tensor) -> tf.Tensor:
        t = tf.concat([x[:, None, :], pooled], axis=1)  # [B, F+1, D]
        z = tf.matmul(t, t, transpose_b=True)  # [B, F+1, F+1]
        dots = tf.matmul(tf.reshape(z, [-1, self.n * self.n]), tf.cast(self._select, x.dtype))
        return tf.concat([x, dots], axis=1)


class CatInteraction(tf.Module):
    """[x, e_0..e_{F-1}] -> their concatenation [B, D_x + F * D]."""

    description = "concatenation of the bottom output and the pooled embeddings"

    def __call__(self, x: tf.Tensor, pooled: tf.Tensor) -> tf.Tensor:
        return tf.concat([x, tf.reshape(pooled, [-1, pooled.shape[1] * pooled.shape[2]])], axis=1)


def build_dlrm(config: Any, params: dict[str, np.ndarray], compute_dtype: tf.DType = tf.float32) -> DenseArch:
    return ranking_arch(config, params, DotInteraction(config.num_tables + 1, compute_dtype))


def build_dlrm_cat(config: Any, params: dict[str, np.ndarray], compute_dtype: tf.DType = tf.float32) -> DenseArch:
    return ranking_arch(config, params, CatInteraction(name="cat_interaction"))
