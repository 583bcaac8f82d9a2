"""Roofline scoring: bound choice, fraction, the above-1.05 flag, and which peak each precision uses."""

from __future__ import annotations

import pytest

from recsys_impls.config import ModelConfig
from recsys_impls.measure.roofline import compute_peak, flags_from, roofline_section, score
from recsys_impls.workmodel import Work

PEAKS = {"gemm_fp32_flops_per_s": 1e11, "gemm_bf16_flops_per_s": 4e11, "gemm_tf32_flops_per_s": None,
         "mem_triad_bytes_per_s": 1e10, "mem_copy_bytes_per_s": 9e9}


def work(flops: int, nbytes: int) -> Work:
    return Work(phase="train", batch_size=1, precision="fp32", optimizer="sgd", compression="none",
                mlp_flops=flops, interaction_flops=0, projection_flops=0, embedding_bytes_read=nbytes,
                embedding_bytes_written=0, index_bytes_read=0, dense_activation_bytes=0, param_bytes_read=0,
                param_bytes_written=0)


def test_compute_bound() -> None:
    s = score(work(10**9, 10**7), 0.02, PEAKS)  # 10 ms of GEMM vs 1 ms of memory
    assert s["bound"] == "compute"
    assert s["fraction"] == pytest.approx(0.5)
    assert s["achieved_flops_per_s"] == pytest.approx(5e10)
    assert s["achieved_bytes_per_s"] == pytest.approx(5e8)
    assert s["intensity_flops_per_byte"] == pytest.approx(100.0)
    assert s["peak_flops_per_s"] == 1e11 and s["peak_bytes_per_s"] == 1e10
    assert s["flag"] is None


def test_memory_bound() -> None:
    s = score(work(10**9, 10**9), 0.4, PEAKS)  # 10 ms of GEMM vs 100 ms of memory
    assert s["bound"] == "memory"
    assert s["fraction"] == pytest.approx(0.25)
    assert s["fraction"] == pytest.approx(s["achieved_bytes_per_s"] / s["peak_bytes_per_s"])


def test_flag_above_1_05_and_not_below() -> None:
    w = work(10**9, 10**7)  # 10 ms attainable
    assert score(w, 0.010 / 1.04, PEAKS)["flag"] is None
    flagged = score(w, 0.010 / 1.06, PEAKS)
    assert "work model" in flagged["flag"] and "timer" in flagged["flag"]
    section = {"train": flagged, "infer": score(w, 0.02, PEAKS)}
    assert flags_from(section) == [{"figure": "roofline.train", "kind": "roofline-above-1.05",
                                    "detail": flagged["flag"]}]
    assert flags_from({"train": None, "infer": None}) == []


@pytest.mark.parametrize(("precision", "key"), [
    ("fp32", "gemm_fp32_flops_per_s"), ("amp-bf16", "gemm_bf16_flops_per_s"), ("amp-fp16", "gemm_bf16_flops_per_s"),
    ("tf32", "gemm_fp32_flops_per_s"),
])
def test_precision_picks_the_peak(precision: str, key: str) -> None:
    s = score(work(10**9, 10**7), 0.02, PEAKS, precision)
    assert s["compute_peak"] == key and s["peak_flops_per_s"] == PEAKS[key]


def test_tf32_peak_used_where_measured() -> None:
    peaks = dict(PEAKS, gemm_tf32_flops_per_s=2e11)
    assert compute_peak(peaks, "tf32") == ("gemm_tf32_flops_per_s", 2e11)


def test_bf16_peak_moves_the_bound() -> None:
    w = work(10**9, 2 * 10**7)  # fp32: 10 ms compute vs 2 ms memory; bf16: 2.5 ms vs 2 ms
    assert score(w, 0.1, PEAKS, "fp32")["fraction"] == pytest.approx(0.1)
    assert score(w, 0.1, PEAKS, "amp-bf16")["fraction"] == pytest.approx(0.025)


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_step_time(seconds: float) -> None:
    with pytest.raises(ValueError, match="step_seconds"):
        score(work(1, 1), seconds, PEAKS)


def test_missing_peak() -> None:
    with pytest.raises(ValueError, match="gemm_bf16_flops_per_s"):
        score(work(1, 1), 1.0, {"gemm_fp32_flops_per_s": 1.0, "mem_triad_bytes_per_s": 1.0}, "amp-bf16")


def test_section() -> None:
    model = ModelConfig(num_dense=3, table_sizes=(10, 10), embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(4, 1))
    sec = roofline_section(model, 2, "sgd", "fp32", "none", 1e-3, None, None, PEAKS)
    assert sec["peaks"] is PEAKS
    assert sec["train"]["flops_per_step"] == sec["work"]["train"]["flops"] == 1392
    assert sec["infer"] is None and sec["work"]["infer"] is None
    sec = roofline_section(model, 2, "sgd", "fp32", "none", 1e-3, 1e-4, 2, PEAKS)
    assert sec["infer"]["flops_per_step"] == 496
    with pytest.raises(ValueError, match="infer_batch_size"):
        roofline_section(model, 2, "sgd", "fp32", "none", None, 1e-4, None, PEAKS)
