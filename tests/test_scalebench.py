"""The production-scale asv grid: row caps, the quick subset, and skipping a cell that cannot fit."""

from __future__ import annotations

import pytest

from recsys_impls import benchsupport as bs
from recsys_impls import preflight
from recsys_impls import scalebench as sb
from recsys_impls.errors import UsageError


def test_cells_cap_the_1tb_tables_to_fit_and_kaggle_runs_in_full(monkeypatch):
    monkeypatch.delenv(sb.MAX_ROWS_ENV, raising=False)
    tb = sb.scenario_for("criteo-terabyte", "int8", "torch", quick=False)
    assert max(tb.model.capped_table_sizes()) == 1_000_000 and tb.compression == "int8"
    assert preflight.estimate_memory(tb)["bytes"] < 20 << 30  # fits a 24 GiB machine
    kaggle = sb.scenario_for("criteo-kaggle", "none", "tf", quick=True)
    assert kaggle.model.max_rows == 0 and kaggle.train.steps == sb.QUICK_TRAIN["steps"]
    monkeypatch.setenv(sb.MAX_ROWS_ENV, "5000")
    assert max(sb.scenario_for("dlrm-v2", "none", "torch").model.capped_table_sizes()) == 5000
    monkeypatch.setenv(sb.MAX_ROWS_ENV, "lots")
    with pytest.raises(UsageError, match=sb.MAX_ROWS_ENV):
        sb.max_rows("dlrm-v2")


def test_quick_job_runs_one_kaggle_cell_and_skips_the_rest_with_reasons(monkeypatch):
    monkeypatch.setenv(bs.QUICK_ENV, "1")
    monkeypatch.delenv(sb.MAX_ROWS_ENV, raising=False)
    assert "quick subset" in sb.skip_reason("dlrm-v2", "none", "torch")
    monkeypatch.setattr(preflight, "available_memory", lambda: {"bytes": 1 << 30, "source": "test"})
    why = sb.skip_reason(*sb.QUICK_CELL)
    assert why.startswith("not enough memory on this machine: estimated peak memory") and "\n" not in why
    monkeypatch.setattr(preflight, "available_memory", lambda: {"bytes": 1 << 50, "source": "test"})
    assert sb.skip_reason(*sb.QUICK_CELL) is None
    records = sb.run_grid(["criteo-terabyte"], ["none"], ["torch"])
    assert records[("criteo-terabyte", "none", "torch")]["status"] == "skipped"


def test_embedding_bandwidth_is_scored_against_the_measured_peak():
    from recsys_impls.config import PRESETS, build_scenario
    from recsys_impls.measure.roofline import roofline_section

    m = build_scenario(PRESETS["criteo-kaggle"]).model
    peaks = {"gemm_fp32_flops_per_s": 1e11, "mem_triad_bytes_per_s": 1e10}
    sec = roofline_section(m, 2048, "sgd", "fp32", "none", 0.05, 0.01, 2048, peaks)
    work = sec["work"]["infer"]
    assert sec["infer"]["embedding_bytes_per_s"] == work["embedding_bytes_read"] / 0.01
    assert sec["infer"]["embedding_bandwidth_fraction"] == pytest.approx(work["embedding_bytes_read"] / 0.01 / 1e10)
    assert sb.embedding_gb_per_s({"roofline": sec}, "infer") == pytest.approx(work["embedding_bytes_read"] / 0.01 / 1e9)


def test_ratio_cells_are_nightly_and_their_auc_cost_reads_the_fp32_baseline(monkeypatch):
    monkeypatch.setenv(bs.QUICK_ENV, "1")
    records = sb.run_ratio_grid()
    assert {k[1] for k in records} == set(sb.RATIO_COMPRESSIONS)
    assert all(r["status"] == "skipped" for r in records.values())
    assert sb.auc_cost({"compression": {"auc_delta": -0.004}}) == pytest.approx(0.004)
    assert sb.auc_cost({}) is None


def test_pooled_lookup_bytes_count_rows_ids_offsets_and_output():
    pytest.importorskip("torch")
    import numpy as np

    from recsys_impls.data.batch import Batch
    from recsys_impls.torch_impl.lookup_bandwidth import pooled_lookup_rate

    lengths = np.array([[1, 2], [1, 1]], np.int32)  # 2 tables x 2 samples, 5 ids
    batch = Batch(dense=np.zeros((2, 1), np.float32), ids=np.array([0, 3, 3, 1, 1]), lengths=lengths,
                  labels=np.zeros(2, np.float32))
    out = pooled_lookup_rate((4, 2), 8, [batch], warmup=1, steps=3)
    assert out["lookups_per_batch"] == 5 and out["row_bytes_per_batch"] == 5 * 8 * 4
    assert out["bytes_per_batch"] == 5 * 32 + 8 * (5 + 4 + 1) + 4 * 4 * 8
    assert out["distinct_row_fraction"] == pytest.approx(3 / 5)  # rows 0, 3 of table 0 and row 1 of table 1
    assert out["timed_steps"] == 3 and out["bytes_per_s"] > 0
    with pytest.raises(UsageError, match="lookup ids"):
        sb.lookup_bandwidth(ids="zipf")
