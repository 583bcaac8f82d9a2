"""Compressed embedding components for the TensorFlow DLRM, as graph code.

One variable (training) or constant (inference) per table. ``TFStore.rows`` reads rows of a table in
its stored precision and dequantizes them inside the graph: fp16/bf16 are cast, int8 rows are
``q * scale + bias`` with the FBGEMM row-wise layout split into integer and scale/bias columns, int4
nibbles are unpacked with bitwise ops. Id maps (hash, QR, freq-prune binary search) are graph ops too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.compression import model_state as ms
from recsys_impls.compression.hashing import BitOps, hash32
from recsys_impls.compression.hashing import num_buckets as hash_num_buckets
from recsys_impls.compression.mixed_dim import mixed_dims
from recsys_impls.compression.qr import qr_dims
from recsys_impls.compression.spec import CompressionPlan
from recsys_impls.compression.tt import dim_factors, row_factors
from recsys_impls.config import ModelConfig
from recsys_impls.tf_impl.embeddings import EmbeddingComponent


def _i64(v: Any) -> tf.Tensor:
    return v if isinstance(v, tf.Tensor) else tf.constant(v, tf.int64)


TF_BITOPS = BitOps(
    band=lambda a, b: tf.bitwise.bitwise_and(a, _i64(b)),
    bxor=lambda a, b: tf.bitwise.bitwise_xor(a, _i64(b)),
    rshift=lambda a, n: tf.bitwise.right_shift(a, _i64(n)),
    lshift=lambda a, n: tf.bitwise.left_shift(a, _i64(n)),
)


class TFStore(tf.Module):
    """One table: a trainable fp32 variable, or stored-precision constants dequantized on read."""

    def __init__(self, name: str, dim: int, value: np.ndarray | None = None, precision: str = "fp32",
                 stored: np.ndarray | None = None) -> None:
        super().__init__(name=name.replace(".", "_"))
        self.dim, self.precision = dim, precision
        if value is not None:
            self.var = tf.Variable(np.asarray(value, np.float32), name=self.name)
            return
        assert stored is not None
        if precision == "fp32":
            self.data = tf.constant(stored)
        elif precision == "fp16":
            self.data = tf.constant(stored)
        elif precision == "bf16":
            self.data = tf.bitcast(tf.constant(stored), tf.bfloat16)
        else:
            nb = dim if precision == "int8" else (dim + 1) // 2
            tail_dtype = np.float32 if precision == "int8" else np.float16
            tail = np.ascontiguousarray(stored[:, nb:]).view(tail_dtype).astype(np.float32)
            self.data = tf.constant(np.ascontiguousarray(stored[:, :nb]))
            self.scale = tf.constant(tail[:, 0])
            self.bias = tf.constant(tail[:, 1])

    def rows(self, idx: tf.Tensor) -> tf.Tensor:
        if hasattr(self, "var"):
            return tf.gather(self.var, idx)
        g = tf.gather(self.data, idx)
        if self.precision in ("fp32", "fp16", "bf16"):
            return tf.cast(g, tf.float32)
        if self.precision == "int4":
            lo = tf.bitwise.bitwise_and(g, tf.constant(15, tf.uint8))
            hi = tf.bitwise.right_shift(g, tf.constant(4, tf.uint8))
            g = tf.reshape(tf.stack([lo, hi], axis=-1), [-1, 2 * g.shape[1]])[:, : self.dim]
        return tf.cast(g, tf.float32) * tf.gather(self.scale, idx)[:, None] + tf.gather(self.bias, idx)[:, None]


class CompressedTables(EmbeddingComponent):
    """Embeddings of a compression plan: trainable (``stored is None``) or read from the stored arrays."""

    kind = "compressed"

    def __init__(self, config: ModelConfig, plan: CompressionPlan, params: dict[str, np.ndarray],
                 stored: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(config, name="compressed_embeddings" if stored is None else "stored_embeddings")
        self.plan = plan
        self.kind = f"compressed ({plan.spec}; {'fp32 training' if stored is None else plan.precision})"
        d = config.embedding_dim
        self.stores: dict[str, TFStore] = {}
        dims = {n: s[1] for n, s in ms.embedding_shapes(config, plan).items()}
        for name, dim in dims.items():
            if name.endswith(".proj"):
                continue
            if stored is None:
                self.stores[name] = TFStore(name, dim, value=params[name])
            else:
                precision, arr = ms.stored_table(stored, name, dim)
                self.stores[name] = TFStore(name, dim, precision=precision, stored=arr)
        src = params if stored is None else stored
        self.projs: dict[int, Any] = {}
        for f in range(config.num_tables):
            p = src.get(f"emb.{f}.proj")
            if p is not None:
                self.projs[f] = tf.Variable(np.asarray(p, np.float32), name=f"emb_{f}_proj") if stored is None \
                    else tf.constant(np.asarray(p, np.float32))
        self.kept = {f: tf.constant(stored[f"emb.{f}.kept"].astype(np.int64))
                     for f in range(config.num_tables)} if stored is not None and plan.layout == "freq-prune" else {}
        self.buckets = [hash_num_buckets(n, plan.hash_fraction) for n in config.table_sizes] \
            if plan.layout == "hash" else []
        self.dims = mixed_dims(config.table_sizes, d, plan.md_alpha) if plan.layout == "mixed-dim" else []
        self.qr = qr_dims(d, plan.qr_op) if plan.layout == "qr" else ()

    def _tt_vectors(self, f: int, ids: tf.Tensor) -> tf.Tensor:
        """Row of each id contracted from one row of each TT core (two batched matmuls)."""
        name, r, d = f"emb.{f}", self.plan.tt_rank, self.config.embedding_dim
        _, n2, n3 = row_factors(self.config.table_sizes[f])
        d1, d2, d3 = dim_factors(d)
        g1 = tf.reshape(self.stores[name + ".tt0"].rows(ids // (n2 * n3)), [-1, d1, r])
        g2 = tf.reshape(self.stores[name + ".tt1"].rows((ids // n3) % n2), [-1, r, d2 * r])
        g3 = tf.reshape(self.stores[name + ".tt2"].rows(ids % n3), [-1, r, d3])
        return tf.reshape(tf.matmul(tf.reshape(tf.matmul(g1, g2), [-1, d1 * d2, r]), g3), [-1, d])

    def _vectors(self, f: int, ids: tf.Tensor) -> tf.Tensor:
        name, plan = f"emb.{f}", self.plan
        if plan.layout == "tt":
            return self._tt_vectors(f, ids)
        if plan.layout == "qr":
            c = plan.qr_collisions
            eq = self.stores[name + ".q"].rows(ids // c)
            er = self.stores[name + ".r"].rows(ids % c)
            return eq * er if plan.qr_op == "mult" else eq + er if plan.qr_op == "add" else tf.concat([eq, er], 1)
        if plan.layout == "hash":
            idx = hash32(ids, ops=TF_BITOPS) % self.buckets[f]
        elif f in self.kept:
            kept = self.kept[f]
            k = int(kept.shape[0])
            if k == 0:
                idx = tf.zeros_like(ids)
            else:
                pos = tf.searchsorted(kept, ids, out_type=tf.int64)
                hit = tf.logical_and(pos < k, tf.gather(kept, tf.minimum(pos, k - 1)) == ids)
                idx = tf.where(hit, pos, tf.constant(k, tf.int64))
        else:
            idx = ids
        v = self.stores[name].rows(idx)
        return tf.matmul(v, self.projs[f]) if f in self.projs else v

    def pool(self, ids: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        batch = tf.shape(lengths)[1]
        per_feature = tf.split(ids, tf.reduce_sum(lengths, axis=1), num=self.config.num_tables)
        pooled = []
        for f in range(self.config.num_tables):
            sample = tf.repeat(tf.range(batch), lengths[f])
            pooled.append(tf.math.unsorted_segment_sum(self._vectors(f, per_feature[f]), sample, batch))
        return tf.stack(pooled, axis=1)

    def get_params(self) -> dict[str, np.ndarray]:
        out = {n: s.var.numpy() for n, s in self.stores.items()}
        out.update({f"emb.{f}.proj": p.numpy() for f, p in self.projs.items()})
        return out

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        for n, s in self.stores.items():
            s.var.assign(np.asarray(params[n], np.float32))
        for f, p in self.projs.items():
            p.assign(np.asarray(params[f"emb.{f}.proj"], np.float32))
