"""Retrieval models through the one execution path and the CLI: tiny runs, the record they leave, bad input."""

from __future__ import annotations

import json

import pytest

from recsys_impls.cli import main
from recsys_impls.config import build_scenario
from recsys_impls.errors import ScenarioUnsupported

pytest.importorskip("torch")

TINY = {"train": {"steps": 6, "batch_size": 64, "warmup_steps": 1, "latency_batches": 3, "learning_rate": 0.1}}


# One torch thread: tiny ops in parallel regions only wait on each other (and on a shared machine, for the
# other core). TensorFlow runs keep the default: its pools are fixed once per process for every later test.
ONE_THREAD = {"device": {"threads": 1}}


def scenario(arch: str, framework: str = "torch", source: str = "synthetic", **model):
    return build_scenario({"model": {"arch": arch, **model}, "data": {"source": source},
                           "scenario": {"framework": framework}, **TINY, **ONE_THREAD})


def test_two_tower_record() -> None:
    from recsys_impls.execute import execute

    rec = execute(scenario("two-tower", table_sizes=[120, 150], temperature=0.1))
    rec.validate()
    q = rec["quality"]
    for k in (10, 50, 100):
        assert 0 <= q[f"recall@{k}"] <= 1 and 0 <= q[f"ndcg@{k}"] <= q[f"recall@{k}"]
        assert f"recall@{k}" in q["popularity"] and f"recall@{k}" in q["achievable"]
    assert q["eval_users"] == rec["data"]["eval_users"] == 120
    assert rec["serving"]["corpus_items"] == 150 and rec["throughput"]["queries_per_s"] > 0
    assert rec["train"]["timed_steps"] == 6 and rec["train"]["warmup_steps"] == 1
    assert rec["scenario"]["model"]["resolved"]["temperature"] == 0.1
    assert rec["scenario"]["model"]["table_sizes"] == [120, 150]


def write_csv(tmp_path) -> str:
    lines = ["user_id,item_id,timestamp"]
    lines += [f"user{u},item{(u * 7 + k * 3) % 40},{k}" for u in range(60) for k in range(8)]
    path = tmp_path / "inter.csv"
    path.write_text("\n".join(lines) + "\nbroken line\n")
    return str(path)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_neumf_from_the_cli_on_a_csv(tmp_path, capsys, framework: str) -> None:
    if framework == "tf":
        pytest.importorskip("tensorflow")
    path, out = write_csv(tmp_path), tmp_path / "rec.json"
    args = ["run", "--model", "neumf", "--framework", framework, "--data", path, "--steps", "4", "--batch-size", "32",
            "--json", str(out), *(["--threads", "1"] if framework == "torch" else [])]
    assert main(args) == 2
    assert f"{path}:482: 3 comma-separated fields expected" in capsys.readouterr().err
    assert main([*args, "--skip-bad-lines"]) == 0
    assert "hr@10 / ndcg@10 (model)" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert rec["data"]["bad_lines"] == 1 and rec["data"]["eval_users"] == 60
    assert 0 <= rec["quality"]["hr@10"] <= 1 and "hr@10" in rec["quality"]["popularity"]
    assert rec["latency_ms"]["batch_size"] == 101  # the held-out item and 100 sampled ones


def test_unsupported_axes_and_listing(capsys) -> None:
    from recsys_impls.execute import execute_or_record

    rec = execute_or_record(build_scenario({"model": {"arch": "two-tower"},
                                            "scenario": {"compression": "int8,prune:0.8"}}))
    assert rec["status"] == "skipped" and "prune: MLP magnitude pruning is wired for the ranking" in rec["error"]
    with pytest.raises(ScenarioUnsupported, match="parallel sharded:2:table-wise: the retrieval models run data"):
        from recsys_impls.retrieval_runner import run_retrieval

        run_retrieval(build_scenario({"model": {"arch": "neumf"}, "scenario": {"parallel": "sharded:2:table-wise"}}))
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "two-tower" in listed and "neumf" in listed and "recall@10" in listed
    two_tower_row = next(line for line in listed.splitlines() if line.strip().startswith("two-tower"))
    assert "compression:prune:" in two_tower_row and "compression:mlp-int8:" in two_tower_row
    assert "compression: " not in two_tower_row  # the layouts and storage precisions are taken


