"""The compression suite's grid (benchmarks/bench_compression.py): its model parameter and skips; no training."""

from __future__ import annotations

import pytest

from benchmarks import bench_compression as bc
from recsys_impls import benchsupport as bs
from recsys_impls.compression import bench as cb


def test_model_parameter_comes_from_the_registry() -> None:
    assert bc.MODELS == bs.all_models() and {"dlrm", "dcnv2", "two-tower", "neumf"} <= set(bc.MODELS)
    assert bc.CompressedModel.params == [bc.METHODS, bc.FRAMEWORKS, bc.DATASETS, bc.MODELS]
    assert bc.CompressedModel.param_names[-1] == "model"


def test_quick_run_skips_other_models_and_methods_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bs.QUICK_ENV, "1")
    slow = next(m for m in cb.MODEL_METHODS if m not in cb.QUICK_METHODS)
    others = [m for m in bc.MODELS if m != bs.QUICK_MODEL]
    monkeypatch.setattr(bc, "METHODS", [cb.QUICK_METHODS[0]])
    monkeypatch.setattr(bc, "MODELS", others)
    records = bc.CompressedModel().setup_cache()  # every combination skips before any framework work
    assert set(records) == {(cb.QUICK_METHODS[0], f, d, m) for f in bc.FRAMEWORKS for d in bc.DATASETS for m in others}
    for key, rec in records.items():
        assert rec["status"] == "skipped" and "quick subset" in rec["error"] and key[-1] in rec["error"]
        with pytest.raises(NotImplementedError, match="quick subset"):
            bc.CompressedModel().setup(records, *key)
    monkeypatch.setattr(bc, "METHODS", [slow])
    monkeypatch.setattr(bc, "MODELS", [bs.QUICK_MODEL])
    records = bc.CompressedModel().setup_cache()
    assert all(r["status"] == "skipped" and "quick subset" in r["error"] for r in records.values())


def test_a_model_keeps_the_compression_scenario_and_takes_its_own_defaults() -> None:
    base = cb.scenario("torch", "synthetic", "int8")
    sc = bs.with_model(base, "dcnv2")
    assert sc.model.arch == "dcnv2" and sc.compression == "int8" and sc.device.threads == 1
    assert sc.model.embedding_dim == base.model.embedding_dim and sc.train.steps == base.train.steps
    assert sc.train.learning_rate == 0.005  # dcnv2's training default (the dlrm scenario uses the suite's)
    assert sc.model.cross_rank == bs.MODEL_SHAPE[("dcnv2", "tiny")]["cross_rank"]


def test_tracks_read_the_record_of_their_model() -> None:
    section = {"model_bytes": 100, "embedding_bytes": 80, "embedding_ratio": 4.0, "auc_delta": -0.01,
               "logloss_delta": 0.002, "infer_speed_vs_baseline": 0.5}
    rec = {"status": "ok", "compression": section, "throughput": {"infer_samples_per_s": 1000.0}}
    key = ("int8", "torch", "synthetic", "dcnv2")
    records = {key: rec, ("int8", "torch", "synthetic", "dlrm"): {"status": "skipped", "error": "why"}}
    bench = bc.CompressedModel()
    bench.setup(records, *key)
    assert bench.track_inverse_embedding_ratio(records, *key) == 0.25
    assert bench.track_auc_loss(records, *key) == pytest.approx(0.01)
    assert bench.track_infer_time_vs_baseline(records, *key) == 2.0
    with pytest.raises(NotImplementedError, match="why"):
        bc.CompressedModel().setup(records, *key[:3], "dlrm")


def test_retrieval_models_take_the_embedding_methods_and_skip_the_mlp_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bs.QUICK_ENV, raising=False)
    monkeypatch.setattr(bc, "METHODS", ["prune:0.8", "mlp-int8", "int8,prune:0.8"])
    monkeypatch.setattr(bc, "MODELS", ["two-tower", "neumf"])
    records = bc.CompressedModel().setup_cache()  # every combination skips before any framework work
    for (method, *_, model), rec in records.items():
        assert rec["status"] == "skipped" and f"model {model}: --compression {method}" in rec["error"]
        assert "retrieval models' MLPs are plain weight matrices" in rec["error"]
    bs.compression_or_skip("two-tower", "qr:10,int8")  # no reason: it runs


def test_a_retrieval_record_tracks_its_gate_metric() -> None:
    section = {"model_bytes": 100, "embedding_bytes": 80, "embedding_ratio": 4.0, "gate_metric": "recall@10",
               "recall@10_delta": -0.02, "infer_speed_vs_baseline": 0.5, "auc_delta": None}
    rec = {"status": "ok", "compression": section, "throughput": {"infer_samples_per_s": 1000.0}}
    key = ("hash:0.1", "torch", "synthetic", "two-tower")
    bench = bc.CompressedModel()
    bench.setup({key: rec}, *key)
    assert bench.track_quality_loss({key: rec}, *key) == pytest.approx(0.02)
    with pytest.raises(NotImplementedError, match="no auc_delta"):
        bench.track_auc_loss({key: rec}, *key)
