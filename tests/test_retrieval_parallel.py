"""Retrieval models data parallel, 2 processes on loopback, tiny shapes: after a few steps the replicas are
identical and equal to one process on the same global batches (two-tower with its in-batch negatives
gathered over the ranks, in both frameworks; NeuMF with a compressed stage), the CLI record, and the
modes that stay refused."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsys_impls.cli import main  # noqa: E402
from recsys_impls.config import build_scenario  # noqa: E402
from recsys_impls.parallel.run import run_distributed  # noqa: E402
from tests.one_process import one_process_retrieval_params  # noqa: E402

torch = pytest.importorskip("torch")

MODEL = {"table_sizes": [200, 300], "embedding_dim": 8, "tower_mlp": [16, 8]}
# Adagrad: its per-row state makes any stray or missing gradient visible in the parameters
TRAIN = {"steps": 3, "batch_size": 64, "warmup_steps": 1, "latency_batches": 2, "learning_rate": 0.1,
         "optimizer": "adagrad"}


def _scenario(arch: str, framework: str, parallel: str, **train):  # noqa: ANN202
    return build_scenario({"model": {"arch": arch, **MODEL}, "train": {**TRAIN, **train},
                           "scenario": {"framework": framework, "parallel": parallel}})


def _check_equal_one_process(sc, run_dir: Path, atol: float = 1e-5) -> dict[str, np.ndarray]:  # noqa: ANN001
    p0, p1 = (dict(np.load(run_dir / f"rank{r}.params.npz")) for r in (0, 1))
    assert set(p0) == set(p1)
    for name in p0:
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
    ref = one_process_retrieval_params(sc)
    assert set(ref) == set(p0)
    for name in ref:
        np.testing.assert_allclose(p0[name], ref[name], atol=atol, err_msg=name)
    return p0


def _local_negatives(sc) -> dict[str, np.ndarray]:  # noqa: ANN001
    """What data parallel two-tower would reach with each rank's own B/N items as its negatives: one process
    stepping on the mean of the two half-batch losses."""
    from recsys_impls import retrieval_runner as rr
    from recsys_impls.models import retrieval as models

    t, single = sc.train, replace(sc, parallel="none")
    cfg, data = models.config_from(single.model), rr.load_data(single)
    impl = models.build("two-tower", "torch", cfg, data, t.optimizer, t.learning_rate, t.seed)
    batches, _ = models.training_batches("two-tower", cfg, data, t.batch_size, t.warmup_steps + t.steps, t.seed)
    half = t.batch_size // 2
    for b in batches:
        for opt in impl.optimizers:
            opt.zero_grad(set_to_none=True)
        loss = sum(impl._loss(impl.stage({k: v[s : s + half] for k, v in b.items()})) for s in (0, half)) / 2
        loss.backward()
        for opt in impl.optimizers:
            opt.step()
    return impl.get_params()


@pytest.mark.slow
def test_ddp_two_tower_global_negatives_equal_one_process(tmp_path: Path) -> None:
    sc = _scenario("two-tower", "torch", "ddp:2")
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path, job_extra={"dump_params": True})
    p0 = _check_equal_one_process(sc, tmp_path)
    assert out["parallel"]["replicas_identical"] is True and out["parallel"]["world_size"] == 2
    assert out["parallel"]["local_batch"] == 32
    # the test tells the global batch's negatives from each rank's own
    local = _local_negatives(sc)
    assert max(float(np.abs(p0[k] - local[k]).max()) for k in p0) > 1e-4
    q = out["quality"]
    assert 0 <= q["recall@10"] <= 1 and "recall@10" in q["popularity"] and "recall@10" in q["achievable"]
    assert out["serving"]["corpus_items"] == 300 and out["serving_throughput"]["queries_per_s"] > 0


@pytest.mark.slow
def test_ddp_neumf_compressed_equals_one_process(tmp_path: Path) -> None:
    """NeuMF's sampled negatives are drawn once from the seed, so the ranks' rows are the one-process batch;
    a hashed stage (its fp32 store's sparse rows through DDP) in the same launch."""
    sc = replace(_scenario("neumf", "torch", "ddp:2", optimizer="sgd", learning_rate=0.5), compression="hash:0.5")
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path, job_extra={"dump_params": True})
    _check_equal_one_process(sc, tmp_path, atol=2e-5)
    assert out["parallel"]["replicas_identical"] is True
    assert 0 <= out["quality"]["hr@10"] <= 1 and "hr@10" in out["quality"]["popularity"]
    assert out["size"]["baseline_container_bytes"]["embedding"] > out["size"]["embedding_bytes"]
    assert out["latency_ms"]["batch_size"] == 101


@pytest.mark.slow
def test_tf_mwms_two_tower_equal_one_process(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    sc = _scenario("two-tower", "tf", "mwms:2")
    out = run_distributed(sc, timeout_s=240, run_dir=tmp_path, job_extra={"dump_params": True})
    _check_equal_one_process(sc, tmp_path)
    assert out["parallel"]["replicas_identical"] is True
    assert 0 <= out["quality"]["recall@10"] <= 1


@pytest.mark.slow
def test_cli_two_tower_ddp_record(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    args = ["run", "--model", "two-tower", "--parallel", "ddp:2", "--steps", "3", "--batch-size", "64",
            "--threads", "1", "--config", str(_config(tmp_path)), "--json", str(path)]
    assert main(args) == 0
    rec = json.loads(path.read_text())
    par = rec["parallel"]
    assert par["world_size"] == 2 and par["replicas_identical"] is True and len(par["per_rank"]) == 2
    assert "global batch" in par["semantics"] and par["baseline_1_process"]["spec"] == "ddp:1"
    assert "recall@10" in par["baseline_1_process"] and par["scaling_efficiency"] is not None
    assert 0 <= rec["quality"]["recall@10"] <= 1 and rec["throughput"]["queries_per_s"] > 0
    assert rec["scenario"]["model"]["table_sizes"] == [200, 300] and rec["serving"]["k"] == 100


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model": MODEL, "train": {"warmup_steps": 1, "latency_batches": 2}}))
    return cfg


@pytest.mark.parametrize(("framework", "parallel", "mode"), [("torch", "sharded:2:table-wise", "sharded"),
                                                             ("tf", "ps:2", "ps")])
def test_refused_modes_one_line(capsys, framework: str, parallel: str, mode: str) -> None:
    assert main(["run", "--model", "two-tower", "--framework", framework, "--parallel", parallel]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--parallel {parallel}: the retrieval models run data parallel" in err
    assert main(["list"]) == 0
    assert f"parallel:{mode}: the retrieval models run data parallel" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "says"), [
    (["--parallel", "ddp:2:fp16"], "gradient-communication hooks are wired for the ranking models' DDP only"),
    (["--parallel", "ddp:2", "--straggler", "1:2"], "--straggler 1:2: fault injection (--straggler) and adaptive"),
    (["--parallel", "ddp:2", "--batch-size", "63"], "the global batch must be divisible by the 2 processes"),
])
def test_refused_before_launch(capsys, args: list[str], says: str) -> None:
    assert main(["run", "--model", "neumf", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err
