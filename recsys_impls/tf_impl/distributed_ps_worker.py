"""TensorFlow ParameterServerStrategy processes (``--framework tf --parallel sharded:N:table-wise|row-wise``).

``python -m recsys_impls.tf_impl.distributed_ps_worker RUN_DIR chief N`` is the coordinator: it builds
the PSTFDLRM (variables on the ps), schedules every training closure on the workers through a
ClusterCoordinator, evaluates the final model on the eval split (prediction closures on the workers)
and writes ``rank0.json``. ``... RUN_DIR server worker|ps INDEX`` starts one ``tf.distribute.Server``
that serves until the launcher ends it (servers never return from ``join()``). Every process gets
the whole cluster (all on 127.0.0.1) in ``TF_CONFIG``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def _threads(job: dict[str, Any]) -> int:
    return int(job.get("threads_per_process", 1))


def _serve(run_dir: Path, job_name: str, index: int) -> None:
    """One worker or ps server: start, report, serve forever."""
    from recsys_impls.parallel.worker import WorkerContext

    ctx = WorkerContext(run_dir, 0, 1)
    ctx.rank = f"{job_name}{index}"  # type: ignore[assignment] - names the server in the run's notes
    ctx.phase("start-server")
    import tensorflow as tf

    threads = _threads(ctx.job)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    # Inter-op threads stay at TF's default: a remote function blocks pool threads on Recv ops, and a
    # one-thread inter-op pool deadlocked the first scheduled step here.
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=job_name, task_index=index, protocol="grpc",
                                  config=config, start=True)
    # A server has nothing more to finish: "done" tells the launcher's hang report it is not the one stuck.
    ctx.phase("done")
    server.join()


def _chief(run_dir: Path, num_workers: int) -> None:
    from recsys_impls.parallel.worker import WorkerContext

    ctx = WorkerContext(run_dir, 0, num_workers)
    ctx.phase("init")
    import tensorflow as tf

    job = ctx.job
    threads = _threads(job)
    tf.config.threading.set_intra_op_parallelism_threads(threads)  # inter-op: default (see _serve)
    plan = job["plan"]
    sharding = plan["sharding"] or "row-wise"
    from recsys_impls.parallel import planner
    from recsys_impls.parallel.shards import local_batches, prepare_data
    from recsys_impls.tf_impl.distributed_ps import PSTFDLRM

    ctx.phase("data")
    scenario = replace(ctx.scenario, device=replace(ctx.scenario.device, threads=threads))
    scenario, data = prepare_data(scenario)
    cfg, t = scenario.model, scenario.train
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    cluster = resolver.cluster_spec().as_dict()
    num_ps = len(cluster.get("ps", []))
    sample = data.train.slice(0, min(data.train.batch_size, 50 * t.batch_size))
    per_sample, counts = planner.measured_ids(sample, cfg.table_sizes)
    loads = planner.table_loads(cfg.table_sizes, cfg.embedding_dim, t.batch_size, cfg.ids_per_feature,
                                ids_per_sample=per_sample)
    our_plan = planner.plan(loads, num_ps, sharding, id_counts=counts)
    ctx.phase("connect")
    strategy = tf.distribute.experimental.ParameterServerStrategy(
        resolver, variable_partitioner=PSTFDLRM.partitioner(num_ps) if sharding == "row-wise" else None)
    ctx.phase("build")
    impl = PSTFDLRM(scenario, strategy, cluster, sharding,
                    table_ranks=our_plan["assignment"] if sharding == "table-wise" else None)
    if job.get("load_params"):
        impl.set_params(dict(np.load(job["load_params"])))
    if job.get("predict_only"):
        _predict_only(ctx, impl, data.eval, t.batch_size)
        return
    impl.grad_scale = 1.0 / num_workers
    # A global batch of B samples = one closure of B/N samples per worker (see distributed_ps).
    per_rank = [local_batches(data.train, t.batch_size, r, num_workers) for r in range(num_workers)]
    steps = [[impl.stage(per_rank[r][s]) for r in range(num_workers)] for s in range(len(per_rank[0]))]
    global_staged = impl.stage(data.train.split(t.batch_size)[0])
    comm_measured = impl.comm_sizes(global_staged)
    report = impl.placement_report(counts, t.batch_size, per_sample)
    ctx.phase("train")
    from recsys_impls.measure.loop import timed_loop

    def schedule(closures: list[Any]) -> None:  # one global step: a closure per worker, dispatched async
        for s in closures:
            impl.schedule_train(s)

    # Updates are asynchronous: a step's time here is its dispatch, so only the window (closed by join)
    # is a throughput; per-step times are kept but say how the coordinator paced, not the workers.
    loop = timed_loop(schedule, steps, warmup=t.warmup_steps, sync=impl.join)
    from recsys_impls.parallel.staleness import distribution

    consistency = {"staleness": distribution(impl.staleness(), num_workers)}
    ctx.phase("evaluate")
    chunks = data.eval.split(t.batch_size) or [data.eval]
    probs = impl.predict_many([impl.stage(c) for c in chunks])
    labels = np.concatenate([c.labels for c in chunks])
    from recsys_impls import metrics
    from recsys_impls.measure.host import peak_rss_bytes

    q = metrics.all_metrics(labels, probs)
    q["eval_samples"] = int(labels.shape[0])
    params = impl.get_params()
    if job.get("dump_params"):  # the trained weights and what they predicted
        np.savez(run_dir / "rank0.params.npz", **params)
        np.save(run_dir / "predictions.npy", probs)
    sizes = impl.storage_bytes()
    placed = np.array([p["table_bytes"] for p in report["per_ps"]], dtype=np.float64)
    our_plan.update({
        "executed_by": "tf.distribute ParameterServerStrategy",
        "placement_source": (f"recsys planner ({sharding}) via colocation with per-ps anchors"
                             if sharding == "table-wise" else "FixedShardsPartitioner (TF 'div' row blocks)"),
        "measured_bytes_per_rank": [int(b) for b in placed],
        "measured_bytes_imbalance": float(placed.max() / placed.mean()) if placed.mean() else 1.0,
        "measured": report,
        "shard_layout": impl.embeddings.shard_layout(),
    })
    from recsys_impls.record import rank_result
    from recsys_impls.threads import record_section

    summary = loop.summary(t.batch_size)
    summary["step_ms_note"] = "asynchronous updates: per-step times are the coordinator's dispatch pacing"
    result = rank_result(
        0, num_workers, plan["mode"], summary, t.batch_size // num_workers,
        role="chief", num_ps=num_ps, threads=threads, threads_section=record_section("tf"),
        backend="ParameterServerStrategy + ClusterCoordinator (grpc, asynchronous updates)",
        final_loss=float(impl.loss(steps[-1][0])),
        comm_measured=comm_measured, sharding_plan=our_plan,
        peak_rss_bytes=peak_rss_bytes(),
        per_rank_override=[
            {"rank": f"ps{p['ps']}", "role": "ps", "local_bytes": p["table_bytes"],
             "variable_bytes": p["variable_bytes"], "local_lookups_per_batch": p["lookups_per_batch"]}
            for p in report["per_ps"]
        ] + [{"rank": f"worker{w}", "role": "worker"} for w in range(num_workers)],
        quality=q, data_name=data.name, consistency=consistency,
        data_info={k: v for k, v in data.info.items() if isinstance(v, (int, float, str, type(None)))},
        size={"model_bytes": sizes.get("model"), "embedding_bytes": sizes.get("embedding")},
    )
    ctx.write_result(result)
    ctx.phase("done")


def _predict_only(ctx: Any, impl: Any, eval_batch: Any, batch_size: int) -> None:
    """Predictions of the loaded parameters on the whole eval split (no training), and the round trip."""
    chunks = eval_batch.split(batch_size) or [eval_batch]
    probs = impl.predict_many([impl.stage(c) for c in chunks])
    np.save(ctx.run_dir / "predictions.npy", probs)
    params = impl.get_params()
    loaded = dict(np.load(ctx.job["load_params"]))
    ctx.write_result({"rank": 0, "world_size": ctx.world_size, "predict_only": True,
                      "loaded_max_abs_diff": {k: float(np.abs(params[k] - loaded[k]).max()) for k in loaded},
                      "layout": impl.embeddings.shard_layout()})
    ctx.phase("done")


def main(argv: list[str] | None = None) -> None:
    from recsys_impls.parallel.worker import guarded, redirect_stdio

    args = sys.argv[1:] if argv is None else argv
    run_dir, role = Path(args[0]), args[1]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if role == "chief":
        redirect_stdio(run_dir, 0)
        with guarded(run_dir, 0):
            _chief(run_dir, int(args[2]))
    else:
        job_name, index = args[2], int(args[3])
        name = f"{job_name}{index}"
        redirect_stdio(run_dir, name)
        with guarded(run_dir, name):
            _serve(run_dir, job_name, index)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the coordinator keeps gRPC threads alive; the result is written


if __name__ == "__main__":
    main()
