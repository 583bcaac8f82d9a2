"""The analytic work model against counts worked out by hand for small shapes (not the module's formulas)."""

from __future__ import annotations

import pytest

from recsys_impls.config import PRESETS, ModelConfig, build_scenario
from recsys_impls.workmodel import Work, work_per_step

# 2 tables x 10 rows, D = 4, bottom 3-8-4, top 7-4-1 (7 = D + 3 pairs of the 3 vectors), one id per bag.
SMALL = ModelConfig(num_dense=3, table_sizes=(10, 10), embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(4, 1))
B = 2


def test_small_inference_flops() -> None:
    w = work_per_step(SMALL, B, "infer")
    # GEMMs 2*B*K*N: bottom 3->8: 96, 8->4: 128; top 7->4: 112, 4->1: 16.
    assert w.mlp_flops == 96 + 128 + 112 + 16
    # Interaction: full 3x3 bmm of D=4 vectors per sample: 2 * 2 * 9 * 4.
    assert w.interaction_flops == 144
    assert w.projection_flops == 0
    assert w.flops == 496


def test_small_training_flops() -> None:
    w = work_per_step(SMALL, B, "train", "sgd")
    # Backward = 2x forward, except the first bottom layer (no grad of the dense input): 1x.
    assert w.mlp_flops == 96 * 2 + 128 * 3 + 112 * 3 + 16 * 3
    assert w.interaction_flops == 144 * 3
    assert w.flops == 1392


def test_small_inference_bytes() -> None:
    w = work_per_step(SMALL, B, "infer")
    # 2 samples x 2 tables = 4 lookups of a 16-byte fp32 row.
    assert w.embedding_bytes_read == 64
    assert w.embedding_bytes_written == 0
    # 4 int64 ids + (B*F + 1) = 5 int64 offsets.
    assert w.index_bytes_read == 72
    # Activation elements: bottom (6 in + 16 out) + (16 + 8); pooled 16; interaction T 24 in, 14 out;
    # top (14 + 8) + (8 + 2) -> 132 fp32 values; sigmoid reads 2 logits, writes 2 probabilities (fp32).
    assert w.dense_activation_bytes == 132 * 4 + 16
    # Parameters: 3*8+8 + 8*4+4 + 7*4+4 + 4*1+1 = 105 fp32, read once.
    assert w.param_bytes_read == 420
    assert w.param_bytes_written == 0
    assert w.bytes_total == 64 + 72 + 544 + 420


def test_small_training_bytes_sgd_and_adagrad() -> None:
    sgd = work_per_step(SMALL, B, "train", "sgd")
    # Rows: forward read 64, update reads 64 and writes 64.
    assert sgd.embedding_bytes_read == 128
    assert sgd.embedding_bytes_written == 64
    assert sgd.index_bytes_read == 144  # ids and offsets again in backward
    # Elements per op, forward + backward (dY, ReLU output, saved X, dX where needed):
    bottom0 = (6 + 16) + (16 + 16 + 6)  # no dX
    bottom1 = (16 + 8) + (8 + 8 + 16 + 16)
    pooling = 16 + 16  # pooled written, d pooled read by the update
    interaction = (24 + 14) + (14 + 24 + 24)
    top0 = (14 + 8) + (8 + 8 + 14 + 14)
    top1 = (8 + 2) + (2 + 8 + 8)  # no ReLU after the logit layer
    loss = 3 * 2  # logits, labels in; d logits out
    assert sgd.dense_activation_bytes == 4 * (bottom0 + bottom1 + pooling + interaction + top0 + top1 + loss)
    # 105 params: forward read, backward read, optimizer reads param + grad -> 4 reads; grad + param written.
    assert sgd.param_bytes_read == 105 * 4 * 4
    assert sgd.param_bytes_written == 105 * 4 * 2
    assert sgd.bytes_total == 192 + 144 + 1456 + 2520

    ada = work_per_step(SMALL, B, "train", "adagrad")
    assert ada.embedding_bytes_read == 128 + 64  # plus the accumulator rows
    assert ada.embedding_bytes_written == 64 + 64
    assert ada.param_bytes_read == 105 * 4 * 5
    assert ada.param_bytes_written == 105 * 4 * 3
    assert ada.flops == sgd.flops


def test_amp_halves_activations_and_counts_the_weight_copy() -> None:
    w = work_per_step(SMALL, B, "infer", precision="amp-bf16")
    assert w.dense_activation_bytes == 132 * 2 + 16
    assert w.param_bytes_read == 105 * (4 + 2)  # fp32 master, then the bf16 copy
    assert w.param_bytes_written == 105 * 2
    assert w.flops == 496


@pytest.mark.parametrize(("spec", "row_bytes"), [("int8", 4 + 8), ("int4", 2 + 4), ("fp16", 8), ("bf16", 8)])
def test_inference_row_bytes_follow_table_precision(spec: str, row_bytes: int) -> None:
    assert work_per_step(SMALL, B, "infer", compression=spec).embedding_bytes_read == 4 * row_bytes


def test_table_precision_applies_after_training() -> None:
    w = work_per_step(SMALL, B, "train", compression="int8")
    assert w.embedding_bytes_read == 128
    assert any("after training" in n for n in w.notes)


