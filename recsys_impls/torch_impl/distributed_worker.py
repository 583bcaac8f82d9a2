"""Entry point torchrun starts on every rank: ``python -m recsys_impls.torch_impl.distributed_worker RUN_DIR``.

Reads ``RUN_DIR/job.json`` (scenario + plan), trains in the plan's mode (``ddp`` or ``sharded``) on this
rank's slice of every global batch, evaluates on its slice of the eval split (gathered on rank 0) and
writes ``RUN_DIR/rank{R}.json``. Any exception lands in ``rank{R}.error`` so the launcher can name the rank.
Retrieval models (two-tower, NeuMF) run ``retrieval_runner.run_rank`` instead, with the DDP model of
``distributed_retrieval``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _run(run_dir: Path, rank: int, world: int) -> None:
    from recsys_impls.parallel.worker import WorkerContext

    ctx = WorkerContext(run_dir, rank, world)
    ctx.phase("init")
    import torch
    import torch.distributed as dist

    from recsys_impls.torch_impl import distributed_common as dc

    job = ctx.job
    threads = int(job.get("threads_per_process", 1))
    torch.set_num_threads(threads)
    torch.manual_seed(ctx.scenario.train.seed)
    dc.init_process_group(ctx.scenario.device.device, float(job.get("collective_timeout_s", 120)))
    if ctx.scenario.model.spec.task == "retrieval":
        _retrieval(ctx, threads)
        return
    ctx.phase("data")
    scenario, data = dc.prepare_data(ctx.scenario)
    device = dc.local_device(scenario.device.device)
    from dataclasses import replace

    scenario = replace(scenario, device=replace(scenario.device, device=device, threads=threads))
    batches = dc.local_batches(data.train, scenario.train.batch_size, rank, world)
    ctx.phase("build")
    mode = job["plan"]["mode"]
    extra: dict[str, Any] = {}
    from recsys_impls.parallel import faults

    straggler = faults.parse_straggler(scenario.straggler)
    factor = straggler.factor if straggler is not None and straggler.rank == rank else None
    balance = faults.parse_balance(scenario.balance)
    step_fn: Any = None
    if mode == "ddp":
        from recsys_impls.torch_impl import distributed_ddp

        impl: Any = distributed_ddp.build(scenario, hook=job["plan"]["comm_hook"],
                                          timed=balance.adaptive or straggler is not None, straggler_factor=factor)
        staged = [impl.stage(b) for b in batches]
        extra["comm_measured"] = impl.comm_sizes(batches[0])
        if balance.adaptive:
            step_fn, staged, split = _adaptive(impl, data.train, scenario, rank, world, balance.every)
            extra["balance_history"] = split.history
    elif mode == "sharded":
        from recsys_impls.torch_impl.distributed_sharded import ShardedDLRM

        sample = data.train.slice(0, min(data.train.batch_size, 50 * scenario.train.batch_size))
        impl = ShardedDLRM(scenario, job["plan"]["sharding"], rank, world, sample)
        if job.get("load_params"):
            impl.set_params(dict(np.load(job["load_params"])))
        if job.get("predict_only"):
            _predict_only(ctx, impl, data.eval, rank, world)
            return
        staged = [impl.stage(b) for b in batches]
        extra["comm_measured"] = impl.comm_sizes(staged[0])
        extra["sharding_plan"] = impl.plan_report()
        extra["local_bytes"] = impl.local_bytes()
        extra["local_lookups_per_batch"] = extra["sharding_plan"]["per_rank"][rank]["lookups_per_batch"]
    else:
        raise ValueError(f"unknown distributed mode {mode!r}")
    ctx.phase("train")
    from recsys_impls.measure.loop import sync_each_step_on, timed_loop

    if mode == "sharded" and job["plan"]["sharding"] == "table-wise":
        impl, loop, extra["rebalance"] = _sharded_phases(impl, staged, data.train, scenario, rank, world, sample,
                                                         balance.adaptive, factor, job.get("replan_assignment"))
    else:
        loop = timed_loop(step_fn or _straggling(impl, mode, factor), staged, warmup=scenario.train.warmup_steps,
                          sync=impl.synchronize, sync_each_step=sync_each_step_on(device), barrier=dist.barrier)
    if balance.adaptive and mode == "ddp":
        staged = [split.local_staged_last()]
    if (extra.get("rebalance") or {}).get("mode") == "adaptive":
        extra["sharding_plan_after"] = impl.plan_report()  # collective
        extra["local_bytes_after"] = impl.local_bytes()
    if getattr(impl, "busy_s", None):
        from recsys_impls.measure.stats import summarize_seconds

        extra["busy_ms"] = summarize_seconds(impl.busy_s[scenario.train.warmup_steps:])
    if getattr(impl, "straggler", None) is not None:
        extra["straggler"] = impl.straggler.report()
    ctx.phase("evaluate")
    ev = dc.eval_slice(data.eval, rank, world)
    chunks = ev.split(scenario.train.batch_size // world) or [ev]
    probs = np.concatenate([impl.to_numpy(impl.infer(impl.stage(c))) for c in chunks])
    labels = np.concatenate([c.labels for c in chunks])
    gathered = dc.gather_predictions(probs, labels)
    ctx.phase("fingerprint")
    prints = _fingerprints(impl, mode, world)
    if job.get("dump_params"):  # the trained weights and what they predicted
        _dump_params(impl, mode, run_dir, rank)
        if gathered is not None:
            np.save(run_dir / "predictions.npy", gathered[0])
    local = split.shares[rank] if balance.adaptive and mode == "ddp" else batches[0].batch_size
    from recsys_impls.measure.host import peak_rss_bytes
    from recsys_impls.record import rank_result
    from recsys_impls.threads import record_section

    result = rank_result(
        rank, world, mode, loop.summary(local), local,
        threads=torch.get_num_threads(), threads_section=record_section("torch"), backend=dist.get_backend(),
        final_loss=float(impl.loss(staged[-1])), replica_fingerprints=prints, peak_rss_bytes=peak_rss_bytes(),
        **extra,
    )
    if gathered is not None:
        result["quality"] = dc.quality(*gathered)
        result["data_info"] = {k: v for k, v in data.info.items() if isinstance(v, (int, float, str, type(None)))}
        result["data_name"] = data.name
        sizes = impl.storage_bytes()
        result["size"] = {"model_bytes": sizes.get("model"), "embedding_bytes": sizes.get("embedding")}
    ctx.write_result(result)
    ctx.phase("done")
    dist.barrier()
    dist.destroy_process_group()


def _fingerprints(impl: Any, mode: str, world: int) -> list[Any]:
    """Every rank's parameter fingerprint (a collective). Sharded: streamed table by table, so no rank
    holds the whole model for it; DDP: of the replica's own parameters."""
    import torch.distributed as dist

    from recsys_impls.torch_impl import distributed_common as dc

    if mode == "sharded":
        mine = impl.fingerprint()
    else:
        params = impl.get_params()
        mine = dc.fingerprint(params) if params is not None else None
    prints: list[Any] = [None] * world
    dist.all_gather_object(prints, mine)
    return prints


