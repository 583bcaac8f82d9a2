"""TensorFlow process sets, every task on 127.0.0.1 free ports (TF's gRPC servers listen on every
interface; peers are only ever given loopback):

* data parallel: N MultiWorkerMirroredStrategy workers, each with its own TF_CONFIG;
* sharded / ps: ParameterServerStrategy, one chief (the coordinator, which writes the results) plus N
  worker and N ps ``tf.distribute.Server`` processes; servers never exit on their own, the launcher
  ends them by process id once the chief is done.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from recsys_impls.parallel.launch import Proc, free_ports
from recsys_impls.parallel.spec import ParallelPlan

PS_MODULE = "recsys_impls.tf_impl.distributed_ps_worker"


def tf_config(hosts: list[str], index: int) -> str:
    """TF_CONFIG for worker ``index`` of a cluster (several hosts for multi-node: "host:port" each)."""
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def ps_cluster(num_workers: int, num_ps: int, host: str = "127.0.0.1") -> dict[str, list[str]]:
    """A ParameterServerStrategy cluster spec (chief, workers, ps) on free ports of ``host``."""
    ports = [f"{host}:{p}" for p in free_ports(1 + num_workers + num_ps, host)]
    return {"chief": ports[:1], "worker": ports[1:1 + num_workers], "ps": ports[1 + num_workers:]}


def ps_tf_config(cluster: dict[str, list[str]], task_type: str, index: int) -> str:
    """TF_CONFIG for one task of a ParameterServerStrategy cluster."""
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def ps_processes(plan: ParallelPlan, run_dir: Path, env: dict[str, str]) -> list[Proc]:
    """Chief + N workers + N ps (N = the plan's world size)."""
    n = plan.world_size
    cluster = ps_cluster(n, n)
    procs = [Proc("chief", [sys.executable, "-m", PS_MODULE, str(run_dir), "chief", str(n)],
                  {**env, "TF_CONFIG": ps_tf_config(cluster, "chief", 0)}, rank="0")]
    for job in ("ps", "worker"):
        for i in range(n):
            procs.append(Proc(f"{job} {i}", [sys.executable, "-m", PS_MODULE, str(run_dir), "server", job, str(i)],
                              {**env, "TF_CONFIG": ps_tf_config(cluster, job, i)}, server=True, rank=f"{job}{i}"))
    return procs


def tf_processes(plan: ParallelPlan, run_dir: Path, env: dict[str, str]) -> tuple[list[Proc], int]:
    """Processes for a TF plan, and how many of them write rank results."""
    if plan.mode in ("sharded", "ps"):
        return ps_processes(plan, run_dir, env), 1
    n = plan.world_size
    hosts = [f"127.0.0.1:{p}" for p in free_ports(n)]
    procs = [Proc(f"worker {i}", [sys.executable, "-m", "recsys_impls.tf_impl.distributed_worker",
                                  str(run_dir), str(i), str(n)],
                  {**env, "TF_CONFIG": tf_config(hosts, i)}, rank=str(i)) for i in range(n)]
    return procs, n
