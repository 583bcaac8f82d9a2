"""Parallel axis parsing, support checks, the sharding planner and the communication model (no engines)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_impls.config import build_scenario
from recsys_impls.errors import ScenarioUnsupported, UsageError
from recsys_impls.parallel import comm, planner
from recsys_impls.parallel.spec import check_supported, describe_modes, parse_parallel


@pytest.mark.parametrize("spec,mode,world,extra", [
    ("none", "none", 1, {}),
    ("threads:2", "threads", 1, {"threads": 2}),
    ("ddp:2", "ddp", 2, {"comm_hook": "none"}),
    ("DDP:4:fp16", "ddp", 4, {"comm_hook": "fp16"}),
    ("ddp:2:powersgd", "ddp", 2, {"comm_hook": "powersgd"}),
    ("mwms:2", "mwms", 2, {}),
    ("sharded:2:table-wise", "sharded", 2, {"sharding": "table-wise"}),
    ("sharded:8:row-wise", "sharded", 8, {"sharding": "row-wise"}),
    ("sharded:2:auto", "sharded", 2, {"sharding": "auto"}),
])
def test_parse_valid(spec: str, mode: str, world: int, extra: dict) -> None:
    plan = parse_parallel(spec)
    assert plan.mode == mode and plan.world_size == world
    for k, v in extra.items():
        assert getattr(plan, k) == v


@pytest.mark.parametrize("spec,fragment", [
    ("", "empty"), ("gpu:2", "unknown mode"), ("ddp", "needs a count"), ("ddp:0", "not a positive"),
    ("ddp:x", "not a positive"), ("ddp:2:zip", "unknown communication hook"), ("sharded:2", "sharding type"),
    ("sharded:2:diagonal", "unknown sharding type"), ("threads:2:3", "one argument"), ("none:1", "no arguments"),
])
def test_parse_errors_are_one_line_with_accepted_forms(spec: str, fragment: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_parallel(spec)
    msg = str(err.value)
    assert fragment in msg and "accepted:" in msg and "\n" not in msg


def test_support_matrix_reasons() -> None:
    check_supported(parse_parallel("ddp:2:fp16"), "torch")
    check_supported(parse_parallel("sharded:2:row-wise"), "torch")
    check_supported(parse_parallel("ddp:2"), "tf")
    with pytest.raises(ScenarioUnsupported, match="NCCL"):
        check_supported(parse_parallel("ddp:2:bf16"), "torch", "cpu")
    check_supported(parse_parallel("ddp:2:bf16"), "torch", "cuda")
    with pytest.raises(ScenarioUnsupported, match="compression"):
        check_supported(parse_parallel("ddp:2:fp16"), "tf")
    with pytest.raises(ScenarioUnsupported, match="TensorFlow-only"):
        check_supported(parse_parallel("mwms:2"), "torch")
    check_supported(parse_parallel("sharded:2:row-wise"), "tf")  # ParameterServerStrategy
    check_supported(parse_parallel("sharded:2:table-wise"), "tf")
    check_supported(parse_parallel("ps:2"), "tf")
    with pytest.raises(ScenarioUnsupported, match="TorchRec-only"):
        check_supported(parse_parallel("sharded:2:column-wise"), "tf")
    assert len(describe_modes()) >= 6


def test_lpt_table_wise_balances_and_reports_imbalance() -> None:
    tables = planner.table_loads([1000, 1000, 10, 10, 500, 500], dim=8, batch_size=100)
    p = planner.plan(tables, 2, "table-wise", bytes_weight=1.0)
    loads = [r["bytes"] for r in p["per_rank"]]
    assert sum(loads) == sum(t.bytes for t in tables)
    assert loads[0] == loads[1]  # 1000+500+10 on each side
    assert p["imbalance"]["bytes"] == pytest.approx(1.0)
    # one huge table cannot be balanced table-wise: imbalance shows it
    skew = planner.plan(planner.table_loads([10000, 10, 10], 8, 100), 2, "table-wise", bytes_weight=1.0)
    assert skew["imbalance"]["bytes"] > 1.9


def test_row_wise_lookups_follow_measured_id_counts() -> None:
    tables = planner.table_loads([100], dim=4, batch_size=10)
    hot_first = np.zeros(100)
    hot_first[:10] = 9.0  # all traffic on the first rows -> rank 0's block
    hot_first[50] = 1.0
    p = planner.plan(tables, 2, "row-wise", id_counts=[hot_first])
    lk = [r["lookups_per_batch"] for r in p["per_rank"]]
    assert lk[0] == pytest.approx(10 * 90 / 91) and lk[1] == pytest.approx(10 * 1 / 91)
    assert p["per_rank"][0]["bytes"] == p["per_rank"][1]["bytes"]
    assert p["lookups_from"] == "measured id counts"


def test_auto_picks_lowest_max_cost() -> None:
    p = planner.plan(planner.table_loads([10000, 10, 10], 8, 100), 2, "auto")
    assert p["sharding"] in ("row-wise", "column-wise") and "alternatives" in p


def test_comm_model_formulas() -> None:
    assert comm.allreduce_per_rank(100.0, 1) == 0.0
    assert comm.allreduce_per_rank(100.0, 4) == pytest.approx(150.0)
    dp = comm.data_parallel_volume(100.0, 2.0, global_batch=64, world=4)
    assert dp["sparse_allgather_per_rank"] == pytest.approx(3 * 2.0 * 16)
    tw = comm.model_parallel_volume(0.0, 8.0, 1.0, 64, 4, "table-wise")
    rw = comm.model_parallel_volume(0.0, 8.0, 1.0, 64, 4, "row-wise")
    assert tw["pooled_fwd_per_rank"] == pytest.approx(8 * 16 * 0.75)
    assert rw["pooled_fwd_per_rank"] == pytest.approx(8 * 64 * 0.75)
    proj = comm.project({"dense_grad_bytes": 10.0, "sparse_grad_bytes_per_sample": 1.0}, "ddp", 64)
    assert set(proj["bytes_per_step"]) == {"2", "4", "8", "16", "64"}


@pytest.mark.parametrize("spec, framework, named", [
    ("tt:4", "torch", "tt"), ("qr:4", "torch", "qr:mult"), ("qr:4:concat", "tf", "qr:concat"),
    ("qr:4:add", "tf", "qr:add"), ("mixed-dim:0.3", "tf", "mixed-dim"), ("freq-prune:3", "tf", "freq-prune"),
    ("int8", "torch", "int8"), ("hash:0.1,int8", "torch", "int8"), ("hash:0.1", "tf", "hash"),
])
def test_compressed_sharding_refusal_names_the_method(spec: str, framework: str, named: str) -> None:
    from recsys_impls.compression.spec import sharding_refusal

    why = sharding_refusal(spec, framework)
    assert why.startswith(f"{named} ") and "\n" not in why, why


@pytest.mark.parametrize("spec, method", [("hash:0.1", "hash"), ("qr:4:add", "qr:add"),
                                          ("mixed-dim:0.3", "mixed-dim")])
def test_pooling_commuting_layouts_shard_in_torchrec_only(spec: str, method: str) -> None:
    from recsys_impls.compression.spec import parallel_rows, sharding_refusal
    from recsys_impls.preflight import check_parallel

    assert sharding_refusal(spec, "torch") == ""
    base = {"train": {"batch_size": 64, "eval_samples": 64}}
    check_parallel(build_scenario({**base, "scenario": {"framework": "torch", "parallel": "sharded:2:row-wise",
                                                        "compression": spec}}))
    with pytest.raises(ScenarioUnsupported, match=method):
        check_parallel(build_scenario({**base, "scenario": {"framework": "tf", "parallel": "ps:2",
                                                            "compression": spec}}))
    rows = dict(parallel_rows())
    assert rows[f"{spec} sharded"].startswith("torch sharded:N:...: runs")
    for refused in ("tt:8", "qr:4"):  # combined per id before pooling: refused in both frameworks
        assert rows[f"{refused} sharded"].startswith("refused (torch sharded:N, tf ps:N)")
