"""Faults (straggler, hot table), uneven data-parallel shares and their exact gradient weighting, the
staleness distribution: parsing and arithmetic in one process, and one 2-process DDP run (adaptive
shares under a straggler) checked against one process on the same global batches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsys_impls.config import build_scenario  # noqa: E402
from recsys_impls.errors import UsageError  # noqa: E402
from recsys_impls.parallel import balance, faults, staleness  # noqa: E402

TINY = {"model": {"table_sizes": [300, 50, 800, 120], "embedding_dim": 8, "bottom_mlp": [16, 8],
                  "top_mlp": [16, 1]},
        "train": {"batch_size": 64, "steps": 8, "eval_samples": 512, "warmup_steps": 1, "optimizer": "adagrad",
                  "learning_rate": 0.05}}


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--straggler", "1:2"], "a straggler needs a distributed run"),
    (["--parallel", "ddp:2", "--straggler", "2:2"], "rank 2 does not exist"),
    (["--parallel", "ddp:2", "--straggler", "1:0.5"], "FACTOR a number from 1 to 100"),
    (["--parallel", "ddp:2", "--straggler", "one:2"], "RANK:FACTOR"),
    (["--hot-table", "26:0.5"], "table 26 does not exist"),
    (["--hot-table", "0:1"], "SHARE a number between 0 and 1"),
    (["--hot-table", "0:0.01"], "(one id per sample)"),
    (["--hot-table", "0:0.5", "--data", "movielens"], "skews synthetic ids only"),
    (["--parallel", "ddp:2", "--balance", "adaptive:0"], "adaptive:K"),
    (["--balance", "adaptive"], "balancing needs a distributed run"),
])
def test_bad_fault_values_are_one_line_and_exit_2(flags: list[str], fragment: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    from recsys_impls.cli import main

    assert main(["run", "--preset", "tiny", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_fault_values_parse_and_reach_the_scenario() -> None:
    sc = build_scenario({**TINY, "data": {"hot_table": "2:0.6"},
                         "scenario": {"parallel": "ddp:2", "straggler": "1:2.5", "balance": "adaptive:4"}})
    assert faults.parse_straggler(sc.straggler) == faults.StragglerSpec(1, 2.5)
    assert faults.parse_balance(sc.balance) == faults.BalanceSpec("adaptive", 4)
    assert faults.parse_balance("static").adaptive is False
    assert sc.to_dict()["straggler"] == "1:2.5" and sc.to_dict()["data"]["hot_table"] == "2:0.6"
    assert type(sc).from_dict(json.loads(json.dumps(sc.to_dict()))) == sc
    with pytest.raises(UsageError):
        faults.parse_straggler("1:")


def test_hot_table_takes_its_share_of_lookups() -> None:
    from recsys_impls.parallel.shards import prepare_data

    sc = build_scenario({**TINY, "train": {**TINY["train"], "steps": 40}, "data": {"hot_table": "2:0.6"}})
    _, data = prepare_data(sc)
    lookups = data.train.lengths.sum(axis=1).astype(np.float64)
    assert lookups[2] / lookups.sum() == pytest.approx(0.6, abs=0.01)
    assert (data.train.lengths[2] >= 1).all()
    assert data.info["generator"]["hot_table"] == {"table": 2, "mean_bag": pytest.approx(4.5)}
    assert faults.hot_bag_mean(faults.HotTableSpec(0, 0.5), 4, 2) == pytest.approx(6.0)


def test_straggler_sleeps_factor_minus_one_times_compute() -> None:
    slept: list[float] = []
    s = faults.Straggler(3.0, sleep=slept.append)
    s.before_step()
    assert slept == []  # nothing owed before the first step
    assert s.after_step(0.01) == pytest.approx(0.02)
    assert slept == []  # the sleep is paid at the next step's start, not after this one
    s.before_step()
    s.after_step(0.005)
    s.before_step()
    assert slept == pytest.approx([0.02, 0.01])
    assert s.report() == {"factor": 3.0, "slept_s": pytest.approx(0.03), "steps": 2}
    s.before_step()
    assert len(slept) == 2  # a debt is paid once
    assert faults.Straggler(1.0, sleep=slept.append).after_step(1.0) == 0.0


def test_shares_follow_speed_and_keep_the_global_batch() -> None:
    # Rank 1 twice as slow per sample: it gets a third of the batch; shares always add up.
    assert balance.choose_shares([0.01, 0.02], [32, 32], 64, min_share=0) == [43, 21]
    for t in ([1.0, 3.0, 2.0], [0.5, 0.5, 0.5], [1e-6, 5.0, 1.0]):
        got = balance.choose_shares(t, [20, 20, 20], 60, min_share=4)
        assert sum(got) == 60 and min(got) >= 4
    assert balance.choose_shares([float("nan"), 1.0], [10, 6], 16) == [10, 6]  # nothing measured: kept
    assert balance.offsets([5, 7, 4]) == [0, 5, 12]
    assert balance.imbalance([1.0, 3.0]) == pytest.approx(1.5)


def test_weighted_uneven_losses_average_to_the_global_batch_gradient() -> None:
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 5, generator=g), torch.rand(48, generator=g)
    w = torch.randn(5, generator=g, requires_grad=True)

    def grad(xs: torch.Tensor, ys: torch.Tensor, weight: float) -> torch.Tensor:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w, ys) * weight
        return torch.autograd.grad(loss, w)[0]

    shares = [37, 11]
    lo = balance.offsets(shares)
    ranks = [grad(x[o:o + b], y[o:o + b], balance.loss_weight(shares, r))
             for r, (o, b) in enumerate(zip(lo, shares, strict=True))]
    np.testing.assert_allclose((sum(ranks) / 2).numpy(), grad(x, y, 1.0).numpy(), rtol=1e-6, atol=1e-7)


def test_staleness_distribution() -> None:
    d = staleness.distribution([0, 0, 1, 3, 0], workers=2)
    assert d["n"] == 5 and d["histogram"] == {"0": 3, "1": 1, "3": 1} and d["max"] == 3
    assert d["stale_fraction"] == pytest.approx(0.4) and d["mean"] == pytest.approx(0.8)
    assert staleness.distribution([], 2)["n"] == 0


def test_adaptive_split_replans_every_k_steps_with_fake_ranks() -> None:
    from recsys_impls.parallel.shards import prepare_data

    sc = build_scenario(TINY)
    _, data = prepare_data(sc)
    trained: list[int] = []
    weights: list[float] = []
    busy: list[float] = []

    def train(b: object) -> None:
        trained.append(b.batch_size)  # type: ignore[attr-defined]
        busy.append(1e-3 * b.batch_size)  # type: ignore[attr-defined]

    # The other rank is reported 3x slower per sample than this one (rank 0), whatever the shares.
    def gather(v: float) -> list[float]:
        return [v, 3 * v * split.shares[1] / split.shares[0]]

    split = balance.AdaptiveSplit(data.train.split(64), 0, 2, 3, lambda b: b, train, weights.append,
                                  lambda: busy, gather, min_share=0)
    for i in range(8):
        split.step(i)
    assert [h["step"] for h in split.history] == [0, 3, 6]
    assert split.history[0]["shares"] == [32, 32] and split.history[1]["shares"] == [48, 16]
    assert trained == [32, 32, 32, 48, 48, 48, 48, 48]
    assert weights[1] == pytest.approx(2 * 48 / 64)
    summary = balance.summarize(split.history, "adaptive", 3)
    assert summary["imbalance_first_window"] == pytest.approx(1.5) and summary["final_shares"] == [48, 16]


@pytest.mark.slow
def test_ddp_adaptive_shares_under_a_straggler_equal_one_process(tmp_path: Path) -> None:
    """One 2-process run: shares move away from the straggler, replicas stay identical, and the weighted
    uneven update equals one process's step on the same global batches."""
    torch = pytest.importorskip("torch")  # noqa: F841
    from recsys_impls.parallel.run import run_distributed
    from tests.one_process import one_process_params

    sc = build_scenario({**TINY, "scenario": {"framework": "torch", "parallel": "ddp:2", "straggler": "1:4",
                                              "balance": "adaptive:2"}})
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path, job_extra={"dump_params": True})
    par = out["parallel"]
    assert par["replicas_identical"] is True and len(par["replica_sha256"]) == 2
    assert [r["sha256"] for r in par["per_rank"]] == par["replica_sha256"]
    bal = par["balance"]
    assert bal["mode"] == "adaptive" and [h["step"] for h in bal["shares_history"]] == [0, 2, 4, 6]
    assert all(sum(h["shares"]) == 64 for h in bal["shares_history"])
    assert bal["final_shares"][0] > bal["final_shares"][1]  # a 4x straggler gets the smaller share
    assert par["faults"]["straggler"]["rank"] == 1 and par["faults"]["straggler"]["steps"] == 8
    assert par["faults"]["straggler"]["slept_s"] > 0
    p0 = dict(np.load(tmp_path / "rank0.params.npz"))
    for name, ref in one_process_params(sc).items():
        np.testing.assert_allclose(p0[name], ref, atol=2e-5, err_msg=name)