def _dump_params(impl: Any, mode: str, run_dir: Path, rank: int) -> None:
    """``rank{R}.params.npz``: every DDP replica's parameters; the sharded model's, gathered, on rank 0 only
    (a collective there: the other ranks send their shards)."""
    params = impl.gather_params(0) if mode == "sharded" else impl.get_params()
    if params is not None:
        np.savez(run_dir / f"rank{rank}.params.npz", **params)


def _retrieval(ctx: Any, threads: int) -> None:
    """A retrieval model's rank (two-tower, NeuMF): ``retrieval_runner.run_rank`` with the DDP model."""
    from dataclasses import replace

    import torch.distributed as dist

    from recsys_impls.retrieval_runner import run_rank
    from recsys_impls.torch_impl import distributed_common as dc
    from recsys_impls.torch_impl.distributed_retrieval import TorchComm

    d = ctx.scenario.device
    ctx.scenario = replace(ctx.scenario, device=replace(d, device=dc.local_device(d.device), threads=threads))
    run_rank(ctx, TorchComm())
    dist.destroy_process_group()


def _straggling(impl: Any, mode: str, factor: float | None) -> Any:
    """The step to time: DDP slows itself (it knows its own compute); other engines by the whole step."""
    if factor is None or mode == "ddp":
        return impl.train_step
    from recsys_impls.parallel.faults import Straggler, slowed

    impl.straggler = Straggler(factor)
    return slowed(impl.train_step, impl.straggler, impl.synchronize)


