"""The compressed embedding component of the TensorFlow DLRM, as graph code: one module for every layout
of ``recsys_impls.compression.layouts``.

One variable (training) or constant (inference) per parameter group of each table. ``TFStore.rows``
reads rows of a table in its stored precision and dequantizes them inside the graph: fp16/bf16 are cast,
int8 rows are ``q * scale + bias`` with the FBGEMM row-wise layout split into integer and scale/bias
columns, int4 nibbles are unpacked with bitwise ops. The layout's id -> row steps and its combine rule
run as the TF ops in ``STEP_OPS`` / ``COMBINE_OPS``; per table, rows are combined, then summed per bag.
A layout that needs TF-specific code adds it to ``ADAPTERS`` under its name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.compression import model_state as ms
from recsys_impls.compression.hashing import BitOps, hash32
from recsys_impls.compression.layouts import plan_layout, table_groups
from recsys_impls.compression.spec import CompressionPlan
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


def _remap(ids: tf.Tensor, kept: tf.Tensor) -> tf.Tensor:
    """freq-prune: position of each id among the sorted kept ids, else the fallback row (len(kept))."""
    k = int(kept.shape[0])
    if k == 0:
        return tf.zeros_like(ids)
    pos = tf.searchsorted(kept, ids, out_type=tf.int64)
    hit = tf.logical_and(pos < k, tf.gather(kept, tf.minimum(pos, k - 1)) == ids)
    return tf.where(hit, pos, tf.constant(k, tf.int64))


# Index steps: (ids, argument) -> ids; "remap"'s argument is the table's kept-id constant.
STEP_OPS: dict[str, Callable[[tf.Tensor, Any], tf.Tensor]] = {
    "floordiv": lambda x, a: x // a,
    "mod": lambda x, a: x % a,
    "hash": lambda x, a: hash32(x, a, ops=TF_BITOPS),
    "remap": _remap,
}


def _tt_contract(rows: list[tf.Tensor], args: tuple[Any, ...], dense: list[Any]) -> tf.Tensor:
    """Row of each id contracted from one row of each TT core (two batched matmuls)."""
    (d1, d2, d3), r = args
    g1 = tf.reshape(rows[0], [-1, d1, r])
    g2 = tf.reshape(rows[1], [-1, r, d2 * r])
    g3 = tf.reshape(rows[2], [-1, r, d3])
    return tf.reshape(tf.matmul(tf.reshape(tf.matmul(g1, g2), [-1, d1 * d2, r]), g3), [-1, d1 * d2 * d3])


# Combine rules: (rows of the table groups, combine args, dense groups) -> one row per id.
COMBINE_OPS: dict[str, Callable[[list[tf.Tensor], tuple[Any, ...], list[Any]], tf.Tensor]] = {
    "identity": lambda rows, args, dense: rows[0],
    "mul": lambda rows, args, dense: rows[0] * rows[1],
    "add": lambda rows, args, dense: rows[0] + rows[1],
    "concat": lambda rows, args, dense: tf.concat(rows, 1),
    "project": lambda rows, args, dense: tf.matmul(rows[0], dense[0]),
    "tt": _tt_contract,
}

# Layout name -> TF-specific code for it (none needed so far).
ADAPTERS: dict[str, dict[str, Any]] = {}


class CompressedTables(EmbeddingComponent):
    """Embeddings of a compression plan's layout: trainable (``stored is None``) or read from the stored arrays."""

    kind = "compressed"

    def __init__(self, config: ModelConfig, plan: CompressionPlan, params: dict[str, np.ndarray],
                 stored: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(config, name="compressed_embeddings" if stored is None else "stored_embeddings")
        self.plan = plan
        self.layout = plan_layout(plan)
        self.kind = f"compressed ({plan.spec}; {'fp32 training' if stored is None else plan.precision})"
        self.stores: dict[str, TFStore] = {}
        self.dense: dict[str, Any] = {}
        self.groups = table_groups(config, plan)
        self.combines = [self.layout.combine(config, plan, f) for f in range(config.num_tables)]
        self.steps: list[list[list[tuple[str, Any]]]] = []
        for f, groups in enumerate(self.groups):
            for g in groups:
                name = g.name(f)
                if not g.table:
                    value = np.asarray((params if stored is None else stored)[name], np.float32)
                    self.dense[name] = tf.Variable(value, name=name.replace(".", "_")) if stored is None \
                        else tf.constant(value)
                elif stored is None:
                    self.stores[name] = TFStore(name, g.shape[1], value=params[name])
                else:
                    precision, arr = ms.stored_table(stored, name, g.shape[1])
                    self.stores[name] = TFStore(name, g.shape[1], precision=precision, stored=arr)
            self.steps.append([[(op, tf.constant(stored[a].astype(np.int64)) if op == "remap" else a)
                                for op, a in steps]
                               for steps in self.layout.index(config, plan, f, stored is not None)])

    def _vectors(self, f: int, ids: tf.Tensor) -> tf.Tensor:
        rows = []
        tables = [g for g in self.groups[f] if g.table]
        for g, steps in zip(tables, self.steps[f], strict=True):
            x = ids
            for op, a in steps:
                x = STEP_OPS[op](x, a)
            rows.append(self.stores[g.name(f)].rows(x))
        dense = [self.dense[g.name(f)] for g in self.groups[f] if not g.table]
        c = self.combines[f]
        return COMBINE_OPS[c.op](rows, c.args, dense)

    def table_rows(self, f: int, ids: tf.Tensor) -> tf.Tensor:
        """Rows [len(ids), D] of table f's raw ids, not pooled (models that pool rows themselves)."""
        return self._vectors(f, ids)

    def variables_by_name(self) -> dict[str, tf.Variable]:
        """The trainable groups by their layout names (``emb.{f}[.suffix]``)."""
        return {**{n: s.var for n, s in self.stores.items()}, **self.dense}

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
        out.update({n: p.numpy() for n, p in self.dense.items()})
        return out

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        for n, s in self.stores.items():
            s.var.assign(np.asarray(params[n], np.float32))
        for n, p in self.dense.items():
            p.assign(np.asarray(params[n], np.float32))
