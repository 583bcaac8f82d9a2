"""Real engines, 2 processes on loopback, tiny models: DDP replicas identical (and equal to one process
on the global batch; compressed models too, in both frameworks), sharded predictions equal unsharded
ones (hashed, qr:add and mixed-dim stages too, and their training equals one process), a failing/hanging
rank is reported by rank with no orphans, TF MultiWorkerMirroredStrategy replicas agree."""

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
torch = pytest.importorskip("torch")

TINY = {"model": {"table_sizes": [300, 50, 800, 120], "embedding_dim": 8, "bottom_mlp": [16, 8],
                  "top_mlp": [16, 1]},
        "train": {"batch_size": 64, "steps": 6, "eval_samples": 512, "warmup_steps": 1, "learning_rate": 0.5}}


def _scenario(framework: str, parallel: str):  # noqa: ANN202
    return build_scenario({**TINY, "scenario": {"framework": framework, "parallel": parallel}})


def _params(run_dir: Path, rank: int) -> dict[str, np.ndarray]:
    return dict(np.load(run_dir / f"rank{rank}.params.npz"))


def _survivors(marker: str) -> list[int]:
    from tests.test_parallel_launch import _survivors as s

    return s(marker)


def test_ddp_replicas_identical_and_equal_single_process(tmp_path: Path) -> None:
    # Adagrad (the presets' optimizer) is the sensitive case: its state makes any stray gradient visible.
    sc = build_scenario({**TINY, "train": {**TINY["train"], "optimizer": "adagrad", "learning_rate": 0.05},
                         "scenario": {"framework": "torch", "parallel": "ddp:2"}})
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path, job_extra={"dump_params": True})
    p0, p1 = _params(tmp_path, 0), _params(tmp_path, 1)
    assert set(p0) == set(p1)
    for name in p0:
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
    assert out["parallel"]["replicas_identical"] is True
    # Same global batches in one process give the same parameters (gradients averaged over ranks).
    ref = one_process_params(sc)
    init = initial_params(sc.model, sc.train.seed)
    for name in ref:
        np.testing.assert_allclose(p0[name], ref[name], atol=2e-5, err_msg=name)
    assert any(not np.array_equal(p0[n], init[n]) for n in p0 if n.startswith("emb."))


def _compressed(framework: str, parallel: str, compression: str):  # noqa: ANN202
    """TINY, 2 steps of 64 at a learning rate TT-Rec's cores take without blowing up."""
    return replace(build_scenario({**TINY, "train": {**TINY["train"], "steps": 2, "learning_rate": 0.05},
                                   "scenario": {"framework": framework, "parallel": parallel}}),
                   compression=compression)


def _check_compressed(out: dict, run_dir: Path, sc) -> None:  # noqa: ANN001
    """Replicas identical, in the compressed shapes, equal to one process on the global batches; the
    record's sizes are the compressed model's stored bytes."""
    from recsys_impls.compression import model_state as ms
    from recsys_impls.compression.spec import parse_compression

    plan = parse_compression(sc.compression)
    p0 = _params(run_dir, 0)
    assert {k: v.shape for k, v in p0.items()} == ms.param_shapes(sc.model, plan)
    if sc.parallel.startswith("sharded"):
        _check_sharded_dump(out, run_dir, p0)
    else:
        p1 = _params(run_dir, 1)
        for name in p0:
            np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
    assert out["parallel"]["replicas_identical"] is True
    ref = one_process_params(sc)
    for name in ref:
        np.testing.assert_allclose(p0[name], ref[name], atol=2e-5, err_msg=name)
    init = ms.initial_params(sc.model, plan, sc.train.seed)
    assert any(not np.array_equal(p0[n], init[n]) for n in p0 if n.startswith("emb."))
    stored = ms.split_bytes(ms.finalize(sc.model, plan, p0))
    assert out["size"] == {"model_bytes": stored["model"], "embedding_bytes": stored["embedding"]}
    assert 0.0 <= out["quality"]["auc"] <= 1.0


def _check_sharded_dump(out: dict, run_dir: Path, p0: dict[str, np.ndarray]) -> None:
    """Rank 0 alone dumped the gathered parameters, and the fingerprint every rank streamed is theirs."""
    from recsys_impls.parallel.shards import fingerprint

    assert not (run_dir / "rank1.params.npz").exists()
    assert out["parallel"]["replica_sha256"] == [fingerprint(p0)] * 2


def test_ddp_tt_equals_single_process(tmp_path: Path) -> None:
    # three core tables per feature, combined per id before pooling (hash: in the baseline test below)
    sc = _compressed("torch", "ddp:2", "tt:2")
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path, job_extra={"dump_params": True})
    _check_compressed(out, tmp_path, sc)


