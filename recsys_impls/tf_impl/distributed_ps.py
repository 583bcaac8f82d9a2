"""TFDLRM with its embedding tables sharded over parameter servers (tf.distribute ParameterServerStrategy).

The model is the single-process TFDLRM (same MLPs, interaction, loss and optimizer code); only where the
variables live changes:

* ``row-wise``: every table is a ``ShardedVariable`` split by rows over the N parameter servers (TF's
  "div" layout: contiguous row blocks, part i on ps i); lookups go through ``tf.nn.embedding_lookup``,
  which sends each id to the shard that holds its row and brings back only the looked-up rows.
* ``table-wise``: whole tables placed on the ps our LPT planner chose (bytes + measured lookups), by
  colocating each table with a per-ps anchor variable (PSS honours ``colocate_with`` and never
  partitions such variables).

MLP weights are spread round robin over the ps (whole), Adagrad slots colocated with their variable.
Gradients are taken on the component variables, so a sharded table's gradient arrives per shard as
``IndexedSlices`` in shard-local rows and the same scatter updates apply it on its ps.

Training is asynchronous, as ParameterServerStrategy is: a global batch of B samples becomes N
closures of B/N samples scheduled by the ClusterCoordinator on whichever worker is free; each applies
its gradient scaled by 1/N, so the N updates add up to one global-batch SGD step (exactly, for SGD
without staleness; Adagrad normalises each partial update by its own accumulator).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.config import ModelConfig, Scenario
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.tf_impl.embeddings import PerTableTables, register_embedding, serialized_nbytes
from recsys_impls.tf_impl.model import TFDLRM, Staged

_PS_TABLES = "_ps-tables"


def ps_index(device: str) -> int:
    """The ps task index in a device string like '/job:ps/replica:0/task:1/device:CPU:0'."""
    for part in device.split("/"):
        if part.startswith("task:"):
            return int(part[5:])
    raise ValueError(f"no task in device {device!r}")


def components(v: Any) -> list[tf.Variable]:
    """The component variables of a ShardedVariable, or [v] for a plain one."""
    return list(v.variables) if hasattr(v, "variables") and not isinstance(v, tf.Variable) else [v]


class ShardedTables(PerTableTables):
    """One variable per table (plain or ShardedVariable); pooling identical to PerTableTables."""

    kind = "fp32-per-table-ps"

    def _lookup(self, table: Any, ids: tf.Tensor) -> tf.Tensor:
        return tf.nn.embedding_lookup(table, ids)  # dispatched per shard for a ShardedVariable

    @property
    def trainable_variables(self) -> tuple[tf.Variable, ...]:
        return tuple(c for t in self.tables for c in components(t))

    @property
    def variables(self) -> tuple[tf.Variable, ...]:
        return self.trainable_variables

    def get_params(self) -> dict[str, np.ndarray]:
        return {f"emb.{f}": np.concatenate([c.numpy() for c in components(t)])
                for f, t in enumerate(self.tables)}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        for f, t in enumerate(self.tables):
            full = np.asarray(params[f"emb.{f}"], np.float32)
            start = 0
            for c in components(t):
                n = int(c.shape[0])
                c.assign(full[start:start + n])
                start += n

    def shard_layout(self) -> list[list[tuple[int, int, int]]]:
        """Per table: (ps index, first row, row count) of each shard, as actually placed."""
        out = []
        for t in self.tables:
            start, parts = 0, []
            for c in components(t):
                parts.append((ps_index(c.device), start, int(c.shape[0])))
                start += int(c.shape[0])
            out.append(parts)
        return out


class PSTFDLRM(TFDLRM):
    """TFDLRM whose variables live on ParameterServerStrategy's ps tasks and whose steps are scheduled
    on its workers by a ClusterCoordinator."""

    def __init__(self, scenario: Scenario, strategy: Any, cluster: dict[str, list[str]], sharding: str,
                 table_ranks: list[int] | None = None) -> None:
        """``cluster``: the cluster spec as a dict (the strategy keeps its resolver private)."""
        if scenario.compression != "none":
            raise ScenarioUnsupported(f"ps sharding + compression {scenario.compression!r}: plain fp32 tables only")
        if scenario.device.precision != "fp32" or scenario.device.compile != "none":
            raise ScenarioUnsupported("ps sharding: fp32 without XLA only (the step runs on remote workers)")
        if sharding not in ("table-wise", "row-wise"):
            raise ScenarioUnsupported(f"TensorFlow ps sharding {sharding!r}: table-wise or row-wise")
        self.strategy = strategy
        self.sharding = sharding
        self.num_ps = len(cluster["ps"])
        self.num_workers = len(cluster["worker"])
        self.table_ranks = table_ranks or [f % self.num_ps for f in range(scenario.model.num_tables)]
        self.grad_scale = 1.0
        self.coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
        # TFDLRM builds its tables through the embedding registry: ours is registered under a private name.
        register_embedding(_PS_TABLES, lambda config, params, _arg: ShardedTables(config, params))
        super().__init__(replace(scenario, parallel="none", compression=_PS_TABLES))
        self.scenario = scenario
        cfg = self.model_config
        spec = (
            tf.TensorSpec([None, cfg.num_dense], tf.float32), tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([cfg.num_tables, None], tf.int32), tf.TensorSpec([None], tf.float32),
        )
        self._remote_train = tf.function(self._run_train, input_signature=spec)
        self._remote_predict = tf.function(self._run_predict, input_signature=spec[:3])
        self._remote_loss = tf.function(self._run_loss, input_signature=spec)

    # --- placement -------------------------------------------------------------------------------
    def variable_scope(self) -> Any:
        return self._placement()

    @contextmanager
    def _placement(self) -> Iterator[None]:
        """Strategy scope plus a creator that places tables (table-wise), MLPs and optimizer slots."""
        with self.strategy.scope():
            # Round robin puts the i-th plain variable on ps i: these anchors mark each ps.
            anchors = [tf.Variable(0.0, trainable=False, name=f"ps_anchor_{i}") for i in range(self.num_ps)]
            by_name: dict[str, tf.Variable] = {}
            counter = {"dense": 0}

            def creator(next_creator: Any, **kwargs: Any) -> Any:
                name = str(kwargs.get("name") or "")
                if name.endswith("_adagrad") and name[: -len("_adagrad")] in by_name:
                    kwargs["colocate_with"] = by_name[name[: -len("_adagrad")]]
                    return next_creator(**kwargs)
                if name.startswith("emb_") and name[4:].isdigit():
                    if self.sharding == "table-wise":
                        kwargs["colocate_with"] = anchors[self.table_ranks[int(name[4:])]]
                    var = next_creator(**kwargs)  # row-wise: the strategy's partitioner splits it
                    for c in components(var):
                        by_name[c.name.split(":")[0]] = c
                    return var
                # MLP weights and anything else: whole, round robin over the ps.
                kwargs["colocate_with"] = anchors[counter["dense"] % self.num_ps]
                counter["dense"] += 1
                var = next_creator(**kwargs)
                by_name[var.name.split(":")[0]] = var
                return var

            with tf.variable_creator_scope(creator):
                yield

    @staticmethod
    def partitioner(num_ps: int) -> Any:
        """Row-wise: every table in num_ps parts (other variables are colocated, so never partitioned)."""
        return tf.distribute.experimental.partitioners.FixedShardsPartitioner(num_shards=num_ps)

    def _run_train(self, dense: tf.Tensor, ids: tf.Tensor, lengths: tf.Tensor, labels: tf.Tensor) -> Any:
        return self.strategy.run(self._train_graph, args=(dense, ids, lengths, labels))

    def _run_predict(self, dense: tf.Tensor, ids: tf.Tensor, lengths: tf.Tensor) -> Any:
        return self.strategy.run(self._predict_graph, args=(dense, ids, lengths))

    def _run_loss(self, dense: tf.Tensor, ids: tf.Tensor, lengths: tf.Tensor, labels: tf.Tensor) -> Any:
        return self.strategy.run(self._loss_graph, args=(dense, ids, lengths, labels))

    # --- steps -----------------------------------------------------------------------------------
    def apply_gradients(self, grads: list, variables: list[tf.Variable]) -> None:
        if self.grad_scale != 1.0:
            s = tf.constant(self.grad_scale, tf.float32)
            grads = [None if g is None else
                     tf.IndexedSlices(g.values * s, g.indices, g.dense_shape) if isinstance(g, tf.IndexedSlices)
                     else g * s for g in grads]
        super().apply_gradients(grads, variables)

    def schedule_train(self, staged: Staged) -> Any:
        return self.coordinator.schedule(self._remote_train, args=staged)

    def train_step(self, staged: Staged) -> Any:
        return self.schedule_train(staged)

    def join(self) -> None:
        self.coordinator.join()

    def synchronize(self) -> None:
        self.coordinator.join()

    def stage(self, batch: Any) -> Staged:
        return (tf.constant(np.asarray(batch.dense, np.float32)), tf.constant(np.asarray(batch.ids, np.int64)),
                tf.constant(np.asarray(batch.lengths, np.int32)), tf.constant(np.asarray(batch.labels, np.float32)))

    def infer(self, staged: Staged) -> Any:
        """Probabilities computed on a worker (scheduled and fetched)."""
        return self.coordinator.schedule(self._remote_predict, args=staged[:3]).fetch()

    def loss(self, staged: Staged) -> float:
        return float(self.coordinator.schedule(self._remote_loss, args=staged).fetch())

    def predict_many(self, staged: list[Staged]) -> np.ndarray:
        """Schedule every chunk at once (the workers share them), then fetch in order."""
        remote = [self.coordinator.schedule(self._remote_predict, args=s[:3]) for s in staged]
        return np.concatenate([np.asarray(r.fetch(), np.float32).reshape(-1) for r in remote])

    def storage_bytes(self) -> dict[str, int]:
        embedding = serialized_nbytes(list(self.embeddings.variables))
        dense = serialized_nbytes(self.arch.dense_variables)
        return {"model": embedding + dense, "embedding": embedding}

    # --- figures ---------------------------------------------------------------------------------
    def placement_report(self, id_counts: list[np.ndarray] | None, batch_size: int,
                         ids_per_sample: np.ndarray | None) -> dict[str, Any]:
        """Per-ps bytes (tables, all variables) and expected lookups per global batch, from the actual
        placement of every variable and the measured id frequencies."""
        cfg: ModelConfig = self.model_config
        table_bytes = np.zeros(self.num_ps)
        lookups = np.zeros(self.num_ps)
        layout = self.embeddings.shard_layout()
        for f, parts in enumerate(layout):
            per = float(ids_per_sample[f]) if ids_per_sample is not None else float(cfg.ids_per_feature)
            total_lookups = per * batch_size
            counts = None if id_counts is None else np.asarray(id_counts[f], np.float64)
            for ps, start, n in parts:
                table_bytes[ps] += n * cfg.embedding_dim * 4
                if counts is not None and counts.sum() > 0:
                    lookups[ps] += total_lookups * counts[start:start + n].sum() / counts.sum()
                else:
                    lookups[ps] += total_lookups * n / cfg.table_sizes[f]
        all_bytes = np.zeros(self.num_ps)
        for v in [*self.trainable_variables, *self.optimizer._slots.values()]:  # noqa: SLF001
            all_bytes[ps_index(v.device)] += int(np.prod(v.shape)) * v.dtype.size

        def imb(x: np.ndarray) -> float:
            return float(x.max() / x.mean()) if x.mean() > 0 else 1.0

        return {
            "per_ps": [{"ps": i, "table_bytes": int(table_bytes[i]), "variable_bytes": int(all_bytes[i]),
                        "lookups_per_batch": float(lookups[i])} for i in range(self.num_ps)],
            "imbalance": {"bytes": imb(table_bytes), "lookups": imb(lookups), "variable_bytes": imb(all_bytes)},
            "shards": [[{"ps": p, "first_row": s, "rows": n} for p, s, n in parts] for parts in layout],
            "lookups_from": "measured id counts" if id_counts is not None else "pooling factor x batch size",
        }

    def comm_sizes(self, staged: Staged) -> dict[str, float]:
        """Bytes one global step moves between workers and ps, from this batch's tensor sizes.

        Per id: its int64 index goes to the ps holding the row and the D-float row comes back; the
        sparse update sends one row per occurrence (SGD) or per distinct id, three times (Adagrad:
        accumulate, read the accumulator, update); every worker step reads the dense weights and
        sends their update (x3 for Adagrad)."""
        cfg = self.model_config
        ids = staged[1].numpy()
        lengths = staged[2].numpy()
        b = int(lengths.shape[1])
        nnz = int(ids.size)
        row = cfg.embedding_dim * 4
        ends = np.cumsum(lengths.sum(axis=1))
        starts = ends - lengths.sum(axis=1)
        unique = sum(np.unique(ids[s:e]).size for s, e in zip(starts, ends, strict=True))
        adagrad = self.optimizer.kind == "adagrad"
        sparse_push = 3 * unique * (row + 8) if adagrad else nnz * (row + 8)
        dense = sum(int(np.prod(v.shape)) * 4 for v in self.arch.dense_variables)
        dense_push = (3 if adagrad else 1) * dense
        return {
            "topology": "parameter-server",
            "id_bytes_per_sample": 8.0 * nnz / b,
            "rows_pulled_bytes_per_sample": float(nnz * row) / b,
            "sparse_update_bytes_per_sample": float(sparse_push) / b,
            "dense_grad_bytes": float(dense),
            "dense_pull_push_bytes_per_worker_step": float(dense + dense_push),
            "embeddings_replicated": False,
        }
