"""The compressed model's parameters and stored arrays, framework-neutral (numpy only).

Two forms, shared by the PyTorch and TensorFlow variants so both store exactly the same bytes:

* Training form (``initial_params`` / ``param_shapes``): float32 arrays. Embedding parameters are the
  plan's layout's groups (compression/layouts.py): ``emb.{f}`` [rows, D] (plain, hash: rows = K buckets,
  freq-prune, any precision); ``emb.{f}.q`` / ``emb.{f}.r`` (QR quotient / remainder tables);
  ``emb.{f}.tt0..2`` (TT-Rec cores as tables, compression/tt.py); ``emb.{f}`` [rows, d_f] and
  ``emb.{f}.proj`` [d_f, D] (mixed-dim, projection only where d_f < D). MLPs as in base.py.
* Stored form (``finalize``): what the compressed model keeps after training, as named numpy arrays.
  A table T becomes ``T`` (fp32), ``T@fp16``, ``T@bf16`` (uint16 high halves), ``T@int8`` or
  ``T@int4`` (FBGEMM fused row-wise layouts); freq-prune adds ``emb.{f}.kept`` (sorted kept ids) and
  the table keeps those rows plus one fallback row. Pruned MLP weights are stored sparse
  (``prune.to_sparse_arrays``); mlp-int8 weights as ``W@int8`` int8 [out, in] + ``W@scale`` [out]
  (symmetric, per output channel). Biases and projections stay float32.

``serialize`` writes the stored form as an uncompressed ``.npz``; its length is the model's stored
bytes, and the fp32 baseline is measured through the same container so ratios compare like for like.
``reference_forward`` is the slow numpy oracle of the compressed model's predictions.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from recsys_impls.compression.layouts import lookup_rows, plan_layout, table_groups
from recsys_impls.compression.prune import from_sparse_arrays, magnitude_mask, to_sparse_arrays
from recsys_impls.compression.quant import (
    fuse_4bit_rowwise,
    fuse_byte_rowwise,
    half_precision,
    quantize_rowwise,
    unfuse,
)
from recsys_impls.compression.spec import CompressionPlan
from recsys_impls.config import ModelConfig
from recsys_impls.init_params import initial_params as base_initial_params
from recsys_impls.init_params import mlp_param_shapes

PRECISION_SUFFIX = {"fp16": "@fp16", "bf16": "@bf16", "int8": "@int8", "int4": "@int4"}


# ---- training form ------------------------------------------------------------------------------

def table_names(config: ModelConfig, plan: CompressionPlan) -> list[str]:
    """Names of the embedding tables that get row-wise storage (projections excluded)."""
    return [g.name(f) for f, groups in enumerate(table_groups(config, plan)) for g in groups if g.table]


def embedding_shapes(config: ModelConfig, plan: CompressionPlan) -> dict[str, tuple[int, int]]:
    return {g.name(f): g.shape for f, groups in enumerate(table_groups(config, plan)) for g in groups}


def param_shapes(config: ModelConfig, plan: CompressionPlan) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = dict(embedding_shapes(config, plan))
    shapes.update(mlp_param_shapes(config))
    return shapes


def dense_initial_params(config: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """The baseline's seeded non-embedding parameters, without drawing (or allocating) its tables."""
    dense = config.spec.initial_dense
    if dense is not None:
        return dense(config, seed)
    return {k: v for k, v in base_initial_params(config, seed).items() if not k.startswith("emb.")}


def initial_params(config: ModelConfig, plan: CompressionPlan, seed: int) -> dict[str, np.ndarray]:
    """Seeded starting point. MLPs (and plain-shaped tables) equal the fp32 baseline's initial values,
    so a compressed run differs from its baseline only by the compression."""
    layout = plan_layout(plan)
    if layout.plain_init:
        return base_initial_params(config, seed)
    params = dense_initial_params(config, seed)
    params.update(layout.init(config, plan, np.random.default_rng([seed, 3])))
    return params


# ---- stored form --------------------------------------------------------------------------------

