"""The retrieval models' embedding tables as the compression layouts see them (framework-neutral, numpy).

The layouts of ``compression/layouts.py`` describe table f of a config with ``table_sizes``,
``embedding_dim`` and ``num_tables``; ``TableSet`` is that view of a retrieval model's tables
(two-tower: the user and the item tower's fused table; NeuMF: its GMF and MLP user and item tables), so
both frameworks build their compressed stage from the same registry as the ranking models, and the
stored form, its bytes and the numpy oracle are the ranking models' own (``compression/model_state``).

Names: inside the layout a group is ``emb.{f}[.suffix]``; in the model it is the plain table's name
with the same suffix (``user.table``, ``user.table.q``, ``gmf.item.tt0``, ``mlp.user.proj``). Under the
plain layout the names, shapes and initial values are the plain model's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_impls.compression import model_state as ms
from recsys_impls.compression.layouts import plan_layout, table_groups
from recsys_impls.compression.spec import CompressionPlan

LAYOUT_SEED = 3  # the layouts' own draws: rng [seed, 3], as for the ranking models


@dataclass(frozen=True)
class TableSet:
    """The tables a layout compresses: their model names, rows, one width, and the plain tables' start."""

    names: tuple[str, ...]
    table_sizes: tuple[int, ...]
    embedding_dim: int
    init_std: float  # the plain tables start N(0, init_std)

    @property
    def num_tables(self) -> int:
        return len(self.table_sizes)

    def init_table(self, f: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """A table group that stands in for a plain table (hash buckets, QR quotients, a mixed-dim table)
        starts like the plain table: compressed and baseline runs differ only by the compression."""
        return rng.normal(0.0, self.init_std, size=shape)

    # --- names -------------------------------------------------------------------------------------
    def model_name(self, layout_name: str) -> str:
        _, f, *rest = layout_name.split(".")
        return ".".join([self.names[int(f)], *rest])

    def group_names(self, plan: CompressionPlan) -> dict[str, str]:
        """layout name -> model name of every embedding parameter under ``plan``."""
        return {g.name(f): self.model_name(g.name(f)) for f, groups in enumerate(table_groups(self, plan))
                for g in groups}


def initial_params(ts: TableSet, plan: CompressionPlan, plain: dict[str, np.ndarray],
                   seed: int) -> dict[str, np.ndarray]:
    """The compressed model's float32 start in model names: the plain model's non-table parameters, and
    its tables (plain-init layouts) or the layout's seeded groups."""
    out = {k: v for k, v in plain.items() if k not in ts.names}
    layout = plan_layout(plan)
    if layout.plain_init:
        tables = {ts.model_name(f"emb.{f}"): plain[n] for f, n in enumerate(ts.names)}
    else:
        tables = {ts.model_name(k): v for k, v in layout.init(ts, plan, np.random.default_rng([seed, LAYOUT_SEED]))
                  .items()}
    return {**tables, **out}


def split_params(ts: TableSet, plan: CompressionPlan,
                 params: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(embedding groups in layout names, the other parameters) of model-named ``params``."""
    names = ts.group_names(plan)
    emb = {layout: params[model] for layout, model in names.items()}
    taken = set(names.values())
    return emb, {k: v for k, v in params.items() if k not in taken}


def stored_form(ts: TableSet, plan: CompressionPlan, params: dict[str, np.ndarray],
                counts: dict[int, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The stored arrays (``model_state.finalize``: the layout's stored tables in the plan's precision,
    layout names) plus the dense parameters as float32 (model names)."""
    emb, dense = split_params(ts, plan, params)
    return {**ms.finalize(ts, plan, emb, counts), **{k: np.asarray(v, np.float32) for k, v in dense.items()}}


def stored_bytes(stored: dict[str, np.ndarray]) -> dict[str, int]:
    """Serialized .npz bytes of the whole stored model and of its embedding part (the ranking models' container)."""
    return ms.split_bytes(stored)


def baseline_bytes(ts: TableSet, plain: dict[str, np.ndarray]) -> dict[str, int]:
    """The plain fp32 model's bytes through the same container."""
    return stored_bytes(stored_form(ts, CompressionPlan(), plain))


def lookup(ts: TableSet, plan: CompressionPlan, stored: dict[str, np.ndarray]) -> Any:
    """The numpy oracle's row lookup of the stored model: ``rows(name, ids) -> float64 [*ids.shape, D]``
    for a plain table name (``user.table``, ``gmf.item``)."""
    index = {n: f for f, n in enumerate(ts.names)}

    def rows(name: str, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        flat = ms.embedding_rows(ts, plan, stored, index[name], ids.reshape(-1))
        return flat.reshape(*ids.shape, ts.embedding_dim)

    return rows


def id_counts(ts: TableSet, per_table: list[tuple[np.ndarray, np.ndarray | None]]) -> dict[int, np.ndarray]:
    """Training counts of every row of every table (freq-prune): (ids, mask or None) per table."""
    out = {}
    for f, (ids, mask) in enumerate(per_table):
        seen = ids.reshape(-1) if mask is None else ids.reshape(-1)[mask.reshape(-1) > 0]
        out[f] = np.bincount(seen, minlength=ts.table_sizes[f]).astype(np.int64)
    return out
