"""One execution path: which path a scenario takes, and no import cycle between runner and parallel."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from recsys_impls.config import build_scenario
from recsys_impls.execute import execute, execute_or_record, in_one_process, path_of

PKG = Path(__file__).resolve().parents[1] / "recsys_impls"


def _sc(**axes):
    layers = {"scenario": {"framework": "torch", **axes}, "train": {"steps": 6, "batch_size": 64,
                                                                     "eval_samples": 512, "latency_batches": 3}}
    layers["model"] = {"table_sizes": [50, 40], "embedding_dim": 4, "num_dense": 3, "bottom_mlp": [8, 4],
                       "top_mlp": [8, 1]}
    return build_scenario(layers)


@pytest.mark.parametrize("axes, path", [
    ({}, "single"),
    ({"parallel": "threads:2"}, "single"),
    ({"compression": "int8"}, "compressed"),
    ({"compression": "int8", "parallel": "threads:1"}, "compressed"),
    ({"parallel": "ddp:2"}, "distributed"),
    ({"parallel": "ddp:2", "compression": "hash:0.1"}, "distributed"),
    ({"parallel": "sharded:2:table-wise"}, "distributed"),
])
def test_path_of(axes, path):
    assert path_of(_sc(**axes)) == path


def test_sharded_with_compression_is_refused_before_launch(monkeypatch):
    from recsys_impls.parallel import run as parallel_run

    monkeypatch.setattr(parallel_run, "run_distributed", lambda *a, **k: pytest.fail("launched workers"))
    rec = execute_or_record(_sc(parallel="sharded:2:table-wise", compression="int8"))
    assert rec["status"] == "skipped" and "use --parallel ddp:N" in rec["error"]


def test_threads_become_device_threads():
    sc = in_one_process(_sc(parallel="threads:2"))
    assert sc.parallel == "none" and sc.device.threads == 2


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_import_cycle_between_runner_and_parallel():
    runner = _imports(PKG / "runner.py")
    assert not any(m.startswith("recsys_impls.parallel") for m in runner)
    for f in (PKG / "parallel").glob("*.py"):
        assert "recsys_impls.runner" not in _imports(f), f"{f.name} imports the runner"
        assert "recsys_impls.execute" not in _imports(f), f"{f.name} imports execute"


STEP_CALLS = {"train_step", "infer", "schedule_train"}


def _calls(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            out.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return out


def _self_timed_step_loops(path: Path) -> list[str]:
    """Functions that read a clock and loop over model steps themselves."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        loops = [n for n in ast.walk(fn) if isinstance(n, (ast.For, ast.While, ast.ListComp))]
        if "perf_counter" in _calls(fn) and any(_calls(loop) & STEP_CALLS for loop in loops):
            found.append(f"{path.name}:{fn.name}")
    return found


def test_no_other_timed_loop_reads_the_clock_around_steps():
    """Every measured path goes through measure.loop: no train_step/infer loop times itself elsewhere."""
    roots = [PKG, PKG.parent / "benchmarks"]
    offenders = [hit for root in roots for f in root.rglob("*.py") for hit in _self_timed_step_loops(f)]
    assert offenders == [], offenders


@pytest.mark.slow
def test_threads_with_compression_keeps_both_sections():
    rec = execute(_sc(parallel="threads:1", compression="int8"))
    assert rec["status"] == "ok"
    assert rec["compression"]["spec"] == "int8"
    assert rec["parallel"]["mode"] == "threads" and rec["scenario"]["parallel"] == "threads:1"
    assert rec["train"]["step_ms"]["n"] == rec["train"]["timed_steps"]
    assert rec["infer"]["batch_ms"]["n"] >= 1 and rec["latency_ms"]["stats"]["n"] == 3
