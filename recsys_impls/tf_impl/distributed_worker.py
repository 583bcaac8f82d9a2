"""TensorFlow data-parallel worker: ``python -m recsys_impls.tf_impl.distributed_worker RUN_DIR INDEX``.

The launcher sets TF_CONFIG (all workers on 127.0.0.1 free ports). MultiWorkerMirroredStrategy
provides the cluster and the RING collectives; the TFDLRM's own tf.function step runs inside
``strategy.run`` and averages its gradients with ``ReplicaContext.all_reduce`` (dense tensors
all-reduced, embedding IndexedSlices all-gathered) before the model's optimizer applies them. Every
worker holds a full replica, starts from the same seeded weights and applies the same averaged
gradients, so replicas stay identical (the worker fingerprints its parameters to prove it). A custom
loop, because Keras 3 ``fit`` fails under this strategy in TensorFlow 2.21. Retrieval models (two-tower,
NeuMF) run ``retrieval_runner.run_rank`` instead, with the model of ``distributed_retrieval``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def _run(run_dir: Path, index: int, world: int) -> None:
    from recsys_impls.parallel.worker import WorkerContext

    ctx = WorkerContext(run_dir, index, world)
    ctx.phase("init")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    job = ctx.job
    threads = int(job.get("threads_per_process", 1))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=float(job.get("collective_timeout_s", 120)))
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if ctx.scenario.model.spec.task == "retrieval":  # two-tower, NeuMF: their own rank procedure
        from recsys_impls.retrieval_runner import run_rank
        from recsys_impls.tf_impl.distributed_retrieval import MWMSComm

        ctx.scenario = replace(ctx.scenario, device=replace(ctx.scenario.device, threads=threads))
        run_rank(ctx, MWMSComm(strategy, ctx.scenario.device.device))
        return
    ctx.phase("data")
    from recsys_impls.parallel.shards import local_batches
    from recsys_impls.tf_impl.distributed_mwms import build, load_data

    scenario = replace(ctx.scenario, device=replace(ctx.scenario.device, threads=threads))
    scenario, data = load_data(scenario)
    batches = local_batches(data.train, scenario.train.batch_size, index, world)
    ctx.phase("build")
    from recsys_impls.parallel import faults

    straggler = faults.parse_straggler(scenario.straggler)
    balance = faults.parse_balance(scenario.balance)
    factor = straggler.factor if straggler is not None and straggler.rank == index else None
    impl = build(scenario, strategy=strategy, timed=balance.adaptive or straggler is not None,
                 straggler_factor=factor)
    staged = [impl.stage(b) for b in batches]
    comm_measured = impl.comm_sizes(staged[0])
    ctx.phase("train")
    from recsys_impls.measure.loop import timed_loop

    step: Any = impl.train_step
    split = None
    if balance.adaptive:
        from recsys_impls.parallel.balance import AdaptiveSplit

        def gather(value: float) -> list[float]:
            return [float(v) for v in impl.gather_numpy(np.array([value], np.float32))]

        def set_weight(w: float) -> None:
            impl.loss_weight = w

        b = scenario.train.batch_size
        split = AdaptiveSplit(data.train.split(b), index, world, balance.every, impl.stage, impl.train_step,
                              set_weight, lambda: impl.busy_s, gather, min_share=max(1, b // (8 * world)))
        step, staged = split.step, list(range(len(split.batches)))
    # The barrier is a collective over the ring: it returns once every worker's steps have run.
    loop = timed_loop(step, staged, warmup=scenario.train.warmup_steps, barrier=impl.barrier)
    if split is not None:
        staged = [split.local_staged_last()]
    ctx.phase("evaluate")
    n = data.eval.batch_size // world
    ev = data.eval.slice(index * n, (index + 1) * n)
    chunks = ev.split(max(scenario.train.batch_size // world, 1)) or [ev]
    probs = np.concatenate([impl.to_numpy(impl.infer(impl.stage(c))) for c in chunks])
    labels = np.concatenate([c.labels for c in chunks])
    all_probs, all_labels = impl.gather_numpy(probs), impl.gather_numpy(labels)
    from recsys_impls.parallel.shards import fingerprint

    params = impl.get_params()
    prints = impl.gather_strings(fingerprint(params), world)
    if job.get("dump_params"):
        np.savez(run_dir / f"rank{index}.params.npz", **params)
    from recsys_impls.measure.host import peak_rss_bytes
    from recsys_impls.record import rank_result
    from recsys_impls.threads import record_section

    local = batches[0].batch_size
    result = rank_result(
        index, world, "mwms", loop.summary(local), local, threads=threads, threads_section=record_section("tf"),
        backend="MultiWorkerMirroredStrategy RING", final_loss=float(impl.loss(staged[-1])),
        replica_fingerprints=prints, comm_measured=comm_measured, peak_rss_bytes=peak_rss_bytes(),
    )
    if impl.straggler is not None:
        result["straggler"] = impl.straggler.report()
    if impl.busy_s:
        from recsys_impls.measure.stats import summarize_seconds

        result["busy_ms"] = summarize_seconds(impl.busy_s[scenario.train.warmup_steps:])
    if split is not None:
        result["balance_history"] = split.history
        result["local_batch"] = split.shares[index]
    if index == 0:
        from recsys_impls import metrics

        q = metrics.all_metrics(all_labels, all_probs)
        q["eval_samples"] = int(all_labels.shape[0])
        result["quality"] = q
        result["data_name"] = data.name
        result["data_info"] = {k: v for k, v in data.info.items() if isinstance(v, (int, float, str, type(None)))}
        sizes = impl.storage_bytes()
        result["size"] = {"model_bytes": sizes.get("model"), "embedding_bytes": sizes.get("embedding")}
    ctx.write_result(result)
    impl.barrier()
    ctx.phase("done")


def main(argv: list[str] | None = None) -> None:
    from recsys_impls.parallel.worker import guarded, redirect_stdio

    args = sys.argv[1:] if argv is None else argv
    run_dir, index, world = Path(args[0]), int(args[1]), int(args[2])
    redirect_stdio(run_dir, index)
    with guarded(run_dir, index):
        _run(run_dir, index, world)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # MWMS keeps gRPC threads alive; the result is written, leave without waiting on them


if __name__ == "__main__":
    main()