def test_tf_mwms_compressed_equals_single_process(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    sc = _compressed("tf", "mwms:2", "hash:0.3")
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path, job_extra={"dump_params": True})
    _check_compressed(out, tmp_path, sc)


def _check_sharded_predictions(sc, params: dict[str, np.ndarray], run_dir: Path) -> None:  # noqa: ANN001
    """The sharded run's eval predictions (rank slices, gathered) equal the one-process model's with
    ``params``."""
    from recsys_impls import registry
    from recsys_impls.parallel.shards import eval_slice, prepare_data

    sharded = np.load(run_dir / "predictions.npy")
    single_sc, data = prepare_data(replace(sc, parallel="none"))
    impl = registry.build(replace(single_sc, parallel="none"))
    impl.set_params(params)
    expected = np.concatenate([impl.predict(eval_slice(data.eval, r, 2)) for r in range(2)])
    assert sharded.shape == expected.shape
    np.testing.assert_allclose(sharded, expected, atol=1e-5)


@pytest.mark.parametrize("compression", ["none", "hash:0.3"])
def test_sharded_predictions_equal_unsharded(tmp_path: Path, compression: str) -> None:
    """Loaded weights, row-wise: the TorchRec tables (hash: bucket counts, ids mapped before the KJT)
    predict what the one-process model predicts; table-wise, qr:add and mixed-dim are checked on their
    trained weights below."""
    pytest.importorskip("torchrec")
    from recsys_impls.compression import model_state as ms
    from recsys_impls.compression.spec import parse_compression

    sc = replace(_scenario("torch", "sharded:2:row-wise"), compression=compression)
    rng = np.random.default_rng(3)
    start = ms.initial_params(sc.model, parse_compression(compression), 7)
    params = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in start.items()}
    np.savez(tmp_path / "params.npz", **params)
    run_dir = tmp_path / "run"
    run_distributed(sc, timeout_s=240, run_dir=run_dir,
                    job_extra={"predict_only": True, "load_params": str(tmp_path / "params.npz")})
    _check_sharded_predictions(sc, params, run_dir)


@pytest.mark.parametrize("compression", ["qr:4:add", "mixed-dim:0.3"])
def test_sharded_compressed_training_equals_single_process(tmp_path: Path, compression: str) -> None:
    """Row-wise TorchRec training of qr:add (two tables per feature) and mixed-dim (narrow tables, the
    replicated projection averaged like the MLPs) reaches the one-process compressed model's parameters on
    the same global batches; the record names the tables and the stored bytes are the compressed model's."""
    pytest.importorskip("torchrec")
    sc = _compressed("torch", "sharded:2:row-wise", compression)
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path, job_extra={"dump_params": True})
    _check_compressed(out, tmp_path, sc)
    _check_sharded_predictions(sc, _params(tmp_path, 0), tmp_path)  # qr: summed after pooling; mixed-dim:
    mapping = out["parallel"]["sharding_plan"]["id_mapping"]  # projected after pooling
    names = ["emb.0.q", "emb.0.r"] if compression.startswith("qr") else ["emb.2 [800, 3]"]
    assert all(n in mapping for n in names), mapping


def test_sharded_training_moves_tables_and_reports_plan(tmp_path: Path) -> None:
    """Table-wise training with a re-plan between its two phases (forced to swap every table's rank, so
    every table and its optimizer state moves): the new placement trains every table."""
    pytest.importorskip("torchrec")
    sc = replace(_scenario("torch", "sharded:2:table-wise"), balance="adaptive")
    from recsys_impls.parallel import planner

    loads = planner.table_loads(sc.model.table_sizes, 8, sc.train.batch_size)
    first = planner.plan(loads, 2, "table-wise")["assignment"]
    swapped = [1 - r for r in first]
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path,
                          job_extra={"dump_params": True, "replan_assignment": swapped})
    bal = out["parallel"]["balance"]
    assert bal["mode"] == "adaptive" and bal["moved_tables"] == list(range(sc.model.num_tables))
    assert bal["table_bytes_moved"] == sum(n * 8 * 4 for n in sc.model.table_sizes)
    assert bal["bytes_moved"] > bal["table_bytes_moved"]  # optimizer state moved too
    assert bal["imbalance_before"] >= 1.0 and bal["imbalance_after"] >= 1.0 and bal["replan_s"] > 0
    after = out["parallel"]["sharding_plan_after_replan"]
    assert after["assignment"] == swapped
    assert after["measured_bytes_per_rank"] == out["parallel"]["sharding_plan"]["measured_bytes_per_rank"][::-1]
    assert out["parallel"]["replicas_identical"] is True
    p0 = _params(tmp_path, 0)
    _check_sharded_dump(out, tmp_path, p0)
    init = initial_params(sc.model, sc.train.seed)
    for f in range(sc.model.num_tables):
        assert not np.array_equal(p0[f"emb.{f}"], init[f"emb.{f}"]), f"table {f} did not train"
    _check_sharded_predictions(sc, p0, tmp_path)  # whole tables, after they moved
    plan = out["parallel"]["sharding_plan"]
    assert sum(plan["measured_bytes_per_rank"]) == sum(n * 8 * 4 for n in sc.model.table_sizes)
    assert out["parallel"]["imbalance"]["bytes"] >= 1.0


