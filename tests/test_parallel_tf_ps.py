"""TensorFlow sharded embeddings on ParameterServerStrategy (chief + workers + ps on loopback, tiny model):
the sharded model predicts what the unsharded TFDLRM predicts for the same parameters (loaded, table-wise;
trained, row-wise), training moves every table and reports per-ps load, one worker + one ps trains exactly
like one process, and a failing chief ends the run naming it with no server left behind."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsys_impls.config import build_scenario  # noqa: E402
from recsys_impls.init_params import initial_params  # noqa: E402
from recsys_impls.parallel import launch  # noqa: E402
from recsys_impls.parallel.run import run_distributed  # noqa: E402
from tests.one_process import one_process_params  # noqa: E402

pytestmark = pytest.mark.slow
pytest.importorskip("tensorflow")

# Odd row counts: row-wise shards of unequal size; a 7-row table smaller than most.
TINY = {"model": {"table_sizes": [301, 50, 799, 120, 7], "embedding_dim": 8, "bottom_mlp": [16, 8],
                  "top_mlp": [16, 1]},
        "train": {"batch_size": 64, "steps": 6, "eval_samples": 384, "warmup_steps": 1, "learning_rate": 0.5,
                  "optimizer": "sgd"}}


def _scenario(parallel: str, **train: object):  # noqa: ANN202
    return build_scenario({**TINY, "train": {**TINY["train"], **train},
                           "scenario": {"framework": "tf", "parallel": parallel}})


def _single(sc):  # noqa: ANN001, ANN202
    from recsys_impls import registry
    from recsys_impls.parallel.shards import prepare_data

    single_sc, data = prepare_data(replace(sc, parallel="none"))
    return registry.build(replace(single_sc, parallel="none")), data


def _unsharded_predictions(sc, params: dict[str, np.ndarray]) -> np.ndarray:  # noqa: ANN001
    impl, data = _single(sc)
    impl.set_params(params)
    return impl.predict(data.eval)


def test_ps_table_wise_predictions_equal_unsharded(tmp_path: Path) -> None:
    """Loaded parameters (not trained ones): the ps hold exactly what was loaded, whole tables on both ps."""
    sc = _scenario("sharded:2:table-wise")
    rng = np.random.default_rng(5)
    params = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32)
              for k, v in initial_params(sc.model, 11).items()}
    np.savez(tmp_path / "params.npz", **params)
    out = run_distributed(sc, timeout_s=150, run_dir=tmp_path / "run",
                          job_extra={"predict_only": True, "load_params": str(tmp_path / "params.npz")})
    r0 = out["ranks"][0]
    assert max(r0["loaded_max_abs_diff"].values()) == 0.0  # what the ps hold is what was loaded
    layout = r0["layout"]
    assert all(len(parts) == 1 for parts in layout)
    assert {parts[0][0] for parts in layout} == {0, 1}
    sharded = np.load(tmp_path / "run" / "predictions.npy")
    expected = _unsharded_predictions(sc, params)
    assert sharded.shape == expected.shape
    np.testing.assert_allclose(sharded, expected, atol=1e-5)


def test_ps_training_moves_every_table_and_reports_load(tmp_path: Path) -> None:
    sc = _scenario("sharded:2:row-wise", optimizer="adagrad", learning_rate=0.05)
    out = run_distributed(sc, timeout_s=150, run_dir=tmp_path, job_extra={"dump_params": True})
    params = dict(np.load(tmp_path / "rank0.params.npz"))
    # the trained row-wise model predicts what the unsharded model predicts with its weights
    expected = _unsharded_predictions(sc, params)
    np.testing.assert_allclose(np.load(tmp_path / "predictions.npy"), expected, atol=1e-5)
    for f, parts in enumerate(out["parallel"]["sharding_plan"]["shard_layout"]):  # every table on both ps,
        assert sorted(p[0] for p in parts) == [0, 1]  # its rows covered exactly once
        assert sum(p[2] for p in parts) == sc.model.table_sizes[f]
    init = initial_params(sc.model, sc.train.seed)
    for f in range(sc.model.num_tables):
        assert not np.array_equal(params[f"emb.{f}"], init[f"emb.{f}"]), f"table {f} did not train"
        assert np.isfinite(params[f"emb.{f}"]).all()
    par = out["parallel"]
    ps_rows = [r for r in par["per_rank"] if r.get("role") == "ps"]
    assert len(ps_rows) == 2
    assert sum(r["local_bytes"] for r in ps_rows) == sum(n * 8 * 4 for n in sc.model.table_sizes)
    assert par["imbalance"]["bytes"] >= 1.0 and par["imbalance"]["lookups"] >= 1.0
    assert sum(r["local_lookups_per_batch"] for r in ps_rows) == pytest.approx(
        sum(par["sharding_plan"]["per_rank"][i]["lookups_per_batch"] for i in range(2)), rel=1e-6)
    assert all(r["peak_rss_bytes"] > 0 for r in par["per_rank"])  # chief, both ps, both workers
    assert par["peak_rss_bytes_max"] == max(r["peak_rss_bytes"] for r in par["per_rank"])
    assert par["comm_bytes_per_step_measured"]["topology"] == "parameter-server"
    assert 0.0 <= out["quality"]["auc"] <= 1.0 and out["quality"]["eval_samples"] == 384
    # Every update's staleness is recorded: 2 closures per global step, warm-up included.
    stale = out["consistency"]["staleness"]
    assert stale["n"] == 2 * sc.train.steps == sum(stale["histogram"].values())
    assert stale["min"] >= 0 and stale["max"] <= stale["n"] - 1
    assert par["replicas_identical"] is None and "parameter-server" in par["replicas_identical_reason"]


def test_one_worker_one_ps_trains_like_one_process(tmp_path: Path) -> None:
    # One worker runs the scheduled steps one after another: plain SGD must give the single-process weights.
    sc = _scenario("sharded:1:table-wise")
    out = run_distributed(sc, timeout_s=150, run_dir=tmp_path, job_extra={"dump_params": True})
    assert out["consistency"]["staleness"]["histogram"] == {"0": sc.train.steps}  # sequential: never stale
    got = dict(np.load(tmp_path / "rank0.params.npz"))
    ref = one_process_params(sc)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], atol=1e-5, err_msg=name)


def test_failing_chief_is_named_and_servers_are_ended(tmp_path: Path) -> None:
    from tests.test_parallel_launch import _survivors

    sc = _scenario("sharded:2:row-wise")
    with pytest.raises(launch.WorkerFailed) as err:
        run_distributed(sc, timeout_s=120, run_dir=tmp_path,
                        env={launch.FAULT_ENV: "raise:0", launch.FAULT_ENV + "_PHASE": "init"})
    assert "rank 0" in str(err.value) and "injected failure" in str(err.value)
    assert _survivors(str(tmp_path)) == []
