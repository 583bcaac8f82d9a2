"""The record's compression section: gates, ratios and deltas computed from records."""

from __future__ import annotations

import math

import pytest

from recsys_impls.compression.section import baseline_stored_bytes, compression_section, quality_gate
from recsys_impls.config import ModelConfig


@pytest.mark.parametrize("auc, base, gate", [
    (0.800, 0.800, "99.9%"), (0.7992, 0.800, "99.9%"), (0.7991, 0.800, "99%"), (0.792, 0.800, "99%"),
    (0.7919, 0.800, "none"), (0.9, 0.8, "99.9%"), (math.nan, 0.8, "none"), (None, 0.8, "none"),
])
def test_quality_gate(auc: float, base: float, gate: str) -> None:
    assert quality_gate(auc, base) == gate


def _record(spec: str, auc: float, model: int, emb: int, infer: float, p50: float) -> dict:
    return {"scenario": {"compression": spec}, "quality": {"auc": auc, "logloss": 0.5, "ne": 0.9},
            "size": {"model_bytes": model, "embedding_bytes": emb},
            "throughput": {"infer_samples_per_s": infer, "train_samples_per_s": 100.0},
            "latency_ms": {"p50": p50, "p99": 2 * p50}}


def test_section_ratios_and_deltas() -> None:
    base = _record("none", 0.80, 5000, 4000, 1000.0, 2.0)
    rec = _record("int8", 0.793, 1500, 1000, 1500.0, 1.0)
    s = compression_section(rec, base, {"model": 4800, "embedding": 4000})
    assert s["embedding_ratio"] == 4.0 and s["model_ratio"] == 3.2
    assert s["auc_delta"] == pytest.approx(-0.007) and s["gate"] == "99%"
    assert s["infer_speed_vs_baseline"] == 1.5 and s["latency_p50_vs_baseline"] == 0.5
    assert s["methods"] == ["int8"]


def test_baseline_bytes_are_fp32_in_container() -> None:
    cfg = ModelConfig(num_dense=2, table_sizes=(1000, 10), embedding_dim=16, bottom_mlp=(16,), top_mlp=(4, 1))
    b = baseline_stored_bytes(cfg, 0)
    raw = (1000 + 10) * 16 * 4
    assert raw < b["embedding"] < raw + 2048  # the payload plus a small per-array .npz header
    assert b["model"] > b["embedding"]


def test_master_plan_drops_post_training_steps_only() -> None:
    from recsys_impls.compression import parse_compression
    from recsys_impls.compression.section import master_plan

    assert master_plan(parse_compression("int8,prune:0.5")).methods == ()
    assert master_plan(parse_compression("freq-prune:3,int4")).methods == ()
    assert master_plan(parse_compression("qr:4:add,int8")).methods == ("qr",)
    assert master_plan(parse_compression("hash:0.1,mlp-int8")).hash_fraction == 0.1