def _gather_tables(seconds: dict[int, float], world: int, num_tables: int) -> list[float]:
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, seconds)
    out = [0.0] * num_tables
    for p in parts:
        for table, value in p.items():
            out[int(table)] = float(value)
    return out


def _per_rank(table_seconds: list[float], assignment: list[int], world: int) -> list[float]:
    out = [0.0] * world
    for f, r in enumerate(assignment):
        out[r] += table_seconds[f]
    return out


def _sharded_phases(impl: Any, staged: list[Any], train: Any, scenario: Any, rank: int, world: int, sample: Any,
                    adaptive: bool, factor: float | None,
                    forced: list[int] | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Table-wise TorchRec training, measured per table. Static: one timed window, then each table's
    work is measured on its owner. Adaptive: the first half of the steps on the planned placement, a
    re-plan from each table's measured work (``planner.replan_by_time``), the tables moved (parameters
    and optimizer state, gathered and loaded into a new DistributedModelParallel), the second half on
    the new placement. Returns (model, the run's timed window, the record's ``rebalance`` figures).
    ``forced`` (a job option for tests) replaces the re-plan's placement."""
    import time

    import torch.distributed as dist

    from recsys_impls.measure.loop import LoopResult, timed_loop
    from recsys_impls.parallel import balance, planner
    from recsys_impls.torch_impl.distributed_sharded import ShardedDLRM

    t = scenario.train
    probe = train.split(t.batch_size)[: 3]  # the owner of a table looks up all ids of the global batch
    table_bytes = [tb.rows * tb.dim * 4 for tb in impl.tables]  # the stage's TorchRec tables (compressed ones too)
    first = impl.our_plan["assignment"]
    warm = min(t.warmup_steps, len(staged) - 1)
    if not adaptive:
        loop = timed_loop(_straggling(impl, "sharded", factor), staged, warmup=warm, sync=impl.synchronize,
                          barrier=dist.barrier)
        secs = _gather_tables(impl.probe_table_seconds(probe), world, len(impl.tables))
        per = _per_rank(secs, first, world)
        return impl, loop, {"mode": "static", "assignment": first, "table_seconds": secs,
                            "measured_seconds_per_rank": per, "imbalance": balance.imbalance(per),
                            "measured_by": _PROBE}
    half = max(1, (len(staged) - warm) // 2)
    a = timed_loop(_straggling(impl, "sharded", factor), staged, warmup=warm, steps=half, sync=impl.synchronize,
                   barrier=dist.barrier)
    t0 = time.perf_counter()
    secs = _gather_tables(impl.probe_table_seconds(probe), world, len(impl.tables))
    t_probe = time.perf_counter() - t0
    replan = planner.replan_by_time(secs, table_bytes, world, first)
    if forced is not None:
        replan.update(assignment=list(forced), forced=True,
                      moved_tables=[f for f, (a, b) in enumerate(zip(first, forced, strict=True)) if a != b])
        replan["table_bytes_moved"] = int(sum(table_bytes[f] for f in replan["moved_tables"]))
    params, state = impl.export_state()
    new = ShardedDLRM(scenario, "table-wise", rank, world, sample, table_ranks=replan["assignment"])
    new.import_state(params, state)
    if getattr(impl, "straggler", None) is not None:
        new.straggler = impl.straggler
    dist.barrier()
    replan_s = time.perf_counter() - t0
    state_bytes = sum(v.nbytes for k, v in state.items() if any(f".t{f}." in k for f in replan["moved_tables"]))
    rest = len(staged) - warm - half
    b = timed_loop(_resumed(new, factor), staged, warmup=0, steps=rest, start=warm + half, sync=new.synchronize,
                   barrier=dist.barrier)
    after = _gather_tables(new.probe_table_seconds(probe), world, len(impl.tables))
    before_rank, after_rank = _per_rank(secs, first, world), _per_rank(after, replan["assignment"], world)
    loop = LoopResult(step_seconds=a.step_seconds + b.step_seconds, seconds=a.seconds + replan_s + b.seconds,
                      warmup_steps=warm)
    return new, loop, {
        "mode": "adaptive", "replan_after_step": warm + half, **replan,
        "table_seconds_after": after,
        "measured_seconds_per_rank": {"before": before_rank, "after": after_rank},
        "imbalance_before": balance.imbalance(before_rank), "imbalance_after": balance.imbalance(after_rank),
        "imbalance": balance.imbalance(after_rank),
        "replan_s": replan_s, "probe_s": t_probe,
        "bytes_moved": int(replan["table_bytes_moved"] + state_bytes),
        "bytes_moved_note": "tables that changed owner plus their optimizer state; this implementation gathers "
                            "every table on every rank to move them (all_gather_object), so the wire carried more",
        "phases": {"before": a.summary(t.batch_size), "after": b.summary(t.batch_size)},
        "window_note": "the run's timed window is both phases plus the re-plan (probe, gather, rebuild, load)",
        "measured_by": _PROBE,
    }


_PROBE = ("each table's lookup (sum-pooled embedding_bag over the global batch's ids), backward (sparse: the "
          "looked-up rows) and optimizer update, timed on its owner on the table itself, whose updated rows "
          "are put back (median of 3 batches x 3 repeats)")


def _resumed(impl: Any, factor: float | None) -> Any:
    straggler = getattr(impl, "straggler", None)
    if straggler is None:
        return impl.train_step
    from recsys_impls.parallel.faults import slowed

    return slowed(impl.train_step, straggler, impl.synchronize)


def _adaptive(impl: Any, train: Any, scenario: Any, rank: int, world: int, every: int) -> tuple[Any, list[int], Any]:
    """(step function, loop inputs, driver) for uneven shares re-chosen every ``every`` steps."""
    import torch.distributed as dist

    from recsys_impls.parallel.balance import AdaptiveSplit

    def gather(value: float) -> list[float]:
        out: list[Any] = [None] * world
        dist.all_gather_object(out, value)
        return [float(v) for v in out]

    def set_weight(w: float) -> None:
        impl.loss_weight = w

    batch = scenario.train.batch_size
    split = AdaptiveSplit(train.split(batch), rank, world, every, impl.stage, impl.train_step, set_weight,
                          lambda: impl.busy_s, gather, min_share=max(1, batch // (8 * world)),
                          slice_staged=impl.slice_staged)
    return split.step, list(range(len(split.batches))), split


def _predict_only(ctx: Any, impl: Any, eval_batch: Any, rank: int, world: int) -> None:
    """Predict this rank's eval slice with the loaded parameters (no training); rank 0 saves all of them.

    Used to check that the sharded model predicts exactly what the unsharded one does for the same weights.
    """
    import torch.distributed as dist

    from recsys_impls.torch_impl import distributed_common as dc

    ev = dc.eval_slice(eval_batch, rank, world)
    probs = impl.to_numpy(impl.infer(impl.stage(ev)))
    gathered = dc.gather_predictions(probs, ev.labels)
    if gathered is not None:
        np.save(ctx.run_dir / "predictions.npy", gathered[0])
    result: dict[str, Any] = {"rank": rank, "world_size": world, "predict_only": True}
    params = impl.get_params()
    if ctx.job.get("load_params"):  # round trip: what the shards hold must be what was loaded
        loaded = dict(np.load(ctx.job["load_params"]))
        result["loaded_max_abs_diff"] = {k: float(np.abs(params[k] - loaded[k]).max()) for k in loaded}
    ctx.write_result(result)
    ctx.phase("done")
    dist.barrier()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    from recsys_impls.parallel.worker import guarded, redirect_stdio

    args = sys.argv[1:] if argv is None else argv
    run_dir = Path(args[0])
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    redirect_stdio(run_dir, rank)
    with guarded(run_dir, rank):
        _run(run_dir, rank, world)


if __name__ == "__main__":
    main()