@pytest.mark.parametrize("fault", ["raise:1", "hang:1"])
def test_worker_failure_names_rank_and_leaves_no_orphans(tmp_path: Path, fault: str) -> None:
    sc = _scenario("torch", "ddp:2")
    with pytest.raises(launch.WorkerFailed) as err:
        run_distributed(sc, timeout_s=12 if fault.startswith("hang") else 120, run_dir=tmp_path,
                        env={launch.FAULT_ENV: fault})
    msg = str(err.value)
    assert "rank 1" in msg, msg
    if fault.startswith("hang"):
        assert "timed out" in msg
    else:
        assert "injected failure" in msg
    assert _survivors(str(tmp_path)) == []


def test_tf_mwms_two_workers_agree(tmp_path: Path) -> None:
    """Uneven shares under a straggler (the weighted path); the plain path is its equal-share special case."""
    pytest.importorskip("tensorflow")
    sc = replace(_scenario("tf", "ddp:2"), straggler="1:4", balance="adaptive:2")
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path, job_extra={"dump_params": True})
    p0, p1 = _params(tmp_path, 0), _params(tmp_path, 1)
    for name in p0:
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
    assert out["parallel"]["replicas_identical"] is True
    assert 0.0 <= out["quality"]["auc"] <= 1.0
    bal = out["parallel"]["balance"]
    assert [h["step"] for h in bal["shares_history"]] == [0, 2, 4]
    assert all(sum(h["shares"]) == sc.train.batch_size for h in bal["shares_history"])
    assert bal["final_shares"][0] > bal["final_shares"][1]  # a 4x straggler gets the smaller share
    # The weighted uneven update is the global batch's: one process on the same global batches.
    for name, ref in one_process_params(sc).items():
        np.testing.assert_allclose(p0[name], ref, atol=2e-5, err_msg=name)


def test_distributed_compressed_run_has_its_fp32_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data parallel compressed run trains its fp32 baseline with the same launcher, plan and data: the
    section's baseline AUC is the plain model's on the global batches (one process, same eval set), and the
    quality changes are the record's figures minus the baseline's, as in the one-process section."""
    from recsys_impls import registry
    from recsys_impls.compression import section
    from recsys_impls.metrics import all_metrics
    from recsys_impls.parallel import run as run_mod
    from recsys_impls.parallel.run import run_parallel
    from recsys_impls.parallel.shards import prepare_data

    monkeypatch.setattr(section, "_BASELINES", {})
    launch_one = run_mod.run_distributed

    def keep_compressed_run(sc, timeout_s=None, run_dir=None, job_extra=None, env=None):  # noqa: ANN001, ANN202
        if sc.compression != "none":  # the compressed run's weights, for the one-process check
            return launch_one(sc, timeout_s, tmp_path, {"dump_params": True}, env)
        return launch_one(sc, timeout_s, run_dir, job_extra, env)

    monkeypatch.setattr(run_mod, "run_distributed", keep_compressed_run)
    sc = _compressed("torch", "ddp:2", "hash:0.3")  # one fused smaller table
    rec = run_parallel(sc, baseline=False, timeout_s=240)
    _check_compressed(rec, tmp_path, sc)
    comp = rec["compression"]
    assert "baseline_reason" not in comp
    for key in ("auc", "logloss"):
        assert comp[f"{key}_delta"] == pytest.approx(rec["quality"][key] - comp[f"baseline_{key}"], abs=1e-12)
    assert comp["gate"] == section.quality_gate(rec["quality"]["auc"], comp["baseline_auc"])
    base_bytes = section.baseline_stored_bytes(sc.model, sc.train.seed)
    assert comp["model_ratio"] == pytest.approx(base_bytes["model"] / rec["size"]["model_bytes"])
    plain = replace(sc, compression="none")
    single, data = prepare_data(replace(plain, parallel="none"))
    impl = registry.build(replace(single, parallel="none"))
    impl.set_params(one_process_params(plain))
    expected = all_metrics(data.eval.labels, impl.predict(data.eval))
    assert comp["baseline_auc"] == pytest.approx(expected["auc"], abs=1e-5)
    assert comp["baseline_logloss"] == pytest.approx(expected["logloss"], abs=1e-5)
