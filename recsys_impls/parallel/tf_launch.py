"""TensorFlow process sets: N MultiWorkerMirroredStrategy workers, each with its own TF_CONFIG on
127.0.0.1 free ports (TF's gRPC servers listen on every interface; peers are only ever given loopback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from recsys_impls.parallel.launch import Proc, free_ports
from recsys_impls.parallel.spec import ParallelPlan


def tf_config(hosts: list[str], index: int) -> str:
    """TF_CONFIG for worker ``index`` of a cluster (several hosts for multi-node: "host:port" each)."""
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def tf_processes(plan: ParallelPlan, run_dir: Path, env: dict[str, str]) -> tuple[list[Proc], int]:
    """Processes for a TF data-parallel plan, and how many of them write rank results."""
    n = plan.world_size
    hosts = [f"127.0.0.1:{p}" for p in free_ports(n)]
    procs = [Proc(f"worker {i}", [sys.executable, "-m", "recsys_impls.tf_impl.distributed_worker",
                                  str(run_dir), str(i), str(n)],
                  {**env, "TF_CONFIG": tf_config(hosts, i)}) for i in range(n)]
    return procs, n