def test_hash_shrinks_rows_not_bytes() -> None:
    plain = work_per_step(SMALL, B, "train")
    hashed = work_per_step(SMALL, B, "train", compression="hash:0.5")
    assert hashed.bytes_total == plain.bytes_total and hashed.flops == plain.flops
    assert any("hash" in n for n in hashed.notes)


def test_qr_reads_two_rows_per_id() -> None:
    mult = work_per_step(SMALL, B, "train", compression="qr:2")
    assert mult.embedding_bytes_read == 4 * 2 * 16 * 2  # forward + update, two 4-wide rows per id
    assert mult.embedding_bytes_written == 4 * 2 * 16
    concat = work_per_step(SMALL, B, "infer", compression="qr:2:concat")
    assert concat.embedding_bytes_read == 4 * (8 + 8)  # two 2-wide rows


def test_mixed_dim_projection() -> None:
    model = ModelConfig(num_dense=3, table_sizes=(10, 1000), embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(4, 1))
    w = work_per_step(model, B, "infer", compression="mixed-dim:0.5")
    # dims: 4 and max(1, round(4 * (10/1000)^0.5)) = 1: rows of 16 and 4 bytes, 2 lookups each.
    assert w.embedding_bytes_read == 2 * 16 + 2 * 4
    assert w.projection_flops == 2 * 2 * 1 * 4
    # Pooled 2x4 + 2x1, projection reads 2x1 and writes 2x4 (instead of 16 pooled elements).
    assert w.dense_activation_bytes == 4 * (22 + 24 + (8 + 2 + 2 + 8) + 38 + 22 + 10) + 16
    assert w.param_bytes_read == (105 + 4) * 4


def test_mlp_int8_inference_weights() -> None:
    w = work_per_step(SMALL, B, "infer", compression="mlp-int8")
    # 88 int8 weights, an fp32 scale per output channel (17) and 17 fp32 biases.
    assert w.param_bytes_read == 88 + 17 * 4 + 17 * 4
    assert w.flops == 496


def test_unknown_compression_is_noted_not_fatal() -> None:
    w = work_per_step(SMALL, B, "infer", compression="tt-rank:4")
    assert w.bytes_total == work_per_step(SMALL, B, "infer").bytes_total
    assert any("not recognised" in n for n in w.notes)


@pytest.mark.parametrize("kwargs", [{"phase": "eval"}, {"optimizer": "adam"}, {"precision": "int8"},
                                    {"batch_size": 0}])
def test_bad_arguments(kwargs: dict) -> None:
    args = {"model": SMALL, "batch_size": B, **kwargs}
    with pytest.raises(ValueError, match="work_per_step"):
        work_per_step(**args)


def test_dlrm_ref_training_flops() -> None:
    model = build_scenario(PRESETS["dlrm-ref"]).model
    w = work_per_step(model, 2048, "train", "adagrad")
    b = 2048
    bottom = [13 * 512, 512 * 256, 256 * 64]
    top = [100 * 512, 512 * 256, 256 * 1]  # 100 = 64 + 36 pairs of 9 vectors
    forward_mlp = 2 * b * (sum(bottom) + sum(top))
    assert w.mlp_flops == 3 * forward_mlp - 2 * b * 13 * 512
    assert w.interaction_flops == 3 * 2 * b * 9 * 9 * 64
    assert 4.1e9 < w.flops < 4.2e9


def test_small_dcnv2_flops_match_a_hand_count() -> None:
    # bottom 4-8-4, 2 tables of D=4: x_0 width 4 + 2*4 = 12; one cross layer of rank 3; top 12-5-1; B = 2.
    model = build_scenario({"model": {"arch": "dcnv2", "num_dense": 4, "bottom_mlp": [8, 4], "table_sizes": [10, 10],
                                      "embedding_dim": 4, "cross_layers": 1, "cross_rank": 3,
                                      "top_mlp": [5, 1]}}).model
    bottom, cross, top = [4 * 8, 8 * 4], [12 * 3, 3 * 12], [12 * 5, 5 * 1]  # multiply-adds per sample
    forward = 2 * B * (sum(bottom) + sum(cross) + sum(top))
    assert work_per_step(model, B, "infer").mlp_flops == forward == 804
    # Training: 3x forward, except the first bottom layer (no gradient of the dense input): 2x.
    assert work_per_step(model, B, "train").mlp_flops == 3 * forward - 2 * B * bottom[0] == 2284
    ref = build_scenario(PRESETS["dcnv2-ref"]).model  # MLPerf's dense shape: about 39.5 MFLOP per sample
    assert 39.5e6 < work_per_step(ref, 2048, "train", "adagrad").flops / 2048 < 39.6e6


def test_to_dict_has_totals() -> None:
    d = work_per_step(SMALL, B, "infer").to_dict()
    assert d["flops"] == 496 and d["bytes_total"] == 1100 and d["notes"] == []
    assert d["intensity_flops_per_byte"] == pytest.approx(496 / 1100)
    assert isinstance(work_per_step(SMALL, B), Work)