@pytest.mark.parametrize(("arch", "spec", "metric"), [("two-tower", "qr:4,int8", "recall@10"),
                                                       ("neumf", "hash:0.25", "hr@10")])
def test_compressed_retrieval_record(arch: str, spec: str, metric: str) -> None:
    """A compressed retrieval run beside its fp32 baseline on the same data: stored bytes, ratios and the
    quality change in the model's own figures (the TF stage: test_retrieval_parity)."""
    from recsys_impls.execute import execute

    rec = execute(build_scenario({"model": {"arch": arch, "table_sizes": [120, 150]},
                                  "scenario": {"compression": spec}, **TINY, **ONE_THREAD}))
    rec.validate()
    c = rec["compression"]
    assert c["spec"] == spec and c["gate_metric"] == metric and c["gate"] in ("99.9%", "99%", "none")
    assert c["embedding_ratio"] > 1.5 and c["model_bytes"] < c["baseline_model_bytes"]
    assert c[f"{metric}_delta"] == pytest.approx(rec["quality"][metric] - c[f"baseline_{metric}"])
    assert rec["size"]["embedding_bytes"] == c["embedding_bytes"] and "baseline_container_bytes" not in rec["size"]
    assert (f"{metric}_fp32_master" in c) == ("int8" in spec)  # a storage precision: its own effect, too


@pytest.mark.parametrize(("arch", "phase", "op"), [("two-tower", "train", "train step 2"),
                                                    ("neumf", "infer", "infer step 2")])
def test_the_torch_profiler_traces_retrieval_steps(tmp_path, arch: str, phase: str, op: str) -> None:
    from recsys_impls.profiling import profile_scenario

    sc = scenario(arch, table_sizes=[120, 150])
    written = profile_scenario(sc, tmp_path, torch_profiler=True, phase=phase, trace_steps=3, warmup=1)
    trace, ops = (tmp_path / "torch_profiler" / "torch_trace.json"), (tmp_path / "torch_profiler" / "torch_ops.txt")
    assert str(trace) in written and str(ops) in written
    names = {e.get("name") for e in json.loads(trace.read_text())["traceEvents"]}
    assert op in names and f"{phase} step 3" not in names  # 1 warm-up step unnamed, then steps 0..2
    assert "aten::" in ops.read_text()


def test_asv_discovery_imports_no_framework() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, benchmarks.bench_retrieval as b; b.scenario_for('tf', 'synthetic', 'neumf'); "
            "sys.exit(bool({'torch', 'tensorflow'} & set(sys.modules)))")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    assert subprocess.run([sys.executable, "-c", code], cwd=root, env=env).returncode == 0


def test_two_tower_learns_the_planted_clusters() -> None:
    """A small, fast version of the README's goal (>= 1.5x popularity's recall@10 on synthetic data)."""
    from recsys_impls.retrieval_runner import run_retrieval

    rec = run_retrieval(build_scenario({
        "model": {"arch": "two-tower", "table_sizes": [300, 400], "tower_mlp": [32]},
        "train": {"steps": 150, "batch_size": 128, "warmup_steps": 0, "latency_batches": 2}, **ONE_THREAD}))
    q = rec["quality"]
    assert q["recall@10"] >= 1.5 * q["popularity"]["recall@10"]
    assert q["recall@10"] <= q["achievable"]["recall@10"] + 0.05  # no better than the generator itself


def test_serving_fixture_top_k() -> None:
    import numpy as np

    from recsys_impls.metrics_retrieval import top_k
    from recsys_impls.models.retrieval import serving_fixture

    impl, queries = serving_fixture("torch", 300, dim=8, query_batch=16, batches=2)
    got = impl.to_numpy(impl.retrieve(queries[1], 10))
    corpus, q = impl.to_numpy(impl.corpus), impl.to_numpy(queries[1])
    assert got.shape == (16, 10) and len(queries) == 2
    np.testing.assert_array_equal(got, top_k(q, corpus, 10))