def test_replan_by_time_moves_work_off_the_hot_rank_and_counts_bytes() -> None:
    from recsys_impls.parallel import planner

    # Table 0 is hot; the current plan put it with table 1 on rank 0.
    out = planner.replan_by_time([5.0, 2.0, 1.0, 1.0, 1.0], [40, 30, 20, 10, 10], 2, current=[0, 0, 1, 1, 1])
    assert out["predicted_imbalance"]["before"] == pytest.approx(7 / 5)
    assert out["predicted_imbalance"]["after"] == pytest.approx(1.0)
    assert out["assignment"][0] != out["assignment"][1]
    assert out["table_bytes_moved"] == sum([40, 30, 20, 10, 10][f] for f in out["moved_tables"])
    # Never worse than the plan it replaces: a balanced plan stays.
    same = planner.replan_by_time([1.0, 1.0], [8, 8], 2, current=[1, 0])
    assert same["assignment"] == [1, 0] and same["moved_tables"] == [] and same["table_bytes_moved"] == 0
    tables = planner.table_loads([10, 20, 30], 4, 8)
    assert planner.plan(tables, 2, "table-wise", assignment=[1, 1, 0])["assignment"] == [1, 1, 0]


def test_unsupported_balance_and_straggler_pairs_say_why() -> None:
    from recsys_impls.errors import ScenarioUnsupported

    for args, fragment in [(("tf", "ps", "row-wise", "none", "adaptive"), "whichever worker is free"),
                           (("tf", "sharded", "table-wise", "1:2", "static"), "no per-step hook"),
                           (("torch", "sharded", "row-wise", "none", "adaptive"), "table-wise only")]:
        with pytest.raises(ScenarioUnsupported, match=fragment):
            faults.check_supported(*args)
    faults.check_supported("torch", "sharded", "table-wise", "1:2", "adaptive")
    faults.check_supported("tf", "ddp", "", "1:2", "adaptive")