def quantize_table(table: np.ndarray, precision: str, name: str) -> dict[str, np.ndarray]:
    """One table in its stored precision."""
    if precision == "fp32":
        return {name: np.asarray(table, np.float32)}
    if precision == "fp16":
        return {name + "@fp16": half_precision(table, "fp16")}
    if precision == "bf16":
        return {name + "@bf16": (half_precision(table, "bf16").view(np.uint32) >> 16).astype(np.uint16)}
    bits = 8 if precision == "int8" else 4
    q = quantize_rowwise(table, bits)
    return {name + PRECISION_SUFFIX[precision]: fuse_byte_rowwise(q) if bits == 8 else fuse_4bit_rowwise(q)}


def stored_table(stored: dict[str, np.ndarray], name: str, dim: int) -> tuple[str, np.ndarray]:
    """(precision, array) of a stored table."""
    for precision, suffix in PRECISION_SUFFIX.items():
        if name + suffix in stored:
            return precision, stored[name + suffix]
    return "fp32", stored[name]


def dequantized_table(stored: dict[str, np.ndarray], name: str, dim: int) -> np.ndarray:
    precision, arr = stored_table(stored, name, dim)
    if precision == "fp32":
        return arr
    if precision == "fp16":
        return arr.astype(np.float32)
    if precision == "bf16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return unfuse(arr, dim, 8 if precision == "int8" else 4).dequantize()


def int8_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8: (q int8 [out, in], scale float32 [out]); w ~= q * scale."""
    w = np.asarray(weight, np.float32)
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1.0))
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


def prune_masks(params: dict[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """Magnitude masks (True = kept) for every MLP weight matrix at exactly ``sparsity``."""
    return {k: magnitude_mask(v, sparsity) for k, v in params.items()
            if k.endswith(".weight") and not k.startswith("emb.")}


def finalize(config: ModelConfig, plan: CompressionPlan, params: dict[str, np.ndarray],
             counts: dict[int, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Training-form float32 params (+ id counts per feature for freq-prune) -> stored arrays."""
    stored: dict[str, np.ndarray] = {}
    names = set(table_names(config, plan))
    layout = plan_layout(plan)
    for name, value in params.items():
        if name in names:
            c = counts.get(int(name.split(".")[1])) if counts else None
            table, extra = layout.stored_table(plan, name, value, c)
            stored.update(extra)
            stored.update(quantize_table(table, plan.precision, name))
        elif name.endswith(".weight") and not name.startswith("emb."):
            if plan.prune_sparsity > 0:
                w = value * magnitude_mask(value, plan.prune_sparsity)
                stored.update(to_sparse_arrays(w, name))
            elif plan.mlp_int8:
                q, scale = int8_weight(value)
                stored[name + "@int8"], stored[name + "@scale"] = q, scale
            else:
                stored[name] = np.asarray(value, np.float32)
        else:
            stored[name] = np.asarray(value, np.float32)
    return stored


def mlp_weight(stored: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A stored MLP weight back as dense float32 [out, in] (int8: the dequantized weight)."""
    if name in stored:
        return stored[name]
    if name + "@int8" in stored:
        return stored[name + "@int8"].astype(np.float32) * stored[name + "@scale"][:, None]
    return from_sparse_arrays(stored, name)


def serialize(arrays: dict[str, np.ndarray]) -> bytes:
    """The stored form as an uncompressed .npz (what a checkpoint of the compressed model occupies)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def deserialize(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files}


def split_bytes(stored: dict[str, np.ndarray]) -> dict[str, int]:
    """Serialized bytes of the whole stored model and of its embedding part alone."""
    emb = {k: v for k, v in stored.items() if k.startswith("emb.")}
    return {"model": len(serialize(stored)), "embedding": len(serialize(emb))}


# ---- numpy oracle -------------------------------------------------------------------------------

def embedding_rows(config: ModelConfig, plan: CompressionPlan, stored: dict[str, np.ndarray], f: int,
                   ids: np.ndarray) -> np.ndarray:
    """The D-wide vector each id of feature f reads in the stored model: float64 [len(ids), D]."""
    return lookup_rows(config, plan, f, ids, lambda name, dim: dequantized_table(stored, name, dim), stored)


def reference_forward(config: ModelConfig, plan: CompressionPlan, stored: dict[str, np.ndarray],
                      batch: Any) -> np.ndarray:
    """Probabilities of the stored compressed model (float64 math; mlp-int8 as weight-only int8)."""
    return config.spec.forward(config, batch, lambda name: mlp_weight(stored, name),
                               lambda f, ids: embedding_rows(config, plan, stored, f, ids))
