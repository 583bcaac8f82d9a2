"""CompressedTFDLRM: the TensorFlow DLRM under a compression plan.

Same scheme as the PyTorch variant (recsys_impls/torch_impl/compress_model.py): float32 training in the
plan's layout, then ``finalize`` turns the master weights into the shared stored arrays
(``compression.model_state``) and builds a separate inference ``tf.function`` that reads them:
integer tables dequantized in the graph, pruned MLPs from their sparse storage (zero-filled dense
kernels at run time), and mlp-int8 as an in-graph int8 matmul: activations quantized per tensor to
7-bit unsigned with a zero point (as PyTorch's FBGEMM dynamic quantization does), weights int8 per
output channel, products accumulated exactly (integer values in float32, sums < 2^24), then rescaled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.compression import model_state as ms
from recsys_impls.compression.spec import parse_compression
from recsys_impls.config import Scenario
from recsys_impls.init_params import check_params
from recsys_impls.tf_impl.compress_embeddings import CompressedTables
from recsys_impls.tf_impl.model import TFDLRM, Staged, build_dense_arch

PRUNE_AT = 0.75  # as in the PyTorch variant


def _int8_matmul(x: tf.Tensor, wq: tf.Tensor, wscale: tf.Tensor) -> tf.Tensor:
    """x [B, in] float, wq [in, out] int8-valued float32, wscale [out] -> x @ (wq * wscale), int8 math."""
    lo = tf.minimum(tf.reduce_min(x), 0.0)
    hi = tf.maximum(tf.reduce_max(x), 0.0)
    scale = tf.maximum((hi - lo) / 127.0, 1e-12)
    zp = tf.clip_by_value(tf.round(-lo / scale), 0.0, 127.0)
    xq = tf.clip_by_value(tf.round(x / scale) + zp, 0.0, 127.0) - zp
    return tf.matmul(xq, wq) * (scale * wscale)


class _InferenceMLP(tf.Module):
    def __init__(self, stored: dict[str, np.ndarray], prefix: str, n_layers: int, relu_last: bool) -> None:
        super().__init__(name=f"{prefix}_inference")
        self.layers = []
        for k in range(n_layers):
            name = f"{prefix}.{k}.weight"
            bias = tf.constant(stored[f"{prefix}.{k}.bias"])
            if name + "@int8" in stored:
                self.layers.append(("int8", tf.constant(stored[name + "@int8"].T.astype(np.float32)),
                                    tf.constant(stored[name + "@scale"]), bias))
            else:
                self.layers.append(("fp32", tf.constant(np.ascontiguousarray(ms.mlp_weight(stored, name).T)),
                                    None, bias))
        self.relu_last = relu_last

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        last = len(self.layers) - 1
        for k, (kind, w, s, b) in enumerate(self.layers):
            x = (_int8_matmul(x, w, s) if kind == "int8" else tf.matmul(x, w)) + b
            if k < last or self.relu_last:
                x = tf.nn.relu(x)
        return x


class CompressedTFDLRM(TFDLRM):
    """TFDLRM whose embeddings and MLPs follow ``scenario.compression``.

    A layer over whichever TFDLRM comes next in the class's order: ``base_kwargs`` go to it, so the
    data-parallel model (distributed_mwms.MWMSCompressedTFDLRM) is this class over MWMSTFDLRM and each
    worker builds exactly the model one process builds."""

    def __init__(self, scenario: Scenario, embedding_layout: str = "", **base_kwargs: Any) -> None:
        self.plan = parse_compression(scenario.compression)
        self._init = ms.initial_params(scenario.model, self.plan, scenario.train.seed)
        # The base class builds this plan's embedding stage (_make_embeddings) from _initial_params: no
        # plain table is allocated first.
        super().__init__(replace(scenario, compression="none"), embedding_layout, **base_kwargs)
        self.scenario = replace(self.scenario, compression=scenario.compression)
        cfg = self.model_config
        with self.variable_scope():
            base = np.concatenate([[0], np.cumsum(cfg.table_sizes)])
            self._full_base = tf.constant(base[:-1], tf.int64)
            self._counts = tf.Variable(tf.zeros([int(base[-1])], tf.int64), trainable=False)
        self.set_params(self._init)
        self._steps = 0
        self._masks: dict[str, np.ndarray] | None = None
        self._stored: dict[str, np.ndarray] | None = None
        self._count_fn = tf.function(self._count_graph)

    def _initial_params(self) -> dict[str, np.ndarray]:
        return self._init

    def _make_embeddings(self, params: dict[str, np.ndarray], layout: str) -> CompressedTables:
        return CompressedTables(self.model_config, self.plan, params)

    # --- training -------------------------------------------------------------------------------
    def _count_graph(self, ids: tf.Tensor, lengths: tf.Tensor) -> None:
        batch = tf.shape(lengths)[1]
        bag = tf.repeat(tf.range(tf.size(lengths)), tf.reshape(lengths, [-1]))
        gid = ids + tf.gather(self._full_base, bag // batch)
        self._counts.assign_add(tf.math.bincount(tf.cast(gid, tf.int32), minlength=tf.size(self._counts),
                                                 maxlength=tf.size(self._counts), dtype=tf.int64))

    def train_step(self, staged: Staged) -> tf.Tensor:
        if self.embeddings.layout.needs_id_counts:
            self._count_fn(staged[1], staged[2])
        loss = super().train_step(staged)
        self._steps += 1
        self._stored = None
        if self.plan.prune_sparsity > 0:
            if self._masks is None and self._steps >= max(1, int(PRUNE_AT * self.train_config.steps)):
                self._masks = ms.prune_masks(self.get_params(), self.plan.prune_sparsity)
            if self._masks is not None:
                for name, w in self.arch.kernels().items():
                    w.assign(w * self._masks[name].T.astype(np.float32))
        return loss

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        """Float32 master weights in the plan's training form (see model_state.param_shapes)."""
        expected = ms.param_shapes(self.model_config, self.plan)
        check_params(params, expected)
        self.embeddings.set_params(params)
        self.arch.set_params(params)
        self.optimizer.reset()
        self._stored = None

    # --- post-training compression ----------------------------------------------------------------
    def id_counts(self) -> dict[int, np.ndarray]:
        return self._split_counts(self._counts.numpy())

    def _split_counts(self, c: np.ndarray) -> dict[int, np.ndarray]:
        base = np.concatenate([[0], np.cumsum(self.model_config.table_sizes)])
        return {f: c[base[f] : base[f + 1]] for f in range(self.model_config.num_tables)}

    def set_id_counts(self, counts: dict[int, np.ndarray]) -> None:
        self._counts.assign(np.concatenate([np.asarray(counts[f], np.int64)
                                            for f in range(self.model_config.num_tables)]))
        self._stored = None

    def finalize(self) -> dict[str, np.ndarray]:
        if self._stored is None:
            self.load_stored(ms.finalize(self.model_config, self.plan, self.get_params(), self.id_counts()))
        assert self._stored is not None
        return self._stored

    def load_stored(self, stored: dict[str, np.ndarray]) -> None:
        cfg = self.model_config
        with tf.device(self.runtime.device):
            self._inf_emb = CompressedTables(cfg, self.plan, {}, stored=stored)
            # The model's own dense architecture from the stored weights (pruned: zero-filled; int8:
            # dequantized), its MLPs read from the stored arrays (int8 matmuls for mlp-int8).
            dense = {name: ms.mlp_weight(stored, name) for name in ms.mlp_param_shapes(cfg)}
            self._inf_arch = build_dense_arch(cfg, dense, tf.float32)
            self._inf_arch.bottom = _InferenceMLP(stored, "bottom", len(cfg.bottom_mlp), True)
            self._inf_arch.top = _InferenceMLP(stored, "top", len(cfg.top_mlp), False)
        spec = (tf.TensorSpec([None, cfg.num_dense], tf.float32), tf.TensorSpec([None], tf.int64),
                tf.TensorSpec([cfg.num_tables, None], tf.int32))
        self._inf_fn = tf.function(self._inference_graph, input_signature=spec)
        self._stored = stored

    def stored_arrays(self) -> dict[str, np.ndarray]:
        return self.finalize()

    def _inference_graph(self, dense: tf.Tensor, ids: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        return tf.sigmoid(self._inf_arch(dense, self._inf_emb.pool(ids, lengths)))

    def infer(self, staged: Staged) -> tf.Tensor:
        self.finalize()
        with tf.device(self.runtime.device):
            return self._inf_fn(*staged[:3])

    def loss(self, staged: Staged) -> float:
        p = tf.clip_by_value(self.infer(staged), 1e-7, 1 - 1e-7)
        y = staged[3]
        return float(-tf.reduce_mean(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p)))

    def storage_bytes(self) -> dict[str, int]:
        """Serialized .npz bytes of the stored (compressed) arrays."""
        return ms.split_bytes(self.finalize())

    def describe(self) -> dict[str, Any]:
        facts = super().describe()
        facts.update({
            "compression": self.plan.spec,
            "embedding": f"compressed ({self.plan.spec}): stored {self.plan.precision}, dequantized in graph",
            "storage_format": "uncompressed .npz of the stored arrays (recsys_impls.compression.model_state)",
            "mlp_inference": "in-graph int8 matmul (7-bit activations, per-channel int8 weights)"
            if self.plan.mlp_int8 else "fp32 matmul" + (" on zero-filled pruned weights"
                                                         if self.plan.prune_sparsity else ""),
        })
        return facts