def test_bench_balance_grid_builds_every_supported_scenario_and_skips_in_quick_mode(monkeypatch) -> None:
    import subprocess
    import sys

    code = ("import sys, benchmarks.bench_balance; "
            "print(any(m in sys.modules for m in ('torch', 'tensorflow')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    from benchmarks import bench_balance as bb
    from recsys_impls import benchsupport as bs

    ran: dict[tuple, object] = {}
    monkeypatch.setattr(bs, "framework_or_skip", lambda f: None)
    monkeypatch.setattr(bs, "run_and_record", lambda suite, params, sc: ran.setdefault(tuple(params.values()), sc))
    monkeypatch.delenv(bs.QUICK_ENV, raising=False)
    records = bb.Balance().setup_cache()
    assert len(records) == 2 * 3 * 3 * 2
    assert ("torch", "ddp:2", "straggler:1:2", "adaptive") in ran
    assert ("torch", "sharded:2:table-wise", "hot-table:8:0.5", "adaptive") in ran
    assert ("tf", "ps:2", "none", "static") in ran and ("tf", "ps:2", "none", "adaptive") not in ran
    assert ("tf", "ddp:2", "straggler:1:2", "adaptive") in ran
    sc = ran[("torch", "sharded:2:table-wise", "hot-table:8:0.5", "adaptive")]
    assert sc.data.hot_table == "8:0.5" and sc.balance == "adaptive"
    assert ran[("tf", "ddp:2", "straggler:1:2", "static")].straggler == "1:2"
    monkeypatch.setenv(bs.QUICK_ENV, "1")
    quick = bb.Balance().setup_cache()
    assert all(r["status"] == "skipped" for r in quick.values())


def test_affine_shares_account_for_the_part_that_does_not_shrink() -> None:
    # Rank 1 is a 2x straggler on a step of 5 ms fixed + 0.01 ms per sample: a proportional split gives it
    # a third; once two shares are measured the fixed part shows and it gets the minimum.
    def busy(shares: list[int]) -> list[float]:
        return [(5 + 0.01 * shares[0]), 2 * (5 + 0.01 * shares[1])]

    history = [([128, 128], busy([128, 128]))]
    first = balance.choose_shares_affine(history, 256, min_share=32)
    assert first == [171, 85]
    history.append((first, busy(first)))
    assert balance.choose_shares_affine(history, 256, min_share=32) == [224, 32]
    assert balance.fit_costs([(10, 1.0), (20, 1.5)]) == pytest.approx((0.5, 0.05))
    assert balance.fit_costs([(10, 1.0), (10, 1.2)]) is None
    # Points on one line fit it whatever their weights; after a change of load (old points on t = 0.1 n,
    # recent ones on t = 1 + 0.05 n) down-weighting by age moves the fit to the recent line.
    line = [(n, 0.5 + 0.05 * n) for n in (10, 20, 40)]
    assert balance.fit_costs(line, 0.5) == pytest.approx((0.5, 0.05))
    changed = [(n, 0.1 * n) for n in (10, 30)] + [(n, 1 + 0.05 * n) for n in (15, 25, 35)]
    a_all, b_all = balance.fit_costs(changed) or (0.0, 0.0)
    a_new, b_new = balance.fit_costs(changed, 0.01) or (0.0, 0.0)
    assert abs(b_new - 0.05) < 0.005 and abs(a_new - 1.0) < 0.1
    assert abs(b_all - 0.05) > abs(b_new - 0.05)


def test_balance_pairs_interleaves_static_and_adaptive(monkeypatch) -> None:
    from recsys_impls.parallel import balance_pairs, run

    calls: list[str] = []

    def fake(scenario, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(scenario.balance)
        fast = scenario.balance != "static"
        return {"parallel": {"train_samples_per_s": 150.0 if fast else 100.0, "balance": {"imbalance": 1.0}},
                "train": {"timed_samples": 640}, "quality": {"auc": 0.701 if fast else 0.7}}

    monkeypatch.setattr(run, "run_distributed", fake)
    sc = build_scenario({**TINY, "scenario": {"parallel": "ddp:2", "straggler": "1:2"}})
    out = balance_pairs.compare(sc, 5, "adaptive:3")
    assert calls == ["static", "adaptive:3"] * 5
    assert out["throughput_ratio"]["median"] == pytest.approx(1.5) and out["throughput_ratio"]["n"] == 5
    assert out["auc_delta"]["median"] == pytest.approx(0.001)
    assert out["throughput_ratio"]["ci_low"] == pytest.approx(1.5)
    assert balance_pairs.main(["--parallel", "ddp:2", "--straggler", "3:2"]) == 2


def test_ddp_staged_slices_are_views_equal_to_staging_the_slice() -> None:
    torch = pytest.importorskip("torch")
    from recsys_impls.parallel.shards import prepare_data
    from recsys_impls.torch_impl.distributed_ddp import DDPTorchDLRM

    sc = build_scenario({**TINY, "data": {"hot_table": "1:0.5"}})
    _, data = prepare_data(sc)
    batch = data.train.split(64)[0]
    impl = object.__new__(DDPTorchDLRM)  # slice_staged needs no process group
    from recsys_impls import registry

    single = registry.build(sc)
    staged = single.stage(batch)
    view = DDPTorchDLRM.slice_staged(impl, staged, 37, 61)
    ref = single.stage(batch.slice(37, 61))
    for a, b in ((view.dense, ref.dense), (view.labels, ref.labels), (view.sparse.ids, ref.sparse.ids),
                 (view.sparse.offsets, ref.sparse.offsets)):
        assert torch.equal(a, b)
    assert view.batch_size == view.sparse.batch_size == 24
