"""DDP communication hooks on gloo (2 processes, tiny model): fp16 compression and PowerSGD run on the dense
buckets (sparse embedding gradients keep the plain all-reduce), replicas stay identical, the hook really
changes the result, and the record carries the hook's effect on AUC and step time. bf16 is skipped on
CPU with the reason (NCCL only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys_impls.config import build_scenario
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.init_params import initial_params
from recsys_impls.parallel.run import run_distributed, run_parallel

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")

TINY = {"model": {"table_sizes": [300, 50, 800, 120], "embedding_dim": 8, "bottom_mlp": [16, 8],
                  "top_mlp": [16, 1]},
        "train": {"batch_size": 64, "steps": 8, "eval_samples": 512, "warmup_steps": 1, "learning_rate": 0.5,
                  "optimizer": "sgd"}}


def _scenario(parallel: str):  # noqa: ANN202
    return build_scenario({**TINY, "scenario": {"framework": "torch", "parallel": parallel}})


def test_hooks_run_and_record_their_effect_with_identical_replicas(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """fp16 through ``run_parallel`` (the hook's effect against plain DDP, run by the same launcher), then
    PowerSGD against that same plain run's weights."""
    from recsys_impls.parallel import run as run_mod

    launch_one = run_mod.run_distributed

    def keep_plain_run(sc, timeout_s=None, run_dir=None, job_extra=None, env=None):  # noqa: ANN001, ANN202
        if sc.parallel == "ddp:2":  # the reference run: keep its weights for the PowerSGD comparison
            return launch_one(sc, timeout_s, tmp_path / "plain", {"dump_params": True}, env)
        return launch_one(sc, timeout_s, run_dir, job_extra, env)

    monkeypatch.setattr(run_mod, "run_distributed", keep_plain_run)
    record = run_parallel(_scenario("ddp:2:fp16"), baseline=False, timeout_s=180)
    par = record["parallel"]
    assert par["comm_hook"] == "fp16" and par["replicas_identical"] is True
    effect = par["comm_hook_effect"]
    assert effect["reference_spec"] == "ddp:2" and effect["hook"] == "fp16"
    assert effect["auc_delta"] == pytest.approx(effect["auc"] - effect["reference_auc"])
    assert effect["step_time_ratio"] > 0
    assert abs(effect["auc_delta"]) < 0.05  # fp16-rounded dense gradients: same model, nearly the same AUC
    assert record["memory"]["peak_host_rss_bytes"] > 0
    assert all(r["peak_rss_bytes"] > 0 for r in par["per_rank"])

    sc = _scenario("ddp:2:powersgd")
    out = run_distributed(sc, timeout_s=180, run_dir=tmp_path / "psgd", job_extra={"dump_params": True})
    assert out["parallel"]["replicas_identical"] is True
    p0, p1 = (dict(np.load(tmp_path / "psgd" / f"rank{r}.params.npz")) for r in (0, 1))
    init = initial_params(sc.model, sc.train.seed)
    for name in p0:
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
        assert np.isfinite(p0[name]).all()
    assert all(not np.array_equal(p0[f"emb.{f}"], init[f"emb.{f}"]) for f in range(sc.model.num_tables))
    # PowerSGD starts after 2 plain steps, then sends rank-2 approximations of the dense gradients:
    # the dense weights must differ from plain DDP's, the run must still learn something.
    q = dict(np.load(tmp_path / "plain" / "rank0.params.npz"))
    assert any(not np.allclose(p0[n], q[n], atol=1e-6) for n in p0 if n.startswith(("bottom", "top")))
    assert 0.0 <= out["quality"]["auc"] <= 1.0


def test_bf16_hook_skipped_on_cpu_with_reason() -> None:
    with pytest.raises(ScenarioUnsupported, match="NCCL"):
        run_distributed(_scenario("ddp:2:bf16"), timeout_s=60)
